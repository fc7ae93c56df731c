"""UrllibHttpClient alone: answers of every status returned whole, no
redirects, the body cap, and the mapping of transport failures onto
HostError (NotSent / Timeout / Failed)."""

import asyncio
import socket
import ssl
import threading
import time
import urllib.error

import pytest

import freshtoken
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
    emu.fault({"kind": "hold"})  # never answered (the next reset releases it)
    with pytest.raises(HostError.Timeout):
        asyncio.run(UrllibHttpClient().send(request(emu.token_endpoint, timeout_ms=200)))


def test_a_connect_that_times_out_is_not_sent():
    # A listener whose one-place accept queue is full and never accepted:
    # the kernel drops further connection attempts, so connect() times out
    # before a byte of the request is written. The refresh token is unspent:
    # NotSent lets the core retry it, where Timeout would leave it in doubt.
    with socket.socket() as listener, socket.socket() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued.connect(listener.getsockname())
        with pytest.raises(HostError.NotSent) as raised:
            asyncio.run(UrllibHttpClient().send(request(f"http://127.0.0.1:{listener.getsockname()[1]}/connect/token",
                                                        timeout_ms=200)))
        assert "timed out" in raised.value.detail


def test_a_connection_closed_without_an_answer_is_failed(emu):
    emu.fault({"kind": "drop_before"})
    with pytest.raises(HostError.Failed):
        asyncio.run(UrllibHttpClient().send(request(emu.token_endpoint)))


@pytest.mark.parametrize("reason, expected", [
    (ConnectionRefusedError(111, "Connection refused"), HostError.NotSent),
    (socket.gaierror(-2, "Name or service not known"), HostError.NotSent),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), HostError.NotSent),
    (OSError(101, "Network is unreachable"), HostError.NotSent),
    (TimeoutError("timed out"), HostError.NotSent),  # connecting or writing: before the request was whole
    (socket.timeout("timed out"), HostError.NotSent),
    (BrokenPipeError(32, "Broken pipe"), HostError.Failed),
    (ConnectionResetError(104, "Connection reset by peer"), HostError.Failed),
    ("unknown url type: ftp", HostError.NotSent),
])
def test_connect_failures_map_onto_host_errors(reason, expected):
    error = classify_connect_error(urllib.error.URLError(reason))
    assert type(error) is expected


@pytest.mark.parametrize("framing", ["chunked", "close", "length"])
def test_an_endless_body_is_cut_one_byte_past_the_cap_and_the_connection_closed(emu, framing):
    emu.fault({"kind": "endless", "framing": framing})
    response = asyncio.run(UrllibHttpClient().send(request(emu.token_endpoint, max_response_bytes=65536)))
    assert response.status == 200
    assert len(response.body) == 65537, "read one byte past the cap, no more"
    (stream,) = emu.wait_streams_ended(1)
    assert stream["end"] == "client_closed", f"the client hung up ({stream['end']})"
    assert stream["bytes_written"] < 1024 * 1024, f"{stream['bytes_written']} bytes written"


def test_a_body_that_trickles_in_forever_ends_at_the_timeout():
    """Each byte arrives well within the socket timeout, but the body never
    ends: the request's timeout bounds the whole read."""
    stop = threading.Event()

    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        try:
            while not stop.is_set():
                handler.wfile.write(b" ")
                handler.wfile.flush()
                stop.wait(0.02)  # the server's pace: one byte per 20 ms
        except OSError:
            pass  # the client hung up

    with LocalServer(trickle) as server:
        started = time.monotonic()
        try:
            with pytest.raises(HostError.Timeout):
                asyncio.run(UrllibHttpClient().send(request(server.url, timeout_ms=300)))
            elapsed = time.monotonic() - started
        finally:
            stop.set()
    assert elapsed < 15, f"gave up after {elapsed:.1f} s"  # a hang, not a slow machine


def test_a_cancelled_send_is_failed_on_freshtokens_loop_and_cancelled_elsewhere(emu):
    """Called by the core (on freshtoken's loop), a cancelled send answers
    HostError.Failed; awaited directly by the app, cancellation propagates."""
    emu.fault({"kind": "hold", "count": 2})
    http = UrllibHttpClient()

    async def cancelled_after_held(held):
        task = asyncio.ensure_future(http.send(request(emu.token_endpoint)))
        await asyncio.to_thread(emu.wait_held, held)
        task.cancel()
        try:
            await task
        except BaseException as error:  # noqa: BLE001 - the outcome is the test
            return error
        return None

    direct = asyncio.run(cancelled_after_held(1))
    assert isinstance(direct, asyncio.CancelledError)

    on_freshtoken = asyncio.run_coroutine_threadsafe(cancelled_after_held(2), freshtoken.event_loop()).result(60)
    assert isinstance(on_freshtoken, HostError.Failed) and "cancelled" in str(on_freshtoken)


def test_an_opener_without_an_open_method_is_a_config_error():
    with pytest.raises(freshtoken.ConfigError) as raised:
        UrllibHttpClient(opener="not an opener")
    assert raised.value.field == "opener"


def test_a_request_that_cannot_be_built_is_not_sent():
    # Nothing has left, so the refresh token is not put in doubt (a Failed
    # answer made a later invalid_grant read lost_rotation).
    with pytest.raises(HostError.NotSent):
        asyncio.run(UrllibHttpClient().send(request("not a url at all")))


def test_an_apps_own_host_error_keeps_its_message():
    assert str(HostError("database unavailable")) == "database unavailable"
    assert str(HostError.Failed(detail="disk full")) == "disk full"
    assert str(HostError.Timeout()) == "timed out"


class _Plain(freshtoken.HttpClient):
    """A host HTTP client with a plain (blocking) send, counting its calls
    and noting the timeouts it was given."""

    __test__ = False

    def __init__(self):
        self.calls = 0
        self.timeouts = []

    def send(self, request):
        self.calls += 1
        self.timeouts.append(request.timeout_ms)
        return freshtoken.HttpResponse(status=503, headers=[], body=b"{}")


class _SlowPool:
    """``time`` for freshtoken's host calls where ``step`` seconds pass between
    any two readings of the monotonic clock: as if each request waited that
    long for a free thread of the HTTP pool (other users' slow requests)."""

    def __init__(self, step=1.0):
        self.step = step
        self.offset = 0.0

    def monotonic(self):
        self.offset += self.step
        return time.monotonic() + self.offset


def test_a_plain_host_send_gets_the_time_left_as_its_timeout(emu, monkeypatch):
    # Half a second spent waiting for a thread is half a second less for
    # the request: sent with its whole timeout, it could be answered after
    # the core stopped waiting.
    from helpers import CLIENT_ID, CLIENT_SECRET, TestStore, seeded_sync

    plain = _Plain()
    client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, timeout_ms=2000,
                               retry={"max_attempts": 1}, http=plain)
    session, _ = seeded_sync(emu, client, TestStore())
    with monkeypatch.context() as patched:
        patched.setattr(freshtoken._host, "time", _SlowPool(step=0.5))
        with pytest.raises(freshtoken.TransientError):
            session.access_token()
    assert len(plain.timeouts) == 1, plain.timeouts
    assert 1000 <= plain.timeouts[0] <= 1500, plain.timeouts


@pytest.mark.parametrize("http", ["urllib", "plain host send"])
def test_a_request_that_waited_past_its_timeout_for_a_thread_is_never_sent(emu, monkeypatch, http):
    # Queued behind other users' slow requests in the HTTP pool, a token
    # request was sent with a whole timeout of its own once a thread came
    # free: the core stopped waiting before it was answered, the server
    # rotated, and the answer was dropped (the user's next call:
    # lost_rotation). Its time counts from when the core asked.
    from helpers import CLIENT_ID, CLIENT_SECRET, TestStore, seeded_sync

    plain = _Plain()
    options = {} if http == "urllib" else {"http": plain}
    client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, timeout_ms=200,
                               retry={"max_attempts": 1}, **options)
    session, family = seeded_sync(emu, client, TestStore())
    with monkeypatch.context() as patched:
        patched.setattr(freshtoken._host, "time", _SlowPool())
        with pytest.raises(freshtoken.NetworkError) as raised:
            session.access_token()
    assert "not sent" in str(raised.value) or "HTTP thread" in str(raised.value), raised.value
    assert plain.calls == 0, "the host's send was not called"
    assert emu.refresh_requests() == 0, "nothing reached the server"
    assert not session.status().in_doubt, "surely not sent"
    if http == "urllib":
        assert session.access_token(), "the refresh token was never spent"
        assert emu.refresh_requests() == 1
        assert emu.refresh_token_state(family["refresh_token"]) == "consumed"


class _Time:
    """``time`` for freshtoken._http: a monotonic clock the test moves."""

    def __init__(self, now=100.0):
        self.now = now

    def monotonic(self):
        return self.now


class _Body:
    """An http.client response's body as ``_read_at_most`` reads it: each
    ``read1`` takes ``cost`` seconds of the clock and brings the next chunk;
    ``length`` counts down as ``Content-Length`` does (None: endless)."""

    def __init__(self, clock, chunks, cost, length=None):
        self.clock, self.chunks, self.cost, self.length = clock, list(chunks), cost, length
        self.reads = 0

    def read1(self, n):
        self.reads += 1
        self.clock.now += self.cost
        chunk = self.chunks.pop(0) if self.chunks else b"x"
        if self.length is not None:
            chunk = chunk[:self.length]
            self.length -= len(chunk)
        return chunk

    read = read1

    def isclosed(self):
        return False


def test_a_body_that_arrived_whole_is_never_timed_out(monkeypatch):
    # The read that brought the whole body ended past the deadline: there
    # is nothing left to wait for, so no timeout (it would throw away a
    # rotated refresh token the server has issued).
    from freshtoken import _http

    clock = _Time()
    monkeypatch.setattr(_http, "time", clock)
    body = _Body(clock, [b'{"access_token":"a"}'], cost=0.05, length=20)
    assert _http._read_at_most(body, 65537, clock.now + 0.01, 1000, 1.0) == b'{"access_token":"a"}'


def test_a_deadline_found_overdue_after_a_pause_allows_one_more_read(monkeypatch):
    # Paused for 3 s past the deadline (SIGSTOP): on resume the answer is in
    # the socket. One more read within min(3 s, 1 s, 0.25 s) takes it.
    from freshtoken import _http

    clock = _Time()
    monkeypatch.setattr(_http, "time", clock)
    deadline = clock.now + 1.0
    clock.now = deadline + 3.0
    body = _Body(clock, [b"{}"], cost=0.001, length=2)
    assert _http._read_at_most(body, 65537, deadline, 1000, 1.0) == b"{}"

    # Once only, and only for that grace: a body still trickling in after it times out.
    clock.now = deadline + 3.0
    endless = _Body(clock, [], cost=0.1)
    with pytest.raises(TimeoutError):
        _http._read_at_most(endless, 65537, deadline, 1000, 1.0)
    assert endless.reads == 3, "reads began within 0.25 s of the resume, no later"


@pytest.mark.parametrize("late", [0.05, 0.5])
def test_a_deadline_overdue_without_a_pause_times_out(monkeypatch, late):
    # Noticed promptly (0.05 s late), or at the end of a read that the socket
    # timeout let block past it (0.5 s late, of a 1 s socket timeout): the
    # process ran all along, the server is slow. No extension.
    from freshtoken import _http

    clock = _Time()
    monkeypatch.setattr(_http, "time", clock)
    deadline = clock.now + 0.5
    body = _Body(clock, [b"{"], cost=0.5 + late, length=2)
    with pytest.raises(TimeoutError):
        _http._read_at_most(body, 65537, deadline, 1000, 1.0)
    assert body.reads == 1
