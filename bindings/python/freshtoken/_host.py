"""The guard around every host callback (store, HTTP, clock).

The core waits for each callback's answer, so every callback must end in an
answer: a value, or a ``HostError``. uniffi's generated code completes the
core's future only for ``Exception``s; a ``BaseException`` (a cancelled
task's ``CancelledError``, ``KeyboardInterrupt``, ``SystemExit``) would leave
it pending for good. Here, on freshtoken's loop:

* any ``Exception`` → ``HostError.Failed`` with its message (the core scrubs
  secrets from it);
* ``CancelledError`` (the core gave up on the call, or the process is
  shutting down) → ``HostError.Failed("cancelled")``;
* any other ``BaseException`` (``KeyboardInterrupt``, ``SystemExit``,
  ``GeneratorExit``, …) → ``HostError.Failed``, and a ``KeyboardInterrupt``
  is passed on to the main thread (where Ctrl-C lands); a ``SystemExit``
  ends only the call, as in any thread but the main one;
* a value of the wrong type (a store's ``load`` returning bytes, an
  ``acquire`` returning a truthy status string instead of a ``bool``, an HTTP
  answer whose status is a string) → ``HostError.Failed`` naming the method
  and the type it must return, instead of a failure inside uniffi's
  generated code (which prints a traceback on stderr, or sends the core
  garbage); bytes-like and ``str`` HTTP bodies are converted to ``bytes``;
* a message UTF-8 cannot carry (a lone surrogate, from ``os.fsdecode`` of a
  non-UTF-8 path; a ``HostError`` whose ``detail`` is not a ``str``) is
  escaped, and an exception whose ``__str__`` raises is named by its class:
  uniffi's generated code would fail to send it and print a traceback;
* a member the host object lacks is looked up here too, and fails the call
  naming it (a store without ``supports_lease``/``supports_versions``
  serves one process, as ``TokenStoreBase``'s defaults).

Called directly by application code (not on freshtoken's loop), only
``Exception``s are converted: cancellation and interrupts propagate as usual.

Plain (non-async) methods run in a worker thread of freshtoken's loop, so one
slow or blocking call never holds up the others: store and clock methods in
the loop's default executor, HTTP sends in a pool of their own (see
``_loop.STORE_WORKERS`` and ``_loop.HTTP_WORKERS``).

The clock's ``now_ms`` is called synchronously by the core, on any thread:
whatever it raises, and any value that is not an ``int`` within the signed
64-bit range, is ``HostError.Failed``, and the core reads the system clock.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import operator
import time
from typing import Any, Callable, Optional

from ._ffi.freshtoken import (CasResult, Clock, HostError, HttpClient, HttpHeader, HttpRequest, HttpResponse,
                              TokenStore, VersionedRecord)
from ._check import type_name as _type_name, utf8_safe
from ._loop import http_executor, on_event_loop

__all__ = ["host_call", "store_call", "sync_store_call", "checked_response", "failed", "member", "GuardedStore",
           "AnsweredStore", "GuardedHttp", "GuardedClock"]

Check = Callable[[Any], Any]

# What uniffi can send the core: the variants, not HostError itself.
_VARIANTS = (HostError.Failed, HostError.NotSent, HostError.Timeout)

# The range of the core's i64 (a clock reading) and i32 (an HTTP status).
_I64 = (-(1 << 63), 1 << 63)
_I32 = (-(1 << 31), 1 << 31)


async def host_call(method: Callable[..., Any], *args: Any, check: Optional[Check] = None,
                    executor: Optional[concurrent.futures.Executor] = None) -> Any:
    """Calls a host method (plain or async) and answers with its value, passed
    through ``check`` (which raises ``HostError`` for a value of the wrong
    type), or a HostError. A plain method runs in ``executor`` (default: the
    running loop's default executor)."""
    own = on_event_loop()
    try:
        if inspect.iscoroutinefunction(method):
            result = await method(*args)
        else:
            result = await _in_thread(executor, method, *args)
            if inspect.isawaitable(result):
                result = await result
        return result if check is None else check(result)
    except HostError as error:
        raise answerable(error) from None
    except asyncio.CancelledError:
        if not own:
            raise
        raise failed("cancelled") from None
    except Exception as error:  # noqa: BLE001 - reported to freshtoken, not swallowed
        raise failed(message_of(error)) from None
    except BaseException as interrupt:  # KeyboardInterrupt, SystemExit, GeneratorExit, ...
        if not own:
            raise
        if isinstance(interrupt, KeyboardInterrupt):
            _thread.interrupt_main()
        raise failed(f"interrupted ({_class_name(interrupt)})") from None


async def _in_thread(executor: Optional[concurrent.futures.Executor], method: Callable[..., Any], *args: Any) -> Any:
    if executor is None:
        return await asyncio.to_thread(_stop_iteration_raised_as_error, method, *args)
    # asyncio.to_thread, in another pool (the context goes along, as there).
    context = contextvars.copy_context()
    call = functools.partial(context.run, _stop_iteration_raised_as_error, method, *args)
    return await asyncio.get_running_loop().run_in_executor(executor, call)


def _stop_iteration_raised_as_error(method: Callable[..., Any], *args: Any) -> Any:
    """``method(*args)``, a ``StopIteration`` it raises (``next()`` on an
    empty result) turned into a ``RuntimeError``, as a coroutine's is (PEP
    479): an asyncio future cannot take a ``StopIteration`` from the
    thread's future, so the wait for the answer would never end (the core
    would wait out its deadline, and asyncio print a traceback)."""
    try:
        return method(*args)
    except StopIteration:
        raise RuntimeError("a plain host method raised StopIteration") from None


def sync_store_call(name: str, method: Callable[..., Any]) -> bool:
    """A store member the core asks synchronously (``supports_lease``,
    ``supports_versions``), answering a ``bool``. Any exception becomes
    ``HostError.Failed`` (a ``BaseException`` would otherwise be printed and
    dropped by the ctypes callback), and so do an awaitable (an ``async
    def``, which cannot be awaited here: it is closed unrun, so no "never
    awaited" warning) and any other value that is not a ``bool`` (see
    ``_flag``); the core then fails the call that asked
    (a session's first call, ``exchange_code``, ``EncryptedStore``) with
    ``StorageError``: read as False, a fleet store's lease would be
    skipped. A ``KeyboardInterrupt`` also goes on to the main thread."""
    try:
        value = method()
        if inspect.isawaitable(value) or isinstance(value, concurrent.futures.Future):
            close = getattr(value, "close", None)
            if callable(close):
                close()
            raise failed(f"the store's {name}() returned {_type_name(value)}; it must be a plain method "
                         "returning bool (the core asks it synchronously)")
        return _flag(name)(value)
    except HostError as error:
        raise answerable(error) from None
    except Exception as error:  # noqa: BLE001
        raise failed(message_of(error)) from None
    except BaseException as interrupt:  # SystemExit, GeneratorExit, KeyboardInterrupt, ...
        if isinstance(interrupt, KeyboardInterrupt):
            _thread.interrupt_main()
        raise failed(f"interrupted ({_class_name(interrupt)})") from None


# --- messages that can cross --------------------------------------------------


def failed(detail: str) -> HostError:
    """``HostError.Failed`` with ``detail`` as UTF-8 can carry it."""
    return HostError.Failed(detail=utf8_safe(detail))


def _class_name(error: BaseException) -> str:
    return utf8_safe(type(error).__name__)


def _printed(show: Callable[[Any], Any], error: BaseException) -> str:
    """``show(error)`` (``str``, ``Exception.__str__``) if it gives a non-empty
    ``str``, else ``error``'s class name. Whatever ``show`` raises is caught,
    a ``BaseException`` too (a ``KeyboardInterrupt`` goes on to the main
    thread): raised here, inside the guard's handler, it would escape the
    guard, and the callback would never answer the core (an async one waits
    out its deadline; a synchronous one is printed by the ctypes callback and
    read as zero: ``supports_lease()`` as False, the clock as 1970)."""
    try:
        text = show(error)
    except BaseException as raised:  # noqa: BLE001 - a __str__ that raises anything
        if isinstance(raised, KeyboardInterrupt):
            _thread.interrupt_main()
        text = ""
    return text if isinstance(text, str) and text else _class_name(error)


def message_of(error: BaseException) -> str:
    """``str(error)``, or its class name when that is empty or raises (anything)."""
    return _printed(str, error)


def answerable(error: HostError) -> HostError:
    """A ``HostError`` the host raised, its ``detail`` made a ``str`` that
    UTF-8 can carry (else uniffi's generated code fails to send it, and
    prints a traceback). ``HostError`` itself, or a subclass that is none of
    its variants (``raise HostError("db down")``), is ``HostError.Failed``
    with its message: uniffi's generated code would send the core an empty
    error, which it reads as "Error lifting from rust buffer"."""
    if not isinstance(error, _VARIANTS):
        return failed(_printed(Exception.__str__, error))  # an argument's __str__ may raise anything
    if "detail" in vars(error):
        detail = error.detail
        error.detail = utf8_safe(detail) if isinstance(detail, str) else f"a HostError with a {_type_name(detail)} detail"
    return error


# --- what each host method must return ---------------------------------------


def _wrong(owner: str, method: str, value: Any, expected: str) -> HostError:
    hint = ""
    if isinstance(value, concurrent.futures.Future):
        hint = f" (make {method} async, or wait for the future in it)"
    elif inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never started: nothing half done, and no "never awaited" warning
        hint = f" (await it in {method})"
    elif isinstance(value, (bytes, bytearray, memoryview)) and "str" in expected:
        hint = " (decode it, e.g. with .decode('utf-8'))"
    return failed(f"{owner}'s {method}() returned {_type_name(value)}; it must return {expected}{hint}")


def _text(value: Any) -> bool:
    """``value`` is a ``str`` that UTF-8 can carry (no lone surrogates),
    judged by ``str``'s own methods (a subclass may override them)."""
    if not isinstance(value, str):
        return False
    if str.isascii(value):
        return True
    try:
        str.encode(value, "utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _exact(value: str) -> str:
    """An exact ``str`` with ``value``'s characters (see ``_check.text``)."""
    return value if type(value) is str else str.__str__(value)


def _optional_text(method: str) -> Check:
    def check(value: Any) -> Optional[str]:
        if value is None:
            return None
        if not _text(value):
            if isinstance(value, str):
                raise failed(f"the store's {method}() returned a str that is not valid Unicode "
                             "(a lone surrogate): records are UTF-8 text")
            raise _wrong("the store", method, value, "str or None")
        return _exact(value)
    return check


def _nothing(method: str) -> Check:
    """Any value but one still to be waited for: a future, a task or a
    coroutine returned un-awaited (``return self.redis.set(...)`` in an
    ``async def``) stands for a write not done, or not yet; taken as a save,
    the core would hand out a rotated token the store never got."""
    def check(value: Any) -> None:
        if isinstance(value, concurrent.futures.Future) or inspect.isawaitable(value):
            raise _wrong("the store", method, value, "None")
        return None
    return check


def _saved(method: str) -> Check:
    """As :func:`_nothing`, and not ``False``: a client's "not written"
    reply returned as is stands for a write refused."""
    nothing = _nothing(method)

    def check(value: Any) -> None:
        if value is False:
            raise failed(f"the store's {method}() returned False (a write refused?); "
                         "it must return None once done, and raise when it cannot")
        return nothing(value)
    return check


def _flag(method: str) -> Check:
    """``True`` or ``False`` only. Read with ``bool()``, a truthy "no" (asyncpg's
    status ``"INSERT 0 0"``, a psycopg cursor, a redis-py reply) would be a
    lease taken, and two processes would send the same single-use refresh
    token. The message names the type, never the value."""
    def check(value: Any) -> bool:
        if type(value) is not bool:  # bool cannot be subclassed
            if isinstance(value, concurrent.futures.Future):
                raise _wrong("the store", method, value, "bool")
            hint = (": compare a database's answer, such as its row count, rather than return it"
                    if method == "acquire" else "")
            raise failed(f"the store's {method}() returned {_type_name(value)}; it must return bool "
                         f"(True or False{hint})")
        return value
    return check


def _optional_versioned(method: str) -> Check:
    def check(value: Any) -> Optional[VersionedRecord]:
        if value is None:
            return None
        if not isinstance(value, VersionedRecord):
            raise _wrong("the store", method, value, "VersionedRecord or None")
        record, version = value.record, value.version  # read once: sent as checked
        if not (_text(record) and _text(version)):
            raise failed(f"the store's {method}() returned a VersionedRecord whose record and "
                         "version are not both str (valid Unicode)")
        return VersionedRecord(record=_exact(record), version=_exact(version))
    return check


def _cas_result(method: str) -> Check:
    def check(value: Any) -> CasResult:
        if isinstance(value, CasResult.CONFLICT):
            return CasResult.CONFLICT()
        if not isinstance(value, CasResult.SAVED):
            raise _wrong("the store", method, value, "CasResult.SAVED(version=...) or CasResult.CONFLICT()")
        version = value.version  # read once: sent as checked
        if not _text(version):
            raise failed(f"the store's {method}() returned CasResult.SAVED whose version is "
                         f"{_type_name(version)}; it must be a str")
        return CasResult.SAVED(version=_exact(version))
    return check


#: The async members of a store, each with the check of what it returns.
STORE_METHODS = {
    "load": _optional_text("load"),
    "save": _saved("save"),
    "acquire": _flag("acquire"),
    "release": _nothing("release"),
    "load_versioned": _optional_versioned("load_versioned"),
    "save_versioned": _cas_result("save_versioned"),
}


async def store_call(name: str, method: Callable[..., Any], *args: Any) -> Any:
    """``host_call`` for the store member ``name`` (checking what it returns)."""
    return await host_call(method, *args, check=STORE_METHODS[name])


def checked_response(response: Any) -> HttpResponse:
    """The host HTTP client's answer as uniffi can send it to the core.

    A bytes-like body becomes ``bytes`` and a ``str`` body its UTF-8; a
    status that is not an ``int`` (or is a ``bool``), headers that are not a
    list of ``HttpHeader`` with ``str`` names and values, or an answer that is
    not an ``HttpResponse`` are ``HostError.Failed``: the request may have
    been sent, and the core treats its refresh token as in doubt. A status
    outside 100–599 is the core's to judge (one outside the 32-bit range
    cannot reach it, and is a failure too)."""
    if not isinstance(response, HttpResponse):
        raise failed(f"the HTTP client's send() returned {_type_name(response)}; "
                     "it must return an HttpResponse")
    status = response.status
    if isinstance(status, bool) or not isinstance(status, int):
        raise failed(f"the HTTP client's answer has a status of type {_type_name(status)}; "
                     "it must be an int")
    status = int.__index__(status)  # its value (an int subclass's __int__ or __index__ is never called)
    if not _I32[0] <= status < _I32[1]:
        raise failed("the HTTP client's answer has a status outside the 32-bit range")
    given = response.headers
    if not isinstance(given, (list, tuple)):
        raise failed(f"the HTTP client's answer has headers of type {_type_name(given)}; "
                     "they must be a list of HttpHeader")
    # Read once, with list's and tuple's own iteration, and sent as read: a
    # subclass's __iter__ or __len__ (or a header's properties) could hand
    # uniffi's generated code other values than the ones checked here.
    items = list(list.__iter__(given) if isinstance(given, list) else tuple.__iter__(given))
    headers = []
    for header in items:
        if not isinstance(header, HttpHeader):
            raise failed(f"the HTTP client's answer has a header of type {_type_name(header)}; "
                         "each must be an HttpHeader")
        name, value = header.name, header.value
        if not (_text(name) and _text(value)):
            raise failed("the HTTP client's answer has a header whose name or value is not a str "
                         "(valid Unicode)")
        exact = type(header) is HttpHeader and type(name) is str and type(value) is str
        headers.append(header if exact else HttpHeader(name=_exact(name), value=_exact(value)))
    body = response.body
    if type(body) is not bytes:
        if isinstance(body, str):
            try:
                body = body.encode("utf-8")
            except UnicodeEncodeError:
                raise failed("the HTTP client's answer has a str body that is not valid Unicode "
                             "(a lone surrogate)") from None
        else:
            try:
                body = memoryview(body).tobytes()
            except TypeError:
                raise failed(f"the HTTP client's answer has a body of type {_type_name(body)}; "
                             "it must be bytes") from None
    return HttpResponse(status=status, headers=headers, body=body)


def member(host: Any, name: str, owner: str = "the store") -> Callable[..., Any]:
    """``host.name``, looked up inside the guard: a missing member (or one
    whose lookup raises) is ``HostError.Failed`` naming it."""
    try:
        found = getattr(host, name)
    except Exception:  # noqa: BLE001 - AttributeError, or a property that raises
        found = None
    if not callable(found):
        raise failed(f"{owner} ({_type_name(host)}) has no {name}() method")
    return found


class GuardedStore(TokenStore):
    """Any :class:`TokenStore` behind the guard: ``Client.session`` and
    ``EncryptedStore`` wrap every store but one implemented in Rust."""

    __slots__ = ("inner",)

    def __init__(self, inner: TokenStore) -> None:
        self.inner = inner

    async def load(self, key: str) -> Optional[str]:
        return await store_call("load", member(self.inner, "load"), key)

    async def save(self, key: str, record: str) -> None:
        return await store_call("save", member(self.inner, "save"), key, record)

    def supports_lease(self) -> bool:
        return self._supports("supports_lease")

    async def acquire(self, key: str, owner: str, ttl_ms: int) -> bool:
        return await store_call("acquire", member(self.inner, "acquire"), key, owner, ttl_ms)

    async def release(self, key: str, owner: str) -> None:
        return await store_call("release", member(self.inner, "release"), key, owner)

    def supports_versions(self) -> bool:
        return self._supports("supports_versions")

    async def load_versioned(self, key: str) -> Optional[VersionedRecord]:
        return await store_call("load_versioned", member(self.inner, "load_versioned"), key)

    async def save_versioned(self, key: str, record: str, expected: Optional[str]) -> CasResult:
        return await store_call("save_versioned", member(self.inner, "save_versioned"), key, record, expected)

    def _supports(self, name: str) -> bool:
        # A store without the member serves one process, as TokenStoreBase's default.
        try:
            found = getattr(self.inner, name, None)
        except Exception:  # noqa: BLE001 - a property that raises
            found = None
        return False if found is None else sync_store_call(name, found)


class AnsweredStore(TokenStore):
    """A guarded store whose synchronous members (``supports_lease``,
    ``supports_versions``) were asked when this was made, on the caller's
    thread, and answer the same at once (a ``HostError`` they raised is
    raised again). The core asks them, synchronously and with no deadline,
    when it adopts a store: ``session()`` does so on the caller's thread,
    but ``exchange_code`` when its future is first polled, on freshtoken's
    loop, where a slow answer (a plain method asking a database) would hold
    up every call of every client in the process. The core keeps the answers
    for as long as it keeps the store, so asking once here changes nothing
    else; the other members are the guarded store's own."""

    __slots__ = ("inner", "_lease", "_versions")

    def __init__(self, inner: TokenStore) -> None:
        self.inner = inner
        self._lease = _asked(inner, "supports_lease")
        self._versions = _asked(inner, "supports_versions")

    def supports_lease(self) -> bool:
        return _answer(self._lease)

    def supports_versions(self) -> bool:
        return _answer(self._versions)

    async def load(self, key: str) -> Optional[str]:
        return await self.inner.load(key)

    async def save(self, key: str, record: str) -> None:
        return await self.inner.save(key, record)

    async def acquire(self, key: str, owner: str, ttl_ms: int) -> bool:
        return await self.inner.acquire(key, owner, ttl_ms)

    async def release(self, key: str, owner: str) -> None:
        return await self.inner.release(key, owner)

    async def load_versioned(self, key: str) -> Optional[VersionedRecord]:
        return await self.inner.load_versioned(key)

    async def save_versioned(self, key: str, record: str, expected: Optional[str]) -> CasResult:
        return await self.inner.save_versioned(key, record, expected)


def _asked(store: TokenStore, name: str) -> Any:
    """``store.name()`` (a guarded member: a bool, or a HostError raised), as answered now."""
    try:
        return getattr(store, name)()
    except HostError as error:
        return answerable(error)
    except Exception as error:  # noqa: BLE001 - a guarded member raises HostError only; to be sure
        return failed(message_of(error))


def _answer(asked: Any) -> bool:
    if isinstance(asked, BaseException):
        raise asked
    return asked


def request_deadline(request: HttpRequest) -> float:
    """When (``time.monotonic()``) a request asked for now must be answered:
    its ``timeout_ms`` from now. The core stops waiting soon after."""
    return time.monotonic() + max(request.timeout_ms, 1) / 1000.0


def time_left(deadline: float, timeout_ms: int) -> float:
    """Seconds left until ``deadline``, the end of a request's
    ``timeout_ms``; ``HostError.NotSent`` when less than a tenth of it is
    left. For a request that waited for a thread of the HTTP pool: sent that
    late, it would likely reach the server after the core stopped waiting
    for its answer, and a refresh the server rotated would be lost. Refused,
    it is tried again within the retry budget."""
    left = deadline - time.monotonic()
    if left <= max(timeout_ms, 1) / 10000.0:
        raise HostError.NotSent(detail="request not sent: it waited for a free HTTP thread until its timeout "
                                       "had (almost) passed")
    return left


class GuardedHttp(HttpClient):
    """Any :class:`HttpClient` behind the guard. A cancelled or interrupted
    send is ``HostError.Failed``: the request may have left. Its answer goes
    through :func:`checked_response`; a plain ``send`` runs in the HTTP pool,
    and is not called once the request's timeout has passed waiting there."""

    __slots__ = ("inner",)

    def __init__(self, inner: HttpClient) -> None:
        self.inner = inner

    async def send(self, request: HttpRequest) -> HttpResponse:
        send = member(self.inner, "send", "the HTTP client")
        if not inspect.iscoroutinefunction(send):
            send = functools.partial(_sent_in_time, send, request_deadline(request))
        return await host_call(send, request, check=checked_response, executor=http_executor())


def _sent_in_time(send: Callable[[HttpRequest], Any], deadline: float, request: HttpRequest) -> Any:
    """``send(request)``, with the time left as its ``timeout_ms``."""
    left_ms = max(1, int(time_left(deadline, request.timeout_ms) * 1000))
    if left_ms < request.timeout_ms:
        request = HttpRequest(method=request.method, url=request.url, headers=request.headers, body=request.body,
                              timeout_ms=left_ms, max_response_bytes=request.max_response_bytes)
    return send(request)


class GuardedClock(Clock):
    """Any :class:`Clock` behind the guard: a failing ``now_ms`` (whatever it
    raises, or a value that is not an ``int`` in the signed 64-bit range)
    makes the core read the system clock; a failing ``sleep`` makes it sleep
    in real time."""

    __slots__ = ("inner",)

    def __init__(self, inner: Clock) -> None:
        self.inner = inner

    def now_ms(self) -> int:
        try:
            value = self.inner.now_ms()
        except HostError as error:
            raise answerable(error) from None
        except BaseException as error:  # noqa: BLE001 - the core falls back to the system clock
            # Called by the core on any thread: nothing may escape into the
            # FFI (uniffi would read 0 ms, 1970). An interrupt goes on to the
            # main thread, as Ctrl-C would.
            if isinstance(error, KeyboardInterrupt):
                _thread.interrupt_main()
            raise failed(f"the clock's now_ms() raised {_class_name(error)}") from None
        if isinstance(value, bool):
            raise failed("the clock's now_ms() returned bool; it must return int (ms)")
        try:
            ms = int.__index__(operator.index(value))  # an exact int (3.9's operator.index keeps a subclass)
        except BaseException:  # noqa: BLE001 - not an integer (an __index__ may raise anything: see _printed)
            raise failed(f"the clock's now_ms() returned {_type_name(value)}; "
                         "it must return int (ms)") from None
        if not _I64[0] <= ms < _I64[1]:
            raise failed("the clock's now_ms() returned a value outside the signed 64-bit range")
        return ms

    async def sleep(self, ms: int) -> None:
        await host_call(member(self.inner, "sleep", "the clock"), ms)
