"""Token stores: a base class for your own, an in-memory one, a file one.

freshtoken saves each session's record (an opaque string holding the
refresh token) through a :class:`TokenStore` and waits for ``save`` to
finish before it hands out a renewed token. Records are secrets: keep them
where only your application can read them, and never log them.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import errno
import hashlib
import os
import re
import stat
import threading
import tempfile
from dataclasses import dataclass
from typing import ContextManager, Dict, Iterator, List, Optional

try:
    import fcntl
except ImportError:  # no flock (Windows): FileTokenStore serves one process there
    fcntl = None

from ._ffi.freshtoken import CasResult, HostError, TokenStore, VersionedRecord, is_whole_record_file

__all__ = ["TokenStoreBase", "MemoryTokenStore", "FileTokenStore", "RecoverResult"]


class TokenStoreBase(TokenStore):
    """Write ``load`` and ``save`` (plain or ``async``); the rest has defaults.

    The defaults serve one process: no lease and no compare-and-swap
    (``supports_lease``/``supports_versions`` answer False, so freshtoken
    never calls ``acquire``, ``release``, ``load_versioned`` or
    ``save_versioned``). A fleet store overrides all of them.

    freshtoken calls these members on its own event loop thread, not on your
    application's loop: ``async`` members must not use objects bound to
    another loop (a client created on the app's loop, an ``asyncio.Lock``
    shared with it); plain members run in a worker thread, so they may block
    and must be thread-safe.

    Exceptions raised by them (any type, cancellation included) become
    freshtoken's ``StorageError``; their message is kept, with
    every token freshtoken knows scrubbed from it.

    The members stay as you define them: ``Client.session`` (and
    ``EncryptedStore``) put the store behind that guard, the class does
    not rewrite them. A plain ``save`` calling a parent's plain ``save``
    through ``super()`` gets what it returns. The stores of this module
    define theirs ``async``: override those with ``async def`` and
    ``await super().save(key, record)`` (a plain override that calls them
    gets a coroutine, which saves nothing until awaited).
    """

    async def load(self, key: str) -> Optional[str]:
        raise NotImplementedError("TokenStoreBase subclasses implement load(key)")

    async def save(self, key: str, record: str) -> None:
        raise NotImplementedError("TokenStoreBase subclasses implement save(key, record)")

    def supports_lease(self) -> bool:
        return False

    async def acquire(self, key: str, owner: str, ttl_ms: int) -> bool:
        return True

    async def release(self, key: str, owner: str) -> None:
        return None

    def supports_versions(self) -> bool:
        return False

    async def load_versioned(self, key: str) -> Optional[VersionedRecord]:
        raise HostError.Failed(detail="this store has no versions")

    async def save_versioned(self, key: str, record: str, expected: Optional[str]) -> CasResult:
        raise HostError.Failed(detail="this store has no versions")


class MemoryTokenStore(TokenStoreBase):
    """Records in a dict: for tests, and for processes that may forget.

    One process's: a forked child (a prefork server's worker, gunicorn's
    ``preload_app``, a Celery prefork child) that inherited records fails
    every call with ``StorageError`` rather than spend a refresh token its
    parent and siblings still hold (the second to send it ends the grant).
    Use ``FileTokenStore`` or a fleet store there. A store still empty at the
    fork becomes the child's own."""

    def __init__(self) -> None:
        self._records: Dict[str, str] = {}
        self._pid = os.getpid()

    def _owned(self) -> Dict[str, str]:
        pid = os.getpid()
        if pid != self._pid:
            if self._records:
                raise HostError.Failed(
                    detail="MemoryTokenStore: its records were inherited across fork(): a forked process "
                    "must not spend refresh tokens its parent holds too (use FileTokenStore or a fleet store)"
                )
            self._pid = pid
        return self._records

    async def load(self, key: str) -> Optional[str]:
        return self._owned().get(key)

    async def save(self, key: str, record: str) -> None:
        self._owned()[key] = record

    def get(self, key: str) -> Optional[str]:
        """The record under ``key`` (synchronously), or None."""
        return self._records.get(key)


@dataclass(frozen=True)
class RecoverResult:
    """What :meth:`FileTokenStore.recover` did: ``completed`` saves finished
    (a temporary file renamed over its record file), ``removed`` temporary
    files deleted."""

    #: Saves finished: temporary files renamed over their record files.
    completed: int
    #: Temporary files deleted (stale, incomplete, or superseded).
    removed: int


class FileTokenStore(TokenStoreBase):
    """One file per session in ``directory`` (created 0700; files are 0600).

    File names are safe on case-insensitive file systems (macOS, Windows):
    ``x.<the key's UTF-8 in lowercase hex>.json``, or ``h.<SHA-256 of the
    key's UTF-8, lowercase hex>.json`` when the hex would pass 120
    characters (keys over 60 bytes). Distinct keys never get names that
    differ only in case. The JavaScript ``FileStore`` and the Kotlin
    ``FileTokenStore`` use the same names.

    A save writes a temporary file in the same directory, under one fixed
    name per record file, ``.<name>.json.tmp`` (as the Kotlin store does),
    fsyncs it, renames it over the old one (``os.replace``) and fsyncs the
    directory: a crash leaves the old record or the new one, never half of
    one. A failed fsync fails the save (a directory's only where the
    platform can sync one at all): freshtoken keeps the record and saves it
    again. Every save holds the record's write lock, so one at a time uses that
    name; it first removes a file left there (a killed save's, superseded by
    this newer save), then creates its own (exclusively, never through a
    link, 0600). A process killed between the fsync and the rename leaves
    the new record (with the new single-use refresh token) in the temporary
    file only: call :meth:`recover` at startup, before the first session, to
    finish such saves. A process already running finishes the one of a key
    it reads: every load first looks for that key's temporary file (one
    ``lstat``) and, if there is one, does what recover() does for that key
    under its write lock (waiting for a live writer) before it reads. File
    I/O runs in a worker thread.

    Several processes (web server workers) may share the directory: where
    the OS has ``flock`` (Linux, macOS), the store offers the refresh lease
    and compare-and-swap versions, so one process at a time refreshes a
    session and a save whose version moved on is a conflict. The lease is an
    exclusive lock on ``<name>.lock``, taken both as ``flock`` and, where
    the file system keeps the two apart (Linux), as a POSIX record lock (the
    Kotlin store's ``FileLock``; the ``freshtoken`` command takes the same),
    given back by the OS when its process dies and after its TTL. Every
    write holds ``<name>.write.lock`` for its compare-and-swap; a record's
    version is the SHA-256 of its file's bytes (of its text's UTF-8, as the
    Kotlin store and the ``freshtoken`` command compute it). Without
    ``flock`` (Windows) it serves one process: no lease and no versions, and
    a write holds a lock of this process instead.

    A record file that is not UTF-8 (a damaged byte) is never read as
    text: read with replacement characters, its refresh token would be sent
    altered once (``invalid_grant``) and the dead marker saved over the bytes
    an operator could repair. ``load`` raises instead; ``load_versioned``
    answers :attr:`NOT_UTF8_RECORD`, which freshtoken refuses as corrupt
    (``StorageError``, nothing sent), with the version of the file's bytes,
    so that a new link (``seed``, a code exchange) replaces the file, as it
    does any corrupt record. The file is otherwise left as it is.

    Files written by earlier versions (``k.<base64url>.json``, whose
    names could differ only in case) are still read, and each is deleted
    once its key's record has been saved under the new name. Such a file is
    read only under its exact name as listed in the directory, so a case-
    insensitive file system never hands one key another key's old record.
    """

    #: Longest hex text used as a name; longer keys are hashed.
    MAX_NAME_KEY = 120

    #: The record ``load_versioned`` answers for a file that is not UTF-8:
    #: not JSON, so freshtoken refuses it as corrupt; it says why to a direct caller.
    NOT_UTF8_RECORD = "freshtoken: the record file is not UTF-8"

    def __init__(self, directory) -> None:
        self.directory = os.fspath(directory)
        self._make_directory()

    def path(self, key: str) -> str:
        """The file that holds ``key``'s record."""
        return os.path.join(self.directory, file_name(key, self.MAX_NAME_KEY))

    def lock_path(self, key: str, kind: str = "lease") -> str:
        """``key``'s lock file (empty, 0600): ``<name>.lock`` for the refresh
        lease, or ``<name>.write.lock`` (``kind="write"``) for its writes."""
        stem = self.path(key)[: -len(".json")]
        return stem + (".write.lock" if kind == "write" else ".lock")

    async def load(self, key: str) -> Optional[str]:
        return await asyncio.to_thread(self._load, key)

    async def save(self, key: str, record: str) -> None:
        await asyncio.to_thread(self._save_locked, key, record)

    def supports_lease(self) -> bool:
        return fcntl is not None

    def supports_versions(self) -> bool:
        return fcntl is not None

    async def acquire(self, key: str, owner: str, ttl_ms: int) -> bool:
        return await asyncio.to_thread(_take_lease, self.lock_path(key), owner, ttl_ms)

    async def release(self, key: str, owner: str) -> None:
        await asyncio.to_thread(_end_lease, self.lock_path(key), owner)

    async def load_versioned(self, key: str) -> Optional[VersionedRecord]:
        found = await asyncio.to_thread(self._load_recovered, key)
        if found is None:
            return None
        try:
            record = _decoded(found)
        except UnicodeDecodeError:
            # The core asks the version through this member alone: raising
            # would refuse a new link too, and the file could never be replaced.
            record = self.NOT_UTF8_RECORD
        return VersionedRecord(record=record, version=_version(found))

    async def save_versioned(self, key: str, record: str, expected: Optional[str]) -> CasResult:
        return await asyncio.to_thread(self._save_versioned, key, record, expected)

    async def recover(self) -> RecoverResult:
        """Finishes the saves a killed process left half done, and removes
        their other temporary files; call it at startup, before the first
        session.

        A save killed between its temporary file's fsync and its rename
        leaves the rotated record (the new single-use refresh token) only in
        that file; the record file's old refresh token is spent, and sending
        it again would make the user link again. For each record file with a
        temporary file (``.<name>.json.tmp``: this store's and the Kotlin
        ``FileTokenStore``'s) this holds the record's write lock, which every
        save of both stores holds while its temporary file exists, so the
        one found then is abandoned, whatever its age (without ``flock``, on
        Windows, that lock is this process's own: the store serves one
        process there). No time is compared: every save removes the file
        left under that name before it writes its own, so one that exists
        was written after the record's last successful save. If it holds a
        whole record (a JSON object) it is fsynced (a save killed before its
        own fsync left it in the page cache only) and renamed over the record
        file; otherwise (a write cut off) it is removed. The directory is then
        fsynced.

        Temporary files of the earlier form ``.<name>.json.<random UUID>.tmp``
        (earlier versions of the Kotlin store wrote them) are recovered too,
        for files written before an upgrade: when the record has no
        ``.<name>.json.tmp`` (which, if present, is newer than they are, and
        they are removed), the newest that holds a whole record and is at
        least as new as the record file (modification time) is renamed over
        it, and the others are removed. That rule keeps the limit the fixed
        name removes: where timestamps are coarse (1-2 s) or the clock
        stepped back, a save killed before a later successful one can look
        as new as it, and be renamed over it.

        Left alone: the JavaScript ``FileStore``'s (and the ``freshtoken``
        command's) ``<name>.json.<pid>.<hex>.tmp``, and earlier versions'
        ``.tmp-*.json``, which do not say whose record they hold. A missing
        directory recovers nothing. A failure raises ``HostError.Failed``
        naming the step and the errno, never a path; what was done stays
        done, and calling again goes on.
        """
        return await asyncio.to_thread(self.recover_sync)

    def recover_sync(self) -> RecoverResult:
        """:meth:`recover` for synchronous code: the same, in the calling
        thread (which it blocks, waiting for any save it must let finish)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return RecoverResult(completed=0, removed=0)
        except OSError as err:
            raise HostError.Failed(detail=f"cannot list the record directory ({_why(err)})") from None
        targets = sorted({found.group("record") for found in map(_TEMP_NAME.fullmatch, names) if found})
        recovery = _Recovery()
        for target in targets:
            lock = os.path.join(self.directory, target[: -len(".json")] + ".write.lock")
            with recovery.attempt("cannot finish an interrupted save"), _write_locked(lock):
                self._recover_record(target, recovery)
        if targets:
            with recovery.attempt("cannot make the finished saves durable"):
                self._sync_directory()  # the renames (and removals)
        if recovery.failure is not None:
            raise recovery.failure
        return RecoverResult(completed=recovery.completed, removed=recovery.removed)

    def _recover_record(self, target: str, recovery: "_Recovery") -> None:
        """Finishes the record file ``target``'s (a name) interrupted save and
        removes its other temporary files; the caller holds its write lock,
        so none of them is being written."""
        record = os.path.join(self.directory, target)
        fixed = os.path.join(self.directory, f".{target}.tmp")
        # Listed again under the lock: a save may have ended since.
        legacy = []
        for name in os.listdir(self.directory):
            found = _TEMP_NAME.fullmatch(name)
            if found is None or found.group("record") != target or found.group("random") is None:
                continue
            path = os.path.join(self.directory, name)
            mtime = _mtime_ns(path, regular_only=True)  # a link or a directory is no save's
            if mtime is not None:
                legacy.append((mtime, path))
        if _mtime_ns(fixed, regular_only=True) is not None:
            # Written after the record's last successful save (every save
            # removes it first): finished if whole, whatever the times say.
            # Any earlier-form temporary file is older still: removed.
            finish = fixed if _whole_record(fixed) else None
            leftovers = [fixed] if finish is None else []
            leftovers += [path for _, path in legacy]
        else:
            # Earlier-form files alone (written before an upgrade): the
            # newest whole one at least as new as the record (see recover()).
            current = _mtime_ns(record)
            finish = None
            leftovers = []
            for mtime, path in sorted(legacy, reverse=True):  # newest first
                if finish is None and (current is None or mtime >= current) and _whole_record(path):
                    finish = path
                else:
                    leftovers.append(path)
        if finish is not None:
            with recovery.attempt("cannot finish an interrupted save"):
                # A save killed before its fsync leaves a whole record in the
                # page cache only: renamed as it is, a power loss could leave
                # the record file empty. Left in place when that fails.
                if _sync_file(finish):
                    os.replace(finish, record)
                    recovery.completed += 1
        for path in leftovers:
            with recovery.attempt("cannot remove an interrupted save's temporary file"):
                try:
                    os.unlink(path)
                    recovery.removed += 1
                except FileNotFoundError:
                    pass

    def _save_locked(self, key: str, record: str) -> None:
        with self._writing(key):
            self._save(key, record)

    def _save_versioned(self, key: str, record: str, expected: Optional[str]) -> CasResult:
        encoded = record.encode("utf-8")
        with self._writing(key):
            # Under the lock already (which it must not take again): a dead
            # writer's newer record, finished first, is a conflict, never
            # overwritten with its temporary file removed as superseded.
            self._finish_dead_save(key, locked=True)
            current = self._load_bytes(key)
            if (None if current is None else _version(current)) != expected:
                if current == encoded:
                    # Exactly this record: an earlier save of it renamed it, and
                    # failed at the directory's fsync (or timed out). freshtoken
                    # takes such a conflict as saved: make the rename durable first.
                    self._sync_saved()
                return CasResult.CONFLICT()
            self._save(key, record)
        return CasResult.SAVED(version=_version(encoded))

    def _writing(self, key: str) -> ContextManager[None]:
        """Holds ``key``'s write lock (every process's writes take it), so that a
        compare-and-swap reads and writes with no other write in between.
        A directory gone since (removed, or its creation undone after a failed
        sync) is made again first, as the Kotlin store and the CLI do."""
        if not os.path.isdir(self.directory):
            try:
                self._make_directory()
            except OSError as err:
                raise HostError.Failed(detail=f"cannot create the record directory ({_why(err)})") from None
        return _write_locked(self.lock_path(key, "write"))

    def _load(self, key: str) -> Optional[str]:
        found = self._load_recovered(key)
        if found is None:
            return None
        try:
            return _decoded(found)
        except UnicodeDecodeError:
            raise HostError.Failed(detail=NOT_UTF8_MESSAGE) from None  # no byte of the file in it

    def _load_recovered(self, key: str) -> Optional[bytes]:
        """:meth:`_load_bytes` after :meth:`_finish_dead_save` (every load's
        read; the caller does not hold ``key``'s write lock)."""
        self._finish_dead_save(key)
        return self._load_bytes(key)

    def _finish_dead_save(self, key: str, locked: bool = False) -> None:
        """Before a read of ``key``'s record: finishes a save of it whose
        writer died between its temporary file's fsync and its rename, as
        :meth:`recover` does. A process that started before that death never
        runs recover() again: reading the record file, it would send the
        spent refresh token of the write-ahead marker there, and its next
        save would remove the rotated record as superseded.

        One ``lstat`` of ``.<name>.json.tmp`` when there is none (no listing,
        no lock). When there is one, under ``key``'s write lock (taken here
        unless ``locked``: the caller holds it), which every writer holds for
        as long as its temporary file exists: a live writer is waited for,
        and what is left then is a dead writer's, renamed over the record
        file when whole (fsynced first) or removed, then the directory
        fsynced. A failure raises ``HostError.Failed`` (the step and the
        errno, never a path): the record file may hold the spent token, and
        is never read instead."""
        target = os.path.basename(self.path(key))
        try:
            if _mtime_ns(os.path.join(self.directory, f".{target}.tmp"), regular_only=True) is None:
                return  # the common path
        except OSError as err:
            raise HostError.Failed(detail=f"cannot look for an interrupted save ({_why(err)})") from None
        recovery = _Recovery()
        with recovery.attempt("cannot finish an interrupted save"):
            with contextlib.nullcontext() if locked else self._writing(key):
                self._recover_record(target, recovery)
                if recovery.completed or recovery.removed:
                    with recovery.attempt("cannot make the finished saves durable"):
                        self._sync_directory()  # the rename (or removal)
        if recovery.failure is not None:
            raise recovery.failure

    def _load_bytes(self, key: str) -> Optional[bytes]:
        """The bytes of ``key``'s file (today's name, else the earlier one), or
        None; reads only (see :meth:`_load_recovered`)."""
        path = self.path(key)
        found = _read(path)
        if found is None:
            legacy = _legacy_names(self.directory).existing(key)
            if legacy is not None:
                found = _read(os.path.join(self.directory, legacy))
            if found is None:
                # Today's name again: a save (this process's or another's) may
                # have moved the record since the first read, and it writes
                # today's file before it removes the old one and its listed name.
                found = _read(path)
        return found

    def _save(self, key: str, record: str) -> None:
        self._write(self.path(key), record)
        # The record is durable under its new name: the old file can go.
        legacy = _legacy_names(self.directory)
        name = legacy.existing(key)
        if name is not None:
            try:
                os.unlink(os.path.join(self.directory, name))
            except FileNotFoundError:
                pass
            legacy.forget(name)
            with contextlib.suppress(OSError):  # the record is durable already: a failure here loses nothing
                self._sync_directory()

    def _write(self, path: str, record: str) -> None:
        """Writes ``record`` to ``path`` through its fixed temporary file
        ``.<name>.json.tmp`` (see :meth:`recover`); the caller holds the key's
        write lock, so no other save uses that name meanwhile."""
        data = record.encode("utf-8")  # the bytes its version hashes, on every OS
        temp = os.path.join(self.directory, f".{os.path.basename(path)}.tmp")
        try:
            os.unlink(temp)  # a killed save's, superseded by this one (a link: itself, never its target)
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(temp, flags, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        self._sync_saved()

    def _make_directory(self) -> None:
        """Creates the directory (0700) and its missing ancestors, one level
        at a time, then fsyncs the parent of each level this call created:
        the directory's own fsync makes the files in it durable, not its
        entry in its parent, so a power loss could drop a new directory and
        the first record saved in it (a rotated refresh token). A level that
        exists already (another process may have just made it) is not this
        call's. If a sync fails (OSError), the levels this call created are
        removed again (best effort), so that a retry creates and syncs them
        anew; no other process's is."""
        missing = []  # deepest first
        level = self.directory.rstrip(os.sep + (os.altsep or "")) or self.directory
        while level and not os.path.isdir(level):
            missing.append(level)
            if os.path.dirname(level) == level:
                break
            level = os.path.dirname(level)
        created = []  # deepest first
        for level in reversed(missing):
            # Marked before it exists: another thread's store that finds it
            # from now on syncs it too (see _sync_unsynced_levels).
            _UNSYNCED.add(os.path.abspath(level))
            try:
                os.mkdir(level, 0o700)
            except FileExistsError:
                if not os.path.isdir(level):
                    raise
                continue
            except OSError:
                _UNSYNCED.discard(os.path.abspath(level))
                raise
            created.insert(0, level)
        try:
            for level in created:
                self._sync_directory(os.path.dirname(level) or os.curdir)
                _UNSYNCED.discard(os.path.abspath(level))
        except OSError:
            for level in created:
                try:
                    os.rmdir(level)
                except OSError:
                    break
                _UNSYNCED.discard(os.path.abspath(level))
            raise

    def _sync_unsynced_levels(self) -> None:
        """Syncs into its parent each level of the store's directory still in
        ``_UNSYNCED``: another store of this process may have created it a
        moment ago and not synced it yet, or failed to and could not remove
        it (a record of this store is in it now), and this store's records
        would be lost with it. Raises OSError as ``_sync_directory``."""
        directory = os.path.abspath(self.directory)
        real = None  # its real path, read once if needed (a link may name it)
        for level in list(_UNSYNCED):
            if not _is_within(directory, level):
                real = real or os.path.realpath(directory)
                if not _is_within(real, os.path.realpath(level)):
                    continue
            self._sync_directory(os.path.dirname(level))
            _UNSYNCED.discard(level)

    def _sync_directory(self, directory: Optional[str] = None) -> None:
        """fsyncs the directory (``directory``, by default the store's),
        making the renames (and removals) in it durable. Raises OSError when
        that fails, unless the platform cannot do it at all (see
        ``_NO_DIRECTORY_SYNC``)."""
        try:
            fd = os.open(self.directory if directory is None else directory, os.O_RDONLY)
        except OSError as err:
            if err.errno in _NO_DIRECTORY_SYNC:
                return
            raise
        try:
            os.fsync(fd)
        except OSError as err:
            if err.errno not in _NO_DIRECTORY_SYNC:
                raise
        finally:
            os.close(fd)

    def _sync_saved(self) -> None:
        """:meth:`_sync_directory` after a save's rename: a failure fails the
        save (``HostError.Failed`` with the errno, never a path), as the
        rename may not outlive a crash, and the old record, whose refresh
        token is spent, come back. freshtoken keeps the record and saves it again."""
        try:
            self._sync_directory()
            if _UNSYNCED:
                self._sync_unsynced_levels()
        except OSError as err:
            raise HostError.Failed(detail=f"cannot make the record file durable ({_why(err)})") from None


def _is_within(directory: str, level: str) -> bool:
    """Whether ``directory`` is ``level`` or lies in it (both absolute)."""
    return directory == level or directory.startswith(level.rstrip(os.sep) + os.sep)


# The directory levels this process's file stores created (absolute paths)
# whose entry in their parent is not known durable yet: the creating store's
# sync is in flight, or failed and the level could not be removed (another
# store's record is in it). Every save into one syncs its parent too before it
# reports. A level is marked before its mkdir, and stays marked when the mkdir
# finds it made (another store of this process may be making it): a later
# save syncs its parent once. (A set's add, discard and copy are atomic under
# the GIL.)
_UNSYNCED: set = set()


# What opening or fsyncing a directory fails with where the platform cannot
# do it at all, never because this write failed (as the JavaScript FileStore
# judges): Windows opens no directory with os.open (EACCES; some systems
# answer EISDIR; POSIX opens none without read permission, and such a
# directory can never be synced); some file systems refuse a directory's
# fsync (EINVAL, ENOTSUP/EOPNOTSUPP, EPERM), or fsync only writable
# descriptors, which a directory never is (EBADF). Anything else (EIO,
# ENOSPC, EROFS from a file system remounted read-only after an error)
# means the rename may not be on disk: the save fails.
_NO_DIRECTORY_SYNC = frozenset(
    code for code in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.EINVAL, errno.EBADF,
                      getattr(errno, "ENOTSUP", None), getattr(errno, "EOPNOTSUPP", None))
    if code is not None)


# A save's temporary file, this store's and the Kotlin store's:
# ``.<record file name>.tmp`` (one per record file), or the earlier form
# ``.<record file name>.<random UUID>.tmp`` (group ``random``). The name is a
# record file's name of today (lowercase ASCII), never a path.
_TEMP_NAME = re.compile(
    r"\.(?P<record>(?:x\.(?:[0-9a-f]{2})+|h\.[0-9a-f]{64})\.json)"
    r"(?P<random>\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?\.tmp")


def _mtime_ns(path: str, regular_only: bool = False) -> Optional[int]:
    """``path``'s modification time (ns), or None if it is missing (or, with
    ``regular_only``, not a regular file: a link or a directory is left alone)."""
    try:
        found = os.lstat(path) if regular_only else os.stat(path)
    except FileNotFoundError:
        return None
    if regular_only and not stat.S_ISREG(found.st_mode):
        return None
    return found.st_mtime_ns


def _sync_file(path: str) -> bool:
    """fsyncs the regular file ``path`` (never through a link): False if it
    is gone; a failure raises OSError."""
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)  # Windows commits writable files only
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _whole_record(path: str) -> bool:
    """Whether the temporary file ``path`` holds a whole record: a JSON object,
    as the core's JSON reader finds it (a write cut off is not one). Read leniently: a damaged byte does not make
    a write incomplete (renamed into place, its load refuses it, where one
    judged incomplete would be deleted)."""
    data = _read(path)
    return data is not None and is_whole_record_file(data)


class _Recovery:
    """One :meth:`FileTokenStore.recover` call's counts and its first failure."""

    def __init__(self) -> None:
        self.completed = 0
        self.removed = 0
        self.failure: Optional[Exception] = None

    @contextlib.contextmanager
    def attempt(self, what: str) -> Iterator[None]:
        """Runs the block; keeps its failure (the first one, as ``HostError.Failed``
        saying ``what`` and the errno, never a path) and goes on."""
        try:
            yield
        except OSError as err:
            if self.failure is None:
                self.failure = HostError.Failed(detail=f"{what} ({_why(err)})")


def _why(err: OSError) -> str:
    """An OSError without its path: the errno's name, else the class's."""
    return errno.errorcode.get(err.errno or 0) or type(err).__name__


@contextlib.contextmanager
def _write_locked(path: str) -> Iterator[None]:
    """Holds the write lock ``path`` (``<name>.write.lock``): with ``flock``,
    the lock every process's writes take (see :func:`_lock_exclusive`; a
    ``flock`` also excludes this process's other threads); without it
    (Windows), a lock of this process, the only one the store serves there."""
    if fcntl is None:
        with _in_process_write_lock(path):
            yield
        return
    file = _open_lock_file(path)
    try:
        _lock_exclusive(file, path, blocking=True)
        yield
    finally:
        _unlock_and_close(file)


# Without flock: the write locks of this process, a record's chosen by its
# lock file's real path (stripes: a few keys share one, briefly).
_WRITE_STRIPES: List[threading.Lock] = [threading.Lock() for _ in range(64)]


def _in_process_write_lock(path: str) -> threading.Lock:
    """This process's lock for the write lock file ``path`` (see _WRITE_STRIPES)."""
    where = os.path.normcase(os.path.realpath(path))
    return _WRITE_STRIPES[hash(where) % len(_WRITE_STRIPES)]


def _version(data: bytes) -> str:
    """A record's version in a FileTokenStore: the SHA-256 of its file's
    bytes, which are its text's UTF-8 (a rewrite of the same text is the same
    record); a file that is not UTF-8 has one too, so a new link can replace it."""
    return hashlib.sha256(data).hexdigest()


def _lock_exclusive(file, path: str, blocking: bool) -> None:
    """Locks ``file`` (the lock file at ``path``) exclusively: a ``flock``
    (the ``freshtoken`` command's, and this store's in other processes) and,
    where the file system keeps the two apart (see
    ``_record_locks_are_separate``), a POSIX record lock (a JVM's
    ``FileLock``: the Kotlin store's). ``flock`` first, so two of this store's
    threads never meet at the record lock (which does not exclude within a
    process). Raises BlockingIOError when not ``blocking`` and either is held
    elsewhere."""
    extra = 0 if blocking else fcntl.LOCK_NB
    separate = _record_locks_are_separate(os.path.dirname(path))
    fcntl.flock(file.fileno(), fcntl.LOCK_EX | extra)
    if not separate:
        return
    try:
        fcntl.lockf(file.fileno(), fcntl.LOCK_EX | extra)
    except BaseException as err:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
        if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EAGAIN):
            raise BlockingIOError(err.errno, "held by another process") from None  # POSIX allows either
        raise


# Whether each directory's file system (by real path) keeps POSIX record
# locks apart from flock.
_separate: Dict[str, bool] = {}
_separate_lock = threading.Lock()


def _record_locks_are_separate(directory: str) -> bool:
    """Whether ``directory``'s file system keeps POSIX record locks apart
    from ``flock``, as Linux's local file systems do: then the store takes
    both. Where they are one mechanism (macOS and the BSDs; NFS and SMB
    mounts on Linux) a ``flock`` already excludes a JVM's ``FileLock``, and
    taking both would conflict with itself. Probed once per directory: a
    ``flock`` on a new file no other process knows, then a record lock on
    it, which only a file system where the two are one mechanism refuses."""
    real = os.path.realpath(directory)
    with _separate_lock:
        known = _separate.get(real)
        if known is not None:
            return known
        fd, probe = tempfile.mkstemp(dir=real, prefix=".lock-probe-", suffix=".tmp")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                separate = True
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                separate = False
        finally:
            os.close(fd)
            os.unlink(probe)
        _separate[real] = separate
        return separate


def _open_lock_file(path: str):
    """``path`` opened for locking, created 0600 if missing (lock files stay: removing one races)."""
    return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+b")


def _unlock_and_close(file) -> None:
    """Gives ``file``'s locks back, then closes it. The ``flock`` belongs to the
    open file, which a forked child shares: closing only this process's
    descriptor would leave the lock held for as long as the child lives
    (``multiprocessing``'s fork, a prefork server's workers), refusing the
    key's lease and writes to every process. Closing gives the record lock
    back."""
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
    finally:
        file.close()


class _Lease:
    """A refresh lease this process holds: its owner, its locked file, its TTL timer."""

    def __init__(self, path: str, owner: str, file) -> None:
        self.path = path
        self.owner = owner
        self.file = file
        self.timer: Optional[threading.Timer] = None
        # Counts the TTLs set: a timer ends the lease only if its TTL is the last one.
        self.generation = 0

    def expire_in(self, ttl_ms: int) -> None:
        """(Re)starts the TTL; the caller holds ``_leases_lock``. ``cancel()``
        cannot stop a timer whose callback already started (it may be waiting
        for that lock): the new generation tells :func:`_give_back` that its
        TTL was renewed, or the renewed lease would be given back."""
        if self.timer is not None:
            self.timer.cancel()
        self.generation += 1
        self.timer = threading.Timer(max(ttl_ms, 0) / 1000, _give_back, (self, self.generation))
        self.timer.daemon = True
        self.timer.start()


# The leases this process holds, by lock file (its real path): shared by
# every FileTokenStore on the directory, however it was spelt, as the locks
# are. Only a file with no lease here is opened and, when refused, closed:
# closing a file drops every POSIX record lock this process holds on it.
_leases: Dict[str, _Lease] = {}
_leases_lock = threading.Lock()


def _take_lease(path: str, owner: str, ttl_ms: int) -> bool:
    path = os.path.realpath(path)
    with _leases_lock:
        held = _leases.get(path)
        if held is not None:
            if held.owner != owner:
                return False
            held.expire_in(ttl_ms)
            return True
        file = _open_lock_file(path)
        try:
            _lock_exclusive(file, path, blocking=False)
        except BlockingIOError:
            file.close()
            return False
        except BaseException:
            file.close()
            raise
        lease = _leases[path] = _Lease(path, owner, file)
        lease.expire_in(ttl_ms)
        return True


def _end_lease(path: str, owner: str) -> None:
    path = os.path.realpath(path)
    with _leases_lock:
        held = _leases.get(path)
    if held is not None and held.owner == owner:
        _give_back(held)


def _give_back(lease: _Lease, generation: Optional[int] = None) -> None:
    """Ends ``lease`` if it is still the one held: by its release (no
    ``generation``), or by its TTL timer (the ``generation`` it was set in),
    unless the lease was renewed since."""
    with _leases_lock:
        if _leases.get(lease.path) is not lease:
            return
        if generation is not None and generation != lease.generation:
            return  # a timer that fired as its owner renewed the lease: the new TTL stands
        del _leases[lease.path]
        lease.timer.cancel()
        _unlock_and_close(lease.file)


def _forget_leases_in_child() -> None:
    """After a fork, in the child: the parent's leases are the parent's. The
    child closes its copies of their files without unlocking them (that
    would unlock the parent's), so that it neither renews nor ends them and
    the parent's release frees them. Its lock is new: another thread may
    have held the parent's at the fork."""
    global _leases_lock, _separate_lock, _legacy_lock
    _leases_lock = threading.Lock()
    # So are the locks held across a directory's probe or listing (file I/O).
    _separate_lock = threading.Lock()
    _legacy_lock = threading.Lock()
    # And each directory's list of old names has a lock of its own (taken by
    # loads and saves, without I/O, but a thread may have been inside it).
    for names in _legacy_by_directory.values():
        names._lock = threading.Lock()
    for lease in _leases.values():
        lease.file.close()
    _leases.clear()


if fcntl is not None and hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_leases_in_child)


def file_name(key: str, max_encoded: int = FileTokenStore.MAX_NAME_KEY) -> str:
    """``key``'s file name: lowercase ASCII letters, digits and dots only, so
    that names equal under case folding are equal names (and belong to one key)."""
    data = key.encode("utf-8")
    encoded = data.hex()
    if len(encoded) <= max_encoded:
        return f"x.{encoded}.json"
    return f"h.{hashlib.sha256(data).hexdigest()}.json"


def legacy_file_name(key: str) -> str:
    """The name earlier versions used (unpadded base64url: case matters)."""
    data = key.encode("utf-8")
    encoded = base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
    if len(encoded) <= FileTokenStore.MAX_NAME_KEY:
        return f"k.{encoded}.json"
    return f"h.{hashlib.sha256(data).hexdigest()}.json"  # the same as today's


# The most of a record file read: well above the largest record freshtoken
# writes (256 KiB) and an EncryptedStore envelope of one. A bigger file is
# read only to one byte past this, and freshtoken refuses it (as the
# JavaScript and Kotlin stores do).
MAX_FILE_BYTES = 1024 * 1024

#: ``load``'s error for a record file that is not UTF-8.
NOT_UTF8_MESSAGE = "cannot read the record: the file is not UTF-8 (left unchanged; a re-link replaces it)"


def _read(path: str) -> Optional[bytes]:
    """The file's first MAX_FILE_BYTES + 1 bytes, or None."""
    try:
        with open(path, "rb") as file:
            return file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None


def _decoded(data: bytes) -> str:
    """``data`` as text, strictly (UnicodeDecodeError if it is not UTF-8). A
    file cut at the cap may end inside a character: that tail is left out
    (freshtoken refuses the text as too large all the same)."""
    return codecs.getincrementaldecoder("utf-8")("strict").decode(data, final=len(data) <= MAX_FILE_BYTES)


_LEGACY_NAME = re.compile(r"k\.[A-Za-z0-9_-]+\.json")


class _LegacyNames:
    """The old-style names in one directory, exactly as listed (listed once
    per process: nothing creates them any more)."""

    def __init__(self, names) -> None:
        self._lock = threading.Lock()
        self._names = set(names)

    def existing(self, key: str) -> Optional[str]:
        if not self._names:
            return None
        name = legacy_file_name(key)
        with self._lock:
            return name if name in self._names else None

    def forget(self, name: str) -> None:
        with self._lock:
            self._names.discard(name)


_legacy_lock = threading.Lock()
_legacy_by_directory: Dict[str, _LegacyNames] = {}


def _legacy_names(directory: str) -> _LegacyNames:
    where = os.path.realpath(directory)
    with _legacy_lock:
        found = _legacy_by_directory.get(where)
        if found is None:
            try:
                listed = os.listdir(where)
            except FileNotFoundError:
                listed = []
            found = _legacy_by_directory[where] = _LegacyNames(n for n in listed if _LEGACY_NAME.fullmatch(n))
        return found
