"""Session against the emulator: rotation saved before the token is handed
out, single flight, the sync cached path, seed(), tokens(), status().
Mirrors bindings/js/test/session.emulator.test.mjs. Time is a fake clock."""

import asyncio
import json

import freshtoken
from freshtoken import FreshTokenError

from helpers import YEAR_MS, TestStore, differ, held_then_released, make_client, same, seeded, turn


def test_rotated_record_is_saved_before_access_token_returns(emu):
    async def scenario():
        client, _ = make_client(emu)
        store = TestStore()
        session, family = await seeded(emu, client, store)
        store.gate_saves()

        pending = asyncio.ensure_future(session.access_token())
        await store.entered.wait()
        # The server has rotated while the save still holds every caller.
        assert emu.counters()["rotations"] == 1
        assert emu.refresh_token_state(family["refresh_token"]) == "consumed"
        await turn(20)
        assert not pending.done(), "access_token() must not return while save() is pending"
        same(store.record("u1")["refresh_token"], family["refresh_token"], "nothing written yet")
        assert session.cached_access_token() is None, "not even the sync path hands it out early"

        store.released.set()
        token = await pending
        stored = store.record("u1")
        differ(stored["refresh_token"], family["refresh_token"], "the stored refresh token is the rotated one")
        same(stored["refresh_token"], json.loads(store.saving)["refresh_token"],
             "the record saved is the record stored")
        same(stored["access_token"], token, "the stored access token is the one handed out")
        assert emu.refresh_token_state(stored["refresh_token"]) == "active"
        assert emu.refresh_token_state(family["refresh_token"]) == "consumed"

    asyncio.run(scenario())


def test_200_concurrent_callers_at_expiry_cause_exactly_one_refresh(emu):
    async def scenario():
        client, _ = make_client(emu)
        store = TestStore()
        session, _ = await seeded(emu, client, store)
        # The refresh is held, unanswered, until every caller has asked.
        emu.fault({"kind": "hold", "grant": "refresh_token"})

        tokens = await held_then_released(emu, *(session.access_token() for _ in range(200)))

        assert emu.refresh_requests() == 1
        counters = emu.counters()
        assert counters["max_concurrent_token_requests"] == 1
        assert counters["reuse_detected"] == 0
        assert len(tokens) == 200
        assert len(set(tokens)) == 1, "every caller got the same token"
        same(store.record("u1")["access_token"], tokens[0], "the stored token is the one handed out")

    asyncio.run(scenario())


def test_200_callers_with_a_handle_each_share_one_refresh(emu):
    async def scenario():
        client, _ = make_client(emu)
        store = TestStore()
        await seeded(emu, client, store)
        emu.fault({"kind": "hold", "grant": "refresh_token"})

        tokens = await held_then_released(emu, *(client.session("u1", store).access_token() for _ in range(200)))

        assert emu.refresh_requests() == 1
        assert emu.counters()["max_concurrent_token_requests"] == 1
        assert len(set(tokens)) == 1
        assert client.session_count == 1, "all handles share one state"

    asyncio.run(scenario())


def test_fresh_token_comes_from_the_sync_path_with_no_io_until_the_leeway(emu):
    async def scenario():
        client, clock = make_client(emu)
        store = TestStore()
        session, _ = await seeded(emu, client, store)
        assert session.cached_access_token() is None, "nothing fresh in memory yet"
        first = await session.access_token()
        assert emu.refresh_requests() == 1
        loads, saves = store.loads, store.saves

        # 900 s token, 60 s leeway: fresh for 839.999 s.
        clock.advance(839_000)
        same(session.cached_access_token(), first, "the sync path serves the cached token")
        for _ in range(1000):
            same(await session.access_token(), first, "the cached token")
        handles = [await client.session("u1", store).access_token() for _ in range(100)]
        assert all(t == first for t in handles)
        assert (store.loads, store.saves) == (loads, saves), "no store calls"
        assert emu.refresh_requests() == 1

        clock.advance(1_000)
        assert session.cached_access_token() is None, "stale at the leeway"
        second = await session.access_token()
        differ(second, first, "a new token at the leeway")
        assert emu.refresh_requests() == 2
        same(store.record("u1")["access_token"], second, "the new token is stored")

    asyncio.run(scenario())


def test_concurrent_forced_refreshes_share_one_request(emu):
    async def scenario():
        client, _ = make_client(emu)
        session, _ = await seeded(emu, client, TestStore())
        first = await session.access_token()
        emu.fault({"kind": "hold", "grant": "refresh_token"})

        infos = await held_then_released(emu, *(session.refresh() for _ in range(10)))

        assert emu.refresh_requests() == 2, "one initial refresh and one forced"
        assert len({i.access_token for i in infos}) == 1
        differ(infos[0].access_token, first, "the forced refresh brought a new token")
        assert emu.counters()["reuse_detected"] == 0

    asyncio.run(scenario())


def test_seed_with_access_token_is_used_without_a_request_and_bad_seeds_are_config_errors(emu):
    async def scenario():
        client, _ = make_client(emu)
        store = TestStore()
        family = emu.seed(scope="openid offline_access")
        session = client.session("u1", store)
        await session.seed(refresh_token=family["refresh_token"], access_token=family["access_token"],
                           expires_in=900, scope=family["scope"])
        same(session.cached_access_token(), family["access_token"], "the seeded token is cached")
        same(await session.access_token(), family["access_token"], "the seeded access token is used")
        assert emu.refresh_requests() == 0
        same(store.record("u1")["refresh_token"], family["refresh_token"], "seed saved the record")

        for bad in ({"refresh_token": ""}, {"refresh_token": "x", "expires_in": -1}):
            try:
                await session.seed(**bad)
            except FreshTokenError.Config as err:
                assert err.code == "config"
            else:
                raise AssertionError(f"seed({list(bad)}) was accepted")
        same(store.record("u1")["refresh_token"], family["refresh_token"], "a rejected seed changed nothing")

    asyncio.run(scenario())


def test_tokens_and_status_report_expiry_scope_and_refresh_lifetime(emu):
    async def scenario():
        client, clock = make_client(emu)
        store = TestStore()
        session = client.session("u1", store)
        status = await session.status()
        assert (status.has_record, status.unpersisted, status.in_doubt) == (False, False, False)

        family = emu.seed()
        await session.seed(refresh_token=family["refresh_token"])
        clock.advance(5_000)
        sent_at = clock.now_ms()
        info = await session.tokens()
        assert info.expires_at_ms == sent_at + 900_000
        assert info.refresh_expires_at_ms == sent_at + YEAR_MS
        assert info.scope == "openid offline_access accounts"
        assert info.id_token.count(".") == 2, "a JWT-shaped ID token"
        assert info.access_token not in str(info) and info.access_token not in repr(info)
        same(await session.access_token(), info.access_token, "tokens() and access_token() agree")

        status = await session.status()
        assert status.has_record and status.access_expires_at_ms == sent_at + 900_000
        assert status.refresh_expires_at_ms == sent_at + YEAR_MS
        assert status.reauthorization_reason is None
        assert emu.refresh_requests() == 1, "status() sent nothing"

    asyncio.run(scenario())


def test_another_processs_rotation_is_picked_up_from_the_store(emu):
    async def scenario():
        client, clock = make_client(emu)
        store = TestStore()
        a, _ = await seeded(emu, client, store)
        other = freshtoken.AsyncClient(emu.token_endpoint, "test-client", client_secret="test-secret", clock=clock)
        b = other.session("u1", store)
        assert (await b.status()).has_record

        token = await a.access_token()
        same(await b.access_token(), token, "B re-read the store before refreshing")
        assert emu.refresh_requests() == 1
        assert emu.counters()["reuse_detected"] == 0

    asyncio.run(scenario())


def test_session_access_token_awaits_the_core_only_when_nothing_is_cached(emu, ffi_calls):
    async def scenario():
        client, _ = make_client(emu)
        session, _ = await seeded(emu, client, TestStore())
        ffi_calls.clear()
        first = await session.access_token()
        assert ffi_calls["UserSession.access_token"] == 1, "nothing cached: the core refreshed"
        ffi_calls.clear()
        for _ in range(100):
            same(await session.access_token(), first, "cached")
        assert sum(ffi_calls.values()) == 0, f"cached: served by the mirror, no FFI call ({dict(ffi_calls)})"

    asyncio.run(scenario())


def test_client_secret_basic_goes_through_the_urllib_headers(emu):
    async def scenario():
        client, _ = make_client(emu, client_auth="client_secret_basic")
        session, _ = await seeded(emu, client, TestStore())
        await session.access_token()
        assert emu.counters()["refresh_success"] == 1

    asyncio.run(scenario())
