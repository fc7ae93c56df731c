"""UrllibHttpClient alone: answers of every status returned whole, no
redirects, the body cap, and the mapping of transport failures onto
HostError (NotSent / Timeout / Failed)."""

import asyncio
import socket
import ssl
import urllib.error

import pytest

from freshtoken import HostError, HttpHeader, HttpRequest, UrllibHttpClient
from freshtoken._http import classify_connect_error

from helpers import LocalServer, closed_port


def request(url, body="grant_type=refresh_token&refresh_token=x&client_id=test-client",
            timeout_ms=5000, max_response_bytes=65536):
    return HttpRequest(method="POST", url=url,
                       headers=[HttpHeader(name="content-type", value="application/x-www-form-urlencoded")],
                       body=body, timeout_ms=timeout_ms, max_response_bytes=max_response_bytes)


def test_an_error_answer_comes_back_with_its_body(emu):
    response = asyncio.run(UrllibHttpClient().send(request(emu.token_endpoint)))
    assert response.status == 401  # no client secret
    assert b"invalid_client" in response.body
    assert any(h.name.lower() == "content-type" for h in response.headers)


def test_a_redirect_comes_back_unfollowed():
    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", "http://127.0.0.1:9/elsewhere")
        handler.send_header("Content-Length", "5")
        handler.end_headers()
        handler.wfile.write(b"moved")

    with LocalServer(redirect) as server:
        response = asyncio.run(UrllibHttpClient().send(request(server.url)))
    assert response.status == 302
    assert response.body == b"moved"
    assert ("location", "http://127.0.0.1:9/elsewhere") in [(h.name.lower(), h.value) for h in response.headers]


def test_reading_stops_one_byte_past_the_cap():
    def big(handler):
        body = b"x" * 10_000
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    with LocalServer(big) as server:
        response = asyncio.run(UrllibHttpClient().send(request(server.url, max_response_bytes=100)))
    assert len(response.body) == 101, "one byte more than the cap: the core rejects it as too large"


def test_connection_refused_is_not_sent():
    with pytest.raises(HostError.NotSent):
        asyncio.run(UrllibHttpClient().send(request(f"http://127.0.0.1:{closed_port()}/connect/token")))


def test_no_answer_in_time_is_timeout(emu):
    emu.fault({"kind": "delay", "ms": 3000})
    with pytest.raises(HostError.Timeout):
        asyncio.run(UrllibHttpClient().send(request(emu.token_endpoint, timeout_ms=200)))


def test_a_connection_closed_without_an_answer_is_failed(emu):
    emu.fault({"kind": "drop_before"})
    with pytest.raises(HostError.Failed):
        asyncio.run(UrllibHttpClient().send(request(emu.token_endpoint)))


@pytest.mark.parametrize("reason, expected", [
    (ConnectionRefusedError(111, "Connection refused"), HostError.NotSent),
    (socket.gaierror(-2, "Name or service not known"), HostError.NotSent),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), HostError.NotSent),
    (OSError(101, "Network is unreachable"), HostError.NotSent),
    (TimeoutError("timed out"), HostError.Timeout),
    (socket.timeout("timed out"), HostError.Timeout),
    (BrokenPipeError(32, "Broken pipe"), HostError.Failed),
    (ConnectionResetError(104, "Connection reset by peer"), HostError.Failed),
    ("unknown url type: ftp", HostError.NotSent),
])
def test_connect_failures_map_onto_host_errors(reason, expected):
    error = classify_connect_error(urllib.error.URLError(reason))
    assert type(error) is expected
