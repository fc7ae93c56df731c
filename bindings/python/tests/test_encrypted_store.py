"""EncryptedStore over a MemoryTokenStore: behind sessions on the emulator
(no token in the store's raw contents), tampering and moved records,
rotation, plain records and key errors."""

import asyncio
import base64
import json
import os
import pickle
import subprocess
import sys

import pytest

import freshtoken
from freshtoken import (
    ConfigError,
    EncryptedStore,
    EncryptionKey,
    MemoryTokenStore,
    StorageError,
)

from helpers import make_client, make_sync_client, same

KEY_A = bytes([0xA1]) * 32
KEY_B = bytes([0xB2]) * 32


def envelope(raw):
    return json.loads(raw)


def test_sessions_refresh_through_the_encrypted_store_and_no_token_reaches_its_raw_contents(emu):
    inner = MemoryTokenStore()
    store = EncryptedStore(inner, EncryptionKey("2026-11", KEY_A))
    assert store.inner is inner
    client, clock = make_sync_client(emu)
    family = emu.seed()
    session = client.session("user-42", store)
    session.seed(refresh_token=family["refresh_token"])
    first = session.access_token()
    clock.advance(901_000)
    second = client.session("user-42", store).access_token()
    assert emu.refresh_requests() == 2

    raw = inner.get("user-42")
    env = envelope(raw)
    assert list(env) == ["schema", "kid", "nonce", "ciphertext"]
    assert env["schema"] == "freshtoken.encrypted/1" and env["kid"] == "2026-11"
    record = json.loads(asyncio.run(store.load("user-42")))
    same(record["access_token"], second, "the decrypted record holds the token served")
    tokens = [family["refresh_token"], first, second, record["refresh_token"]]
    assert all(len(t) > 8 and t not in raw for t in tokens), "no token in the raw record"

    # A new client (a restart, asyncio this time) reads the encrypted record back.
    async def restarted():
        later, _ = make_client(emu, clock)
        return await later.session("user-42", store).access_token()

    same(asyncio.run(restarted()), second, "read back without a refresh")
    assert emu.refresh_requests() == 2


def test_a_tampered_or_moved_record_is_a_storage_error_naming_the_key_id(emu):
    inner = MemoryTokenStore()
    store = EncryptedStore(inner, EncryptionKey("2026-11", KEY_A))
    client, clock = make_sync_client(emu)
    family = emu.seed()
    client.session("alice", store).seed(refresh_token=family["refresh_token"])
    raw = inner.get("alice")
    env = envelope(raw)
    ciphertext = bytearray(base64.urlsafe_b64decode(env["ciphertext"] + "=="))
    ciphertext[3] ^= 0x01
    env["ciphertext"] = base64.urlsafe_b64encode(bytes(ciphertext)).decode().rstrip("=")
    inner._records["alice"] = json.dumps(env)

    fresh, _ = make_sync_client(emu, clock)
    with pytest.raises(StorageError) as raised:
        fresh.session("alice", store).access_token()
    assert raised.value.code == "storage"
    assert 'key id "2026-11"' in str(raised.value) and '"alice"' in str(raised.value)
    assert family["refresh_token"] not in str(raised.value)

    inner._records["alice"] = raw
    inner._records["mallory"] = raw
    with pytest.raises(StorageError):
        fresh.session("mallory", store).access_token()
    assert emu.refresh_requests() == 0, "nothing sent"


def test_rotation_and_plain_records(emu):
    inner = MemoryTokenStore()
    client, clock = make_sync_client(emu)
    family = emu.seed()
    client.session("u", EncryptedStore(inner, EncryptionKey("2025", KEY_A))).seed(
        refresh_token=family["refresh_token"])
    assert envelope(inner.get("u"))["kid"] == "2025"

    rotated = EncryptedStore(inner, EncryptionKey("2026", base64.b64encode(KEY_B).decode()),
                             [EncryptionKey("2025", KEY_A)])
    later, _ = make_sync_client(emu, clock)
    later.session("u", rotated).access_token()
    assert envelope(inner.get("u"))["kid"] == "2026", "the next save used the current key"

    inner._records["plain"] = '{"schema":"freshtoken.record/1","refresh_token":"rt-SENTINEL","updated_at":1}'
    strict = EncryptedStore(inner, EncryptionKey("2026", KEY_B), refuse_plaintext=True)
    with pytest.raises(StorageError) as raised:
        later.session("plain", strict).access_token()
    assert "not encrypted" in str(raised.value) and "SENTINEL" not in str(raised.value)
    assert json.loads(asyncio.run(strict.load("u")))["schema"] == "freshtoken.record/1"


def test_bad_keys_are_config_errors_naming_the_field_and_keys_never_show_themselves():
    with pytest.raises(ConfigError) as raised:
        EncryptionKey("k", bytes(16))
    assert raised.value.field == "key" and "32 bytes" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        EncryptionKey("has space", KEY_A)
    assert raised.value.field == "id"
    with pytest.raises(ConfigError) as raised:
        EncryptionKey("k", "not base64!")
    assert raised.value.field == "key"
    with pytest.raises(ConfigError) as raised:
        EncryptedStore(MemoryTokenStore(), EncryptionKey("k", KEY_A), [EncryptionKey("k", KEY_B)])
    assert raised.value.field == "old"
    with pytest.raises(ConfigError):
        EncryptedStore(MemoryTokenStore(), KEY_A)
    key = EncryptionKey("2026-11", KEY_A)
    assert key.id == "2026-11"
    assert repr(key) == "EncryptionKey(id='2026-11')"
    assert "EncryptedStore" in freshtoken.__all__ and "EncryptionKey" in freshtoken.__all__


def test_its_members_called_directly_check_their_arguments():
    store = EncryptedStore(MemoryTokenStore(), EncryptionKey("k", KEY_A))
    cases = [
        (lambda: store.load("\ud800"), "key"),
        (lambda: store.load(None), "key"),
        (lambda: store.save("u", "\ud800"), "record"),
        (lambda: store.save(7, "{}"), "key"),
        (lambda: store.acquire("u", "\ud800", 1000), "owner"),
        (lambda: store.acquire("u", "o", "1000"), "ttl_ms"),
        (lambda: store.release("u", b"o"), "owner"),
        (lambda: store.load_versioned("\ud800"), "key"),
        (lambda: store.save_versioned("u", "{}", 5), "expected"),
    ]
    for call, field in cases:
        with pytest.raises(ConfigError) as raised:
            asyncio.run(call())
        assert raised.value.field == field, (field, repr(raised.value))
    with pytest.raises(ConfigError) as raised:
        EncryptedStore(MemoryTokenStore(), EncryptionKey("k", KEY_A), refuse_plaintext="no")
    assert raised.value.field == "refuse_plaintext"
    # Good arguments still work.
    asyncio.run(store.save("u", "{}"))
    assert asyncio.run(store.load("u")) == "{}"


def test_a_record_no_key_opens_is_replaced_by_a_re_link(emu, tmp_path):
    """A compare-and-swap store (the file store) holds a record under a key
    removed too early: reading it is a StorageError, and the user's re-link
    (seed) replaces it instead of failing on it."""
    inner = freshtoken.FileTokenStore(str(tmp_path))
    assert inner.supports_versions()
    client, clock = make_sync_client(emu)
    old = emu.seed()
    client.session("u", EncryptedStore(inner, EncryptionKey("2025", KEY_A))).seed(
        refresh_token=old["refresh_token"])

    current = EncryptedStore(inner, EncryptionKey("2026", KEY_B))
    later, _ = make_sync_client(emu, clock)
    session = later.session("u", current)
    with pytest.raises(StorageError):
        session.access_token()
    relinked = emu.seed()
    session.seed(refresh_token=relinked["refresh_token"])
    record = json.loads(asyncio.run(current.load("u")))
    same(record["refresh_token"], relinked["refresh_token"], "the new link is stored under the current key")
    session.access_token()
    assert emu.refresh_requests() == 1


def test_direct_calls_fail_with_storage_error_not_the_internal_host_error():
    # They raised the generated HostError.Failed (no ``code``), where a
    # session raises StorageError for the same failure.
    inner = MemoryTokenStore()
    asyncio.run(EncryptedStore(inner, EncryptionKey("2026", KEY_A)).save("u", "{}"))
    other = EncryptedStore(inner, EncryptionKey("2027", KEY_A))
    with pytest.raises(StorageError) as raised:
        asyncio.run(other.load("u"))
    assert raised.value.code == "storage"
    assert str(raised.value) == ('the record of session key "u" (key id "2026") is encrypted with a key '
                                 "that is not among the keys given")

    class Failing(freshtoken.TokenStoreBase):
        async def load(self, key):
            raise OSError("disk gone")

        async def save(self, key, record):
            raise OSError("disk gone")

        def supports_lease(self):
            return True

        async def acquire(self, key, owner, ttl_ms):
            raise OSError("disk gone")

        async def release(self, key, owner):
            raise OSError("disk gone")

        def supports_versions(self):
            return True

        async def load_versioned(self, key):
            raise OSError("disk gone")

        async def save_versioned(self, key, record, expected):
            raise OSError("disk gone")

    store = EncryptedStore(Failing(), EncryptionKey("k", KEY_A))
    for call in (lambda: store.load("u"), lambda: store.save("u", "{}"), lambda: store.acquire("u", "o", 1000),
                 lambda: store.release("u", "o"), lambda: store.load_versioned("u"),
                 lambda: store.save_versioned("u", "{}", None)):
        with pytest.raises(StorageError) as raised:
            asyncio.run(call())
        assert "disk gone" in str(raised.value), str(raised.value)
    with pytest.raises(ConfigError) as raised:
        asyncio.run(store.acquire("u", "o", -1))
    assert raised.value.field == "ttl_ms"


COPIES = """
import asyncio, copy, gc, json, pickle
from freshtoken import EncryptedStore, EncryptionKey, MemoryTokenStore
report = {}
for mode in ("copy", "deepcopy", "pickle"):
    key = EncryptionKey("k", bytes(32))
    store = EncryptedStore(MemoryTokenStore(), key)
    try:
        if mode == "pickle":
            copies = [pickle.loads(pickle.dumps(store)), pickle.loads(pickle.dumps(key))]
        else:
            copies = [getattr(copy, mode)(store), getattr(copy, mode)(key), getattr(copy, mode)({"s": store})["s"]]
    except TypeError as error:
        report[mode] = "refused: " + str(error)
        continue
    report[mode] = [c is store or c is key for c in copies]
    del store, key
    gc.collect()
    # The copies outlive the originals, and native memory is reused meanwhile.
    others = [EncryptedStore(MemoryTokenStore(), EncryptionKey("o%d" % i, bytes(32))) for i in range(50)]
    asyncio.run(copies[0].save("u", "{}"))
    assert asyncio.run(copies[0].load("u")) == "{}"
    assert copies[1].id == "k"
    del copies, others
    gc.collect()
print(json.dumps(report))
"""


def test_a_copy_of_a_store_or_key_is_itself_and_pickling_is_refused(tmp_path):
    # A copy (or deepcopy, or a pickle round trip) carried the same native
    # handle in a second object: whichever went first freed the native
    # store or key, and the other crashed the process (or hung) on use.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(freshtoken.__file__)))
    result = subprocess.run([sys.executable, "-c", COPIES], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["copy"] == [True, True, True] and report["deepcopy"] == [True, True, True], report
    assert report["pickle"].startswith("refused: cannot pickle 'EncryptedStore' object"), report
    with pytest.raises(TypeError, match="cannot pickle 'EncryptionKey' object"):
        pickle.dumps(EncryptionKey("k", KEY_A))


class OtherBytes(bytes):
    """Key bytes whose own __bytes__ gives other bytes than its value."""

    def __bytes__(self):
        return KEY_B


def test_a_bytes_subclass_key_encrypts_with_its_own_bytes(emu):
    # bytes(key) called the subclass's __bytes__: records were encrypted
    # under other bytes than the key the application gave, and a process
    # reading them with that key (as bytes) could not decrypt them.
    inner = MemoryTokenStore()
    client, clock = make_sync_client(emu)
    family = emu.seed()
    session = client.session("u1", EncryptedStore(inner, EncryptionKey("k1", OtherBytes(KEY_A))))
    session.seed(refresh_token=family["refresh_token"])
    token = session.access_token()
    restarted, _ = make_sync_client(emu, clock)
    same(restarted.session("u1", EncryptedStore(inner, EncryptionKey("k1", KEY_A))).access_token(), token,
         "read back with the key's own bytes")
    assert emu.refresh_requests() == 1
