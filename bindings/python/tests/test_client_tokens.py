"""Client-credentials tokens against the emulator: cached per sorted scope
set, single flight, renewed when stale (fake clock), invalidated on demand.
Mirrors bindings/js/test/client-tokens.emulator.test.mjs."""

import asyncio

from freshtoken import FreshTokenError

from helpers import Signal, differ, held_then_released, make_client, same


def test_cached_per_scope_set_and_renewed_after_expiry(emu):
    async def scenario():
        client, clock = make_client(emu)
        a = await client.client_token(["accounts", "balances"])
        same(await client.client_token(["balances", "accounts", "balances"]), a, "same scope set, same token")
        assert emu.grant_requests("client_credentials") == 1

        other = await client.client_token(["transactions"])
        differ(other, a, "another scope set has its own token")
        assert emu.grant_requests("client_credentials") == 2
        counters = emu.counters()
        assert counters["last_audience"] == emu.token_endpoint, "audience defaults to the token endpoint"

        clock.advance(3_539_000)  # 3600 s tokens, 60 s leeway
        same(await client.client_token(["accounts", "balances"]), a, "still fresh")
        assert emu.grant_requests("client_credentials") == 2
        clock.advance(1_000)
        differ(await client.client_token(["accounts", "balances"]), a, "stale: a new token")
        assert emu.grant_requests("client_credentials") == 3
        assert emu.refresh_requests() == 0, "renewed with client_credentials, never refresh_token"

    asyncio.run(scenario())


def test_concurrent_callers_share_one_request(emu):
    async def scenario():
        client, _ = make_client(emu)
        emu.fault({"kind": "hold", "grant": "client_credentials"})
        tokens = await held_then_released(emu, *(
            client.client_token(["accounts", "balances"] if i % 2 else ["balances", "accounts"])
            for i in range(50)))
        assert len(set(tokens)) == 1
        assert emu.grant_requests("client_credentials") == 1
        assert emu.counters()["max_concurrent_token_requests"] == 1

    asyncio.run(scenario())


def test_invalidate_forces_a_new_token_for_that_scope_set_only(emu):
    async def scenario():
        client, clock = make_client(emu)
        a = await client.client_token(["accounts"])
        b = await client.client_token(["balances"])
        client.invalidate_client_token(["accounts", "accounts"])
        emu.fault({"kind": "status", "status": 500})
        differ(await client.client_token(["accounts"]), a, "invalidated: a new token")
        assert len(clock.sleeps) == 1, "the 500 was retried after a backoff"
        same(await client.client_token(["balances"]), b, "the other scope set is untouched")
        assert emu.grant_requests("client_credentials") == 4

    asyncio.run(scenario())


def test_client_token_rejected_forgets_a_rejected_token_once(emu):
    # Many workers share one client token; the API revokes it, and each
    # worker that saw it rejected says so: only the first report forgets it.
    async def scenario():
        client, _ = make_client(emu)
        first = await client.client_token(["accounts"])
        client.client_token_rejected(["accounts"], first)
        second = await client.client_token(["accounts"])
        differ(second, first, "a new one after the first report")
        for _ in range(5):
            client.client_token_rejected(["accounts"], first)
            same(await client.client_token(["accounts"]), second, "later reports keep the new one")
        assert emu.grant_requests("client_credentials") == 2
        await client.revoke_client_tokens()
        assert emu.counters()["tokens_revoked"] == 2, "the forgotten token, still live, is revoked too"

    asyncio.run(scenario())


def test_an_oauth_error_is_typed_and_not_cached(emu):
    async def scenario():
        client, _ = make_client(emu)
        emu.fault({"kind": "body", "status": 400,
                   "body": '{"error":"invalid_scope","error_description":"no such scope"}'})
        try:
            await client.client_token(["x"])
        except FreshTokenError.OAuth as err:
            assert err.code == "oauth"
            assert (err.error, err.description, err.status) == ("invalid_scope", "no such scope", 400)
        else:
            raise AssertionError("expected FreshTokenError.OAuth")
        assert isinstance(await client.client_token(["x"]), str), "a failure is not cached"

    asyncio.run(scenario())


def test_a_request_whose_caller_was_cancelled_is_finished_and_cached(emu):
    """A caller that gives up (a cancelled task, a request timeout) never
    stops the shared request: its token is cached for the next caller.
    Before, the request paused with its caller, and the next caller, an hour
    later, resumed it and got a TimeoutError with nothing sent."""

    async def scenario():
        issued = Signal()
        client, clock = make_client(
            emu, on_event=lambda event: event.kind == "client_token_issued" and issued.set())
        emu.fault({"kind": "hold", "grant": "client_credentials"})
        quitter = asyncio.ensure_future(client.client_token(["accounts"]))
        assert await asyncio.to_thread(emu.wait_held, 1) == 1
        quitter.cancel()
        try:
            await quitter
        except asyncio.CancelledError:
            pass
        assert emu.release_held() == 1
        assert await asyncio.to_thread(issued.wait_blocking), "the request went on without its caller"
        cached = await client.client_token(["accounts"])
        assert emu.grant_requests("client_credentials") == 1, "its token was cached"

        clock.advance(3_600_000)  # stale an hour later: a new token, no TimeoutError
        differ(await client.client_token(["accounts"]), cached, "a new token")
        assert emu.grant_requests("client_credentials") == 2

    asyncio.run(scenario())
