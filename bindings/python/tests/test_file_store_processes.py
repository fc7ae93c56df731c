"""FileTokenStore shared by several processes (web server workers): where
the OS has flock, the store's lease makes one process refresh while the
others wait and use its saved record, and its versions keep a re-link made
by one process from being overwritten by another's refresh. Real processes,
the emulator holding the first refresh until the other process has been
refused the lease (no timing)."""

import asyncio
import json
import os
import subprocess
import sys
import threading

import pytest

import freshtoken
from freshtoken import FileTokenStore, MemoryTokenStore

from helpers import CLIENT_ID, CLIENT_SECRET, same

pytestmark = pytest.mark.skipif(not FileTokenStore("/tmp").supports_lease(), reason="no flock on this OS")

# The other process: one access_token() on the same directory. It prints
# "refused" each time the lease is refused, then its outcome as JSON.
OTHER_PROCESS = r"""
import json, sys
import freshtoken

endpoint, client_id, secret, directory, one_process = sys.argv[1:6]

class Store(freshtoken.FileTokenStore):
    async def acquire(self, key, owner, ttl_ms):
        got = await super().acquire(key, owner, ttl_ms)
        if not got:
            print("refused", flush=True)
        return got

    if one_process == "1":
        def supports_lease(self):
            return False

        def supports_versions(self):
            return False

client = freshtoken.Client(endpoint, client_id, client_secret=secret)
try:
    print(json.dumps({"token": client.session("u1", Store(directory)).access_token(timeout=60)}), flush=True)
except freshtoken.FreshTokenError as err:
    print(json.dumps({"error": err.code}), flush=True)
"""


class OneProcessStore(FileTokenStore):
    """The store as it was: no lease, no versions."""

    def supports_lease(self):
        return False

    def supports_versions(self):
        return False


def start_other_process(emu, directory, one_process=False):
    package = os.path.dirname(os.path.dirname(freshtoken.__file__))
    env = dict(os.environ, PYTHONPATH=package)
    return subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, emu.token_endpoint, CLIENT_ID, CLIENT_SECRET, str(directory),
         "1" if one_process else "0"],
        stdout=subprocess.PIPE, env=env, cwd=str(directory))  # not beside the package's sources


def outcome(child):
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    return json.loads(out.splitlines()[-1])


def in_thread(call):
    """Runs `call` in a thread; returns (thread, result dict with "token" or "error")."""
    result = {}

    def run():
        try:
            result["token"] = call()
        except freshtoken.FreshTokenError as err:
            result["error"] = err.code

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def two_processes_at_expiry(emu, tmp_path, store_class, one_process):
    """This process refreshes (held at the emulator), then the other process calls."""
    directory = tmp_path / "tokens"
    store = store_class(directory)
    client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
    family = emu.seed()
    client.session("u1", store).seed(refresh_token=family["refresh_token"])
    before = emu.refresh_requests()
    emu.fault({"kind": "hold", "grant": "refresh_token"})
    thread, mine = in_thread(lambda: client.session("u1", store).access_token(timeout=60))
    assert emu.wait_held(1) == 1
    return directory, store, family, before, thread, mine, start_other_process(emu, directory, one_process)


def test_two_processes_at_expiry_one_refresh_the_other_waits_on_the_lease(emu, tmp_path):
    directory, store, family, before, thread, mine, child = two_processes_at_expiry(
        emu, tmp_path, FileTokenStore, one_process=False)
    waited = child.stdout.readline().strip() == b"refused"  # (a bool: a failure must not print the line, a token)
    assert waited, "the other process waits for this one's lease"
    assert emu.release_held() == 1
    thread.join(60)
    theirs = outcome(child)

    assert emu.refresh_requests() - before == 1, "one refresh for both processes"
    assert "token" in mine and "token" in theirs, (mine.get("error"), theirs.get("error"))
    same(theirs["token"], mine["token"], "the other process used the record this one saved")
    saved = json.loads(open(store.path("u1")).read())
    same(saved["access_token"], mine["token"], "the saved record holds the token handed out")
    assert emu.refresh_token_state(family["refresh_token"]) == "consumed"
    assert emu.refresh_token_state(saved["refresh_token"]) == "active"


def test_without_the_lease_both_processes_spend_the_token_and_the_user_must_relink(emu, tmp_path):
    directory, store, family, before, thread, mine, child = two_processes_at_expiry(
        emu, tmp_path, OneProcessStore, one_process=True)
    theirs = outcome(child)  # not held: the emulator rotates for it
    assert emu.release_held() == 1
    thread.join(60)

    assert emu.refresh_requests() - before == 2, "each process sent the same refresh token"
    assert "token" in theirs
    # This process's request met a consumed token; it adopts the record the
    # other process saved (its token revoked by the server's reuse
    # detection), and the session ends at the next refresh.
    assert "token" in mine, mine.get("error")
    same(mine["token"], theirs["token"], "the other process's record was adopted")
    assert emu.refresh_token_state(json.loads(open(store.path("u1")).read())["refresh_token"]) == "revoked"
    with pytest.raises(freshtoken.ReauthorizationRequired):
        freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET).session(
            "u1", store).refresh(timeout=60)


@pytest.mark.parametrize("store_class, kept", [(FileTokenStore, True), (OneProcessStore, False)])
def test_a_relink_in_one_process_while_another_refreshes(emu, tmp_path, store_class, kept):
    """With versions the refreshing process's save is a conflict and the new
    link stays; without them (the store as it was) the refresh overwrites it."""
    directory = tmp_path / "tokens"
    client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
    other = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)  # another process's client
    old, relinked = emu.seed(), emu.seed()
    client.session("u1", store_class(directory)).seed(refresh_token=old["refresh_token"])
    emu.fault({"kind": "hold", "grant": "refresh_token"})
    thread, mine = in_thread(lambda: client.session("u1", store_class(directory)).access_token(timeout=60))
    assert emu.wait_held(1) == 1
    other.session("u1", store_class(directory)).seed(refresh_token=relinked["refresh_token"])
    assert emu.release_held() == 1
    thread.join(60)

    stored = json.loads(open(FileTokenStore(directory).path("u1")).read())
    if kept:
        assert stored["refresh_token"] == relinked["refresh_token"], "the new link stays"
        assert mine.get("error") == "conflict", "the refreshing process learns the record moved on"
    else:
        assert stored["refresh_token"] != relinked["refresh_token"], "the new link was overwritten"
        assert "token" in mine


# A JVM's FileLock (the Kotlin store's lease) is a POSIX record lock, which
# on Linux does not exclude flock: the store takes both.
HOLD_RECORD_LOCK = r"""
import fcntl, sys
with open(sys.argv[1], "r+b") as file:
    fcntl.lockf(file.fileno(), fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin
"""


def test_a_record_lock_held_by_another_process_refuses_the_lease_as_a_jvm_file_lock_would(tmp_path):
    store = FileTokenStore(tmp_path / "tokens")
    path = store.lock_path("u1")
    open(path, "ab").close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RECORD_LOCK, path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        assert asyncio.run(store.acquire("u1", "me", 60_000)) is False, "a POSIX record lock excludes the lease"
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert asyncio.run(store.acquire("u1", "me", 60_000)) is True, "once it is gone the lease is free"
    asyncio.run(store.release("u1", "me"))


def _fork_holding(run_in_child):
    """Forks a child that runs ``run_in_child()`` (its answer, one byte, is
    returned) and then lives on, holding its copies of every open file,
    until the returned ``finish()``."""
    to_child, from_child = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.write(from_child[1], run_in_child())
            os.read(to_child[0], 1)
        finally:
            os._exit(0)
    answer = os.read(from_child[0], 1)

    def finish():
        os.write(to_child[1], b"x")
        os.waitpid(pid, 0)
        for fd in (*to_child, *from_child):
            os.close(fd)
    return answer, finish


def _refused_or_read(store, key):
    """b"R" when ``store.load(key)`` raises, b"1" when it reads a record, b"0" when none."""
    try:
        return b"1" if asyncio.run(store.load(key)) is not None else b"0"
    except Exception:  # noqa: BLE001 - the refusal, whatever the wrapper raises
        return b"R"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_memory_store_whose_records_a_forked_child_inherited_refuses_it():
    # gunicorn --preload, a Celery prefork child: each copy of the records
    # would spend the same refresh token, and the second to send it ends
    # the grant.
    store = MemoryTokenStore()
    asyncio.run(store.save("u1", '{"schema":"freshtoken.record/1"}'))
    answer, finish = _fork_holding(lambda: _refused_or_read(store, "u1"))
    finish()
    assert answer == b"R", "inherited records are refused in the child"
    assert asyncio.run(store.load("u1")) is not None, "the parent keeps its records"
    # A store still empty at the fork becomes the child's own.
    empty = MemoryTokenStore()
    answer, finish = _fork_holding(lambda: (asyncio.run(empty.save("u2", "{}")), _refused_or_read(empty, "u2"))[1])
    finish()
    assert answer == b"1"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_neither_takes_nor_keeps_the_parents_lease(tmp_path):
    store = FileTokenStore(tmp_path / "tokens")
    assert asyncio.run(store.acquire("u1", "parent", 60_000)) is True
    taken, finish = _fork_holding(lambda: b"1" if asyncio.run(store.acquire("u1", "child", 60_000)) else b"0")
    try:
        assert taken == b"0", "the child is refused the lease the parent holds"
        asyncio.run(store.release("u1", "parent"))
        # The child still has its copy of the lease's file, and lives on.
        assert asyncio.run(store.acquire("u1", "next", 60_000)) is True, "the parent's release freed the lease"
        asyncio.run(store.release("u1", "next"))
    finally:
        finish()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_child_forked_during_a_write_does_not_keep_the_write_lock(tmp_path):
    import fcntl

    store = FileTokenStore(tmp_path / "tokens")
    with store._writing("u1"):
        _, finish = _fork_holding(lambda: b".")
    try:
        with open(store.lock_path("u1", "write"), "r+b") as other:
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if still held
    finally:
        finish()


def test_one_lease_per_file_however_the_directory_is_spelt(tmp_path):
    """Stores on one directory through a symlink share this process's lease
    table: another owner is refused, and the holder's release through either
    store gives the lease back (closing a second open file would drop the
    holder's record lock)."""
    (tmp_path / "tokens").mkdir()
    os.symlink(tmp_path / "tokens", tmp_path / "alias")
    plain, aliased = FileTokenStore(tmp_path / "tokens"), FileTokenStore(tmp_path / "alias")
    assert asyncio.run(plain.acquire("u1", "a", 60_000)) is True
    assert asyncio.run(aliased.acquire("u1", "b", 60_000)) is False
    assert asyncio.run(aliased.acquire("u1", "a", 60_000)) is True, "the holder renews through either name"
    asyncio.run(aliased.release("u1", "a"))
    assert asyncio.run(plain.acquire("u1", "b", 60_000)) is True
    asyncio.run(plain.release("u1", "b"))


# Another process's acquire of key u1's lease on the directory argv[1]: prints True or False.
OTHER_ACQUIRE = r"""
import asyncio, sys
import freshtoken
print(asyncio.run(freshtoken.FileTokenStore(sys.argv[1]).acquire("u1", "another-process", 60_000)))
"""


def acquired_in_another_process(directory):
    package = os.path.dirname(os.path.dirname(freshtoken.__file__))
    child = subprocess.run([sys.executable, "-c", OTHER_ACQUIRE, str(directory)], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=package), cwd=str(directory), timeout=60)
    assert child.returncode == 0, child.stderr[-400:]
    return child.stdout.strip()


def test_a_ttl_timer_that_fired_as_its_owner_renewed_the_lease_leaves_it_held(tmp_path, monkeypatch):
    """threading.Timer.cancel() cannot stop a callback that has started: the
    lease's TTL timer fires and waits for the lease table's lock while its
    owner renews the lease (True). Given back then, the lease would go to
    another process while this one, told it holds it for the new TTL,
    refreshes: two processes sending one single-use refresh token. The
    timer's wait is held open at the lock (no timing)."""
    from freshtoken import _stores

    directory = tmp_path / "tokens"
    store = FileTokenStore(directory)
    path = os.path.realpath(store.lock_path("u1"))
    fired, gate = threading.Event(), threading.Event()
    real_lock = _stores._leases_lock

    class GatedLock:
        """The lease table's lock, before which this lease's TTL timers wait for ``gate``."""

        def __enter__(self):
            me = threading.current_thread()
            if isinstance(me, threading.Timer) and me.args and me.args[0].path == path and not gate.is_set():
                fired.set()
                gate.wait()
            return real_lock.__enter__()

        def __exit__(self, *exc):
            return real_lock.__exit__(*exc)

    monkeypatch.setattr(_stores, "_leases_lock", GatedLock())
    try:
        assert asyncio.run(store.acquire("u1", "me", 0)) is True
        lease = _stores._leases[path]
        first_timer = lease.timer
        assert fired.wait(30), "its TTL timer fired at once, and waits for the lock"
        assert asyncio.run(store.acquire("u1", "me", 60_000)) is True, "the owner renews the lease meanwhile"
    finally:
        gate.set()
    first_timer.join(30)
    assert not first_timer.is_alive(), "the fired timer got the lock and is done"
    try:
        assert _stores._leases.get(path) is lease, "still held in this process"
        assert acquired_in_another_process(directory) == "False", "refused to another process: held for the new TTL"
    finally:
        asyncio.run(store.release("u1", "me"))
    assert acquired_in_another_process(directory) == "True", "given back by its release"


# A process that stalls holding a key's write lock (a writer hung mid-save)
# must not hang this one: the save ends at the store deadline with a
# StorageError, and once the lock is free the key is written again.
HOLD_BOTH_LOCKS = r"""
import fcntl, sys
with open(sys.argv[1], "r+b") as file:
    fcntl.flock(file.fileno(), fcntl.LOCK_EX)
    fcntl.lockf(file.fileno(), fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin
"""


def test_a_process_stalled_on_the_write_lock_ends_a_save_at_the_store_deadline(emu, tmp_path):
    store = FileTokenStore(tmp_path / "tokens")
    path = store.lock_path("u1", "write")
    open(path, "ab").close()
    # The other process holds the lock until the test lets it go, so the seed
    # fails at any deadline; 3 s lets the same client's later calls (a load,
    # a write, two fsyncs) finish on a busy disk.
    client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, store_timeout_ms=3_000)
    family = emu.seed()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_BOTH_LOCKS, path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(freshtoken.StorageError):
            client.session("u1", store).seed(refresh_token=family["refresh_token"])
        assert not os.path.exists(store.path("u1")), "nothing was written past the stalled writer"
    finally:
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()
    # The store is usable again. The abandoned save was a compare-and-swap,
    # which the core does not wait for (a late one cannot replace a newer
    # record): now that it has the lock it may land between the next seed's
    # read and its write, and that seed then reads a conflict, never an
    # overwrite. It lands once, so one more seed succeeds.
    again = client.session("u1", FileTokenStore(tmp_path / "tokens"))
    try:
        again.seed(refresh_token=family["refresh_token"])
    except freshtoken.ConflictError:
        again.seed(refresh_token=family["refresh_token"])
    assert json.loads(open(store.path("u1")).read())["refresh_token"] == family["refresh_token"]


def lock_kinds_on(path):
    """The kinds of the locks this process holds on ``path``: the ``lock:``
    lines of ``/proc/self/fdinfo`` of each file it has open there. Each is one
    snapshot of the file's locks; ``/proc/locks`` is read a page at a time, and
    a line can slip between two pages while other processes lock and unlock."""
    path = os.path.realpath(path)
    kinds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != path:
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                lines = info.read().splitlines()
        except OSError:  # closed meanwhile (the listing's own descriptor, too)
            continue
        kinds += [line.split()[2] for line in lines if line.startswith("lock:") and line.split()[2] != "->"]
    return sorted(kinds)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="reads Linux's lock table")
def test_on_a_local_linux_file_system_the_lease_is_a_flock_and_a_record_lock(tmp_path):
    store = FileTokenStore(tmp_path / "tokens")
    assert asyncio.run(store.acquire("u1", "me", 60_000)) is True
    try:
        assert lock_kinds_on(store.lock_path("u1")) == ["FLOCK", "POSIX"]
        assert os.listdir(tmp_path / "tokens") == [os.path.basename(store.lock_path("u1"))], \
            "the file system's probe left no file"
    finally:
        asyncio.run(store.release("u1", "me"))
    assert lock_kinds_on(store.lock_path("u1")) == []


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="reads Linux's lock table")
def test_where_flock_and_record_locks_are_one_mechanism_the_store_takes_a_flock_alone(tmp_path, monkeypatch):
    """macOS, the BSDs and NFS mounts (simulated: this file system keeps them
    apart): there a flock already excludes a JVM's FileLock, and a record
    lock taken beside it would conflict with the store's own flock."""
    from freshtoken import _stores
    directory = tmp_path / "tokens"
    store = FileTokenStore(directory)
    monkeypatch.setitem(_stores._separate, os.path.realpath(directory), False)
    assert asyncio.run(store.acquire("u1", "me", 60_000)) is True
    try:
        assert lock_kinds_on(store.lock_path("u1")) == ["FLOCK"]
        asyncio.run(store.save_versioned("u1", "{}", None))  # the write lock, a flock too
    finally:
        asyncio.run(store.release("u1", "me"))
    assert open(store.path("u1")).read() == "{}"
