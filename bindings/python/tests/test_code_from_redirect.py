"""``client.code_from_redirect``: the redirect back from the provider read
by the client, its state and issuer (RFC 9207, which the emulator
announces) checked before the code is redeemed."""

import urllib.parse

import pytest

import freshtoken
from freshtoken import ConfigError, InvalidResponseError, MemoryTokenStore, OAuthError

from helpers import CLIENT_ID, CLIENT_SECRET, redirect_of

REDIRECT = "https://app.example/cb"


def test_the_providers_redirect_gives_its_code_and_a_forged_one_sends_nothing(emu):
    client = freshtoken.Client.discover(emu.issuer, CLIENT_ID, client_secret=CLIENT_SECRET)
    request = client.authorization_url(REDIRECT, scopes=["openid", "accounts"])
    redirect = redirect_of(request.url)
    issuer = urllib.parse.quote(emu.issuer, safe="")
    forged = [
        (redirect.replace(issuer, urllib.parse.quote("https://evil.example", safe="")), "RFC 9207"),
        (redirect.replace("&iss=" + issuer, ""), "no issuer"),
        (redirect.replace(request.state, "another-state"), "state"),
    ]
    for url, says in forged:
        with pytest.raises(InvalidResponseError) as raised:
            client.code_from_redirect(url, request.state)
        assert says in str(raised.value)
        assert "another-state" not in str(raised.value), "no value shown"

    code = client.code_from_redirect(redirect, request.state)
    session = client.exchange_code("u1", MemoryTokenStore(), code=code, code_verifier=request.code_verifier,
                                   redirect_uri=REDIRECT)
    assert session.access_token()
    assert emu.grant_requests("authorization_code") == 1


def test_an_error_redirect_is_its_oauth_error_and_arguments_are_checked(emu):
    client = freshtoken.Client.discover(emu.issuer, CLIENT_ID, client_secret=CLIENT_SECRET)
    iss = urllib.parse.quote(emu.issuer, safe="")
    denied = f"{REDIRECT}?error=access_denied&error_description=No+thanks&state=s-1&iss={iss}"
    with pytest.raises(OAuthError) as raised:
        client.code_from_redirect(denied, "s-1")
    assert raised.value.oauth_error == "access_denied"
    with pytest.raises(ConfigError) as raised:
        client.code_from_redirect(None, "s-1")
    assert raised.value.field == "redirect"
    with pytest.raises(ConfigError) as raised:
        client.code_from_redirect(denied, "")
    assert raised.value.field == "expected_state"
