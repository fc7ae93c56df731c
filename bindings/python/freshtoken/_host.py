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
* ``KeyboardInterrupt`` / ``SystemExit`` → ``HostError.Failed``, and a
  ``KeyboardInterrupt`` is passed on to the main thread (where Ctrl-C
  lands); a ``SystemExit`` ends only the call, as in any thread but the main
  one.

Called directly by application code (not on freshtoken's loop), only
``Exception``s are converted: cancellation and interrupts propagate as usual.

Plain (non-async) methods run in a worker thread of freshtoken's loop, so one
slow or blocking call never holds up the others.
"""

from __future__ import annotations

import _thread
import asyncio
import inspect
from typing import Any, Callable, Optional

from ._ffi.freshtoken import CasResult, Clock, HostError, HttpClient, HttpRequest, HttpResponse, TokenStore, VersionedRecord
from ._loop import on_event_loop

__all__ = ["host_call", "GuardedStore", "GuardedHttp", "GuardedClock"]


async def host_call(method: Callable[..., Any], *args: Any) -> Any:
    """Calls a host method (plain or async) and answers with its value or a HostError."""
    own = on_event_loop()
    try:
        if inspect.iscoroutinefunction(method):
            return await method(*args)
        result = await asyncio.to_thread(method, *args)
        if inspect.isawaitable(result):
            result = await result
        return result
    except HostError:
        raise
    except asyncio.CancelledError:
        if not own:
            raise
        raise HostError.Failed(detail="cancelled") from None
    except Exception as error:  # noqa: BLE001 - reported to freshtoken, not swallowed
        raise HostError.Failed(detail=str(error) or type(error).__name__) from None
    except (KeyboardInterrupt, SystemExit) as interrupt:
        if not own:
            raise
        if isinstance(interrupt, KeyboardInterrupt):
            _thread.interrupt_main()
        raise HostError.Failed(detail=f"interrupted ({type(interrupt).__name__})") from None


def sync_host_call(method: Callable[..., Any], *args: Any) -> Any:
    """A plain host member the core calls synchronously (``supports_lease``,
    ``now_ms``): any ``Exception`` becomes ``HostError.Failed``."""
    try:
        return method(*args)
    except HostError:
        raise
    except Exception as error:  # noqa: BLE001
        raise HostError.Failed(detail=str(error) or type(error).__name__) from None


class GuardedStore(TokenStore):
    """Any :class:`TokenStore` behind the guard (``Client.session`` wraps
    stores that do not derive from ``TokenStoreBase``, which guards itself)."""

    __slots__ = ("inner",)

    def __init__(self, inner: TokenStore) -> None:
        self.inner = inner

    async def load(self, key: str) -> Optional[str]:
        return await host_call(self.inner.load, key)

    async def save(self, key: str, record: str) -> None:
        return await host_call(self.inner.save, key, record)

    def supports_lease(self) -> bool:
        return sync_host_call(self.inner.supports_lease)

    async def acquire(self, key: str, owner: str, ttl_ms: int) -> bool:
        return await host_call(self.inner.acquire, key, owner, ttl_ms)

    async def release(self, key: str, owner: str) -> None:
        return await host_call(self.inner.release, key, owner)

    def supports_versions(self) -> bool:
        return sync_host_call(self.inner.supports_versions)

    async def load_versioned(self, key: str) -> Optional[VersionedRecord]:
        return await host_call(self.inner.load_versioned, key)

    async def save_versioned(self, key: str, record: str, expected: Optional[str]) -> CasResult:
        return await host_call(self.inner.save_versioned, key, record, expected)


class GuardedHttp(HttpClient):
    """Any :class:`HttpClient` behind the guard. A cancelled or interrupted
    send is ``HostError.Failed``: the request may have left."""

    __slots__ = ("inner",)

    def __init__(self, inner: HttpClient) -> None:
        self.inner = inner

    async def send(self, request: HttpRequest) -> HttpResponse:
        return await host_call(self.inner.send, request)


class GuardedClock(Clock):
    """Any :class:`Clock` behind the guard."""

    __slots__ = ("inner",)

    def __init__(self, inner: Clock) -> None:
        self.inner = inner

    def now_ms(self) -> int:
        return sync_host_call(self.inner.now_ms)

    async def sleep(self, ms: int) -> None:
        return await host_call(self.inner.sleep, ms)
