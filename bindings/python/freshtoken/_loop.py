"""freshtoken's own event loop: one asyncio loop in a daemon thread per process.

Every call into the core's async methods runs on this loop, and so does every
host callback (store, HTTP, clock): uniffi runs foreign async methods on the
loop given to ``uniffi_set_event_loop`` (the core may call them from its own
executor thread, where no loop runs), and a Rust future must be polled on the
same loop. The caller awaits the result from its own loop; when the caller is
cancelled or its loop closes, only its wait ends: a store save that a shared
refresh started keeps running here, and finishes for everyone else.

The loop starts on first use and again in a forked child (a fork copies no
threads).
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import concurrent.futures
# Imported before the exit hook is registered: logging's own exit hook (which
# flushes and closes handlers) then runs after it, so its ERROR lines get out.
import logging  # noqa: F401
import os
import queue
import threading
import time
from typing import Any, Awaitable, Callable, List, Optional, TypeVar

from ._ffi import freshtoken as _generated
from . import _check
from ._errors import translate

__all__ = ["event_loop", "on_event_loop", "run", "call", "start", "at_exit", "http_executor", "STORE_WORKERS",
           "HTTP_WORKERS"]

T = TypeVar("T")

#: Threads for host calls that block: plain (non-async) store and clock
#: methods run in this loop's default executor (``freshtoken-host_*``). A call
#: the core abandoned at ``store_timeout_ms`` keeps its thread until it
#: returns, so while this many plain calls hang, further plain calls (of any
#: session) wait for a thread, and fail at their own deadline.
STORE_WORKERS = 32
#: Threads for HTTP requests (``freshtoken-http_*``): the default urllib
#: client's, and plain ``send`` methods of host HTTP clients. A pool of their
#: own, so that hung store calls never keep a token request from being sent;
#: each urllib request ends within about twice its ``timeout_ms``.
HTTP_WORKERS = 32

_lock = threading.Lock()
_loop: Optional[asyncio.AbstractEventLoop] = None
_store_pool: Optional["HostPool"] = None  # the loop's default executor
_pid: Optional[int] = None
_http: Optional[concurrent.futures.ThreadPoolExecutor] = None
_http_pid: Optional[int] = None


def event_loop() -> asyncio.AbstractEventLoop:
    """freshtoken's loop, started (and registered with uniffi) on first use."""
    loop = _loop
    if loop is not None and _pid == os.getpid():
        return loop
    return _start()


def on_event_loop() -> bool:
    """Whether the current thread is running freshtoken's loop."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return running is _loop and _pid == os.getpid()


async def run(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Awaits ``function(*args)`` on freshtoken's loop, from any loop; the
    core's errors come out as freshtoken's exception classes.

    Cancelling the caller cancels the call on freshtoken's loop (the core
    drops its future; a shared refresh goes on without this caller).
    """
    loop = event_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return await _translated(function, *args)
    return await asyncio.wrap_future(_submit(loop, _translated(function, *args)))


def call(function: Callable[..., Awaitable[T]], *args: Any, timeout: Optional[float] = None) -> T:
    """Runs ``function(*args)`` on freshtoken's loop and blocks this thread
    until it answers (the synchronous client's way in).

    Past ``timeout`` seconds (None: no limit) this raises the built-in
    ``TimeoutError`` and cancels only this caller's wait: a refresh it started
    or joined goes on and saves for everyone else, as when an async caller is
    cancelled. So does an interrupt (Ctrl-C) while blocked here. A
    ``timeout`` that is not None or a finite number ≥ 0 is a ``ConfigError``,
    raised before anything is scheduled.
    """
    timeout = _check.timeout(timeout)
    loop = event_loop()
    if on_event_loop():
        raise RuntimeError("a blocking freshtoken call on freshtoken's own event loop (from an async "
                           "store or HTTP callback) would wait for itself: use the async client there")
    future = _submit(loop, _translated(function, *args))
    try:
        # Not future.result(timeout): its TimeoutError is the built-in one
        # (Python 3.11+), which freshtoken.TimeoutError (the core's "timeout")
        # also is, so the core's error could not be told from this wait's.
        done, _ = concurrent.futures.wait((future,), timeout)
        if not done:
            future.cancel()
            raise builtins.TimeoutError(
                f"freshtoken gave no answer within {timeout} s (the refresh, if any, goes on)")
        return future.result()
    except BaseException:
        future.cancel()
        raise


def start(function: Callable[..., Awaitable[T]], *args: Any) -> "concurrent.futures.Future[T]":
    """Starts ``function(*args)`` on freshtoken's loop and returns at once:
    a future of its answer (the core's errors as freshtoken's classes),
    counted in progress as ``call``'s are."""
    return _submit(event_loop(), _translated(function, *args))


class HostPool(concurrent.futures.ThreadPoolExecutor):
    """Up to ``max_workers`` daemon threads for host calls that block,
    serving until the process ends.

    Not ``ThreadPoolExecutor``'s own threads: when the main thread ends,
    Python stops every ``ThreadPoolExecutor`` (``submit`` raises "cannot
    schedule new futures after interpreter shutdown") *before* it waits for
    the other non-daemon threads. A thread still in a refresh then could not
    save the rotated refresh token through a plain or file store (the token
    the server just issued would be lost, the old one already spent), nor
    send a request. A ``ThreadPoolExecutor`` subclass all the same, because
    ``loop.set_default_executor`` takes nothing else (``asyncio.to_thread``
    runs here).

    Daemon threads are not waited for at exit, so an ``atexit`` hook waits
    (up to ``EXIT_WAIT_S``) for the calls queued or running in them: a
    plain store's write still in progress when the process ends finishes
    (``ThreadPoolExecutor``'s exit hook joined its threads, without a bound)."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)  # starts no thread
        self._calls: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._count_lock = threading.Lock()
        self._idle = threading.Condition(self._count_lock)
        self._threads_started = 0
        self._waiting = 0  # threads idle on the queue, not yet promised a call
        self._busy = 0  # calls queued or running

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> "concurrent.futures.Future[Any]":
        future: "concurrent.futures.Future[Any]" = concurrent.futures.Future()
        with self._count_lock:
            self._busy += 1
        self._calls.put((future, fn, args, kwargs))
        with self._count_lock:
            if self._waiting:
                self._waiting -= 1
                return future
            if self._threads_started >= self._max_workers:
                return future  # the next thread to finish takes it
            self._threads_started += 1
            number = self._threads_started
        threading.Thread(target=self._serve, name=f"{self._thread_name_prefix}_{number - 1}", daemon=True).start()
        return future

    def _serve(self) -> None:
        while True:
            future, fn, args, kwargs = self._calls.get()
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as error:  # noqa: BLE001 - the caller's to handle, as ThreadPoolExecutor does
                    future.set_exception(error)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            with self._count_lock:
                self._waiting += 1
                self._busy -= 1
                if not self._busy:
                    self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Waits up to ``timeout`` s until no call is queued or running; whether none is."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._busy, timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing: the threads serve until the process ends."""


#: How long exit waits, at most, for host calls still queued or running in
#: freshtoken's threads (a write of the rotated record, say).
EXIT_WAIT_S = 30.0


# Calls into the core that callers still wait for (``_submit``), by process.
_in_progress = 0
_in_progress_pid: Optional[int] = None
_in_progress_idle = threading.Condition()


#: How long the core is given, at least, to finish its own tasks at exit
#: once the calls above ended (or ``EXIT_WAIT_S`` ran out).
CORE_EXIT_WAIT_S = 2.0


# What the exit hook does once the calls still running ended (``at_exit``).
_exit_steps: List[Callable[[float], None]] = []


def at_exit(step: Callable[[float], None]) -> None:
    """Has the exit hook call ``step(deadline)`` (``time.monotonic()``) once
    the calls still running ended, before the core stops calling into
    Python: the clients save what they hold unsaved (``_shared``)."""
    _exit_steps.append(step)


def _at_exit() -> None:
    """Waits for the calls still running (``_wait_for_host_calls``), has
    every live client save what it holds only in memory (``at_exit``: a
    rotated refresh token its store refused would go with the process),
    then stops the core from calling into Python for good.

    The core's own threads (the one finishing a refresh whose caller gave
    up, the timer, the events thread) are not Python's. If one called into
    the interpreter once it has begun to finalize, CPython (before 3.14)
    would end it with pthread_exit, which a Rust thread cannot unwind
    through, and the process would abort ("FATAL: exception not rethrown").
    ``shutdown_host_calls`` first waits for the core's tasks still running
    (a refresh answered now still saves its rotated refresh token), then no
    host callback, release or wake-up crosses again: store calls fail,
    requests are not sent, host objects are leaked, and events are dropped."""
    deadline = time.monotonic() + EXIT_WAIT_S
    _wait_for_host_calls(deadline)
    for step in _exit_steps:
        try:
            step(deadline)
        except Exception:  # noqa: BLE001 - best effort: the core must still be stopped below
            pass
    left = max(deadline - time.monotonic(), CORE_EXIT_WAIT_S)
    _generated.shutdown_host_calls(int(left * 1000))


def _wait_for_host_calls(deadline: float) -> None:
    """Until nothing is left to do, or ``deadline``: the calls callers
    still wait for (a daemon thread's refresh), and the host calls queued or
    running in freshtoken's threads. Each may start the other (a refresh's
    save runs in a thread; the save's end lets the refresh answer), so it
    looks again until it finds all of them idle at once."""
    pools = [pool for pool, pid in ((_store_pool, _pid), (_http, _http_pid))
             if pool is not None and pid == os.getpid()]
    while True:
        idle = True
        if _in_progress_pid == os.getpid():
            with _in_progress_idle:
                if _in_progress:
                    idle = False
                    _in_progress_idle.wait_for(lambda: not _in_progress, max(0.0, deadline - time.monotonic()))
        for pool in pools:
            if not pool.wait_idle(0):
                idle = False
                pool.wait_idle(max(0.0, deadline - time.monotonic()))
        if idle or time.monotonic() >= deadline:
            return


atexit.register(_at_exit)


def http_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The HTTP requests' thread pool (made on first use, again in a forked child)."""
    global _http, _http_pid
    executor = _http
    if executor is not None and _http_pid == os.getpid():
        return executor
    with _lock:
        if _http is None or _http_pid != os.getpid():
            _http = HostPool(HTTP_WORKERS, "freshtoken-http")
            _http_pid = os.getpid()
        return _http


def _submit(loop: asyncio.AbstractEventLoop, coroutine: Awaitable[T]) -> "concurrent.futures.Future[T]":
    """Schedules ``coroutine`` on freshtoken's loop (tests wrap this to see
    callers arrive), counted in progress until it ends (see exit)."""
    global _in_progress, _in_progress_pid
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    with _in_progress_idle:
        if _in_progress_pid != os.getpid():  # a forked child: the parent's calls are not here
            _in_progress, _in_progress_pid = 0, os.getpid()
        _in_progress += 1
    future.add_done_callback(_call_ended)
    return future


def _call_ended(future: "concurrent.futures.Future[Any]") -> None:
    global _in_progress
    with _in_progress_idle:
        if _in_progress_pid == os.getpid():
            _in_progress -= 1
            if not _in_progress:
                _in_progress_idle.notify_all()


async def _translated(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    try:
        return await function(*args)
    except _generated.FreshTokenError as error:
        raise translate(error) from None


def _start() -> asyncio.AbstractEventLoop:
    global _loop, _store_pool, _pid
    with _lock:
        if _loop is not None and _pid == os.getpid():
            return _loop
        loop = asyncio.new_event_loop()
        pool = HostPool(STORE_WORKERS, "freshtoken-host")
        loop.set_default_executor(pool)
        started = threading.Event()
        thread = threading.Thread(target=_serve, args=(loop, started), name="freshtoken-loop", daemon=True)
        thread.start()
        started.wait()
        _generated.uniffi_set_event_loop(loop)
        _loop, _store_pool, _pid = loop, pool, os.getpid()
        return loop


def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    while True:
        try:
            # Nothing of freshtoken's stops this loop: a return means host
            # code on it called loop.stop(). Serving ends only with the
            # process; a loop no thread runs would leave every call in the
            # process waiting for good.
            loop.run_forever()
        except (KeyboardInterrupt, SystemExit):
            # Raised by host code on this thread: the call that raised it
            # already failed (see _host.py); the loop serves on.
            continue


def _after_fork_in_child() -> None:
    global _loop, _store_pool, _pid, _http, _http_pid
    _loop, _store_pool, _pid = None, None, None
    _http, _http_pid = None, None  # the parent's pool has no threads here
    # The parent's locks may have been held at the fork.
    globals()["_lock"] = threading.Lock()
    globals()["_in_progress_idle"] = threading.Condition()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _patch_dropped_callback() -> None:
    """uniffi 0.32's generated code cancels an abandoned host call with
    ``loop.call_soon`` from whatever thread Rust drops the future on, which
    does not wake the loop: the cancellation would wait for unrelated work.
    The same function with ``call_soon_threadsafe``."""
    handles = getattr(_generated, "_UNIFFI_FOREIGN_FUTURE_HANDLE_MAP", None)
    callback_type = getattr(_generated, "_UNIFFI_FOREIGN_FUTURE_DROPPED_CALLBACK", None)
    cancel = getattr(_generated, "_uniffi_cancel_task", None)
    if handles is None or callback_type is None or cancel is None:
        return

    @callback_type
    def dropped(handle):
        eventloop, task = handles.remove(handle)
        try:
            eventloop.call_soon_threadsafe(cancel, task)
        except RuntimeError:
            pass  # the loop is closed: nothing left to cancel

    _generated._uniffi_future_dropped_callback = dropped


_patch_dropped_callback()
