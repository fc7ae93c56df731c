"""The mirror against calls that replace a key's token. A read made while
seed() or refresh() on the same key is in flight gets the core's token of
that moment (the core still serves it; a token given to token_rejected() it
no longer serves) and used to mirror it; when the call then left no fresh token to refill (the session died, a
seed without an access token), the mirror kept serving the superseded
token: a rejected one, or a dead session's. Once such a call has ended, no
read returns the old token.

Against the emulator; the calls are held in flight by its ``hold`` fault (a
seed waits for a held refresh): no sleeps."""

import asyncio
import threading

import pytest

import freshtoken

from helpers import TestStore, differ, make_client, make_sync_client, same, seeded, seeded_sync, turn

HOLD = {"kind": "hold", "grant": "refresh_token"}
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
