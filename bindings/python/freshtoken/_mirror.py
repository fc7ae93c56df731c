"""The client's mirror of fresh access tokens: key -> (token, fresh until).

A cached ``access_token()`` reads the mirror and the client's clock and
returns, without calling into the core. The core stays the only source of
truth: the mirror is filled only from the core's ``cached_token()`` (the
token with the instant until which the core itself would serve it, on the
same clock), and every call that may replace a key's token early (refresh,
token_rejected, seed, …) drops the key's entry when it starts and again
when it ends, and no refill of the key is mirrored in between (``begin``,
``end``): a read during the call gets the core's token of that moment,
which the call may replace (until the core has the call, it still serves
the token the call rejects, or the account a seed replaces). Dropping is
always safe: the next read takes the slow path and refills.

Races: a refill never holds the mirror's lock across its read of the core:
the core may call the host clock (``clock=``) during that read, on the
caller's thread, and the clock may read this very client (any key), which
would then wait for the lock forever. Instead each entry has an ``epoch``,
bumped under the lock by every drop, eviction and store: a refill notes it
before the read and stores what it read only if it is unchanged after, so a
token that a drop (refresh, token_rejected, seed, …) or another refill
replaced during the read is never mirrored afterwards, and a refill that
read the old token cannot land after one that stored since. Readers take no
lock: they read ``until`` and then ``token``; a writer sets ``token`` before
``until`` and never clears a token, so a reader that saw a fresh ``until``
returns a token that was fresh then.

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
    """One key's mirrored token, fresh from ``since`` (when it was mirrored)
    until ``until``, both in the mirror clock's unit: a clock set back
    before ``since`` asks the core, whose freshness has a lower bound too (a
    token issued under a clock that read ahead)."""

    __slots__ = ("token", "since", "until", "epoch")

    def __init__(self) -> None:
        self.token: Optional[str] = None
        self.since: float = STALE
        self.until: float = STALE
        # Bumped under the mirror's lock by every drop, eviction and store;
        # the read path never looks at it.
        self.epoch = 0

    def __repr__(self) -> str:  # never the token
        return f"Entry(fresh={self.until != STALE})"


class Mirror:
    """The bounded key -> Entry map of one client, and its clock.

    ``now()`` is the client's clock: ``time.time`` (seconds) for the system
    clock, or the host clock's ``now_ms``; ``units_per_ms`` converts the
    core's ``fresh_until_ms`` into that unit.
    """

    __slots__ = ("now", "_units_per_ms", "_bound", "_entries", "_busy", "_lock", "__weakref__")

    def __init__(self, now: Callable[[], float], units_per_ms: float, bound: int) -> None:
        self.now = now
        self._units_per_ms = units_per_ms
        self._bound = max(1, bound)
        self._entries: Dict[str, Entry] = {}
        # key -> how many calls that may replace its token run (``begin``).
        self._busy: Dict[str, int] = {}
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
        without I/O) and mirrors it unless the key's entry was dropped,
        evicted or stored since the read began. Returns the key's current
        entry and what was read (None: nothing fresh in the core)."""
        with self._lock:
            entry = self._entry_locked(key)
            epoch = entry.epoch
        # Not under the lock: the core may call the host clock here, which
        # may call into this client (see the module's docstring).
        cached = read()
        if cached is None:
            return self.entry(key), cached
        try:
            since = self.now()  # not under the lock either: a host clock
        except Exception:  # noqa: BLE001 - a failing host clock: mirror nothing
            return self.entry(key), cached
        with self._lock:
            if entry.epoch == epoch and key not in self._busy:
                entry.token = cached.token  # before since and until: see the readers
                entry.since = since
                entry.until = cached.fresh_until_ms * self._units_per_ms
                entry.epoch = epoch + 1
            # An evicted entry is re-created: the session re-attaches to it.
            return self._entry_locked(key), cached

    def drop(self, key: str) -> None:
        """Forgets the key's token before a call that may replace it, and
        voids every refill whose read began before."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.until = STALE
                entry.epoch += 1

    def begin(self, key: str) -> None:
        """Before a call that may replace the key's token: forgets it, and
        mirrors nothing for the key until the matching ``end``."""
        with self._lock:
            self._busy[key] = self._busy.get(key, 0) + 1
        self.drop(key)

    def end(self, key: str) -> None:
        """After such a call, whatever its outcome: forgets the token again
        (a read during the call may have got the one it replaced)."""
        with self._lock:
            left = self._busy.pop(key, 1) - 1
            if left > 0:
                self._busy[key] = left
        self.drop(key)

    def _entry_locked(self, key: str) -> Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Entry()
            while len(self._entries) > self._bound:
                evicted = self._entries.pop(next(iter(self._entries)))
                evicted.until = STALE
                evicted.epoch += 1  # a refill in flight on it must not store into it
        return entry


# Every mirror of this process, so that a forked child can make their locks
# anew: a thread of the parent may have held one at the fork (briefly: no
# host or FFI call is made under it), and the child has no such thread to
# release it; its first slow read would wait for good.
_mirrors: "weakref.WeakSet[Mirror]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for mirror in list(_mirrors):
        mirror._lock = threading.Lock()
        # The parent's calls do not run here: none will end them.
        mirror._busy.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
