"""FileTokenStore.recover(): a save killed between its temporary file's
fsync and its rename leaves the rotated record (the new single-use refresh
token) in that file only. Every save writes one fixed temporary file per
record file, ``.<name>.json.tmp``, holding the record's write lock (as the
Kotlin store's saves do), and first removes a file left under that name: one
that exists was written after the record's last successful save. recover()
holds each record's write lock, renames a whole one over its record file
(no time compared) and removes one cut off. The earlier form
``.<name>.json.<random UUID>.tmp`` is recovered by modification time, only
when no fixed one exists. The temporary files of the JavaScript FileStore
(and the ``freshtoken`` command) and of earlier versions of this store are
left alone. A process already running (which never runs recover() again)
finishes a killed save of a key when it loads that key: under the key's
write lock, so a live writer's temp is waited for, never taken."""

import asyncio
import errno
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import uuid

import pytest

import freshtoken
from freshtoken import FileTokenStore, HostError, RecoverResult
from freshtoken import _stores

from helpers import CLIENT_ID, CLIENT_SECRET, same

OLD = '{"schema":"freshtoken.record/1","refresh_token":"rt-old","in_doubt":true,"updated_at_ms":1}'
NEW = '{"schema":"freshtoken.record/1","refresh_token":"rt-new","updated_at_ms":2}'
SECOND = 1_000_000_000  # ns


def temp_name(store, key):
    """The temporary file every save of ``key`` writes, in this store and the
    Kotlin FileTokenStore: ``.<name>.json.tmp``."""
    return f".{os.path.basename(store.path(key))}.tmp"


def legacy_temp_name(store, key):
    """The earlier form (the Kotlin store's earlier versions): ``.<name>.json.<random UUID>.tmp``."""
    return f".{os.path.basename(store.path(key))}.{uuid.uuid4()}.tmp"


def put(store, name, text, mtime_ns):
    """Writes ``text`` to ``name`` in the store's directory (0600), modified at ``mtime_ns``."""
    path = os.path.join(store.directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def with_record(tmp_path, key="u1", text=OLD):
    """A store whose ``key`` has a record file; returns (store, that file's mtime in ns)."""
    store = FileTokenStore(tmp_path / "tokens")
    asyncio.run(store.save(key, text))
    return store, os.stat(store.path(key)).st_mtime_ns


def listing(store):
    return sorted(os.listdir(store.directory))


def on_disk(store, key="u1"):
    """The text of ``key``'s record file, read directly (a load would first
    finish a killed save of it)."""
    with open(store.path(key), encoding="utf-8") as file:
        return file.read()


def recover(store, form="async"):
    return asyncio.run(store.recover()) if form == "async" else store.recover_sync()


@pytest.mark.parametrize("form", ["async", "sync"])
def test_a_save_killed_between_fsync_and_rename_is_finished(tmp_path, form):
    """The record file holds the old record (write-ahead marker, spent
    refresh token); the temporary file holds the rotated one."""
    store, mtime = with_record(tmp_path)
    temp = put(store, temp_name(store, "u1"), NEW, mtime + SECOND)
    synced = []
    real_sync = store._sync_directory
    store._sync_directory = lambda: synced.append(os.path.exists(temp)) or real_sync()

    result = recover(store, form)

    assert result == RecoverResult(completed=1, removed=0)
    assert (result.completed, result.removed) == (1, 0)
    assert asyncio.run(store.load("u1")) == NEW, "load() answers the record the killed save was writing"
    assert not os.path.exists(temp)
    assert synced == [False], "the directory fsynced after the rename"
    assert not any(name.endswith(".tmp") for name in listing(store))
    assert recover(store, form) == RecoverResult(completed=0, removed=0), "nothing left to do"


def test_a_complete_temp_with_no_record_file_becomes_the_record(tmp_path):
    """The first save of a key (a code exchange) killed before its rename."""
    store = FileTokenStore(tmp_path / "tokens")
    put(store, temp_name(store, "u1"), NEW, 10 * SECOND)
    assert store.recover_sync() == RecoverResult(completed=1, removed=0)
    assert asyncio.run(store.load("u1")) == NEW


@pytest.mark.parametrize("record_mtime", ["same", "earlier"])
def test_a_later_save_supersedes_a_killed_saves_temp_whatever_the_times(tmp_path, record_mtime):
    """The review's case: a save killed before its rename (its temp: the
    write-ahead marker with the spent refresh token), then a later save that
    succeeded (the rotated token). With 1-2 s timestamps the two get one
    modification time; after the clock stepped back the record is "older".
    Either way the later save replaced the temp: recover() has nothing to do,
    and the spent token never comes back."""
    spent = '{"schema":"freshtoken.record/1","refresh_token":"rt-0","updated_at_ms":1}'
    rotated = '{"schema":"freshtoken.record/1","refresh_token":"rt-b","updated_at_ms":3}'
    store, mtime = with_record(tmp_path, text=spent)
    temp = put(store, temp_name(store, "u1"), spent.replace('"updated', '"in_doubt":true,"updated'), mtime)

    asyncio.run(store.save("u1", rotated))
    later = mtime if record_mtime == "same" else mtime - 10 * SECOND
    os.utime(store.path("u1"), ns=(later, later))

    assert not os.path.exists(temp), "the later save removed the killed save's temp"
    assert store.recover_sync() == RecoverResult(completed=0, removed=0)
    assert asyncio.run(store.load("u1")) == rotated


def test_a_killed_saves_temp_older_than_the_record_is_still_finished(tmp_path):
    """No time is compared: the record file's modification time can be later
    (the clock stepped back since, or a tool touched it), yet the temp,
    written after the record's last successful save, holds the newer record."""
    store, mtime = with_record(tmp_path)
    temp = put(store, temp_name(store, "u1"), NEW, mtime - 100 * SECOND)

    assert store.recover_sync() == RecoverResult(completed=1, removed=0)
    assert asyncio.run(store.load("u1")) == NEW
    assert not os.path.exists(temp)


@pytest.mark.parametrize("text", ["", '{"schema":"freshtoken.record/1","refresh_token":"rt-n', "[1, 2]", '"text"',
                                  "null", "not json at all", "[" * 100_000],
                         ids=["empty", "cut-off", "array", "string", "null", "not-json", "too-deep"])
def test_an_incomplete_or_garbage_temp_is_removed_and_the_record_kept(tmp_path, text):
    """Only a whole record (a JSON object) is renamed into place."""
    store, mtime = with_record(tmp_path)
    temp = put(store, temp_name(store, "u1"), text, mtime + SECOND)

    assert store.recover_sync() == RecoverResult(completed=0, removed=1)
    assert asyncio.run(store.load("u1")) == OLD
    assert not os.path.exists(temp)


def test_a_whole_record_with_a_damaged_byte_counts_as_written(tmp_path):
    """Read leniently, as the JavaScript store does: renamed into place (its
    load then refuses it) rather than deleted as if cut off."""
    store, mtime = with_record(tmp_path)
    path = put(store, temp_name(store, "u1"), "", mtime)
    with open(path, "wb") as file:
        file.write(b'{"refresh_token":"rt-\xff"}')
    assert store.recover_sync() == RecoverResult(completed=1, removed=0)
    with pytest.raises(HostError.Failed):
        asyncio.run(store.load("u1"))


def test_each_record_file_is_recovered_on_its_own(tmp_path):
    store, _ = with_record(tmp_path, "a")
    asyncio.run(store.save("b", OLD))
    long_key = "k" * 100  # a hashed name: h.<sha256>.json, its lock h.<sha256>.write.lock
    asyncio.run(store.save(long_key, OLD))
    later = os.stat(store.path(long_key)).st_mtime_ns + SECOND
    put(store, temp_name(store, "a"), NEW, later)
    put(store, temp_name(store, "b"), '{"refresh_token":"rt-b-cut', later)
    put(store, temp_name(store, long_key), NEW, later - 100 * SECOND)

    assert asyncio.run(store.recover()) == RecoverResult(completed=2, removed=1)
    assert asyncio.run(store.load("a")) == NEW
    assert asyncio.run(store.load("b")) == OLD
    assert asyncio.run(store.load(long_key)) == NEW


def test_a_missing_directory_recovers_nothing(tmp_path):
    store = FileTokenStore(tmp_path / "tokens")
    os.rmdir(store.directory)
    assert store.recover_sync() == RecoverResult(completed=0, removed=0)
    assert asyncio.run(store.recover()) == RecoverResult(completed=0, removed=0)
    assert not os.path.exists(store.directory), "recover() creates nothing"


def test_a_failure_is_a_host_error_without_paths(tmp_path):
    store = FileTokenStore(tmp_path / "secret-user-tokens")
    os.rmdir(store.directory)
    open(store.directory, "w").close()  # not a directory: it cannot be listed
    with pytest.raises(HostError.Failed) as raised:
        store.recover_sync()
    assert raised.value.detail == "cannot list the record directory (ENOTDIR)"
    assert "secret-user" not in str(raised.value)


def test_a_failure_is_raised_after_every_other_record_was_recovered_and_names_no_file(tmp_path):
    store, mtime = with_record(tmp_path, key="secret-user")
    asyncio.run(store.save("zz-other", OLD))  # listed after it
    put(store, temp_name(store, "secret-user"), NEW, mtime + SECOND)
    put(store, temp_name(store, "zz-other"), NEW, os.stat(store.path("zz-other")).st_mtime_ns + SECOND)
    os.unlink(store.lock_path("secret-user", "write"))
    os.mkdir(store.lock_path("secret-user", "write"))  # its lock file cannot be opened
    with pytest.raises(HostError.Failed) as raised:
        store.recover_sync()
    assert raised.value.detail == "cannot finish an interrupted save (EISDIR)"
    name = os.path.basename(store.path("secret-user"))
    for secret in (store.directory, name, name[2:-5], "rt-new", "rt-old"):
        assert secret not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert asyncio.run(store.load("zz-other")) == NEW, "the other record was recovered all the same"
    assert on_disk(store, "secret-user") == OLD, "nothing done without the lock"
    with pytest.raises(HostError.Failed) as raised:
        asyncio.run(store.load("secret-user"))
    assert raised.value.detail == "cannot finish an interrupted save (EISDIR)", "nor is the marker read"


def test_recover_fsyncs_a_killed_saves_temp_before_renaming_it(tmp_path, monkeypatch):
    """A save killed between its write and its fsync leaves a whole record in
    the page cache only: renamed over the record file as it is, a power loss
    could leave that file empty. recover() fsyncs the temp first, then
    renames it, then fsyncs the directory. (The fsyncs are watched, not
    faked: what reached the disk cannot be seen from here.)"""
    store, mtime = with_record(tmp_path)
    temp = put(store, temp_name(store, "u1"), NEW, mtime + SECOND)
    temp_inode, directory_inode = os.stat(temp).st_ino, os.stat(store.directory).st_ino
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(source, target):
        events.append(("rename", os.path.basename(source)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert store.recover_sync() == RecoverResult(completed=1, removed=0)
    monkeypatch.undo()
    assert events == [("fsync", temp_inode), ("rename", temp_name(store, "u1")), ("fsync", directory_inode)]
    assert asyncio.run(store.load("u1")) == NEW


def test_a_killed_saves_temp_that_cannot_be_fsynced_is_left_for_a_later_recover(tmp_path, monkeypatch):
    """Its fsync failing (injected: a failing disk cannot be made real), the
    temp is neither renamed nor removed, and the failure is raised."""
    store, mtime = with_record(tmp_path)
    temp = put(store, temp_name(store, "u1"), NEW, mtime + SECOND)
    real_fsync = os.fsync

    def fsync(fd):
        if os.fstat(fd).st_ino == os.stat(temp).st_ino:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(HostError.Failed) as raised:
        store.recover_sync()
    assert raised.value.detail == "cannot finish an interrupted save (EIO)"
    with pytest.raises(HostError.Failed) as raised:
        asyncio.run(store.load("u1"))
    assert raised.value.detail == "cannot finish an interrupted save (EIO)", "a load fails: the marker is not read"
    monkeypatch.undo()
    assert on_disk(store) == OLD
    assert os.path.exists(temp), "left for a later recover()"
    assert store.recover_sync() == RecoverResult(completed=1, removed=0)
    assert asyncio.run(store.load("u1")) == NEW


# ---- The temporary file's name -----------------------------------------------------------

def test_save_writes_the_fixed_temp_named_after_its_record_file_0600(tmp_path, monkeypatch):
    store = FileTokenStore(tmp_path / "tokens")
    seen = []
    real_replace = os.replace

    def replace(source, target):
        seen.append((os.path.basename(source), os.path.basename(target), os.stat(source).st_mode & 0o777,
                     open(source, encoding="utf-8").read()))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    asyncio.run(store.save("u1", OLD))
    asyncio.run(store.save("u1", NEW))
    asyncio.run(store.save_versioned("k" * 100, NEW, None))
    monkeypatch.undo()

    record = os.path.basename(store.path("u1"))
    hashed = os.path.basename(store.path("k" * 100))
    assert seen == [(f".{record}.tmp", record, 0o600, OLD), (f".{record}.tmp", record, 0o600, NEW),
                    (f".{hashed}.tmp", hashed, 0o600, NEW)]
    assert not any(name.endswith(".tmp") for name in listing(store))


def test_a_link_planted_at_the_temp_name_is_removed_never_written_through(tmp_path):
    """The save removes the link itself (not its target), then creates its own file."""
    store = FileTokenStore(tmp_path / "tokens")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    link = os.path.join(store.directory, temp_name(store, "u1"))
    os.symlink(elsewhere, link)

    asyncio.run(store.save("u1", NEW))

    assert elsewhere.read_text() == "untouched"
    assert not os.path.lexists(link)
    assert asyncio.run(store.load("u1")) == NEW
    assert not os.path.islink(store.path("u1"))


def test_a_file_appearing_at_the_temp_name_after_its_removal_is_never_opened(tmp_path, monkeypatch):
    """O_EXCL (and O_NOFOLLOW): a link put there between the removal and the
    open (by no save: saves hold the write lock) fails the save, untouched."""
    store = FileTokenStore(tmp_path / "tokens")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    link = os.path.join(store.directory, temp_name(store, "u1"))
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        try:
            real_unlink(path, *args, **kwargs)
        finally:
            if os.fspath(path) == link:
                os.symlink(elsewhere, link)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(FileExistsError):
        asyncio.run(store.save("u1", NEW))
    monkeypatch.undo()
    assert elsewhere.read_text() == "untouched"
    assert not os.path.exists(store.path("u1"))


def test_a_temp_a_save_of_this_store_was_writing_is_recovered(tmp_path, monkeypatch):
    """The name save() writes is the one recover() finishes: a save killed at its rename."""
    store, _ = with_record(tmp_path)

    class Killed(BaseException):
        pass

    def killed(source, target):
        os.link(source, source + ".kept")  # what the kill would leave: the fsynced temp
        raise Killed()

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(Killed):
        store._save_locked("u1", NEW)
    monkeypatch.undo()
    [kept] = [name for name in listing(store) if name.endswith(".kept")]
    assert kept == temp_name(store, "u1") + ".kept"
    os.rename(os.path.join(store.directory, kept), os.path.join(store.directory, kept[: -len(".kept")]))

    assert store.recover_sync() == RecoverResult(completed=1, removed=0)
    assert asyncio.run(store.load("u1")) == NEW


# ---- The earlier form: .<name>.json.<random UUID>.tmp ------------------------------------

def test_an_earlier_form_temp_newer_than_the_record_is_recovered(tmp_path):
    """Written by the Kotlin store's earlier versions before an upgrade."""
    store, mtime = with_record(tmp_path)
    temp = put(store, legacy_temp_name(store, "u1"), NEW, mtime + SECOND)
    assert store.recover_sync() == RecoverResult(completed=1, removed=0)
    assert asyncio.run(store.load("u1")) == NEW
    assert not os.path.exists(temp)


def test_an_earlier_form_temp_older_than_the_record_is_removed_not_renamed(tmp_path):
    store, mtime = with_record(tmp_path, text=NEW)
    temp = put(store, legacy_temp_name(store, "u1"), OLD, mtime - SECOND)

    assert store.recover_sync() == RecoverResult(completed=0, removed=1)
    assert asyncio.run(store.load("u1")) == NEW, "the record file is kept"
    assert not os.path.exists(temp)


def test_of_several_earlier_form_temps_the_newest_whole_one_at_least_as_new_as_the_record_wins(tmp_path):
    store, mtime = with_record(tmp_path)
    put(store, legacy_temp_name(store, "u1"), '{"refresh_token":"rt-cut', mtime + 3 * SECOND)  # newest, cut off
    put(store, legacy_temp_name(store, "u1"), NEW, mtime + 2 * SECOND)                       # newest whole one
    put(store, legacy_temp_name(store, "u1"), '{"refresh_token":"rt-older"}', mtime + SECOND)
    put(store, legacy_temp_name(store, "u1"), '{"refresh_token":"rt-stale"}', mtime - SECOND)  # older than the record
    put(store, legacy_temp_name(store, "u1"), '{"refresh_token":"rt-same-time"}', mtime)       # as new: a candidate

    assert store.recover_sync() == RecoverResult(completed=1, removed=4)
    assert asyncio.run(store.load("u1")) == NEW
    assert listing(store) == sorted([os.path.basename(store.path("u1")),
                                     os.path.basename(store.lock_path("u1", "write"))])


@pytest.mark.parametrize("fixed", ["whole", "cut-off"])
def test_earlier_form_temps_are_not_recovered_when_a_fixed_temp_exists(tmp_path, fixed):
    """The fixed temp was written after the record's last successful save,
    so after any earlier-form one (written before the upgrade), whatever the
    modification times: only it may be finished; the earlier ones are removed."""
    store, mtime = with_record(tmp_path)
    text = NEW if fixed == "whole" else '{"refresh_token":"rt-cut'
    put(store, temp_name(store, "u1"), text, mtime - SECOND)
    put(store, legacy_temp_name(store, "u1"), '{"refresh_token":"rt-legacy"}', mtime + 5 * SECOND)
    put(store, legacy_temp_name(store, "u1"), '{"refresh_token":"rt-legacy-2"}', mtime + 4 * SECOND)

    if fixed == "whole":
        assert store.recover_sync() == RecoverResult(completed=1, removed=2)
        assert asyncio.run(store.load("u1")) == NEW
    else:
        assert store.recover_sync() == RecoverResult(completed=0, removed=3)
        assert asyncio.run(store.load("u1")) == OLD
    assert listing(store) == sorted([os.path.basename(store.path("u1")),
                                     os.path.basename(store.lock_path("u1", "write"))])
    assert store.recover_sync() == RecoverResult(completed=0, removed=0)


# ---- What is left alone ------------------------------------------------------------------

def test_temps_of_the_javascript_store_and_of_earlier_versions_are_left_alone(tmp_path):
    store, mtime = with_record(tmp_path)
    record = os.path.basename(store.path("u1"))
    others = [
        f"{record}.4242.{'ab12' * 3}.tmp",           # the JavaScript FileStore's and the command's
        f"{record}.tmp",                               # not hidden: no save's
        ".tmp-k2j4x9q1.json",                          # this store's before: names no record file
        ".lock-probe-abc123.tmp",                      # a lock probe
        f".{record}.NOT-RANDOM.tmp",                   # not a random part either store writes
        f".{record}.{secrets.token_hex(16)}.tmp",      # nor is this
        f".{record[:-5]}.txt.{uuid.uuid4()}.tmp",      # not a record file's name
        f".{record[:-5]}.txt.tmp",                     # nor is this
        f".k.dTE.json.{uuid.uuid4()}.tmp",             # an earlier name: never a temp's target
        ".k.dTE.json.tmp",                             # nor is this
    ]
    for name in others:
        put(store, name, NEW, mtime + SECOND)
    os.mkdir(os.path.join(store.directory, temp_name(store, "u1")))  # a directory: not a save's file
    os.mkdir(os.path.join(store.directory, legacy_temp_name(store, "u1")))
    before = listing(store)

    assert store.recover_sync() == RecoverResult(completed=0, removed=0)
    assert asyncio.run(store.load("u1")) == OLD
    assert listing(store) == before


# ---- recover() waits for the record's write lock -----------------------------------------

# Another process holding the write lock as a save would: the Python store's
# (flock and a POSIX record lock) or a JVM's FileLock (the Kotlin store's: a
# POSIX record lock alone). It says "held", then holds it until stdin closes.
HOLD_WRITE_LOCK = r"""
import fcntl, sys
with open(sys.argv[1], "r+b") as file:
    if sys.argv[2] == "python":
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
    fcntl.lockf(file.fileno(), fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.read()
"""

needs_flock = pytest.mark.skipif(_stores.fcntl is None, reason="no flock on this OS")


def recover_in_thread(store, waiting):
    """Runs recover_sync() in a thread; sets ``waiting`` when it has finished, too
    (so a recover that never waits is seen at once). Returns (thread, result list)."""
    result = []

    def run():
        try:
            result.append(store.recover_sync())
        finally:
            waiting.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def held(lock):
    """Enters the context manager ``lock``; returns a function that leaves it (once)."""
    lock.__enter__()
    left = []

    def leave():
        if not left:
            left.append(True)
            lock.__exit__(None, None, None)
    return leave


def signal_on_write_lock(monkeypatch, waiting):
    """Sets ``waiting`` when a thread other than this one asks for a write lock."""
    me = threading.current_thread()
    original = _stores._lock_exclusive

    def spying(file, path, blocking):
        if path.endswith(".write.lock") and threading.current_thread() is not me:
            waiting.set()
        return original(file, path, blocking)

    monkeypatch.setattr(_stores, "_lock_exclusive", spying)


def assert_waits_then_finishes(store, temp, hold_released, waiting, thread, result):
    assert waiting.wait(30)
    assert thread.is_alive(), "recover() waits while a save may be writing"
    assert os.path.exists(temp), "nothing renamed while the lock is held"
    assert on_disk(store) == OLD
    hold_released()
    thread.join(30)
    assert not thread.is_alive()
    assert result == [RecoverResult(completed=1, removed=0)]
    assert asyncio.run(store.load("u1")) == NEW


@needs_flock
@pytest.mark.parametrize("holder", ["python", "kotlin"])
def test_recover_waits_for_a_write_lock_another_process_holds(tmp_path, monkeypatch, holder):
    store, mtime = with_record(tmp_path)
    temp = put(store, temp_name(store, "u1"), NEW, mtime + SECOND)
    process = subprocess.Popen([sys.executable, "-c", HOLD_WRITE_LOCK, store.lock_path("u1", "write"), holder],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout.readline().strip() == b"held"
        waiting = threading.Event()
        signal_on_write_lock(monkeypatch, waiting)
        thread, result = recover_in_thread(store, waiting)

        def release():
            process.stdin.close()
            assert process.wait(30) == 0

        assert_waits_then_finishes(store, temp, release, waiting, thread, result)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


@needs_flock
def test_recover_waits_for_a_save_in_another_thread_of_this_process(tmp_path, monkeypatch):
    store, mtime = with_record(tmp_path)
    temp = put(store, temp_name(store, "u1"), NEW, mtime + SECOND)
    waiting = threading.Event()
    release = held(store._writing("u1"))  # what a save of this process holds while its temp exists
    try:
        signal_on_write_lock(monkeypatch, waiting)
        thread, result = recover_in_thread(store, waiting)
        assert_waits_then_finishes(store, temp, release, waiting, thread, result)
    finally:
        release()


def test_without_flock_recover_waits_for_this_processs_save_of_the_record(tmp_path, monkeypatch):
    """Windows (no flock, one process): saves and recover() share a lock of this process per record."""
    monkeypatch.setattr(_stores, "fcntl", None)
    store, mtime = with_record(tmp_path)
    assert store.supports_lease() is False
    temp = put(store, temp_name(store, "u1"), NEW, mtime + SECOND)
    waiting = threading.Event()
    me = threading.current_thread()
    original = _stores._in_process_write_lock

    class Signalling:
        def __init__(self, lock):
            self.lock = lock

        def __enter__(self):
            if threading.current_thread() is not me:
                waiting.set()
            return self.lock.__enter__()

        def __exit__(self, *exc):
            return self.lock.__exit__(*exc)

    monkeypatch.setattr(_stores, "_in_process_write_lock", lambda path: Signalling(original(path)))
    release = held(store._writing("u1"))
    try:
        thread, result = recover_in_thread(store, waiting)
        assert_waits_then_finishes(store, temp, release, waiting, thread, result)
    finally:
        release()
    # Another record's save is not the same lock's concern: both still work.
    asyncio.run(store.save("u2", NEW))
    assert asyncio.run(store.load("u2")) == NEW


# ---- End to end: a process killed before its rename, the emulator, a new process -------

# A process on the store whose save of the rotated record (not the write-ahead
# marker) dies by SIGKILL after the fsync, at the rename.
KILLED_AT_RENAME = r"""
import json, os, signal, sys
import freshtoken

endpoint, client_id, secret, directory = sys.argv[1:5]
real_replace = os.replace

def replace(source, target):
    with open(source, encoding="utf-8") as file:
        if not json.load(file).get("in_doubt"):
            os.kill(os.getpid(), signal.SIGKILL)
    real_replace(source, target)

os.replace = replace
client = freshtoken.Client(endpoint, client_id, client_secret=secret)
client.session("u1", freshtoken.FileTokenStore(directory)).access_token(timeout=60)
print("not killed", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kills a process")
def test_a_process_killed_before_renaming_the_rotated_record_loses_nothing_after_recover(emu, tmp_path):
    directory = tmp_path / "tokens"
    store = FileTokenStore(directory)
    family = emu.seed()
    freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET).session("u1", store).seed(
        refresh_token=family["refresh_token"])

    package = os.path.dirname(os.path.dirname(freshtoken.__file__))
    child = subprocess.run(
        [sys.executable, "-c", KILLED_AT_RENAME, emu.token_endpoint, CLIENT_ID, CLIENT_SECRET, str(directory)],
        env=dict(os.environ, PYTHONPATH=package), cwd=str(tmp_path), capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stdout
    assert emu.refresh_requests() == 1 and emu.counters()["rotations"] == 1

    # What the killed process left: the record file with the write-ahead
    # marker and the spent refresh token; the rotated record in a temp file.
    on_disk = json.loads(open(store.path("u1"), encoding="utf-8").read())
    assert on_disk["in_doubt"] is True
    same(on_disk["refresh_token"], family["refresh_token"], "the record file still holds the spent token")
    assert emu.refresh_token_state(family["refresh_token"]) == "consumed"
    [temp] = [name for name in os.listdir(directory) if name.endswith(".tmp")]
    assert temp == temp_name(store, "u1")
    rotated = json.loads(open(os.path.join(directory, temp), encoding="utf-8").read())
    assert emu.refresh_token_state(rotated["refresh_token"]) == "active", "the temp holds the live token"

    # The next start: recover, then a new process (client) on the directory.
    assert FileTokenStore(directory).recover_sync() == RecoverResult(completed=1, removed=0)
    restarted = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
    session = restarted.session("u1", FileTokenStore(directory))
    same(session.access_token(timeout=60), rotated["access_token"], "the finished save's token, no request")
    assert emu.refresh_requests() == 1
    session.refresh(timeout=60)  # sends the rotated refresh token

    counters = emu.counters()
    assert counters["by_grant"]["refresh_token"] == 2 and counters["refresh_success"] == 2
    assert counters["reuse_detected"] == 0 and counters["invalid_grant"] == 0, "the spent token was never sent again"
    assert emu.refresh_token_state(rotated["refresh_token"]) == "consumed"
    assert emu.refresh_token_state(family["refresh_token"]) == "consumed", "not revoked: no reuse"
    latest = json.loads(open(store.path("u1"), encoding="utf-8").read())
    assert emu.refresh_token_state(latest["refresh_token"]) == "active"
    assert not any(name.endswith(".tmp") for name in os.listdir(directory))


# ---- A load finishes a dead writer's save of its key ---------------------------------------
#
# A process already running (a fleet's worker, started before another
# worker was killed at its rename) never runs recover() again. Its loads of a
# key look for that key's temporary file and, under the key's write lock,
# do what recover() does for it: the marker (the spent refresh token) in the
# record file is never read while the rotated record waits in the temp.

def killed_save_on_disk(tmp_path, record=OLD, temp=NEW, key="u1"):
    """What a save killed between its fsync and its rename leaves, written with
    plain file writes (no lock): the record file holds ``record`` (the
    write-ahead marker), ``.<name>.json.tmp`` holds ``temp``. Returns a new
    store on the directory (one that never ran recover()) and the temp's path."""
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o700)
    name = _stores.file_name(key)
    (directory / name).write_text(record, encoding="utf-8")
    (directory / f".{name}.tmp").write_text(temp, encoding="utf-8")
    return FileTokenStore(directory), str(directory / f".{name}.tmp")


@pytest.mark.parametrize("member", ["load", "load_versioned"])
def test_a_load_finishes_a_killed_save_of_its_key_without_recover(tmp_path, member):
    store, temp = killed_save_on_disk(tmp_path)

    if member == "load":
        assert asyncio.run(store.load("u1")) == NEW, "the rotated record, not the marker"
    else:
        found = asyncio.run(store.load_versioned("u1"))
        assert (found.record, found.version) == (NEW, hashlib.sha256(NEW.encode()).hexdigest())
    assert not os.path.exists(temp)
    assert on_disk(store) == NEW
    assert store.recover_sync() == RecoverResult(completed=0, removed=0), "nothing left for recover()"


def test_a_load_fsyncs_the_killed_saves_temp_renames_it_then_fsyncs_the_directory(tmp_path, monkeypatch):
    """As recover() does (see test_recover_fsyncs_a_killed_saves_temp_before_renaming_it)."""
    store, temp = killed_save_on_disk(tmp_path)
    temp_inode, directory_inode = os.stat(temp).st_ino, os.stat(store.directory).st_ino
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.fstat(fd).st_ino)) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda s, t: events.append(("rename", os.path.basename(s))) or real_replace(s, t))

    assert asyncio.run(store.load("u1")) == NEW
    monkeypatch.undo()
    assert events == [("fsync", temp_inode), ("rename", temp_name(store, "u1")), ("fsync", directory_inode)]


@pytest.mark.parametrize("text", ["", '{"schema":"freshtoken.record/1","refresh_token":"rt-n', "not json"],
                         ids=["empty", "cut-off", "not-json"])
def test_a_load_removes_a_cut_off_temp_and_reads_the_record_file(tmp_path, text):
    store, temp = killed_save_on_disk(tmp_path, temp=text)
    assert asyncio.run(store.load("u1")) == OLD
    assert not os.path.exists(temp)
    assert on_disk(store) == OLD


def test_a_compare_and_swap_finishes_a_killed_save_first_and_conflicts(tmp_path):
    """save_versioned reads under the write lock it holds (and does not take
    it again): a dead writer's newer record is finished, so a write based on
    the marker is a conflict, never an overwrite that removes the temp as
    superseded."""
    store, temp = killed_save_on_disk(tmp_path)
    based_on_marker = hashlib.sha256(OLD.encode()).hexdigest()
    other = '{"schema":"freshtoken.record/1","refresh_token":"rt-other","updated_at_ms":3}'

    assert asyncio.run(store.save_versioned("u1", other, based_on_marker)) == freshtoken.CasResult.CONFLICT()
    assert on_disk(store) == NEW
    assert not os.path.exists(temp)
    assert asyncio.run(store.save_versioned("u1", other, hashlib.sha256(NEW.encode()).hexdigest())) == \
        freshtoken.CasResult.SAVED(version=hashlib.sha256(other.encode()).hexdigest())


def test_a_load_with_no_temp_costs_one_lstat_no_lock_no_listing(tmp_path, monkeypatch):
    store, temp = killed_save_on_disk(tmp_path)
    os.unlink(temp)
    _stores._legacy_names(store.directory)  # listed once per process (the directory's old names): not a load's cost
    calls = []
    real_lstat, real_listdir = os.lstat, os.listdir

    def lstat(path, *args, **kwargs):
        if os.path.dirname(os.fspath(path)) == store.directory:  # the store's, not the interpreter's
            calls.append(("lstat", os.path.basename(path)))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    monkeypatch.setattr(os, "listdir", lambda *a: calls.append(("listdir",)) or real_listdir(*a))
    monkeypatch.setattr(_stores, "_write_locked", lambda path: calls.append(("lock",)) or pytest.fail("locked"))

    assert asyncio.run(store.load("u1")) == OLD
    assert asyncio.run(store.load_versioned("u1")).record == OLD
    assert calls == [("lstat", temp_name(store, "u1"))] * 2


# A live writer in another process: this store's own save, paused before its
# rename (its temp written and fsynced, the write lock held) until a line
# comes on stdin. It says "writing", then "saved" when its save returned.
LIVE_SAVE = r"""
import asyncio, os, sys
import freshtoken

directory, record = sys.argv[1:3]
real_replace = os.replace

def replace(source, target):
    print("writing", flush=True)
    sys.stdin.readline()
    real_replace(source, target)

os.replace = replace
asyncio.run(freshtoken.FileTokenStore(directory).save("u1", record))
print("saved", flush=True)
"""


def wait_until_blocked_on(path, thread):
    """Where Linux's lock table can be read: until it shows this process
    waiting for a lock on ``path`` (polled, never a set time); fails if
    ``thread`` ends first."""
    if not os.path.exists("/proc/locks"):
        return
    inode, me = os.stat(path).st_ino, str(os.getpid())
    for _ in range(10_000_000):
        for line in open("/proc/locks", encoding="ascii").read().splitlines():
            fields = line.split()
            # "<n>: -> FLOCK ADVISORY WRITE <pid> <maj:min:inode> ..." for a waiter
            if fields[1:2] == ["->"] and fields[5] == me and fields[6].rsplit(":", 1)[-1] == str(inode):
                return
        assert thread.is_alive(), "the load ended instead of waiting for the write lock"
        os.sched_yield()
    pytest.fail("the load never waited for the write lock")


@needs_flock
def test_a_load_waits_for_a_live_writer_and_reads_its_save(tmp_path, monkeypatch):
    """The writer's temp exists while it holds the write lock: the load waits
    for it, and neither renames nor removes the temp under it (its rename
    then succeeds)."""
    store, mtime = with_record(tmp_path)
    package = os.path.dirname(os.path.dirname(freshtoken.__file__))
    writer = subprocess.Popen([sys.executable, "-c", LIVE_SAVE, store.directory, NEW],
                              env=dict(os.environ, PYTHONPATH=package), cwd=str(tmp_path),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline().strip() == b"writing"
        temp = os.path.join(store.directory, temp_name(store, "u1"))
        assert os.path.exists(temp)
        waiting = threading.Event()
        signal_on_write_lock(monkeypatch, waiting)
        result = []

        def load():
            try:
                result.append(asyncio.run(store.load("u1")))
            finally:
                waiting.set()

        thread = threading.Thread(target=load)
        thread.start()
        assert waiting.wait(30)
        assert thread.is_alive(), "the load waits while the writer holds the lock"
        wait_until_blocked_on(store.lock_path("u1", "write"), thread)
        assert os.path.exists(temp) and on_disk(store) == OLD, "nothing renamed under the writer"

        writer.stdin.write(b"go\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == b"saved", "the writer's rename found its temp"
        assert writer.wait(30) == 0
        thread.join(30)
        assert not thread.is_alive()
        assert result == [NEW]
        assert not os.path.exists(temp)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdin.close()
        writer.stdout.close()


# Another process: seeds u1 with the refresh token R0 on a FileTokenStore,
# refreshes once (R0 spent, R1 saved), and prints what it saved: the
# write-ahead marker and the rotated record, as JSON.
ROTATE_ONCE = r"""
import json, sys
import freshtoken

endpoint, client_id, secret, directory, r0 = sys.argv[1:6]
saved = []

class Watched(freshtoken.FileTokenStore):
    async def save_versioned(self, key, record, expected):
        saved.append(record)
        return await super().save_versioned(key, record, expected)

session = freshtoken.Client(endpoint, client_id, client_secret=secret).session("u1", Watched(directory))
session.seed(refresh_token=r0)
session.refresh(timeout=60)
[marker] = [text for text in saved if json.loads(text).get("in_doubt")]
print(json.dumps({"marker": marker, "rotated": saved[-1]}), flush=True)
"""


def test_a_running_process_never_sends_the_spent_token_a_killed_sibling_left_in_the_record_file(emu, tmp_path):
    """End to end: another process rotates u1 once (R0 spent, R1 active).
    The directory is then set, by hand, as that process killed at the rename
    of the rotation's save leaves it: the record file holds the write-ahead
    marker (R0, in doubt), the temp the rotated record (R1). This process,
    already running (it never runs recover()), uses the session: R1's access
    token, nothing sent. Reading the marker it would send R0, and the
    emulator, as Stitch does, would revoke the grant."""
    directory = tmp_path / "tokens"
    r0 = emu.seed()["refresh_token"]
    package = os.path.dirname(os.path.dirname(freshtoken.__file__))
    other = subprocess.run(
        [sys.executable, "-c", ROTATE_ONCE, emu.token_endpoint, CLIENT_ID, CLIENT_SECRET, str(directory), r0],
        env=dict(os.environ, PYTHONPATH=package), cwd=str(tmp_path), capture_output=True, timeout=60)
    assert other.returncode == 0, other.stderr[-2000:]
    saved = json.loads(other.stdout.splitlines()[-1])
    marker, rotated = json.loads(saved["marker"]), json.loads(saved["rotated"])
    same(marker["refresh_token"], r0, "the write-ahead marker holds R0")
    r1 = rotated["refresh_token"]
    assert emu.refresh_requests() == 1
    assert emu.refresh_token_state(r0) == "consumed" and emu.refresh_token_state(r1) == "active"

    # The killed save's state, by hand: the marker in the record file, R1 in the temp.
    store = FileTokenStore(directory)
    with open(store.path("u1"), "w", encoding="utf-8") as file:
        file.write(saved["marker"])
    with open(os.path.join(store.directory, temp_name(store, "u1")), "w", encoding="utf-8") as file:
        file.write(saved["rotated"])

    running = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
    session = running.session("u1", FileTokenStore(directory))
    same(session.access_token(timeout=60), rotated["access_token"], "R1's access token, from the temp")
    assert emu.refresh_requests() == 1, "nothing sent"
    assert emu.refresh_token_state(r1) == "active"
    same(json.loads(on_disk(store))["refresh_token"], r1, "the record file holds R1")
    assert not any(name.endswith(".tmp") for name in os.listdir(directory))

    session.refresh(timeout=60)  # sends R1
    counters = emu.counters()
    assert counters["refresh_success"] == 2 and counters["reuse_detected"] == 0 and counters["invalid_grant"] == 0
    assert emu.refresh_token_state(r1) == "consumed"
    assert emu.refresh_token_state(r0) == "consumed", "not revoked: R0 never sent again"
    assert emu.refresh_token_state(json.loads(on_disk(store))["refresh_token"]) == "active"
