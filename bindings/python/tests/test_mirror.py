"""The client's token mirror: cached reads never cross the FFI, go stale
exactly at the core's fresh-until instant on the client's clock, are
dropped by every call that may replace the token, are shared by every
handle of a key, and stay bounded. Time is a fake clock."""

import asyncio
import threading
import time

import freshtoken
from freshtoken._mirror import STALE, Mirror

from helpers import (FakeClock, TestStore, differ, make_client, make_sync_client, same, seeded, seeded_sync)

# 900 s tokens, 60 s leeway: fresh until 840 s after the request was sent.
FRESH_MS = 840_000


def test_no_ffi_call_while_the_mirrored_token_is_fresh(emu, ffi_calls):
    client, clock = make_sync_client(emu)
    store = TestStore()
    seeded_sync(emu, client, store)
    first = client.session("u1", store).access_token()
    loads, saves = store.loads, store.saves
    clock.advance(FRESH_MS - 1)

    ffi_calls.clear()
    for _ in range(1000):
        same(client.session("u1", store).access_token(), first, "the mirrored token")
    other = client.session("u2", store)  # a new key: still no native handle
    assert sum(ffi_calls.values()) == 0, f"no FFI call while fresh: {dict(ffi_calls)}"
    assert (store.loads, store.saves) == (loads, saves), "no store calls"
    assert emu.refresh_requests() == 1
    assert other.key == "u2"


def test_the_mirror_goes_stale_exactly_at_fresh_until(emu, ffi_calls):
    client, clock = make_sync_client(emu)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    sent_at = clock.now_ms()
    first = session.access_token()
    assert session.tokens().expires_at_ms == sent_at + 900_000

    clock.ms = sent_at + FRESH_MS - 1
    ffi_calls.clear()
    same(session.access_token(), first, "fresh one millisecond before")
    assert sum(ffi_calls.values()) == 0

    clock.ms = sent_at + FRESH_MS
    second = session.access_token()
    differ(second, first, "stale at fresh-until: the core refreshed")
    assert ffi_calls["UserSession.access_token"] == 1
    assert emu.refresh_requests() == 2
    same(store.record("u1")["access_token"], second, "the new token is stored")
    ffi_calls.clear()
    same(session.access_token(), second, "and mirrored")
    assert sum(ffi_calls.values()) == 0


def test_token_rejected_refresh_and_seed_replace_the_mirrored_token(emu, ffi_calls):
    client, _ = make_sync_client(emu)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    other = client.session("u1", twin(store))  # another handle on the key
    first = session.access_token()

    rejected = session.token_rejected(first)
    differ(rejected.access_token, first, "token_rejected refreshed")
    same(session.access_token(), rejected.access_token, "the new token, not the rejected one")
    same(other.access_token(), rejected.access_token, "every handle of the key sees it")

    forced = other.refresh()
    differ(forced.access_token, rejected.access_token, "refresh brought a new token")
    ffi_calls.clear()
    same(session.access_token(), forced.access_token, "the refreshed token")
    assert sum(ffi_calls.values()) == 0, "mirrored after the refresh"

    family = emu.seed()
    session.seed(refresh_token=family["refresh_token"], access_token=family["access_token"], expires_in=900)
    same(other.access_token(), family["access_token"], "the seeded token")
    assert emu.refresh_requests() == 3, "token_rejected and refresh only (and the first)"


def test_two_sessions_of_one_key_share_one_mirror_entry(emu, ffi_calls):
    client, _ = make_sync_client(emu)
    store_a = TestStore()
    store_b = twin(store_a)
    a, _ = seeded_sync(emu, client, store_a)
    b = client.session("u1", store_b)
    assert b is not a and client.session("u1", store_b) is b, "one reusable handle per (key, store)"
    token = a.access_token()

    ffi_calls.clear()
    same(b.access_token(), token, "b reads what a mirrored")
    assert sum(ffi_calls.values()) == 0, "b has made no native call at all"

    info = b.refresh()
    ffi_calls.clear()
    same(a.access_token(), info.access_token, "a sees b's refresh")
    assert sum(ffi_calls.values()) == 0


def test_async_sessions_share_the_mirror_and_skip_the_ffi(emu, ffi_calls):
    async def scenario():
        client, clock = make_client(emu)
        store = TestStore()
        session, _ = await seeded(emu, client, store)
        token = await session.access_token()
        ffi_calls.clear()
        for _ in range(200):
            same(await client.session("u1", twin(store)).access_token(), token, "mirrored")
        assert sum(ffi_calls.values()) == 0
        info = await session.token_rejected(token)
        same(await client.session("u1", store).access_token(), info.access_token, "dropped and refilled")
        clock.advance(FRESH_MS)
        differ(await session.access_token(), info.access_token, "stale at fresh-until")
        assert emu.refresh_requests() == 3

    asyncio.run(scenario())


def test_the_mirror_and_the_handles_are_bounded(emu):
    client, _ = make_sync_client(emu, max_sessions=3)
    store = TestStore()
    tokens = {}
    for i in range(6):
        session, _ = seeded_sync(emu, client, store, key=f"u{i}")
        tokens[f"u{i}"] = session.access_token()
    assert len(client._mirror) <= 3 and len(client._handles) <= 3
    # An evicted key still answers with its token (no new refresh).
    same(client.session("u0", store).access_token(), tokens["u0"], "evicted from memory, not lost")
    assert emu.refresh_requests() == 6


def twin(store):
    """Another store object over the same records (another handle's store)."""
    other = TestStore()
    other._records = store._records
    return other


class _Cached:
    def __init__(self, token, fresh_until_ms):
        self.token, self.fresh_until_ms = token, fresh_until_ms


def test_refills_read_the_core_outside_the_lock_drops_and_evictions_go_stale():
    """The core is read outside the mirror's lock (the core may call a host
    clock that reads the client); a drop or an eviction makes the entry serve
    nothing; no token in reprs. (Refills racing drops, evictions and other
    refills: test_mirror_reentrant_clock.py.)"""
    mirror = Mirror(lambda: 1_000, 1, bound=2)

    def read(token, until):
        def cached():
            assert not mirror._lock.locked(), "the core is read outside the mirror's lock"
            return _Cached(token, until)
        return cached

    entry, cached = mirror.refill("k", read("old", 5_000))
    assert (entry.token, entry.until, cached.token) == ("old", 5_000, "old")
    mirror.drop("k")
    assert entry.until == STALE, "dropped"
    entry, _ = mirror.refill("k", lambda: None)
    assert entry.until == STALE, "nothing fresh in the core: still stale"
    entry, _ = mirror.refill("k", read("new", 6_000))
    assert (entry.token, entry.until) == ("new", 6_000)
    assert "new" not in repr(entry), "no token in the entry's repr"

    mirror.entry("x")
    mirror.entry("y")  # bound 2: "k" is evicted
    assert len(mirror) == 2 and entry.until == STALE
    again, _ = mirror.refill("k", read("newer", 7_000))
    assert again is not entry and again.token == "newer", "a refill re-creates the key's entry"


def test_a_call_that_may_replace_the_token_drops_it_first(emu, ffi_calls):
    """While token_rejected is in flight, reads ask the core instead of the
    mirror, which no longer serves the rejected token; after it, the mirror
    holds the new token."""
    client, _ = make_sync_client(emu)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    first = session.access_token()
    emu.fault({"kind": "hold", "grant": "refresh_token"})
    result = {}
    rejecting = threading.Thread(target=lambda: result.update(info=session.token_rejected(first, timeout=60)))
    rejecting.start()
    assert emu.wait_held(1) == 1, "the refresh token_rejected started is held"

    ffi_calls.clear()
    assert session.cached_access_token() is None, "the rejected token is not served"
    assert ffi_calls["UserSession.cached_token"] == 1, "the mirror was dropped: the read asked the core"
    assert emu.release_held() == 1
    rejecting.join(60)
    ffi_calls.clear()
    same(session.access_token(), result["info"].access_token, "the new token, from the mirror")
    assert sum(ffi_calls.values()) == 0


def test_a_system_clock_client_mirrors_in_seconds(emu, ffi_calls):
    client = freshtoken.Client(emu.token_endpoint, "test-client", client_secret="test-secret")
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    token = session.access_token()
    ffi_calls.clear()
    same(client.session("u1", store).access_token(), token, "mirrored on time.time()")
    assert sum(ffi_calls.values()) == 0
    until = client._mirror.entry("u1").until
    info = session.tokens()
    assert abs(until - (info.expires_at_ms - 60_000) / 1000) < 1e-6, "fresh until, in seconds"


def test_a_host_clock_reading_the_core_refuses_is_the_system_clock_in_the_mirror_too(emu, ffi_calls):
    """The core reads the system clock instead of a host reading that is no
    time (negative, not an int, past the year 9999); so must the mirror, or
    it serves a token the core judges stale, or never serves one at all."""
    ten_days_back = int(time.time() * 1000) - 10 * 86_400_000
    for reading in (-1, float(ten_days_back), True):
        clock = FakeClock(ten_days_back)
        client, _ = make_sync_client(emu, clock)
        store = TestStore()
        session = client.session("u1", store)
        session.seed(refresh_token=emu.seed()["refresh_token"], access_token="at-seeded", expires_in=900)
        same(session.access_token(), "at-seeded", "fresh on the host clock")
        same(session.access_token(), "at-seeded", "mirrored")

        clock.ms = reading
        renewed = session.access_token()
        differ(renewed, "at-seeded", f"a {type(reading).__name__} reading: stale on the system clock, as in the core")

        clock.ms = 1 << 62  # nanoseconds by mistake
        ffi_calls.clear()
        same(session.access_token(), renewed, "fresh on the system clock")
        assert sum(ffi_calls.values()) == 0, f"served from the mirror: {dict(ffi_calls)}"
    assert emu.refresh_requests() == 3


def test_a_clock_set_back_asks_the_core_which_renews_a_token_issued_an_hour_ahead(emu, ffi_calls):
    client, clock = make_sync_client(emu)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    sent_at = clock.now_ms()
    first = session.access_token()
    same(session.access_token(), first, "mirrored")
    # Four minutes back (ordinary skew): the mirror asks the core, which serves it.
    clock.ms = sent_at - 240_000
    ffi_calls.clear()
    same(session.access_token(), first, "within the skew tolerance")
    assert sum(ffi_calls.values()) >= 1, "the mirror asked the core"
    assert emu.refresh_requests() == 1
    # An hour back: issued under a clock that read ahead; renewed.
    clock.ms = sent_at - 3_600_000
    differ(session.access_token(), first, "an hour back: renewed")
    assert emu.refresh_requests() == 2


def test_an_async_mirror_asks_the_core_when_the_clock_is_set_back(emu, ffi_calls):
    async def scenario():
        client, clock = make_client(emu)
        store = TestStore()
        session, _ = await seeded(emu, client, store)
        sent_at = clock.now_ms()
        first = await session.access_token()
        same(await session.access_token(), first, "mirrored")
        clock.ms = sent_at - 3_600_000
        differ(await session.access_token(), first, "an hour back: renewed")
        assert emu.refresh_requests() == 2

    asyncio.run(scenario())
