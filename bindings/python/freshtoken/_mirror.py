"""The client's mirror of fresh access tokens: key -> (token, fresh until).

A cached ``access_token()`` reads the mirror and the client's clock and
returns, without calling into the core. The core stays the only source of
truth: the mirror is filled only from the core's ``cached_token()`` (the
token with the instant until which the core itself would serve it, on the
same clock), and every call that may replace a key's token early (refresh,
token_rejected, seed, …) drops the key's entry when it starts and again
when it ends (a read during it may have mirrored the token it replaced).
Dropping is always safe: the next read takes the slow path and refills.

Races: a refill reads the core and writes the entry under the mirror's
lock, and so does a drop, so the last read of the core is the last write: a
refill that read the old token cannot land after one that read the new
token. Readers take no lock: they read ``until`` and then ``token``; a
writer sets ``token`` before ``until`` and never clears a token, so a reader
that saw a fresh ``until`` returns a token that was fresh then.

The map is bounded (``max_sessions``, like the core's): past the bound the
oldest entry is evicted and marked stale; a session still holding it
re-attaches to the key's current entry on its next slow path.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

__all__ = ["Entry", "Mirror", "STALE"]

#: An ``until`` that no clock reading is below: the entry serves nothing.
STALE = float("-inf")


class Entry:
    """One key's mirrored token. ``until`` is in the mirror clock's unit."""

    __slots__ = ("token", "until")

    def __init__(self) -> None:
        self.token: Optional[str] = None
        self.until: float = STALE

    def __repr__(self) -> str:  # never the token
        return f"Entry(fresh={self.until != STALE})"


class Mirror:
    """The bounded key -> Entry map of one client, and its clock.

    ``now()`` is the client's clock: ``time.time`` (seconds) for the system
    clock, or the host clock's ``now_ms``; ``units_per_ms`` converts the
    core's ``fresh_until_ms`` into that unit.
    """

    __slots__ = ("now", "_units_per_ms", "_bound", "_entries", "_lock", "__weakref__")

    def __init__(self, now: Callable[[], float], units_per_ms: float, bound: int) -> None:
        self.now = now
        self._units_per_ms = units_per_ms
        self._bound = max(1, bound)
        self._entries: Dict[str, Entry] = {}
        self._lock = threading.Lock()
        _mirrors.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, key: str) -> Entry:
        """The key's current entry, created (stale) if there is none."""
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        with self._lock:
            return self._entry_locked(key)

    def refill(self, key: str, read: Callable[[], Any]) -> Tuple[Entry, Any]:
        """Reads the core's ``CachedToken`` (``read()``, a synchronous FFI call
        without I/O) and mirrors it, both under the lock. Returns the key's
        current entry and what was read (None: nothing fresh in the core)."""
        with self._lock:
            cached = read()
            entry = self._entry_locked(key)
            if cached is not None:
                entry.token = cached.token
                entry.until = cached.fresh_until_ms * self._units_per_ms
            return entry, cached

    def drop(self, key: str) -> None:
        """Forgets the key's token before a call that may replace it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.until = STALE

    def _entry_locked(self, key: str) -> Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Entry()
            while len(self._entries) > self._bound:
                self._entries.pop(next(iter(self._entries))).until = STALE
        return entry


# Every mirror of this process, so that a forked child can make their locks
# anew: a thread of the parent may have held one at the fork (a refill holds
# it across the core's read, which calls a host clock), and the child has no
# such thread to release it; its first slow read would wait for good.
_mirrors: "weakref.WeakSet[Mirror]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for mirror in list(_mirrors):
        mirror._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
