"""A host clock that calls back into its own client while the core reads it.

A mirror refill reads the core's ``cached_token()``, and the core reads the
host clock (``clock=``) during that read, on the caller's thread. The mirror
used to hold its (non-reentrant) lock across the read, so a clock that read
a session of the same client there (``cached_access_token()`` or
``access_token()``, this key or another) waited for that lock forever, and
``timeout=`` did not bound it. Now the read is made outside the lock and
its result is stored only if no drop, eviction or other store touched the
key's entry meanwhile: a token replaced during the read is never mirrored
afterwards.

Each call under test runs in a daemon thread joined with a bound: a bound on
a hang, not synchronisation. The clock calls back once, at the first reading
the core takes inside ``UserSession.cached_token`` after it is armed."""

import asyncio
import threading

import pytest

from freshtoken._mirror import STALE, Mirror

from helpers import FakeClock, TestStore, make_client, make_sync_client, same, seeded, seeded_sync

BOUND_S = 30
# 900 s tokens, 60 s leeway: stale in the mirror and in the core past this.
STALE_AFTER_MS = 900_000


def bounded(call, seconds=BOUND_S):
    """call() in a daemon thread: ("ok", value), ("raised", error) or ("hung", None)."""
    outcome = {}

    def run():
        try:
            outcome["r"] = ("ok", call())
        except BaseException as error:  # noqa: BLE001 - reported to the test
            outcome["r"] = ("raised", error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome.get("r", ("hung", None))


@pytest.fixture
def core_reads(monkeypatch):
    """A thread-local whose ``depth`` is > 0 while this thread is inside the
    core's ``UserSession.cached_token`` (the mirror's refill read)."""
    from freshtoken._ffi import freshtoken as generated

    local = threading.local()
    original = generated.UserSession.cached_token

    def cached_token(self, *args, **kwargs):
        local.depth = getattr(local, "depth", 0) + 1
        try:
            return original(self, *args, **kwargs)
        finally:
            local.depth -= 1

    monkeypatch.setattr(generated.UserSession, "cached_token", cached_token)
    return local


class ReentrantClock(FakeClock):
    """Once armed, runs ``callback`` at the first reading taken inside the
    core's refill read, and records its outcome (bounded) in ``nested``."""

    def __init__(self, core_reads):
        super().__init__()
        self.core_reads = core_reads
        self.callback = None
        self.nested = None
        self._fire = threading.Lock()

    def now_ms(self):
        if (self.callback is not None and getattr(self.core_reads, "depth", 0) > 0
                and self._fire.acquire(blocking=False)):  # once, whichever thread comes first
            callback, self.callback = self.callback, None
            # Not through bounded(): the call must run on this very thread,
            # inside the core's read. A hang here is bounded by the outer call's join.
            try:
                self.nested = ("ok", callback())
            except BaseException as error:  # noqa: BLE001 - reported to the test
                self.nested = ("raised", error)
        return self.ms


def check(outer, clock, expect_token):
    assert outer[0] != "hung", "the outer read never returned: the callback waited for the mirror's lock"
    assert outer[0] == "ok", f"the outer read raised {outer[1]!r}"
    assert clock.nested is not None, "the clock was not called back inside the core's read (the test proves nothing)"
    assert clock.nested[0] == "ok", f"the nested call raised {clock.nested[1]!r}"
    if expect_token:
        assert isinstance(clock.nested[1], str) and clock.nested[1], "the nested access_token() answered a token"


def check_mirrored(session, store, key, ffi_calls):
    """After it all, the key's mirror holds the core's (the store's) token."""
    token = session.cached_access_token()
    same(token, store.record(key)["access_token"], f"{key}: the stored token")
    ffi_calls.clear()
    same(session.cached_access_token(), token, f"{key}: mirrored")
    assert sum(ffi_calls.values()) == 0, f"{key}: served by the mirror: {dict(ffi_calls)}"


@pytest.mark.parametrize("outer_call", ["access_token", "cached_access_token"])
@pytest.mark.parametrize("nested_call", ["access_token", "cached_access_token"])
@pytest.mark.parametrize("nested_key", ["u1", "u2"])
def test_a_sync_clients_clock_reading_a_session_inside_the_core_read(
        emu, core_reads, ffi_calls, outer_call, nested_call, nested_key):
    clock = ReentrantClock(core_reads)
    client, _ = make_sync_client(emu, clock=clock)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store, key="u1")
    other, _ = seeded_sync(emu, client, store, key="u2")
    session.access_token()
    other.access_token()
    clock.advance(STALE_AFTER_MS)  # stale in the mirror and the core: both reads refill

    nested = client.session(nested_key, store)
    clock.callback = lambda: getattr(nested, nested_call)(**({"timeout": 10} if nested_call == "access_token" else {}))
    outer = bounded(lambda: getattr(session, outer_call)(**({"timeout": 10} if outer_call == "access_token" else {})))
    check(outer, clock, expect_token=nested_call == "access_token")

    # Whatever refreshed, each key's mirror ends up with its current token.
    session.access_token()
    other.access_token()
    check_mirrored(session, store, "u1", ffi_calls)
    check_mirrored(other, store, "u2", ffi_calls)


@pytest.mark.parametrize("nested_call", ["access_token", "cached_access_token"])
@pytest.mark.parametrize("nested_key", ["u1", "u2"])
def test_an_async_clients_clock_reading_a_session_inside_the_core_read(
        emu, core_reads, ffi_calls, nested_call, nested_key):
    # A clock is synchronous: it reads cached_access_token() directly, and an
    # awaited access_token() on a loop of another thread, which it waits for
    # (bounded) while the first read is in the core.
    clock = ReentrantClock(core_reads)
    client, _ = make_client(emu, clock=clock)
    store = TestStore()

    async def setup():
        session, _ = await seeded(emu, client, store, key="u1")
        other, _ = await seeded(emu, client, store, key="u2")
        await session.access_token()
        await other.access_token()
        return session, other

    session, other = asyncio.run(setup())
    clock.advance(STALE_AFTER_MS)
    nested = client.session(nested_key, store)
    if nested_call == "cached_access_token":
        clock.callback = nested.cached_access_token
    else:
        def callback():
            outcome = bounded(lambda: asyncio.run(nested.access_token()), BOUND_S / 2)
            if outcome[0] != "ok":
                raise AssertionError(f"the access_token() awaited on another thread: {outcome}")
            return outcome[1]
        clock.callback = callback
    outer = bounded(lambda: asyncio.run(session.access_token()))
    check(outer, clock, expect_token=nested_call == "access_token")

    async def after():
        await session.access_token()
        await other.access_token()

    asyncio.run(after())
    check_mirrored(session, store, "u1", ffi_calls)
    check_mirrored(other, store, "u2", ffi_calls)


@pytest.mark.parametrize("replace", ["refresh", "token_rejected"])
def test_a_token_replaced_while_the_core_is_read_is_not_mirrored_afterwards(emu, core_reads, ffi_calls, replace):
    # The clock replaces the key's token during the outer read; whatever that
    # read got from the core, the mirror then serves the new token only.
    clock = ReentrantClock(core_reads)
    client, _ = make_sync_client(emu, clock=clock)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    old = session.access_token()
    client._mirror.drop("u1")  # stale in the mirror only: the core still serves `old`
    replaced = {}

    def callback():
        info = session.refresh(timeout=10) if replace == "refresh" else session.token_rejected(old, timeout=10)
        replaced["token"] = info.access_token
        return info

    clock.callback = callback
    outer = bounded(lambda: session.access_token(timeout=10))
    check(outer, clock, expect_token=False)
    new = replaced["token"]
    assert new != old
    assert outer[1] in (old, new), "the outer read answered the core's token of its moment"

    ffi_calls.clear()
    same(session.access_token(), new, "the replaced token is not mirrored")
    same(session.cached_access_token(), new, "nor served by cached_access_token()")
    assert sum(ffi_calls.values()) == 0, f"the new token is mirrored: {dict(ffi_calls)}"
    same(store.record("u1")["access_token"], new, "and stored")


# -- the mirror alone: what a refill stores when its entry changed during the read
# (each read calls into the mirror: bounded, as the old lock would hang them)


class _Cached:
    def __init__(self, token, fresh_until_ms):
        self.token, self.fresh_until_ms = token, fresh_until_ms


def refill(mirror, key, read):
    outcome = bounded(lambda: mirror.refill(key, read), 10)
    assert outcome[0] == "ok", f"the refill: {outcome}"
    return outcome[1]


def test_a_refill_stores_nothing_when_a_drop_came_during_its_read():
    mirror = Mirror(lambda: 1_000, 1, bound=10)
    mirror.refill("k", lambda: _Cached("old", 5_000))

    def read():
        mirror.drop("k")  # a refresh, token_rejected, seed… started meanwhile
        return _Cached("old", 5_000)

    entry, cached = refill(mirror, "k", read)
    assert cached.token == "old", "the caller still gets what it read"
    assert entry.until == STALE, "but the mirror does not keep it"
    entry, _ = mirror.refill("k", lambda: _Cached("new", 6_000))
    assert (entry.token, entry.until) == ("new", 6_000), "the next refill stores"


def test_a_refill_does_not_overwrite_a_store_made_during_its_read():
    mirror = Mirror(lambda: 1_000, 1, bound=10)

    def read():
        mirror.refill("k", lambda: _Cached("newer", 7_000))  # a later read, stored first
        return _Cached("older", 5_000)

    entry, cached = refill(mirror, "k", read)
    assert cached.token == "older"
    assert (entry.token, entry.until) == ("newer", 7_000), "the later read's store stands"


def test_a_refill_does_not_store_into_an_entry_evicted_during_its_read():
    mirror = Mirror(lambda: 1_000, 1, bound=1)
    first = mirror.entry("k")

    def read():
        mirror.entry("x")  # bound 1: "k" is evicted
        return _Cached("t", 5_000)

    entry, _ = refill(mirror, "k", read)
    assert first.until == STALE, "the evicted entry serves nothing"
    assert entry is not first and entry.until == STALE, "the re-created entry: filled by the next refill"
    entry, _ = mirror.refill("k", lambda: _Cached("t2", 6_000))
    assert (entry.token, entry.until) == ("t2", 6_000)


def test_a_read_may_call_into_the_mirror_it_refills():
    mirror = Mirror(lambda: 1_000, 1, bound=10)
    inner = {}

    def read():
        assert not mirror._lock.locked(), "the core is read outside the mirror's lock"
        inner["other"] = mirror.refill("other", lambda: _Cached("o", 5_000))[0].token
        inner["same"] = mirror.refill("k", lambda: _Cached("s", 5_000))[0].token
        mirror.drop("unknown")
        return None

    entry, _ = refill(mirror, "k", read)
    assert inner == {"other": "o", "same": "s"}
    assert entry.token == "s", "nothing read by the outer refill: the nested store stands"
