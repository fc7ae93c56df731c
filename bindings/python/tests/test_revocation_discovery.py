"""Revocation (RFC 7009) and discovery through Python, sync and asyncio:
`session.revoke()`, `client.revoke_client_tokens()`, `Client.discover()` /
`AsyncClient.discover()` and `client.provider_metadata`, against the
emulator (its revocation endpoint, its discovery document broken on
purpose, its counters) and against the independent oidc-provider (a real
code flow, a refresh, a revocation, then the server itself refuses the
revoked refresh token). Mirrors tests/revocation.rs and tests/discovery.rs.
No sleeps: a refresh in flight is held at the emulator, a revocation that
waits on the store is held at a gated load."""

import asyncio
import json
import os
import pickle
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

import freshtoken
from freshtoken import (ConfigError, InvalidResponseError, NetworkError, ReauthorizationRequired,
                        TransientError)

from conftest import REPO
from helpers import (CLIENT_ID, CLIENT_SECRET, FakeClock, LocalServer, Signal, TestStore, closed_port,
                     differ, make_client, make_sync_client, same, seeded, seeded_sync, turn)

# Straight to loopback, whatever *_proxy says.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def revocations(emu):
    counters = emu.counters()
    return counters["revocation_requests"], counters["revocation_by_hint"]


def api_accepts(emu, access_token):
    """Whether the emulator's API takes `access_token` (a revoked one gets UNAUTHENTICATED)."""
    request = urllib.request.Request(emu.api_endpoint, data=b'{"query":"{ viewer { clientId } }"}',
                                     headers={"authorization": f"Bearer {access_token}",
                                              "content-type": "application/json"})
    with _direct.open(request, timeout=10) as response:
        return "errors" not in json.loads(response.read())


class LoadGateStore(TestStore):
    """A TestStore whose loads, once gated, report that they started and wait for the test."""

    __test__ = False

    def __init__(self):
        super().__init__()
        self.load_entered = None
        self.load_released = None

    def gate_loads(self):
        self.load_entered = Signal()
        self.load_released = Signal()

    async def load(self, key):
        if self.load_entered is not None:
            self.load_entered.set()
            await self.load_released.wait()
        return await super().load(key)


# --- the session: revoke() -------------------------------------------------------------------


def test_revoke_sends_both_tokens_and_the_session_fails_fast_afterwards(emu):
    async def scenario():
        client, _ = make_client(emu)
        store = TestStore()
        session, _ = await seeded(emu, client, store)
        access = await session.access_token()
        same(session.cached_access_token(), access, "mirrored before the revocation")
        live_rt = store.record("u1")["refresh_token"]
        assert api_accepts(emu, access)

        assert await session.revoke() is None

        requests, by_hint = revocations(emu)
        assert requests == 2, "the refresh token, then the access token"
        assert by_hint == {"refresh_token": 1, "access_token": 1}
        assert emu.refresh_token_state(live_rt) == "revoked"
        assert not api_accepts(emu, access), "the access token was revoked too"
        record = store.record("u1")
        assert record["reauth"] == "revoked"
        assert "refresh_token" not in record and "access_token" not in record

        token_requests = emu.counters()["token_requests"]
        assert session.cached_access_token() is None, "the mirrored token is gone"
        with pytest.raises(ReauthorizationRequired) as raised:
            await session.access_token()
        assert (raised.value.code, raised.value.reason) == ("reauthorization_required", "revoked")
        with pytest.raises(ReauthorizationRequired) as again:
            await client.session("u1", store).refresh()
        assert again.value.reason == "revoked"
        status = await session.status()
        assert status.reauthorization_reason == freshtoken.ReauthorizationReason.REVOKED
        assert emu.counters()["token_requests"] == token_requests, "nothing sent"

        await session.revoke()
        assert revocations(emu)[0] == 2, "a second revoke has nothing left to send"

    asyncio.run(scenario())


def test_sync_revoke_is_seen_by_another_client_through_the_store(emu):
    client, clock = make_sync_client(emu)
    store = TestStore()
    session, family = seeded_sync(emu, client, store)
    access = session.access_token()
    live_rt = store.record("u1")["refresh_token"]
    differ(live_rt, family["refresh_token"], "rotated by the first refresh")

    session.revoke(timeout=30)

    assert revocations(emu) == (2, {"refresh_token": 1, "access_token": 1})
    assert emu.refresh_token_state(live_rt) == "revoked"
    with pytest.raises(ReauthorizationRequired) as raised:
        session.access_token()
    assert raised.value.reason == "revoked"
    # Another process: its own client, the same store.
    other = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)
    token_requests = emu.counters()["token_requests"]
    with pytest.raises(ReauthorizationRequired) as there:
        other.session("u1", store).access_token()
    assert there.value.reason == "revoked"
    assert emu.counters()["token_requests"] == token_requests, "nothing sent"
    assert not api_accepts(emu, access)

    # seed() brings the key back.
    fresh = emu.seed()
    session.seed(refresh_token=fresh["refresh_token"])
    differ(session.access_token(), access, "live again, with a new token")


def test_revoke_waits_for_a_refresh_in_flight_and_revokes_the_rotated_token(emu):
    async def scenario():
        client, _ = make_client(emu)
        store = LoadGateStore()
        session, family = await seeded(emu, client, store)
        emu.fault({"kind": "hold", "grant": "refresh_token"})
        refreshing = asyncio.ensure_future(session.access_token())
        await turn()
        assert await asyncio.to_thread(emu.wait_held, 1) == 1

        # The revocation's own store read (after the refresh) waits at the gate.
        store.gate_loads()
        revoking = asyncio.ensure_future(session.revoke())
        await turn(20)
        assert revocations(emu)[0] == 0, "held back behind the refresh"
        assert not store.load_entered.is_set(), "not even started: the refresh is in flight"
        assert emu.release_held() == 1

        rotated_access = await refreshing
        await store.load_entered.wait()
        rotated_rt = store.record("u1")["refresh_token"]
        differ(rotated_rt, family["refresh_token"], "the refresh rotated")
        # While the revocation is under way the core offers nothing to mirror,
        # and still answers a read with the rotated token.
        assert session._handle().cached_token() is None, "nothing to mirror while revoke() runs"
        same(session.cached_access_token(), rotated_access, "read from the core, unmirrored")

        store.load_released.set()
        await revoking
        assert emu.refresh_token_state(rotated_rt) == "revoked", "the rotated token is the one revoked"
        assert emu.refresh_token_state(family["refresh_token"]) == "consumed"
        assert revocations(emu) == (2, {"refresh_token": 1, "access_token": 1})
        assert not api_accepts(emu, rotated_access)
        assert session.cached_access_token() is None, "nothing mirrored outlives revoke()"
        with pytest.raises(ReauthorizationRequired) as raised:
            await session.access_token()
        assert raised.value.reason == "revoked"
        assert emu.refresh_requests() == 1

    asyncio.run(scenario())


def test_a_503_from_the_revocation_endpoint_is_retried(emu):
    async def scenario():
        client, clock = make_client(emu)
        session, family = await seeded(emu, client, TestStore())
        emu.fault({"kind": "status", "status": 503, "grant": "revocation"})
        await session.revoke()
        assert revocations(emu) == (2, {"refresh_token": 2}), "the refresh token twice, no access token held"
        assert len(clock.sleeps) == 1, "one backoff"
        assert emu.refresh_token_state(family["refresh_token"]) == "revoked"

    asyncio.run(scenario())


def test_a_revocation_failing_for_good_still_kills_the_session_and_says_so(emu):
    client, _ = make_sync_client(emu, retry={"max_attempts": 2})
    store = TestStore()
    session, family = seeded_sync(emu, client, store)
    rt = family["refresh_token"]
    emu.fault({"kind": "status", "status": 503, "grant": "revocation", "count": 2})

    with pytest.raises(TransientError) as raised:
        session.revoke()
    err = raised.value
    assert "may still hold" in str(err), str(err)
    assert str(err).startswith("the session is marked revoked")
    assert err.server_may_hold_token is True, "typed, as JavaScript's serverMayHoldToken"
    assert pickle.loads(pickle.dumps(err)).server_may_hold_token is True
    assert err.status == 503
    assert rt not in str(err) and rt not in repr(err) and CLIENT_SECRET not in str(err)
    assert revocations(emu)[0] == 2
    assert emu.refresh_token_state(rt) == "active", "the server never took it"
    # Dead here all the same, the token kept so that revoke() can retry.
    record = store.record("u1")
    assert record["reauth"] == "revoked" and record["refresh_token"] == rt
    token_requests = emu.counters()["token_requests"]
    with pytest.raises(ReauthorizationRequired) as dead:
        session.access_token()
    assert dead.value.reason == "revoked"
    assert dead.value.server_may_hold_token is False, "only the revocation's own error says so"
    assert emu.counters()["token_requests"] == token_requests
    assert session.status().revocation_pending, "the server may hold the token"

    session.revoke()
    assert emu.refresh_token_state(rt) == "revoked"
    assert "refresh_token" not in store.record("u1")
    assert not session.status().revocation_pending


def test_the_revocation_endpoint_option_is_where_revoke_goes(emu):
    received = []

    def respond(handler):
        received.append(handler.path)
        handler.send_response(200)
        handler.send_header("content-length", "0")
        handler.end_headers()

    async def scenario(url):
        client, _ = make_client(emu, revocation_endpoint=url)
        session, _ = await seeded(emu, client, TestStore())
        await session.revoke()

    with LocalServer(respond) as server:
        asyncio.run(scenario(server.url))
    assert received == ["/connect/token"], "the one request (the refresh token) went to the option's URL"
    assert revocations(emu)[0] == 0, "none to the emulator"


# --- client tokens: revoke_client_tokens() ---------------------------------------------------


def test_revoke_client_tokens_revokes_each_cached_token_and_forgets_it(emu):
    async def scenario():
        client, _ = make_client(emu)
        a = await client.client_token(["accounts"])
        b = await client.client_token(["balances"])
        assert api_accepts(emu, a) and api_accepts(emu, b)
        assert await client.revoke_client_tokens() is None
        assert revocations(emu) == (2, {"access_token": 2})
        assert emu.counters()["tokens_revoked"] == 2
        assert not api_accepts(emu, a) and not api_accepts(emu, b)
        differ(await client.client_token(["accounts"]), a, "a new token after revocation")
        assert emu.grant_requests("client_credentials") == 3

    asyncio.run(scenario())


def test_sync_revoke_client_tokens(emu):
    client, _ = make_sync_client(emu)
    a = client.client_token(["accounts"])
    client.revoke_client_tokens(timeout=30)
    assert revocations(emu) == (1, {"access_token": 1})
    assert not api_accepts(emu, a)
    differ(client.client_token(["accounts"]), a, "a new token after revocation")
    client.revoke_client_tokens()
    assert revocations(emu)[0] == 2


# --- discovery -------------------------------------------------------------------------------


def test_async_discover_takes_the_emulators_endpoints_and_keeps_its_metadata(emu):
    async def scenario():
        clock = FakeClock()
        client = await freshtoken.AsyncClient.discover(emu.issuer, CLIENT_ID, client_secret=CLIENT_SECRET,
                                                       clock=clock)
        assert isinstance(client, freshtoken.AsyncClient)
        assert emu.counters()["discovery_requests"] == 1
        metadata = client.provider_metadata
        assert isinstance(metadata, freshtoken.ProviderMetadata)
        assert metadata.issuer == emu.issuer
        assert metadata.token_endpoint == emu.token_endpoint
        assert metadata.authorization_endpoint == emu.issuer + "/connect/authorize"
        assert metadata.revocation_endpoint == emu.revocation_endpoint
        assert "client_secret_post" in metadata.token_endpoint_auth_methods
        assert "client_secret_post" in metadata.revocation_endpoint_auth_methods
        assert metadata.authorization_response_iss_parameter_supported is True, "RFC 9207, as published"
        assert client.authorization_url("http://127.0.0.1/cb").url.startswith(emu.issuer + "/connect/authorize?")

        # End to end on the discovered endpoints, on the given clock.
        store = TestStore()
        session, family = await seeded(emu, client, store)
        token = await session.access_token()
        assert emu.refresh_requests() == 1
        clock.advance(839_000)
        same(await session.access_token(), token, "still fresh on the fake clock")
        await session.revoke()
        assert revocations(emu) == (2, {"refresh_token": 1, "access_token": 1})
        with pytest.raises(ReauthorizationRequired) as raised:
            await session.access_token()
        assert raised.value.reason == "revoked"
        assert emu.counters()["discovery_requests"] == 1, "the document is read once"

        emu.discovery("wrong_issuer")
        with pytest.raises(InvalidResponseError):
            await freshtoken.AsyncClient.discover(emu.issuer, CLIENT_ID, client_secret=CLIENT_SECRET)

    asyncio.run(scenario())


def test_sync_discover_and_the_constructors_metadata(emu):
    client = freshtoken.Client.discover(emu.issuer, CLIENT_ID, client_secret=CLIENT_SECRET,
                                        timeout=30, retry={"max_attempts": 2})
    assert isinstance(client, freshtoken.Client)
    assert client.provider_metadata.token_endpoint == emu.token_endpoint
    assert isinstance(client.client_token(["accounts"]), str)
    assert emu.grant_requests("client_credentials") == 1
    plain, _ = make_sync_client(emu)
    assert plain.provider_metadata is None, "not made by discovery"
    assert freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID).provider_metadata is None


@pytest.mark.parametrize("mode, says", [
    ("not_found", "404"),
    ("wrong_issuer", "issuer"),
    ("insecure_token_endpoint", "https"),
    ("invalid_json", "JSON"),
])
def test_a_missing_or_bad_discovery_document_is_an_invalid_response_error(emu, mode, says):
    emu.discovery(mode)
    with pytest.raises(InvalidResponseError) as raised:
        freshtoken.Client.discover(emu.issuer, CLIENT_ID, client_secret=CLIENT_SECRET)
    err = raised.value
    assert err.code == "invalid_response"
    assert "discovery: " in str(err) and says in str(err), str(err)
    assert CLIENT_SECRET not in str(err)
    assert emu.counters()["discovery_requests"] == 1
    emu.discovery("normal")
    assert freshtoken.Client.discover(emu.issuer, CLIENT_ID).provider_metadata.issuer == emu.issuer


def test_an_unreachable_issuer_is_a_network_error_and_plain_http_is_refused():
    with pytest.raises(NetworkError):
        freshtoken.Client.discover(f"http://127.0.0.1:{closed_port()}", CLIENT_ID)

    async def off_loopback():
        with pytest.raises(ConfigError):
            await freshtoken.AsyncClient.discover("http://issuer.example", CLIENT_ID)

    asyncio.run(off_loopback())


def test_options_given_to_discover_win_over_the_document(emu):
    received = []

    def respond(handler):
        received.append(handler.path)
        handler.send_response(200)
        handler.send_header("content-length", "0")
        handler.end_headers()

    with LocalServer(respond) as server:
        client = freshtoken.Client.discover(emu.issuer, CLIENT_ID, client_secret=CLIENT_SECRET,
                                            revocation_endpoint=server.url, clock=FakeClock())
        assert client.provider_metadata.revocation_endpoint == emu.revocation_endpoint, "what the document said"
        session, _ = seeded_sync(emu, client, TestStore())
        session.revoke()
    assert received == ["/connect/token"]
    assert revocations(emu)[0] == 0


def test_every_reauthorization_reason_has_the_rust_string():
    core = open(os.path.join(REPO, "src", "error.rs"), encoding="utf-8").read()
    rust = set(re.findall(r'ReauthReason::\w+ => "(\w+)"', core))
    python = {freshtoken.reason_code(reason) for reason in freshtoken.ReauthorizationReason}
    assert "revoked" in rust
    assert python == rust


# --- against oidc-provider -------------------------------------------------------------------

OIDC_SERVER = os.path.join(REPO, "bindings", "js", "support", "oidc-provider-server.mjs")
REDIRECT_URI = "http://127.0.0.1/callback"  # registered for every oidc-provider test client


@pytest.fixture(scope="module")
def oidc():
    process = subprocess.Popen(["node", OIDC_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        if not line:
            pytest.fail("oidc-provider did not start (is bindings/js installed? npm install there)")
        yield json.loads(line)
    finally:
        process.stdin.close()
        process.wait(timeout=10)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx comes back as an HTTPError, Location and cookies readable


_browser = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def authorize(url, account_id="test-user"):
    """Drives an authorization URL through oidc-provider's dev interactions (login, then
    consent), with a small cookie jar, as bindings/js/support/oidc-provider.mjs does; returns
    the query of the redirect back to REDIRECT_URI."""
    cookies = {}  # (name, path) -> value

    def send(target, form=None):
        path = urllib.parse.urlsplit(target).path
        matching = sorted(((p, n, v) for (n, p), v in cookies.items()
                           if path == p or path.startswith(p if p.endswith("/") else p + "/")),
                          key=lambda c: -len(c[0]))
        headers = {"cookie": "; ".join(f"{n}={v}" for _, n, v in matching)} if matching else {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(target, data=data, headers=headers)
        try:
            response = _browser.open(request, timeout=10)
        except urllib.error.HTTPError as error:
            response = error
        with response:
            body = response.read().decode("utf-8", "replace")
            for header in response.headers.get_all("set-cookie") or []:
                pair, *attributes = header.split(";")
                name, _, value = pair.partition("=")
                cookie_path, expired = "/", not value.strip()
                for attribute in attributes:
                    key, _, setting = attribute.strip().partition("=")
                    if key.lower() == "path":
                        cookie_path = setting or "/"
                    if key.lower() == "max-age" and setting.strip().lstrip("-").isdigit() and int(setting) <= 0:
                        expired = True
                if expired:
                    cookies.pop((name.strip(), cookie_path), None)
                else:
                    cookies[(name.strip(), cookie_path)] = value.strip()
            return response.status, response.headers.get("location"), body

    for _ in range(20):
        status, location, body = send(url)
        if 300 <= status < 400:
            url = urllib.parse.urljoin(url, location)
            if url.startswith(REDIRECT_URI):
                return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
            continue
        assert status == 200, f"authorization step {urllib.parse.urlsplit(url).path} answered {status}"
        action = re.search(r'<form[^>]*action="([^"]+)"', body)
        prompt = re.search(r'name="prompt" value="([^"]+)"', body)
        assert action and prompt, "a dev-interaction form"
        form = {"prompt": prompt.group(1)}
        if form["prompt"] == "login":
            form.update(login=account_id, password="any")
        status, location, _ = send(urllib.parse.urljoin(url, action.group(1).replace("&amp;", "&")), form)
        assert 300 <= status < 400, f"dev interaction {form['prompt']} answered {status}"
        url = urllib.parse.urljoin(url, location)
    raise AssertionError("authorization did not finish")


def post_form(url, form):
    """(status, JSON body) of a form POST."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(),
                                     headers={"content-type": "application/x-www-form-urlencoded"})
    try:
        response = _direct.open(request, timeout=10)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        return response.status, json.loads(response.read() or b"{}")


def test_discover_refresh_and_revoke_at_oidc_provider(oidc):
    confidential = oidc["clients"]["confidential"]
    secret = {"client_id": confidential["clientId"], "client_secret": confidential["clientSecret"]}
    client = freshtoken.Client.discover(oidc["issuer"], confidential["clientId"],
                                        client_secret=confidential["clientSecret"], timeout=30)
    metadata = client.provider_metadata
    assert metadata.issuer == oidc["issuer"]
    assert metadata.token_endpoint == oidc["token_endpoint"]
    assert metadata.authorization_endpoint == oidc["authorization_endpoint"]
    assert metadata.revocation_endpoint == oidc["issuer"] + "/token/revocation"
    with _direct.open(oidc["issuer"] + "/.well-known/openid-configuration", timeout=10) as response:
        introspection = json.loads(response.read())["introspection_endpoint"]

    def active(token):
        status, body = post_form(introspection, {"token": token, **secret})
        assert status == 200, body
        return body["active"]

    # The code flow on the discovered authorization endpoint, then the exchange.
    request = client.authorization_url(REDIRECT_URI, scopes=["openid", "offline_access", "api"],
                                       prompt="consent")
    assert request.url.startswith(oidc["authorization_endpoint"] + "?")
    answer = authorize(request.url)
    assert answer.get("state") == request.state and "code" in answer, answer.get("error")
    store = TestStore()
    session = client.exchange_code("u1", store, code=answer["code"], code_verifier=request.code_verifier,
                                   redirect_uri=REDIRECT_URI, timeout=30)
    first_rt = store.record("u1")["refresh_token"]

    # A refresh on the discovered token endpoint (rotation), then the revocation.
    info = session.refresh(timeout=30)
    live_rt = store.record("u1")["refresh_token"]
    differ(live_rt, first_rt, "oidc-provider rotated the refresh token")
    same(session.access_token(), info.access_token, "the refreshed token is mirrored")
    assert active(live_rt) and active(info.access_token), "live before the revocation"

    session.revoke(timeout=30)

    assert not active(live_rt), "oidc-provider revoked the refresh token"
    assert not active(info.access_token), "and the access token"
    status, body = post_form(oidc["token_endpoint"], {"grant_type": "refresh_token", "refresh_token": live_rt,
                                                      **secret})
    assert (status, body.get("error")) == (400, "invalid_grant"), "the revoked refresh token is refused"
    with pytest.raises(ReauthorizationRequired) as raised:
        session.access_token()
    assert raised.value.reason == "revoked"
    assert "refresh_token" not in store.record("u1")
