"""Events for operators (issue 14): ``on_event=`` and ``event_keys=`` on
``Client`` and ``AsyncClient``.

The core emits every refresh, failure, re-link, save, lease wait, client
token and revocation, and its uniffi export hands them, in order, to one
``EventListener`` per client on a freshtoken thread of its own
(``freshtoken-events``). Here that listener only queues each event for a
Python daemon thread of the client's (``freshtoken-on-event``; a queue of
1,024, later events dropped while it is full), which converts it into a
frozen :class:`TokenEvent` and calls the application's callable with it.
Whatever the callable raises is swallowed (a warning naming only the
exception's type is logged once per client on the ``freshtoken`` logger);
a slow callable delays later events, never a refresh.

A callable that returns an awaitable (an ``async def``) gets it run on the
event loop that was running in the thread that made the client, if there
was one and it is still open (``asyncio.run_coroutine_threadsafe``; the
events thread does not wait for it, and what it raises is ignored).
Otherwise the awaitable is closed unrun, with a warning logged once.

The client owns the callable; the core holds the listener only through
uniffi's handle map, which Python's garbage collector cannot see into, so
the listener holds it only through a weak reference (see "Ownership"
below). A callable that refers back to the client (a bound method of the
object holding it) is then a cycle the collector frees, threads included;
events reaching a listener whose client has been freed are dropped.

At exit, event delivery stops for good (see "Exit" below): no events
thread may call into Python while the interpreter finalizes. The callable
runs on a Python thread for that reason too: one still running when the
interpreter finalizes (a slow one) ends there like any daemon thread,
whereas on the core's thread it aborted the process.
"""

from __future__ import annotations

import _thread
import asyncio
import inspect
import logging
import os
import queue
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Optional

from ._ffi import freshtoken as _generated
from ._errors import config_error
from ._loop import on_event_loop
from ._times import from_ms

__all__ = ["TokenEvent", "EVENT_KINDS", "listener"]

#: Every event kind, in the core's order: the strings of ``TokenEvent.kind``
#: (Rust's ``EventKind::as_str``, JavaScript's ``event.kind``).
EVENT_KINDS = (
    "refresh_started",
    "refreshed",
    "refresh_failed",
    "reauthorization_required",
    "saved",
    "save_failed",
    "lease_waited",
    "client_token_issued",
    "client_token_failed",
    "revoked",
)

_log = logging.getLogger("freshtoken")


@dataclass(frozen=True, repr=False)
class TokenEvent:
    """One event of a client (immutable). Never a token, a secret or a message.

    ``kind`` is one of :data:`EVENT_KINDS`; ``key`` the session key (None
    with ``event_keys="hidden"``, and for client tokens); ``scope`` a client
    token's scope set; ``duration_ms`` how long it took (``duration``: the
    same as a ``timedelta``); ``attempts`` the token requests sent, retries
    included; ``error_code`` the failure's code (the strings of
    ``FreshTokenError.code``: ``"transient"``, ``"storage"``, …); ``reason``
    why the user must authorize again (the strings of
    ``ReauthorizationRequired.reason``); ``at_ms`` when it happened on the
    client's clock, Unix ms (``at``: an aware UTC ``datetime``). Fields that
    do not apply to the kind are None.
    """

    kind: str
    key: Optional[str] = None
    scope: Optional[str] = None
    duration_ms: Optional[int] = None
    attempts: Optional[int] = None
    error_code: Optional[str] = None
    reason: Optional[str] = None
    at_ms: int = 0

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in vars(self).items()
                          if value is not None and name != "kind")
        return f"TokenEvent({self.kind!r}, {shown})"

    @property
    def at(self) -> datetime:
        """When it happened (aware UTC ``datetime``, on the client's clock)."""
        return from_ms(self.at_ms)

    @property
    def duration(self) -> Optional[timedelta]:
        """``duration_ms`` as a ``timedelta``; None when the kind has none."""
        return None if self.duration_ms is None else timedelta(milliseconds=self.duration_ms)

    @classmethod
    def _from_generated(cls, event: Any) -> "TokenEvent":
        reason = event.reason
        return cls(
            kind=event.kind.name.lower(),
            key=event.key,
            scope=event.scope,
            duration_ms=event.duration_ms,
            attempts=event.attempts,
            error_code=event.error_code,
            reason=None if reason is None else reason.name.lower(),
            at_ms=event.at_ms,
        )


#: Events waiting for a slow callable at most; later ones are dropped.
_QUEUE = 1024
#: Ends a listener's thread (queued when the listener is released).
_STOP = object()


class _Listener(_generated.EventListener):
    """The generated ``EventListener`` around the application's callable
    (``convert``: hand it a :class:`TokenEvent`, else the generated record).
    The core calls ``on_event`` on its own thread, which must never be in
    Python code when the interpreter finalizes: it only queues the event for
    this listener's Python thread, which calls the callable.

    The callable (in its :class:`_Delivery`) is reached only through a weak
    reference: the client takes the delivery (``take_delivery``) and owns
    it, since the core holds this listener in uniffi's handle map, where the
    collector cannot see it (see "Ownership" below). Until then the listener
    holds it, so that it lives while the client is being made."""

    def __init__(self, callback: Callable[[Any], Any], convert: bool,
                 loop: Optional[asyncio.AbstractEventLoop]) -> None:
        delivery = _Delivery(callback, convert, loop)
        self._delivery = weakref.ref(delivery)
        self._untaken: Optional[_Delivery] = delivery
        self._worker = _Worker()
        weakref.finalize(self, _stop, self._worker).atexit = False

    def take_delivery(self) -> "_Delivery":
        """The delivery, for the client to own: from now on this listener
        (and so the core) holds it only weakly."""
        delivery, self._untaken = self._untaken, None
        return delivery if delivery is not None else self._delivery()

    def on_event(self, event: Any) -> None:
        delivery = self._delivery()
        if delivery is None:
            return  # the client is gone (collected): nobody to hand it to
        worker = self._worker
        if worker.pid != os.getpid():
            # A child forked after the client was made (a prefork server's
            # worker): the parent's thread is not here, and its queue and
            # lock may have been held by a thread that is not either.
            worker.reset()
        try:
            # The delivery goes with the event: one queued before its client
            # is dropped is still delivered (a strong reference only while
            # queued, released once delivered).
            worker.queue.put_nowait((event, delivery))
        except queue.Full:
            delivery.warn("behind", "freshtoken: the on_event callback is 1,024 events behind; "
                          "an event was dropped")
            return
        with worker.lock:
            if worker.thread is None:
                worker.thread = threading.Thread(target=_deliver_all, args=(worker.queue, worker),
                                                 name="freshtoken-on-event", daemon=True)
                worker.thread.start()


class _Worker:
    """A listener's queue and the Python thread that drains it, in the
    process that made them (``pid``); ``stopped`` once the listener is
    released. The core calls ``on_event`` from one thread per process, so a
    child replaces them before any other use. Nothing here holds the
    delivery but the events queued."""

    def __init__(self) -> None:
        self.stopped = False
        self.reset()

    def reset(self) -> None:
        self.pid = os.getpid()
        self.queue: "queue.Queue[Any]" = queue.Queue(_QUEUE)
        self.thread: Optional[threading.Thread] = None
        self.lock = threading.Lock()


def _stop(worker: _Worker) -> None:
    """Ends the thread of a released listener, after the events queued before."""
    worker.stopped = True
    try:
        worker.queue.put_nowait(_STOP)
    except queue.Full:
        pass  # the thread sees `stopped` once it has drained the queue


def _deliver_all(events: "queue.Queue[Any]", worker: _Worker) -> None:
    """A listener's thread: calls the callable with each event, in order."""
    while _deliver_next(events):
        if worker.stopped and events.empty():
            return


def _deliver_next(events: "queue.Queue[Any]") -> bool:
    """Delivers the next event; False at the end. Its own frame: no reference
    to the delivery is left while the thread waits for the next event."""
    item = events.get()
    if item is _STOP:
        return False
    event, delivery = item
    delivery.deliver(event)
    return True


class _Delivery:
    """Calls the application's callable with one event (on its listener's thread)."""

    def __init__(self, callback: Callable[[Any], Any], convert: bool,
                 loop: Optional[asyncio.AbstractEventLoop]) -> None:
        self._callback = callback
        self._convert = convert
        self._loop = loop
        self._warned: set = set()

    def deliver(self, event: Any) -> None:
        try:
            result = self._callback(TokenEvent._from_generated(event) if self._convert else event)
            if inspect.isawaitable(result):
                self._schedule(result)
        except KeyboardInterrupt:
            # As in store callbacks: an interrupt goes on to the main thread.
            _thread.interrupt_main()
        except BaseException as error:  # noqa: BLE001 - a callback's failure never reaches the core
            # Any other BaseException (SystemExit, GeneratorExit, one of the
            # app's own) too: escaping, it would end this thread.
            self.warn("raised", "freshtoken: the on_event callback raised %s", type(error).__name__)

    def _schedule(self, awaitable: Awaitable[Any]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(_awaited(awaitable), loop)
                return
            except RuntimeError:
                pass  # closed meanwhile
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()
        self.warn("dropped", "freshtoken: the on_event callback returned an awaitable, but no event loop "
                  "was running where the client was made (or it is closed): it was not run")

    def warn(self, what: str, message: str, *args: Any) -> None:
        level = logging.DEBUG if what in self._warned else logging.WARNING
        self._warned.add(what)
        _log.log(level, message, *args)


async def _awaited(awaitable: Awaitable[Any]) -> None:
    """Runs an async callable's coroutine on the app's loop. What it raises
    is ignored, like a plain callable's, any ``BaseException`` included: a
    ``SystemExit`` escaping this task would end the app's loop
    (``asyncio.run``). A ``KeyboardInterrupt`` goes on to the main thread;
    the loop cancelling its tasks (closing) cancels this one."""
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except KeyboardInterrupt:
        _thread.interrupt_main()
    except BaseException:  # noqa: BLE001 - ignored, like a plain callback's
        pass


def listener(on_event: Any) -> Any:
    """The core's ``on_event`` option for the keyword ``on_event``: None, or
    a listener around a callable taking one :class:`TokenEvent` (or around a
    generated ``EventListener``, whose ``on_event`` gets the generated
    records)."""
    if on_event is None:
        return None
    if isinstance(on_event, _generated.EventListener):
        return _Listener(on_event.on_event, False, None)
    if not callable(on_event):
        raise config_error("on_event", "on_event must be a callable taking one TokenEvent")
    loop = None
    if not on_event_loop():
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            pass
    return _Listener(on_event, True, loop)


# --- Ownership ---
#
# The core holds the listener for the client's life (and its events thread
# until it has drained): through uniffi's handle map, a global dict that
# Python's collector sees as a root. Whatever the listener holds strongly
# therefore lives while the client does, and a cycle through it is never
# freed: a callable referring back to the client (``self.client =
# Client(..., on_event=self._on_event)``) kept the client, its session
# state and both its threads for the life of the process. So the listener
# and its thread hold the delivery (the callable) only weakly; the client
# owns it (``ClientCore._setup``), and events queued for the thread carry it
# until delivered. The cycle client -> delivery -> callable -> owner ->
# client is then Python's alone, and the collector frees it: the client's
# core is dropped, the events thread releases the listener, and the
# listener's thread ends (``_stop``). An event reaching the listener once
# its client is gone is dropped.


# --- Exit ---
#
# The events thread that calls listeners (and releases them when their
# client is dropped: uniffi's free callback) is a Rust thread, not a Python
# one, so it only hands events over to the listener's Python thread (where a
# callable still running at exit ends like any daemon thread). At exit,
# ``_loop``'s hook stops the core from calling into Python for good
# (``shutdown_host_calls``): queued and later events are dropped, and
# listeners are never released again (the process is ending).
