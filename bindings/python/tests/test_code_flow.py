"""The authorization-code flow through Python against the emulator, which
(like oidc-provider) refuses a code's second use and revokes what its first
use brought: the core sends a code once per process, so a callback handled
twice keeps the session the first exchange saved; and a verifier RFC 7636
forbids is a ConfigError, with the single-use code not sent."""

import asyncio

import pytest

from freshtoken import ConfigError, MemoryTokenStore

from helpers import authorization_code, held_then_released, make_client, make_sync_client

REDIRECT_URI = "https://app.example/callback"


def test_a_callback_handled_twice_keeps_the_first_session(emu):
    client, _ = make_sync_client(emu)
    store = MemoryTokenStore()
    request = client.authorization_url(REDIRECT_URI, scopes=["openid"])
    code = authorization_code(request.url)
    exchange = dict(code=code, code_verifier=request.code_verifier, redirect_uri=REDIRECT_URI)
    client.exchange_code("u1", store, **exchange)
    again = client.exchange_code("u1", store, **exchange)
    assert emu.grant_requests("authorization_code") == 1, "the code was sent once"
    again.refresh()
    with pytest.raises(ConfigError) as raised:
        client.exchange_code("u2", store, **exchange)
    assert raised.value.field == "code"
    assert emu.grant_requests("authorization_code") == 1
    assert emu.refresh_requests() == 1


def test_two_exchanges_of_one_code_at_once_send_it_once(emu):
    async def scenario():
        client, _ = make_client(emu)
        store = MemoryTokenStore()
        request = client.authorization_url(REDIRECT_URI, scopes=["openid"])
        code = authorization_code(request.url)
        exchange = dict(code=code, code_verifier=request.code_verifier, redirect_uri=REDIRECT_URI)
        # The exchange is held at the server until both calls are in.
        emu.fault({"kind": "hold", "grant": "authorization_code"})
        sessions = await held_then_released(emu, client.exchange_code("u1", store, **exchange),
                                            client.exchange_code("u1", store, **exchange))
        assert emu.grant_requests("authorization_code") == 1
        await sessions[1].refresh()

    asyncio.run(scenario())


@pytest.mark.parametrize("verifier", ["v" * 42, "v" * 129, "v" * 40 + "+/=", "v" * 42 + "\u00e9"],
                         ids=["short", "long", "base64", "unicode"])
def test_a_verifier_rfc_7636_forbids_is_a_config_error_and_nothing_is_sent(emu, verifier):
    client, _ = make_sync_client(emu)
    request = client.authorization_url(REDIRECT_URI)
    code = authorization_code(request.url)
    with pytest.raises(ConfigError) as raised:
        client.exchange_code("u1", MemoryTokenStore(), code=code, code_verifier=verifier,
                             redirect_uri=REDIRECT_URI)
    assert raised.value.field == "code_verifier"
    assert verifier not in str(raised.value)
    assert emu.grant_requests("authorization_code") == 0
