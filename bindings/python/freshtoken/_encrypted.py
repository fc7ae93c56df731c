"""Records encrypted at rest: :class:`EncryptedStore` around any store.

The encryption is freshtoken's Rust core (AES-256-GCM, a random 96-bit
nonce per save, the session key and key id bound as associated data); the
store is implemented there too, so a session calls it without coming back
into Python except for the inner store's own calls.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable, Optional, TypeVar, Union

from ._ffi.freshtoken import EncryptionKey as _FfiEncryptionKey
from ._ffi.freshtoken import EncryptionKeys as _FfiEncryptionKeys
from ._ffi.freshtoken import CasResult, HostError, TokenStore, TokenStoreImpl, VersionedRecord, encrypted_store
from ._errors import StorageError, config_error, native
from . import _check, _loop
from ._shared import NativeOwner, guarded_store

__all__ = ["EncryptionKey", "EncryptedStore"]

T = TypeVar("T")


class EncryptionKey(NativeOwner):
    """An AES-256 key for :class:`EncryptedStore`.

    ``id`` names it in every record it encrypts: 1 to 64 printable ASCII
    characters without spaces (e.g. ``"2026-11"``). ``key`` is its 32 bytes,
    or those bytes in base64 (standard or URL-safe, padding optional: what
    ``openssl rand -base64 32`` prints). The bytes are copied into
    freshtoken's native memory, never come back, and are wiped there when no
    key or store refers to them any more. A bad one raises ``ConfigError``
    naming ``id`` or ``key``; ``repr()`` shows the id only. A copy is the key
    itself; pickling one raises ``TypeError``.
    """

    __slots__ = ("_native",)

    def __init__(self, id: str, key: Union[bytes, bytearray, memoryview, str]) -> None:  # noqa: A002
        id = _check.text(id, "id")  # noqa: A001
        if isinstance(key, str):
            self._native = native(_FfiEncryptionKey.from_base64, id, _check.text(key, "key"))
        elif isinstance(key, (bytes, bytearray, memoryview)):
            # Its bytes as they are: bytes() would call a subclass's __bytes__.
            self._native = native(_FfiEncryptionKey, id, memoryview(key).tobytes())
        else:
            raise config_error("key", "key must be 32 bytes or their base64 text")

    @property
    def id(self) -> str:
        """The key's id."""
        return self._native.id()

    def __repr__(self) -> str:
        return f"EncryptionKey(id={self.id!r})"


class EncryptedStore(NativeOwner, TokenStoreImpl):
    """A store whose records ``inner`` keeps encrypted at rest.

    ``inner`` holds a JSON envelope
    ``{"schema": "freshtoken.encrypted/1", "kid": …, "nonce": …, "ciphertext": …}``
    instead of each record; a record copied under another session key, or
    altered, fails to decrypt. ``current`` encrypts every save; ``old`` keys
    only decrypt, and a record read under one is rewritten under ``current``
    by its next save. An unknown key id or a failed decryption is a
    ``StorageError`` naming the key id, never a fallback. Plain records
    written before encryption was switched on are read and encrypted by
    their next save, unless ``refuse_plaintext``. The lease and
    compare-and-swap members pass through to ``inner``, so fleet stores keep
    working. Two keys with one id raise ``ConfigError`` naming ``old``.

    Its members may be awaited from any event loop (they run on
    freshtoken's), e.g. ``await store.load(key)`` to read a record back; a
    failure is a ``StorageError``. A copy is the store itself; pickling one
    raises ``TypeError``.
    """

    def __init__(self, inner: TokenStore, current: EncryptionKey,
                 old: Iterable[EncryptionKey] = (), *, refuse_plaintext: bool = False) -> None:
        guarded = guarded_store(inner, "inner")
        if isinstance(old, (str, bytes)) or not isinstance(old, Iterable):
            raise config_error("old", f"old must be a list of EncryptionKey, not {_check.type_name(old)}")
        keys = [current, *old]
        if not all(isinstance(k, EncryptionKey) for k in keys):
            raise config_error("current" if not isinstance(current, EncryptionKey) else "old",
                               "keys must be freshtoken.EncryptionKey objects")
        if not isinstance(refuse_plaintext, bool):
            raise config_error("refuse_plaintext",
                               f"refuse_plaintext must be a bool, not {_check.type_name(refuse_plaintext)}")
        ffi_keys = _FfiEncryptionKeys(current=current._native, old=[k._native for k in keys[1:]],
                                      refuse_plaintext=refuse_plaintext)
        made = native(encrypted_store, guarded, ffi_keys)
        # This object holds its own reference to the native store; `made` drops its one.
        self._handle = made._uniffi_clone_handle()
        self.inner = inner

    def __repr__(self) -> str:
        return f"EncryptedStore(inner={self.inner!r})"

    # The native members, awaited on freshtoken's loop (a Rust future is
    # polled on the loop uniffi was given), their arguments checked as at
    # every entry point (``ConfigError`` naming one), their failures a
    # ``StorageError`` as through a session. Sessions call the native store
    # directly and never come through here.
    async def load(self, key: str) -> Optional[str]:
        return await _stored(super().load, _check.text(key, "key"))

    async def save(self, key: str, record: str) -> None:
        return await _stored(super().save, _check.text(key, "key"), _check.text(record, "record"))

    async def acquire(self, key: str, owner: str, ttl_ms: int) -> bool:
        key, owner, ttl_ms = _check.text(key, "key"), _check.text(owner, "owner"), _check.integer(ttl_ms, "ttl_ms")
        if ttl_ms < 0:
            raise config_error("ttl_ms", "ttl_ms must not be negative")
        return await _stored(super().acquire, key, owner, ttl_ms)

    async def release(self, key: str, owner: str) -> None:
        return await _stored(super().release, _check.text(key, "key"), _check.text(owner, "owner"))

    async def load_versioned(self, key: str) -> Optional[VersionedRecord]:
        return await _stored(super().load_versioned, _check.text(key, "key"))

    async def save_versioned(self, key: str, record: str, expected: Optional[str]) -> CasResult:
        return await _stored(super().save_versioned, _check.text(key, "key"), _check.text(record, "record"),
                             _check.optional_text(expected, "expected"))


async def _stored(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Awaits the native store's ``function(*args)`` on freshtoken's loop; its
    failure (the internal ``HostError.Failed``) is a ``StorageError`` with its message."""
    try:
        return await _loop.run(function, *args)
    except HostError.Failed as error:
        raise StorageError(error.detail or "token storage failed") from None
