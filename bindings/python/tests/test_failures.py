"""Sessions when things go wrong, against the emulator: failing stores,
rejected / lost refresh tokens, retries, transport failures through the
urllib client, bad answers, and secrets kept out of every error.
Mirrors bindings/js/test/failures.emulator.test.mjs. Time is a fake clock
(backoff is recorded, not waited for)."""

import asyncio
import json
import os
import re

import pytest

import freshtoken
from freshtoken import FreshTokenError, ReauthorizationReason

from helpers import (CLIENT_SECRET, REPO, FakeClock, LocalServer, TestStore, closed_port, differ,
                     make_client, make_sync_client, same, seeded, seeded_sync)


async def rejection(awaitable, cls):
    """`awaitable` raises `cls` (a FreshTokenError variant); returns the error."""
    try:
        await awaitable
    except FreshTokenError as err:
        assert isinstance(err, cls), f"expected {cls.__name__}, got {type(err).__name__}: {err}"
        return err
    raise AssertionError(f"expected {cls.__name__}, but it returned")


# -- stores -----------------------------------------------------------------


def test_store_save_failure_is_storage_and_loses_nothing(emu, capfd):
    async def scenario():
        client, _ = make_client(emu)
        store = TestStore()
        session, family = await seeded(emu, client, store)
        old_rt = family["refresh_token"]
        store.fail_saves = 2  # the rotated record's save, and status()'s retry of it

        err = await rejection(session.access_token(), FreshTokenError.Storage)
        assert err.code == "storage" and freshtoken.error_code(err) == "storage"
        assert "disk full" in str(err), "the store's message is kept"
        assert emu.refresh_requests() == 1
        assert emu.counters()["rotations"] == 1, "the emulator rotated once"
        same(store.record("u1")["refresh_token"], old_rt, "the store still holds the old record")
        assert (await session.status()).unpersisted is True
        same(store.record("u1")["refresh_token"], old_rt, "status() tried to save, and failed")

        # The store works again: status() saves the renewed record first, as every call does.
        assert (await session.status()).unpersisted is False
        differ(store.record("u1")["refresh_token"], old_rt, "status() saved the rotated refresh token")

        token = await session.access_token()
        assert emu.refresh_requests() == 1, "the consumed refresh token is not sent again"
        stored = store.record("u1")
        same(stored["access_token"], token, "the kept record was saved")
        differ(stored["refresh_token"], old_rt, "the kept record holds the rotated refresh token")
        assert emu.refresh_token_state(stored["refresh_token"]) == "active"
        assert emu.refresh_token_state(old_rt) == "consumed"
        assert emu.counters()["reuse_detected"] == 0
        assert (await session.status()).unpersisted is False

    asyncio.run(scenario())
    # TokenStoreBase turned the OSError into HostError.Failed: no uniffi traceback.
    assert "Unhandled exception" not in capfd.readouterr().err


def test_save_unsaved_saves_a_rotation_the_store_refused_with_no_handle_left(emu):
    async def scenario():
        client, clock = make_client(emu)
        store = TestStore()
        session, family = await seeded(emu, client, store)
        _, other = await seeded(emu, client, store, key="u2")
        old_rt = family["refresh_token"]
        store.fail_saves = 2  # the rotated record's save, and save_unsaved()'s first try
        await rejection(session.access_token(), FreshTokenError.Storage)
        del session  # no handle of u1 is left: the client itself holds the record

        err = await rejection(client.save_unsaved(), FreshTokenError.Storage)
        assert re.search(r"1 session record\(s\) held only in this process could not be saved; "
                         r"the last: .*disk full", str(err)), str(err)
        assert old_rt not in str(err)
        same(store.record("u1")["refresh_token"], old_rt, "still refused: the record is kept in memory")

        await client.save_unsaved()
        saved = store.record("u1")["refresh_token"]
        differ(saved, old_rt, "the rotated refresh token is stored")
        assert emu.refresh_token_state(saved) == "active"
        same(store.record("u2")["refresh_token"], other["refresh_token"], "the other session is untouched")

        # A new client (a restart) serves the saved rotation without a refresh.
        restarted, _ = make_client(emu, clock)
        await restarted.session("u1", store).access_token()
        assert emu.refresh_requests() == 1, "no refresh token was sent twice"
        assert emu.counters()["reuse_detected"] == 0

    asyncio.run(scenario())


def test_save_unsaved_on_the_sync_client(emu):
    client, _ = make_sync_client(emu)
    store = TestStore()
    session, family = seeded_sync(emu, client, store)
    store.fail_saves = 1
    with pytest.raises(FreshTokenError.Storage):
        session.access_token()
    client.save_unsaved(timeout=30)
    differ(store.record("u1")["refresh_token"], family["refresh_token"], "the rotation is stored")


def test_a_store_that_keeps_failing_never_resends(emu):
    async def scenario():
        client, _ = make_client(emu)
        store = TestStore()
        session, _ = await seeded(emu, client, store)
        store.fail_saves = 10**9
        for _ in range(3):
            await rejection(session.access_token(), FreshTokenError.Storage)
        await rejection(session.refresh(), FreshTokenError.Storage)
        await rejection(session.tokens(), FreshTokenError.Storage)
        assert emu.refresh_requests() == 1

        store.fail_saves = 0
        token = await session.access_token()
        same(store.record("u1")["access_token"], token, "saved once the store heals")
        assert emu.refresh_requests() == 1
        assert emu.counters()["reuse_detected"] == 0

    asyncio.run(scenario())


def test_the_record_is_marked_in_doubt_before_sending_and_nothing_is_sent_if_that_fails(emu):
    async def scenario():
        client, _ = make_client(emu)
        store = TestStore()
        session, family = await seeded(emu, client, store)
        store.fail_marker_saves = 1
        err = await rejection(session.access_token(), FreshTokenError.Storage)
        assert "disk full" in str(err)
        assert emu.counters()["token_requests"] == 0, "a store that cannot write the marker lets nothing be sent"
        same(store.record("u1")["refresh_token"], family["refresh_token"], "the record is untouched")

        saved = []
        original = TestStore.save

        async def recording(self, key, record):
            saved.append(json.loads(record))
            await original(self, key, record)

        store.save = recording.__get__(store)
        token = await session.access_token()
        assert emu.refresh_requests() == 1
        marker, rotated = saved
        assert marker.get("in_doubt") is True and marker["refresh_token"] == family["refresh_token"], \
            "first: the old record, marked in doubt"
        assert not rotated.get("in_doubt") and rotated["refresh_token"] != family["refresh_token"], \
            "then: the rotated record"
        same(rotated["access_token"], token, "the rotated record holds the token handed out")

    asyncio.run(scenario())


def test_a_failed_load_is_storage_and_sends_nothing(emu):
    async def scenario():
        client, clock = make_client(emu)
        store = TestStore()
        await seeded(emu, client, store)
        other, _ = make_client(emu, clock)
        session = other.session("u1", store)
        store.fail_loads = 1
        err = await rejection(session.access_token(), FreshTokenError.Storage)
        assert "database unavailable" in str(err)
        assert emu.refresh_requests() == 0
        await session.access_token()
        assert emu.refresh_requests() == 1

    asyncio.run(scenario())


# -- refresh tokens the server will not take ---------------------------------


def test_invalid_grant_requires_reauthorization_and_is_remembered(emu):
    async def scenario():
        client, clock = make_client(emu)
        store = TestStore()
        session = client.session("u1", store)
        await session.seed(refresh_token="rt-that-the-server-never-issued")

        err = await rejection(session.access_token(), FreshTokenError.ReauthorizationRequired)
        assert err.code == "reauthorization_required"
        assert err.reason == "invalid_grant"
        assert err.reason_code == "invalid_grant"
        assert emu.refresh_requests() == 1

        again = await rejection(session.access_token(), FreshTokenError.ReauthorizationRequired)
        assert again.reason == "invalid_grant"
        await rejection(session.refresh(), FreshTokenError.ReauthorizationRequired)
        assert store.record("u1")["reauth"] == "invalid_grant", "the reason is stored"
        elsewhere, _ = make_client(emu, clock)
        other = elsewhere.session("u1", store)
        await rejection(other.access_token(), FreshTokenError.ReauthorizationRequired)
        assert (await other.status()).reauthorization_reason == ReauthorizationReason.INVALID_GRANT
        assert emu.refresh_requests() == 1, "a dead refresh token is never sent again"

        family = emu.seed()
        await session.seed(refresh_token=family["refresh_token"])
        await session.access_token()
        assert emu.refresh_requests() == 2, "only a new seed revives the session"
        assert (await session.status()).reauthorization_reason is None

    asyncio.run(scenario())


def test_a_response_lost_after_rotation_is_network_then_lost_rotation(emu):
    async def scenario():
        client, _ = make_client(emu)
        store = TestStore()
        session, family = await seeded(emu, client, store)
        emu.fault({"kind": "drop_after_commit"})

        err = await rejection(session.access_token(), FreshTokenError.Network)
        assert err.code == "network" and err.maybe_sent is True
        assert emu.refresh_token_state(family["refresh_token"]) == "consumed"
        assert emu.refresh_requests() == 1, "a possibly-sent request is not retried"
        assert (await session.status()).in_doubt is True

        lost = await rejection(session.access_token(), FreshTokenError.ReauthorizationRequired)
        assert lost.reason_code == "lost_rotation"
        assert store.record("u1")["reauth"] == "lost_rotation"

    asyncio.run(scenario())


def test_wrong_client_secret_is_invalid_client_and_keeps_the_session(emu):
    async def scenario():
        client, _ = make_client(emu, client_secret="wrong-secret")
        store = TestStore()
        session, family = await seeded(emu, client, store)
        err = await rejection(session.access_token(), FreshTokenError.InvalidClient)
        assert err.code == "invalid_client" and err.status == 401
        assert "reauth" not in store.record("u1")
        assert emu.refresh_token_state(family["refresh_token"]) == "active"

    asyncio.run(scenario())


# -- retries and the urllib client --------------------------------------------


def test_a_503_is_retried_after_a_recorded_backoff_then_succeeds(emu):
    async def scenario():
        client, clock = make_client(emu)
        session, _ = await seeded(emu, client, TestStore())
        emu.fault({"kind": "status", "status": 503})
        token = await session.access_token()
        assert isinstance(token, str) and token
        assert emu.refresh_requests() == 2
        assert len(clock.sleeps) == 1 and 125 <= clock.sleeps[0] <= 250

    asyncio.run(scenario())


def test_persistent_5xx_is_transient_after_max_attempts(emu):
    async def scenario():
        client, clock = make_client(emu)
        session, _ = await seeded(emu, client, TestStore())
        emu.fault({"kind": "status", "status": 502, "count": 10})
        err = await rejection(session.access_token(), FreshTokenError.Transient)
        assert err.code == "transient" and err.status == 502
        assert emu.refresh_requests() == 4 and len(clock.sleeps) == 3
        emu.clear_faults()

    asyncio.run(scenario())


def test_connection_refused_is_not_sent_retried_then_network_not_maybe_sent():
    async def scenario():
        clock = FakeClock()
        url = f"http://127.0.0.1:{closed_port()}/connect/token"
        client = freshtoken.AsyncClient(url, "test-client", client_secret=CLIENT_SECRET, clock=clock)
        session = client.session("u1", TestStore())
        await session.seed(refresh_token="rt-never-sent")
        err = await rejection(session.access_token(), FreshTokenError.Network)
        assert err.code == "network"
        assert err.maybe_sent is False, "connection refused: surely never sent"
        assert len(clock.sleeps) == 3, "retried (4 attempts, 3 backoffs)"
        assert (await session.status()).in_doubt is False
        # Nothing was sent, so the refresh token is still good for a later try.
        assert (await session.status()).reauthorization_reason is None

    asyncio.run(scenario())


def test_a_timeout_through_urllib_is_timeout(emu):
    async def scenario():
        client, _ = make_client(emu, timeout_ms=300)
        session, _ = await seeded(emu, client, TestStore())
        emu.fault({"kind": "hold", "grant": "refresh_token"})  # never answered (reset releases it)
        err = await rejection(session.access_token(), FreshTokenError.Timeout)
        assert err.code == "timeout"
        assert emu.refresh_requests() == 1, "a timed-out request may have been processed: not retried"
        assert (await session.status()).in_doubt is True

    asyncio.run(scenario())


def test_a_body_over_the_cap_is_invalid_response(emu):
    async def scenario():
        client, _ = make_client(emu)
        session, _ = await seeded(emu, client, TestStore())
        emu.fault({"kind": "oversize", "bytes": 70_000})
        err = await rejection(session.access_token(), FreshTokenError.InvalidResponse)
        assert err.code == "invalid_response"
        assert "exceeds" in str(err)

    asyncio.run(scenario())


def test_an_endless_body_is_invalid_response_and_the_connection_is_closed_at_the_cap(emu):
    async def scenario():
        client, _ = make_client(emu)
        session, _ = await seeded(emu, client, TestStore())
        emu.fault({"kind": "endless", "grant": "refresh_token"})
        err = await rejection(session.access_token(), FreshTokenError.InvalidResponse)
        assert "exceeds" in str(err)

    asyncio.run(scenario())
    (stream,) = emu.wait_streams_ended(1)
    assert stream["end"] == "client_closed"
    assert stream["bytes_written"] < 1024 * 1024, "stopped at the 64 KiB cap, not at the emulator's 64 MiB"


def test_redirects_are_not_followed(emu):
    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", emu.token_endpoint)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    async def scenario(url):
        clock = FakeClock()
        client = freshtoken.AsyncClient(url, "test-client", client_secret=CLIENT_SECRET, clock=clock)
        session = client.session("u1", TestStore())
        await session.seed(refresh_token=emu.seed()["refresh_token"])
        err = await rejection(session.access_token(), FreshTokenError.InvalidResponse)
        assert err.status == 307
        assert emu.counters()["token_requests"] == 0, "the redirect was not followed"

    with LocalServer(redirect) as server:
        asyncio.run(scenario(server.url))


# -- codes and secrets ---------------------------------------------------------


def test_error_codes_match_the_rust_strings():
    """Every exported variant maps onto the code string of Rust's ErrorCode::as_str."""
    core = open(os.path.join(REPO, "src", "error.rs"), encoding="utf-8").read()
    ffi = open(os.path.join(REPO, "src", "ffi", "error.rs"), encoding="utf-8").read()
    as_str = dict(re.findall(r'ErrorCode::(\w+) => "(\w+)"', core))
    variant_code = dict(re.findall(r"FreshTokenError::(\w+) \{ \.\. \} => ErrorCode::(\w+)", ffi))
    expected = {variant: as_str[code] for variant, code in variant_code.items()}
    assert sorted(set(as_str.values())) == sorted([
        "reauthorization_required", "invalid_client", "oauth", "transient", "network", "timeout",
        "invalid_response", "storage", "conflict", "config"])

    generated = {name: cls for name, cls in vars(FreshTokenError).items()
                 if isinstance(cls, type) and issubclass(cls, FreshTokenError)}
    assert set(generated) == set(expected), "one Python class per Rust variant"
    for name, cls in generated.items():
        assert cls.code == expected[name], name
        assert freshtoken.ERROR_CODES[cls] == expected[name]
    assert {reason.name.lower() for reason in ReauthorizationReason} == {
        "invalid_grant", "refresh_expired", "lost_rotation", "no_refresh_token", "revoked"}
    assert freshtoken.error_code(ValueError("x")) is None


def test_no_token_or_secret_in_any_error(emu):
    async def scenario():
        errors = []
        client, clock = make_client(emu)
        store = TestStore()
        session, family = await seeded(emu, client, store)
        secrets = [family["refresh_token"], family["access_token"], CLIENT_SECRET, "SENTINEL"]

        async def collect(awaitable):
            try:
                await awaitable
            except FreshTokenError as err:
                errors.append(err)
            else:
                raise AssertionError("expected an error")

        store.fail_saves = 1
        await collect(session.access_token())
        secrets.append(await session.access_token())
        secrets.append(store.record("u1")["refresh_token"])
        await session.refresh()
        secrets.append(store.record("u1")["refresh_token"])
        for fault in (
            {"kind": "body", "status": 200, "body": '{"access_token":"at-SENTINEL","token_type":"mac"}'},
            {"kind": "body", "status": 400, "body": '{"error":"invalid_request","error_description":"bad"}'},
            {"kind": "malformed_json"},
            {"kind": "html", "status": 502, "count": 4},
            {"kind": "rate_limit", "retry_after": "3600"},
        ):
            emu.fault(fault)
            await collect(session.refresh())
        clock.advance(600_000)  # the 429's wait, kept past its call
        emu.fault({"kind": "drop_after_commit"})
        await collect(session.refresh())
        await collect(session.refresh())  # lost_rotation
        await store.save("garbled", "not json rt-SENTINEL")
        await collect(client.session("garbled", store).access_token())
        await collect(client.client_token(["two words"]))
        wrong, _ = make_client(emu, clock, client_secret="wrong-SENTINEL")
        await collect(wrong.client_token(["a"]))

        codes = {freshtoken.error_code(e) for e in errors}
        assert {"storage", "invalid_response", "oauth", "transient", "network", "reauthorization_required",
                "config", "invalid_client"} <= codes
        for err in errors:
            text = " ".join([str(err), repr(err), *(str(v) for v in vars(err).values())])
            for secret in secrets:
                assert secret not in text, f"{type(err).__name__} quotes a secret"

    asyncio.run(scenario())


@pytest.mark.parametrize("scopes", [["two words"], "accounts"])
def test_bad_scopes_are_config_errors(emu, scopes):
    async def scenario():
        client, _ = make_client(emu)
        err = await rejection(client.client_token(scopes), FreshTokenError.Config)
        assert err.code == "config"

    asyncio.run(scenario())


def test_backoff_on_the_system_clock_works_under_asyncio(emu):
    """No fake clock: the core's own timer wakes the Rust future from another thread."""
    async def scenario():
        client = freshtoken.AsyncClient(emu.token_endpoint, "test-client", client_secret=CLIENT_SECRET,
                                   retry={"initial_backoff_ms": 20, "max_backoff_ms": 20})
        session, _ = await seeded(emu, client, TestStore())
        emu.fault({"kind": "status", "status": 503})
        assert isinstance(await session.access_token(), str)
        assert emu.refresh_requests() == 2

    asyncio.run(scenario())
