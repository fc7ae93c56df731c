"""The mirror against calls that replace a key's token. A read made while
seed() or refresh() on the same key is in flight gets the core's token of
that moment (the core still serves it; a token given to token_rejected() it
no longer serves) and used to mirror it; when the call then left no fresh token to refill (the session died, a
seed without an access token), the mirror kept serving the superseded
token: a rejected one, or a dead session's. Once such a call has ended, no
read returns the old token. The same holds when the caller gave up (a
cancelled task, a timeout): it drops the mirror when it leaves, but its code
exchange or refresh runs on in the core and replaces the token later; a read
in between used to mirror the old token, and the previous account's token
was served after a re-link.

Against the emulator; the calls are held in flight by its ``hold`` fault (a
seed waits for a held refresh): no sleeps."""

import asyncio
import threading

import pytest

import freshtoken

from helpers import (Signal, TestStore, authorization_code, differ, make_client, make_sync_client, same, seeded,
                     seeded_sync, turn)

HOLD = {"kind": "hold", "grant": "refresh_token"}
HOLD_CODE = {"kind": "hold", "grant": "authorization_code"}
REDIRECT_URI = "https://app.example/callback"
INVALID_GRANT = {"kind": "body", "status": 400, "body": '{"error":"invalid_grant"}'}


def test_a_failed_token_rejected_that_kills_the_session_leaves_the_rejected_token_unserved(emu):
    client, _ = make_sync_client(emu)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    token = session.access_token()
    same(session.access_token(), token, "mirrored")
    emu.fault(HOLD, INVALID_GRANT)
    outcome = {}

    def reject():
        try:
            session.token_rejected(token, timeout=60)
        except Exception as error:  # noqa: BLE001 - checked below
            outcome["error"] = error

    rejecting = threading.Thread(target=reject)
    rejecting.start()
    assert emu.wait_held(1) == 1
    assert session.cached_access_token() is None, "during the call the core no longer serves it"
    assert emu.release_held() == 1
    rejecting.join(60)
    assert isinstance(outcome.get("error"), freshtoken.ReauthorizationRequired), repr(outcome.get("error"))

    with pytest.raises(freshtoken.ReauthorizationRequired):
        session.access_token()
    with pytest.raises(freshtoken.ReauthorizationRequired):
        client.session("u1", store).access_token()
    assert session.cached_access_token() is None, "the core agrees"
    assert emu.refresh_requests() == 2


def test_a_seed_while_a_read_mirrors_the_old_token_leaves_it_unserved(emu):
    async def scenario():
        client, _ = make_client(emu)
        store = TestStore()
        session, _ = await seeded(emu, client, store)
        token = await session.access_token()
        other = emu.seed()["refresh_token"]
        emu.fault(HOLD)
        refreshing = asyncio.ensure_future(session.refresh())
        await turn()
        assert await asyncio.to_thread(emu.wait_held, 1) == 1
        # The seed waits for the refresh in flight, then installs a record
        # with no access token.
        seeding = asyncio.ensure_future(session.seed(refresh_token=other))
        await turn()
        same(await session.access_token(), token, "during the seed the core still serves the old token")
        assert emu.release_held() == 1
        await refreshing
        await seeding

        after = await session.access_token()
        differ(after, token, "after seed(): a token of the seeded refresh token")
        assert emu.refresh_requests() == 3, "the seeded refresh token was spent"
        same(await client.session("u1", store).access_token(), after, "and that one is mirrored")

    asyncio.run(scenario())


def test_an_exchange_whose_caller_was_cancelled_leaves_the_previous_accounts_token_unserved(emu):
    async def scenario():
        client, clock = make_client(emu)
        store = TestStore()
        session, _ = await seeded(emu, client, store)
        token = await session.access_token()
        same(await session.access_token(), token, "mirrored")
        request = client.authorization_url(REDIRECT_URI, scopes=["openid"])
        code = await asyncio.to_thread(authorization_code, request.url)
        exchange = dict(code=code, code_verifier=request.code_verifier, redirect_uri=REDIRECT_URI)
        emu.fault(HOLD_CODE)
        quitter = asyncio.ensure_future(client.exchange_code("u1", store, **exchange))
        assert await asyncio.to_thread(emu.wait_held, 1) == 1
        # The caller gives up once the code was sent, and drops the mirror as
        # it leaves; the exchange runs on in the core.
        quitter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await quitter
        same(await session.access_token(), token, "while the exchange runs on the core still serves the old token")
        assert emu.release_held() == 1
        # Waits for the exchange's end without touching this client's mirror
        # (its own exchange_code drops it, which would hide a stale copy): a
        # repeat of the callback from another client of the process joins the
        # exchange in the core and returns when it has ended.
        other, _ = make_client(emu, clock=clock)
        await other.exchange_code("u1", store, **exchange)
        assert emu.grant_requests("authorization_code") == 1, "the code was sent once"

        fresh = store.record("u1")["access_token"]
        differ(fresh, token, "the exchange brought the new account's token")
        for read in range(3):
            same(await session.access_token(), fresh, f"the old handle after the exchange, read {read + 1}")
        same(await client.session("u1", store).access_token(), fresh, "a new handle after the exchange")
        same(session._handle().cached_token().token, fresh, "the core holds the same token")

    asyncio.run(scenario())


def test_a_refresh_whose_caller_timed_out_leaves_the_old_token_unserved(emu):
    refreshed = Signal()
    client, _ = make_sync_client(emu, on_event=lambda event: event.kind == "refreshed" and refreshed.set())
    store = TestStore()
    session = client.session("u1", store)
    session.seed(refresh_token=emu.seed()["refresh_token"], access_token="at-before-refresh", expires_in=900)
    same(session.access_token(), "at-before-refresh", "mirrored")
    emu.fault(HOLD)
    # The caller's timeout ends its wait (the request is held: it always
    # fires) and it drops the mirror as it leaves; the refresh runs on.
    with pytest.raises(TimeoutError):
        session.refresh(timeout=0.05)
    assert emu.wait_held(1) == 1
    same(session.access_token(), "at-before-refresh", "while the refresh runs on the core serves the old token")
    same(session.cached_access_token(), "at-before-refresh", "cached_access_token() reads it too, unmirrored")
    assert emu.release_held() == 1
    # The refresh has installed and saved its token when it says so (any call
    # on the session would drop the mirror, hiding a stale copy).
    assert refreshed.wait_blocking(), "the refresh went on without its caller"
    assert emu.refresh_requests() == 1

    fresh = store.record("u1")["access_token"]
    differ(fresh, "at-before-refresh", "the refresh brought a new token")
    for read in range(3):
        same(session.access_token(), fresh, f"after the refresh, read {read + 1}")
    same(client.session("u1", store).access_token(), fresh, "a new handle after the refresh")


def test_a_read_before_the_core_has_a_replacing_call_mirrors_nothing(emu):
    # token_rejected(), seed(), revoke() drop the mirror, then wait for
    # freshtoken's loop (busy with any other host callback) to hand the call
    # to the core. A read in that window gets the core's token of that
    # moment, which the call is about to stop serving (the rejected token,
    # the account a seed replaces, a revoked session's): mirrored, it was
    # served on after the core had stopped. Here the window is held open by
    # beginning the call's drop without making the call.
    client, _ = make_sync_client(emu)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    token = session.access_token()
    same(session.access_token(), token, "mirrored")

    def mirrored():
        return session._entry.until > 0

    session._drop()  # a replacing call has begun; the core does not have it yet
    session._drop()  # and a second one, on another thread
    same(session.access_token(), token, "the core still serves it")
    assert not mirrored(), "mirrored during the calls"
    session._dropped()
    same(session.access_token(), token, "still the core's")
    assert not mirrored(), "mirrored while the second call runs"

    session._dropped()
    same(session.access_token(), token, "the core's token")
    assert mirrored(), "mirrored again once no call runs"
