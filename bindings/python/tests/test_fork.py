"""A process forked after its parent used freshtoken (a prefork server's
workers, multiprocessing's fork) has none of the parent's threads: the
core's timer (every store and HTTP deadline, every retry backoff) and the
thread that finishes a refresh its caller gave up on. The child starts its
own. Each child reports through a pipe; the parent waits for it within a
bound and fails the test if the child hung."""

import asyncio
import json
import os
import select
import signal
import threading

import pytest

import freshtoken
from freshtoken import MemoryTokenStore, TokenStoreBase

from helpers import CLIENT_ID, CLIENT_SECRET, DictStore, FakeClock, authorization_code, make_sync_client, seeded_sync

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")

CHILD_BOUND_S = 40


def in_forked_child(run):
    """``run()``'s JSON-able answer, computed in a forked child; None if the
    child gave none within CHILD_BOUND_S (it is then killed)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.write(write_end, json.dumps(run()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], CHILD_BOUND_S)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return None
        answer = os.read(read_end, 65536)
        return json.loads(answer) if answer else None
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


def warm_up(emu):
    """The parent uses a client: a refresh under store deadlines starts the
    core's timer and flight threads in this process."""
    client, _ = make_sync_client(emu)
    session, _ = seeded_sync(emu, client, MemoryTokenStore(), key="parent")
    session.access_token()


class SilentLoad(TokenStoreBase):
    """A store whose load never answers (a stuck database driver)."""

    async def load(self, key):
        await asyncio.Event().wait()

    async def save(self, key, record):
        pass


def test_a_store_deadline_fires_in_a_child_forked_after_the_parent_used_deadlines(emu):
    warm_up(emu)

    def child():
        client, _ = make_sync_client(emu, store_timeout_ms=300)
        try:
            client.session("child", SilentLoad()).status()
            return "answered"
        except freshtoken.StorageError:
            return "StorageError"

    assert in_forked_child(child) == "StorageError", "the child's store deadline fired (None: it hung)"


class InheritedStore(DictStore):
    """A dict a forked child keeps using, as these tests need (MemoryTokenStore
    refuses records inherited across a fork)."""


class SignalsRotation(MemoryTokenStore):
    """Sets ``rotated`` once a record that is not the in-doubt marker is saved."""

    def __init__(self):
        super().__init__()
        self.rotated = threading.Event()

    async def save(self, key, record):
        await super().save(key, record)
        if not json.loads(record).get("in_doubt"):
            self.rotated.set()


def test_in_a_forked_child_a_refresh_its_caller_gave_up_on_still_saves(emu):
    warm_up(emu)

    def child():
        client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
        store = SignalsRotation()
        session, family = seeded_sync(emu, client, store)
        store.rotated.clear()  # the seed's own save
        emu.fault({"kind": "hold", "grant": "refresh_token"})
        try:
            session.access_token(timeout=0.1)  # gives up while the server holds the answer
            return "answered while held"
        except TimeoutError:
            pass
        held = emu.wait_held(1)
        emu.release_held()
        saved = store.rotated.wait(CHILD_BOUND_S / 2)
        record = json.loads(store.get("u1"))
        return dict(held=held, saved=saved, rotated=record["refresh_token"] != family["refresh_token"])

    assert in_forked_child(child) == dict(held=1, saved=True, rotated=True), (
        "the child's flight thread sent the refresh and saved the rotated token")


def test_a_client_made_before_a_fork_delivers_its_events_in_the_child(emu):
    """A prefork server that makes its client at import (gunicorn --preload):
    the parent's events threads are not in the child, whose events must
    still reach the callable."""
    seen = []
    got = threading.Event()

    def on_event(event):
        seen.append(event.kind)
        if event.kind == "refreshed":
            got.set()

    client, _ = make_sync_client(emu, on_event=on_event)
    session, _ = seeded_sync(emu, client, MemoryTokenStore(), key="parent")
    session.access_token()
    assert got.wait(CHILD_BOUND_S), "the parent's refresh reached the callable"

    def child():
        seen.clear()
        got.clear()
        session, _ = seeded_sync(emu, client, MemoryTokenStore(), key="child")
        session.access_token()
        return dict(delivered=got.wait(CHILD_BOUND_S / 2), kinds=sorted(set(seen)))

    answer = in_forked_child(child)
    assert answer is not None and answer["delivered"], f"the child's refresh reached the callable: {answer}"
    assert "refreshed" in answer["kinds"]


def test_a_client_made_in_a_forked_child_delivers_its_events(emu):
    """The parent used events (its threads run); a child makes its own client."""
    got = threading.Event()
    client, _ = make_sync_client(emu, on_event=lambda event: got.set() if event.kind == "refreshed" else None)
    session, _ = seeded_sync(emu, client, MemoryTokenStore(), key="parent")
    session.access_token()
    assert got.wait(CHILD_BOUND_S)

    def child():
        arrived = threading.Event()
        own, _ = make_sync_client(emu, on_event=lambda event: arrived.set() if event.kind == "refreshed" else None)
        session, _ = seeded_sync(emu, own, MemoryTokenStore(), key="child")
        session.access_token()
        return arrived.wait(CHILD_BOUND_S / 2)

    assert in_forked_child(child) is True


class ReaderGatedClock(FakeClock):
    """Blocks the core's reading of the clock on the thread named "reader"
    (its second reading there: the first is the mirror's own, outside the
    mirror's lock) until released."""

    def __init__(self):
        super().__init__()
        self.reader_calls = 0
        self.inside = threading.Event()
        self.release = threading.Event()

    def now_ms(self):
        if threading.current_thread().name == "reader":
            self.reader_calls += 1
            if self.reader_calls == 2:
                self.inside.set()
                self.release.wait(CHILD_BOUND_S)
        return self.ms


def test_a_child_forked_while_a_thread_refills_the_mirror_can_use_the_client(emu):
    # A refill once held the client's mirror lock across the core's read,
    # which reads the host clock; a fork then copied the lock held, with no
    # thread in the child to release it: the child's first slow read
    # (timeout= or not, it comes first) waited for good. The lock is no
    # longer held there, and a child still makes its mirrors' locks anew.
    clock = ReaderGatedClock()
    client, _ = make_sync_client(emu, clock=clock)
    store = InheritedStore()
    session, _ = seeded_sync(emu, client, store)
    session.access_token()
    clock.advance(2 * 3600 * 1000)  # stale: a read refills from the core
    reader = threading.Thread(target=session.cached_access_token, name="reader")
    reader.start()
    try:
        assert clock.inside.wait(CHILD_BOUND_S), "the reader is in the core's read, holding the mirror's lock"
        answer = in_forked_child(lambda: _outcome(lambda: client.session("u1", store).access_token(timeout=10)))
    finally:
        clock.release.set()
        reader.join(CHILD_BOUND_S)
    assert answer == "token", f"the child refreshed and answered (None: it hung): {answer}"


@pytest.mark.parametrize("lock", ["_legacy_lock", "_separate_lock"])
def test_a_child_forked_while_a_thread_lists_a_store_directory_can_use_file_stores(emu, tmp_path, lock):
    # FileTokenStore holds a process-wide lock across a directory's listing
    # (old file names) or its lock probe, both file I/O. A fork while a
    # parent's thread was in one copied the lock held: every file store call
    # in the child then waited out store_timeout_ms, each keeping a worker
    # thread for good.
    from freshtoken import _stores

    answer = _file_store_in_child_forked_holding(emu, tmp_path / "tokens", getattr(_stores, lock))
    assert answer == "token", f"the child's file store answered: {answer}"


def test_a_child_forked_while_a_thread_looks_up_an_old_file_name_can_use_file_stores(emu, tmp_path):
    # A directory holding files of the earlier naming has one lock of its
    # own (the names listed there), taken by every load of a key without a
    # file under today's name and by every save. A fork while a parent's
    # thread held it copied it held: in the child, each load of a new key
    # waited out store_timeout_ms, keeping a worker thread for good.
    from freshtoken import _stores

    directory = tmp_path / "tokens"
    directory.mkdir()
    (directory / _stores.legacy_file_name("someone-else")).write_text("{}")
    names = _stores._legacy_names(str(directory))
    assert names.existing("someone-else") is not None, "the directory has old names"
    answer = _file_store_in_child_forked_holding(emu, directory, names._lock)
    assert answer == "token", f"the child's file store answered: {answer}"


def _file_store_in_child_forked_holding(emu, directory, lock):
    """Forks while a thread of this process holds ``lock``; in the child, a
    seeded session on a ``FileTokenStore`` of ``directory`` reads a token:
    its outcome (``"token"``, the error's class, None if it hung)."""
    held, release = threading.Event(), threading.Event()

    def holding():  # a thread of the parent, holding the lock at the fork
        with lock:
            held.set()
            release.wait(CHILD_BOUND_S)

    holder = threading.Thread(target=holding)
    holder.start()
    try:
        assert held.wait(CHILD_BOUND_S)

        def child():
            # Deadlines a busy machine never reaches: a lock copied held still
            # makes every file store call wait them out (StorageError).
            client, _ = make_sync_client(emu, store_timeout_ms=10_000)
            return _outcome(lambda: seeded_sync(emu, client, freshtoken.FileTokenStore(directory))[0]
                            .access_token(timeout=20))

        return in_forked_child(child)
    finally:
        release.set()
        holder.join(CHILD_BOUND_S)


def forked_while_held(emu, grant, in_parent, in_child):
    """Runs ``in_parent()`` in a thread of this process until its token
    request (``grant``) is held at the emulator, then ``in_child()`` in a
    child forked meanwhile; lets the request go. Returns both outcomes
    (``"token"`` or the error's class; the child's None if it hung)."""
    emu.fault({"kind": "hold", "grant": grant})
    outcome = []
    parent = threading.Thread(target=lambda: outcome.append(_outcome(in_parent)))
    parent.start()
    try:
        assert emu.wait_held(1) == 1
        answer = in_forked_child(lambda: _outcome(in_child))
    finally:
        emu.release_held()
        parent.join(CHILD_BOUND_S)
    return outcome, answer


def _outcome(call):
    try:
        call()
        return "token"
    except BaseException as error:  # noqa: BLE001 - reported to the test
        return f"{type(error).__module__}.{type(error).__name__}"


# A flight in progress at the fork was copied into the child, where nothing
# drives it or fires its deadlines: the child's callers of that key waited
# for good. The core now forgets it there (src/started_by.rs), and never
# sends the refresh token the parent is spending (a conflict, nothing sent).
def test_a_call_in_a_child_forked_during_a_refresh_answers_within_the_deadlines(emu):
    # The parent's refresh of u1 is on the wire (held at the emulator) when a
    # prefork server forks a worker; the worker then serves u1.
    # The parent's request is held through the fork, the child's run and the
    # wait for it, which must end within its 10 s deadline: a child that
    # answers takes well under a second, and a hung one is told apart by the
    # child's own 25 s bound, past its deadlines.
    client, _ = make_sync_client(emu, timeout_ms=10_000, store_timeout_ms=10_000, retry={"max_attempts": 1})
    store = InheritedStore()
    session, _ = seeded_sync(emu, client, store)
    # The child's call waits past both deadlines (and the HTTP grace): only
    # a call left waiting for a flight that no thread of it drives gets
    # TimeoutError.
    outcome, answer = forked_while_held(emu, "refresh_token", lambda: session.access_token(timeout=60),
                                        lambda: client.session("u1", store).access_token(timeout=25))
    assert answer is not None, "the child hung"
    assert answer != "builtins.TimeoutError", "the child's call got no answer from the core within its deadlines"
    assert answer.endswith(".ConflictError"), f"the child sent nothing and said why: {answer}"
    assert emu.counters()["reuse_detected"] == 0, "the child did not send the parent's refresh token again"
    assert outcome == ["token"] and emu.refresh_requests() == 1, "the parent's refresh went on, alone"


def test_a_client_token_in_a_child_forked_during_its_request_is_requested_anew(emu):
    # The parent's client-credentials request is on the wire (held at the
    # emulator) at the fork. The child's copy of it had nothing to drive it:
    # its caller waited for good. Now the child sends its own request.
    client, _ = make_sync_client(emu, timeout_ms=5000)
    outcome, answer = forked_while_held(emu, "client_credentials", lambda: client.client_token(timeout=60),
                                        lambda: client.client_token(timeout=8))
    assert answer == "token", f"the child got its own client token: {answer}"
    assert outcome == ["token"]


def test_a_code_the_parent_was_redeeming_at_the_fork_is_not_sent_by_the_child(emu):
    # A callback handled twice, once in each process: the child's repeat of
    # the exchange joined the parent's copied one, which nothing drove, and
    # waited for good. Now it sends nothing (a second send would be refused,
    # and revoke what the first one issued) and says so.
    client, _ = make_sync_client(emu, timeout_ms=5000)
    redirect_uri = "https://app.example/callback"
    request = client.authorization_url(redirect_uri, scopes=["openid"])
    exchange = dict(code=authorization_code(request.url), code_verifier=request.code_verifier,
                    redirect_uri=redirect_uri)
    store = MemoryTokenStore()
    outcome, answer = forked_while_held(emu, "authorization_code",
                                        lambda: client.exchange_code("u1", store, **exchange, timeout=60),
                                        lambda: client.exchange_code("u1", store, **exchange, timeout=8))
    assert answer is not None and answer.endswith(".ConflictError"), f"the child sent nothing and said why: {answer}"
    assert outcome == ["token"]
    assert emu.grant_requests("authorization_code") == 1, "the code was sent once, by the parent"


class LeasedStore(TokenStoreBase):
    """A fleet's store as one process holds it: records, and a lease per
    key held by its owner until released (a forked child gets a copy)."""

    def __init__(self):
        self.records, self.leases = {}, {}

    async def load(self, key):
        return self.records.get(key)

    async def save(self, key, record):
        self.records[key] = record

    def supports_lease(self):
        return True

    async def acquire(self, key, owner, ttl_ms):
        return self.leases.setdefault(key, owner) == owner

    async def release(self, key, owner):
        if self.leases.get(key) == owner:
            del self.leases[key]


def test_a_child_forked_during_a_leased_refresh_is_refused_its_parents_lease(emu):
    # The child's lease owner was its parent's: its acquire read as the
    # holder renewing, and it sent the refresh token the parent was sending
    # (the server then revokes the grant). Now a child has an owner of its own.
    # The held parent request's 10 s deadline bounds the child's run (as above).
    client, _ = make_sync_client(emu, timeout_ms=10_000, store_timeout_ms=10_000, retry={"max_attempts": 1},
                                 lease_ttl_ms=600_000, lease_wait_ms=300)
    store = LeasedStore()
    session, _ = seeded_sync(emu, client, store)
    outcome, answer = forked_while_held(emu, "refresh_token", lambda: session.access_token(timeout=60),
                                        lambda: client.session("u1", store).access_token(timeout=25))
    assert answer not in (None, "token", "builtins.TimeoutError"), f"the child sent nothing, and said so: {answer}"
    assert emu.counters()["reuse_detected"] == 0, "the child did not send the parent's refresh token again"
    assert outcome == ["token"] and emu.refresh_requests() == 1, "the parent's refresh went on, alone"
