"""Token stores: a base class for your own, an in-memory one, a file one.

freshtoken saves each session's record (an opaque string holding the
refresh token) through a :class:`TokenStore` and waits for ``save`` to
finish before it hands out a renewed token. Records are secrets: keep them
where only your application can read them, and never log them.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import inspect
import os
import tempfile
from typing import Dict, Optional

from ._ffi.freshtoken import CasResult, HostError, TokenStore, VersionedRecord

__all__ = ["TokenStoreBase", "MemoryTokenStore", "FileTokenStore"]

# The members a subclass may implement; each is wrapped so that it may be a
# plain or an async function, and so that any exception reaches freshtoken
# as HostError.Failed (message kept) instead of uniffi's "unexpected error"
# with a traceback on stderr.
_HOST_METHODS = ("load", "save", "acquire", "release", "load_versioned", "save_versioned")


def _host_call(method):
    @functools.wraps(method)
    async def call(self, *args):
        try:
            result = method(self, *args)
            if inspect.isawaitable(result):
                result = await result
            return result
        except HostError:
            raise
        except Exception as error:  # noqa: BLE001 - reported to freshtoken, not swallowed
            raise HostError.Failed(detail=str(error) or type(error).__name__) from None

    call.__freshtoken_wrapped__ = True
    return call


class TokenStoreBase(TokenStore):
    """Write ``load`` and ``save`` (plain or ``async``); the rest has defaults.

    The defaults serve one process: no lease and no compare-and-swap
    (``supports_lease``/``supports_versions`` answer False, so freshtoken
    never calls ``acquire``, ``release``, ``load_versioned`` or
    ``save_versioned``). A fleet store overrides all of them.

    Exceptions raised by ``load``/``save`` (any type) become freshtoken's
    ``FreshTokenError.Storage``, their message kept: do not put records in
    your exception messages.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _HOST_METHODS:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "__freshtoken_wrapped__", False):
                setattr(cls, name, _host_call(method))

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
    """Records in a dict: for tests, and for processes that may forget."""

    def __init__(self) -> None:
        self._records: Dict[str, str] = {}

    async def load(self, key: str) -> Optional[str]:
        return self._records.get(key)

    async def save(self, key: str, record: str) -> None:
        self._records[key] = record

    def get(self, key: str) -> Optional[str]:
        """The record under ``key`` (synchronously), or None."""
        return self._records.get(key)


class FileTokenStore(TokenStoreBase):
    """One file per session in ``directory`` (created 0700; files are 0600).

    File names are the key in unpadded base64url (``k.<key>.json``), or its
    SHA-256 when that would be long (``h.<hex>.json``). A save writes a
    temporary file in the same directory, fsyncs it, renames it over the old
    one (``os.replace``) and fsyncs the directory: a crash leaves the old
    record or the new one, never half of one. File I/O runs in a worker
    thread. One process only: it has no lease and no versions.
    """

    MAX_NAME_KEY = 120

    def __init__(self, directory) -> None:
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)

    def path(self, key: str) -> str:
        """The file that holds ``key``'s record."""
        encoded = base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii").rstrip("=")
        if len(encoded) <= self.MAX_NAME_KEY:
            name = f"k.{encoded}.json"
        else:
            name = f"h.{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json"
        return os.path.join(self.directory, name)

    async def load(self, key: str) -> Optional[str]:
        return await asyncio.to_thread(self._read, self.path(key))

    async def save(self, key: str, record: str) -> None:
        await asyncio.to_thread(self._write, self.path(key), record)

    @staticmethod
    def _read(path: str) -> Optional[str]:
        try:
            with open(path, "r", encoding="utf-8") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def _write(self, path: str, record: str) -> None:
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(record)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        self._sync_directory()

    def _sync_directory(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return  # platforms without directory handles
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
