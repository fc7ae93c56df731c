"""authorization_url(extra_params=...): further query parameters (Stitch's
``provider``, ``login_hint``, ...) as a mapping of str to str, sent after the
URL's own in name order, and approved by the emulator's authorize endpoint
(which refuses a parameter given twice)."""

import types
import urllib.parse

import pytest

from freshtoken import ConfigError, MemoryTokenStore

from helpers import make_sync_client, redirect_of

REDIRECT_URI = "https://app.example/callback"


def query_of(url):
    return urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True)


def test_extra_params_are_sent_encoded_in_name_order_and_the_emulator_approves(emu):
    client, _ = make_sync_client(emu)
    hint = "a b&c=d+\u00e9"
    request = client.authorization_url(REDIRECT_URI, scopes=["openid"],
                                       extra_params={"provider": "fnb", "login_hint": hint, "acr_values": "2fa"})
    query = urllib.parse.urlsplit(request.url).query
    assert query.endswith("&acr_values=2fa&login_hint=a+b%26c%3Dd%2B%C3%A9&provider=fnb"), query
    pairs = query_of(request.url)
    assert [name for name, _ in pairs[-3:]] == ["acr_values", "login_hint", "provider"], "after the URL's own, by name"
    assert dict(pairs)["login_hint"] == hint
    # The same options make the same parameters, whatever the dict's order.
    again = client.authorization_url(REDIRECT_URI, scopes=["openid"], state=request.state, nonce=request.nonce,
                                     extra_params={"provider": "fnb", "acr_values": "2fa", "login_hint": hint})
    assert query_of(again.url)[-3:] == pairs[-3:]

    # The server sees each parameter once, approves, and the code redeems.
    back = dict(query_of(redirect_of(request.url)))
    assert back["state"] == request.state
    session = client.exchange_code("u1", MemoryTokenStore(), code=back["code"],
                                   code_verifier=request.code_verifier, redirect_uri=REDIRECT_URI)
    assert session.access_token()


def test_any_mapping_is_read_and_an_empty_one_sends_nothing_more(emu):
    client, _ = make_sync_client(emu)
    url = client.authorization_url(REDIRECT_URI, extra_params=types.MappingProxyType({"provider": "fnb"})).url
    assert dict(query_of(url))["provider"] == "fnb"
    plain = [name for name, _ in query_of(client.authorization_url(REDIRECT_URI).url)]
    assert [name for name, _ in query_of(client.authorization_url(REDIRECT_URI, extra_params={}).url)] == plain


@pytest.mark.parametrize("name", ["state", "scope", "prompt", "client_id", "redirect_uri", "code_challenge", ""])
def test_a_parameter_the_url_sets_itself_is_a_config_error_naming_extra_params(emu, name):
    client, _ = make_sync_client(emu)
    with pytest.raises(ConfigError) as raised:
        client.authorization_url(REDIRECT_URI, extra_params={"provider": "fnb", name: "secret-value"})
    assert raised.value.field == "extra_params"
    assert f"`{name}`" in str(raised.value)
    assert "secret-value" not in str(raised.value)


@pytest.mark.parametrize("value", ["provider=fnb", [("provider", "fnb")], 5, None],
                         ids=["str", "list-of-pairs", "int", "None"])
def test_extra_params_that_are_no_mapping_are_a_config_error(emu, value):
    client, _ = make_sync_client(emu)
    with pytest.raises(ConfigError) as raised:
        client.authorization_url(REDIRECT_URI, extra_params=value)
    assert raised.value.field == "extra_params"
    assert "must be a mapping of str to str" in str(raised.value)


@pytest.mark.parametrize("params, says", [
    ({"provider": 5}, "extra_params['provider'] must be a str, not int"),
    ({"provider": None}, "extra_params['provider'] must be a str, not NoneType"),
    ({"provider": b"fnb"}, "extra_params['provider'] must be a str, not bytes"),
    ({1: "fnb"}, "extra_params names must be str, not int"),
    ({"provider": "fnb\ud800"}, "lone surrogate"),
    ({"provider\ud800": "fnb"}, "lone surrogate"),
], ids=["int", "None", "bytes", "int-name", "surrogate-value", "surrogate-name"])
def test_a_name_or_value_that_is_not_a_str_is_a_config_error_naming_extra_params(emu, params, says):
    client, _ = make_sync_client(emu)
    with pytest.raises(ConfigError) as raised:
        client.authorization_url(REDIRECT_URI, extra_params=params)
    assert raised.value.field == "extra_params"
    assert says in str(raised.value)
    assert "fnb" not in str(raised.value), "never the value"
