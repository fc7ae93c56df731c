"""The default HTTP client: the standard library's urllib, in a worker thread.

freshtoken's core sends every token request through the host's
:class:`HttpClient`. This one follows the platform's proxy settings
(``*_proxy`` environment variables) and certificate store, never follows a
redirect, gives up after the request's ``timeout_ms``, reads error bodies
too, and stops reading a body one byte past ``max_response_bytes`` and
closes the connection (so the core can reject it as too large, and an
endless body costs no more than that). Its deadline tolerates a paused
process as the core's does (see ``_read_at_most``): an answer that reached
the socket while the process was stopped is read, not lost. It logs
nothing: bodies and headers carry secrets.

Failures are reported as the core needs them:

* the request surely never left (connection refused, DNS, TLS handshake,
  unreachable network, a connection or a request write that timed out):
  ``HostError.NotSent`` -- the core may retry it;
* no answer in time: ``HostError.Timeout``;
* anything else (the connection broke after the request may have been
  sent): ``HostError.Failed`` -- the core treats the refresh token as in doubt.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
import time
import urllib.error
import urllib.request
from typing import Optional

from ._errors import config_error
from ._ffi.freshtoken import HostError, HttpClient, HttpHeader, HttpRequest, HttpResponse
from ._host import checked_response, host_call, request_deadline, time_left
from ._loop import http_executor

__all__ = ["UrllibHttpClient"]

# OS errors that mean "the connection was never established".
_NOT_CONNECTED = {
    errno.ECONNREFUSED,
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.EADDRNOTAVAIL,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Hands 3xx answers back as they are (urllib raises them as HTTPError)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        return None


def _describe(error: BaseException) -> str:
    """A short description without URLs, bodies or headers."""
    name = type(error).__name__
    code = getattr(error, "errno", None)
    text = getattr(error, "strerror", None) or ""
    if code is not None and text:
        return f"{name}: [Errno {code}] {text}"
    return name


def _is_timeout(error: BaseException) -> bool:
    return isinstance(error, (TimeoutError, socket.timeout))


def classify_connect_error(error: urllib.error.URLError) -> Exception:
    """The HostError for a failure while connecting or writing the request.

    urllib wraps failures of ``connect()`` and of sending the request in
    ``URLError``; failures while waiting for or reading the answer are
    raised unwrapped. So a timeout here is one that struck before the whole
    request was written: a server never acts on a request it did not get
    whole, and the refresh token it carries is unspent.
    """
    reason = error.reason
    if _is_timeout(reason):
        return HostError.NotSent(detail="request not sent: timed out before the request was written")
    if isinstance(reason, str):
        # e.g. "unknown url type": nothing was sent.
        return HostError.NotSent(detail="request not sent: invalid URL")
    if isinstance(reason, (ConnectionRefusedError, socket.gaierror, ssl.SSLError)):
        return HostError.NotSent(detail=f"request not sent: {_describe(reason)}")
    if isinstance(reason, OSError) and reason.errno in _NOT_CONNECTED:
        return HostError.NotSent(detail=f"request not sent: {_describe(reason)}")
    return HostError.Failed(detail=f"request failed: {_describe(reason)}")


#: How late past its deadline (s) a read may find it before the process
#: counts as paused: threads run a few ms late under load (the core's
#: ``PAUSE_MS``, src/clock.rs).
PAUSE_S = 0.1
#: The most (s) a deadline found overdue after a pause is extended by, once
#: (the core's ``PAUSE_GRACE_MS``).
PAUSE_GRACE_S = 0.25


def _complete(stream) -> bool:
    """Whether the body has arrived whole: the response closed itself at its
    end, or all of its ``Content-Length`` was read. No read is left to wait
    for, so no deadline can strike."""
    try:
        return bool(stream.isclosed()) or getattr(stream, "length", None) == 0
    except Exception:  # noqa: BLE001 - not an http.client response (an opener of the app's): read on
        return False


def _read_at_most(stream, limit: int, deadline: float, timeout_ms: int, socket_timeout: float) -> bytes:
    """Up to ``limit`` bytes of the body (an HTTPError without one has none),
    never more: an endless body is cut at ``limit``. Each read takes what one
    receive brings (at most ``socket_timeout``), and no read starts past
    ``deadline`` (``time.monotonic()``), so a body that trickles in ends too.

    A body that has arrived whole never times out. And the deadline is
    checked against when it should have been noticed: right at it, or at
    the end of the socket timeout of a read begun before it. Found more
    than ``PAUSE_S`` later, the process was paused (SIGSTOP, ``docker
    pause``, a long GC): every deadline is due at once on resume, while the
    answer, maybe the rotated refresh token, already waits in the socket.
    It then gets one extension of min(the time lost, the request's timeout,
    ``PAUSE_GRACE_S``) to be read, as the core's own deadline does."""
    response = stream
    if isinstance(stream, urllib.error.HTTPError):
        stream = response = stream.fp
        if stream is None:
            return b""
    read = getattr(stream, "read1", stream.read)
    chunks = []
    left = limit
    noticed_by = deadline  # when an overdue deadline would be noticed at the latest, not paused
    extended = False
    while left > 0:
        if _complete(response):
            break
        now = time.monotonic()
        if now >= deadline:
            late = now - noticed_by
            if extended or late <= PAUSE_S:
                raise TimeoutError("the body did not arrive in time")
            extended = True
            deadline = now + min(late, max(timeout_ms, 1) / 1000.0, PAUSE_GRACE_S)
        noticed_by = max(deadline, now + socket_timeout)
        chunk = read(min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class UrllibHttpClient(HttpClient):
    """freshtoken's :class:`HttpClient` over ``urllib.request``.

    Each request runs in a worker thread of freshtoken's HTTP pool
    (``freshtoken-http_*``, up to 32 threads, apart from the threads plain
    store methods run in), so the loop never blocks; the whole exchange
    (connect, send, the answer's headers and body) ends within about twice
    the request's ``timeout_ms``, and a
    cancelled send is ``HostError.Failed`` (it may have left). Pass ``opener`` to bring your own
    ``urllib.request.OpenerDirector`` (custom TLS context or proxies); it must
    not follow redirects -- include ``UrllibHttpClient.no_redirects()``. One
    without an ``open`` method raises ``ConfigError`` naming ``opener``.
    """

    def __init__(self, opener: Optional[urllib.request.OpenerDirector] = None, *,
                 context: Optional[ssl.SSLContext] = None) -> None:
        if opener is None:
            handlers = [_NoRedirects()]
            if context is not None:
                handlers.append(urllib.request.HTTPSHandler(context=context))
            opener = urllib.request.build_opener(*handlers)
        elif not callable(getattr(opener, "open", None)):
            raise config_error("opener", "must be a urllib.request.OpenerDirector "
                               f"(an object with an open method), not {type(opener).__name__}")
        self._opener = opener

    @staticmethod
    def no_redirects() -> urllib.request.BaseHandler:
        """A handler that makes an opener hand 3xx answers back unfollowed."""
        return _NoRedirects()

    async def send(self, request: HttpRequest) -> HttpResponse:
        # In freshtoken's HTTP pool, not the one plain store methods share:
        # store calls that hang never keep a token request from being sent.
        # The request's time counts from now: a wait for a free thread
        # counts too (see ``time_left``).
        deadline = request_deadline(request)
        return await host_call(self._send, request, deadline, check=checked_response, executor=http_executor())

    def _send(self, request: HttpRequest, deadline: Optional[float] = None) -> HttpResponse:
        try:
            req = urllib.request.Request(
                request.url,
                data=request.body.encode("utf-8"),
                method=request.method,
            )
            for header in request.headers:
                req.add_header(header.name, header.value)
        except Exception as error:  # noqa: BLE001 - nothing has left
            raise HostError.NotSent(detail=f"request not sent: {type(error).__name__}") from None
        if deadline is None:  # called directly, not through send()
            deadline = request_deadline(request)
        timeout = time_left(deadline, request.timeout_ms)
        # One byte more than the cap tells the core the body was too large.
        limit = request.max_response_bytes + 1

        try:
            response = self._opener.open(req, timeout=timeout)
        except urllib.error.HTTPError as answer:
            # A complete status line and headers arrived: read its body too.
            return self._answer(answer.code, answer.headers, answer, limit, deadline, request.timeout_ms, timeout)
        except urllib.error.URLError as error:
            raise classify_connect_error(error) from None
        except Exception as error:  # noqa: BLE001 - sent, maybe processed
            raise self._after_send(error) from None
        with response:
            return self._answer(response.status, response.headers, response, limit, deadline, request.timeout_ms,
                                timeout)

    def _answer(self, status, headers, stream, limit, deadline, timeout_ms, socket_timeout) -> HttpResponse:
        try:
            body = _read_at_most(stream, limit, deadline, timeout_ms, socket_timeout)
        except Exception as error:  # noqa: BLE001
            raise self._after_send(error) from None
        finally:
            try:
                stream.close()
            except Exception:  # noqa: BLE001
                pass
        pairs = [HttpHeader(name=name, value=value) for name, value in (headers.items() if headers else [])]
        return HttpResponse(status=status, headers=pairs, body=body)

    @staticmethod
    def _after_send(error: BaseException) -> Exception:
        if _is_timeout(error):
            return HostError.Timeout()
        if isinstance(error, (http.client.HTTPException, OSError)):
            return HostError.Failed(detail=f"request failed: {_describe(error)}")
        return HostError.Failed(detail=f"request failed: {type(error).__name__}")
