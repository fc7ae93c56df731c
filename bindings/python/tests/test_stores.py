"""TokenStoreBase, MemoryTokenStore and FileTokenStore, alone and behind a
session on the emulator."""

import asyncio
import errno
import hashlib
import json
import os
import re
import shutil
import stat

import pytest

import freshtoken
from freshtoken import FileTokenStore, FreshTokenError, HostError, MemoryTokenStore, TokenStoreBase
from freshtoken import _stores
from freshtoken._stores import file_name, legacy_file_name

from helpers import (CLIENT_ID, CLIENT_SECRET, differ, held_then_released, make_client, make_sync_client, same,
                     seeded, seeded_sync)


def test_token_store_base_defaults_serve_one_process():
    class Sync(TokenStoreBase):
        def __init__(self):
            self.data = {}

        def load(self, key):  # plain functions are fine too
            return self.data.get(key)

        def save(self, key, record):
            self.data[key] = record

    store = Sync()
    assert store.supports_lease() is False and store.supports_versions() is False
    assert asyncio.run(store.acquire("k", "owner", 1000)) is True
    assert asyncio.run(store.release("k", "owner")) is None
    with pytest.raises(HostError.Failed):
        asyncio.run(store.load_versioned("k"))
    store.save("k", "v")  # the members stay as written: plain ones answer at once
    assert store.load("k") == "v"
    assert store.load("missing") is None


def test_any_exception_from_a_store_reaches_the_caller_as_storage_error_with_its_message(emu):
    class Broken(TokenStoreBase):
        async def load(self, key):
            raise KeyError("backend offline")

        async def save(self, key, record):
            raise HostError.Failed(detail="as given")

    client, _ = make_sync_client(emu)
    with pytest.raises(freshtoken.StorageError) as raised:
        client.session("k", Broken()).access_token()
    assert "backend offline" in str(raised.value)
    with pytest.raises(freshtoken.StorageError) as raised:
        client.session("k", Broken()).seed(refresh_token=emu.seed()["refresh_token"])
    assert "as given" in str(raised.value)
    assert emu.refresh_requests() == 0


def test_memory_store_round_trip():
    async def scenario():
        store = MemoryTokenStore()
        assert await store.load("a") is None
        await store.save("a", "record-a")
        assert await store.load("a") == "record-a"
        assert store.get("a") == "record-a"

    asyncio.run(scenario())


def test_file_store_round_trip_names_and_permissions(tmp_path):
    async def scenario():
        directory = tmp_path / "tokens"
        store = FileTokenStore(directory)
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert await store.load("user/1") is None
        await store.save("user/1", '{"a":1}')
        await store.save("user/1", '{"a":2}')
        assert await store.load("user/1") == '{"a":2}'

        long_key = "k" * 500
        await store.save(long_key, "long")
        assert await store.load(long_key) == "long"
        listed = sorted(os.listdir(directory))
        names = [name for name in listed if name.endswith(".json")]
        assert len(names) == 2, "one record file per key"
        assert sorted(set(listed) - set(names)) == sorted(
            os.path.basename(store.lock_path(key, "write")) for key in ("user/1", long_key)), \
            "beside them only each key's write lock: no temporary files left"
        assert all(len(name) < 200 for name in listed)
        assert any(name.startswith("h.") for name in names), "a long key is hashed"
        assert os.path.basename(store.path("user/1")) == "x.757365722f31.json"
        assert os.path.basename(store.lock_path("user/1")) == "x.757365722f31.lock"
        for name in listed:
            assert stat.S_IMODE(os.stat(directory / name).st_mode) == 0o600

        # Keys that differ only in case or by '/' never share a file.
        await store.save("User/1", "other")
        assert await store.load("user/1") == '{"a":2}'

    asyncio.run(scenario())


def test_file_store_failure_is_a_storage_error_behind_a_session(emu, tmp_path):
    async def scenario():
        client, _ = make_client(emu)
        store = FileTokenStore(tmp_path / "tokens")
        family = emu.seed()
        # A directory where the record file should go: os.replace fails (even as root).
        os.mkdir(store.path("u1"))
        session = client.session("u1", store)
        with pytest.raises(FreshTokenError.Storage) as raised:
            await session.seed(refresh_token=family["refresh_token"])
        assert raised.value.code == "storage"
        assert family["refresh_token"] not in str(raised.value)
        assert [n for n in os.listdir(store.directory) if n.endswith(".tmp")] == [], "temp file removed"

    asyncio.run(scenario())


def test_a_record_file_that_is_not_text_is_a_storage_error_and_a_new_link_replaces_it(emu, tmp_path):
    async def scenario():
        client, _ = make_client(emu)
        store = FileTokenStore(tmp_path / "tokens")
        with open(store.path("u1"), "wb") as file:
            file.write(b"\xff\xfe{\x80")
        with pytest.raises(FreshTokenError.Storage):
            await client.session("u1", store).access_token()
        session, _ = await seeded(emu, client, store)  # the user links again: compare-and-swap over the bytes
        assert json.loads(await store.load("u1"))["refresh_token"]
        assert await session.access_token()

    asyncio.run(scenario())


def test_a_record_file_over_the_cap_is_read_only_past_it_and_a_session_refuses_it(emu, tmp_path):
    async def scenario():
        from freshtoken._stores import MAX_FILE_BYTES
        client, _ = make_client(emu)
        store = FileTokenStore(tmp_path / "tokens")
        with open(store.path("u1"), "w") as file:
            file.write("x" * (3 * MAX_FILE_BYTES))
        assert len(await store.load("u1")) == MAX_FILE_BYTES + 1
        with pytest.raises(FreshTokenError.Storage):
            await client.session("u1", store).access_token()
        # Cut inside a character (2 bytes each): read to the last whole one, not refused as "not UTF-8".
        with open(store.path("u2"), "w", encoding="utf-8") as file:
            file.write("\u00e9" * MAX_FILE_BYTES)
        assert await store.load("u2") == "\u00e9" * (MAX_FILE_BYTES // 2)
        assert (await store.load_versioned("u2")).record == "\u00e9" * (MAX_FILE_BYTES // 2)
        with pytest.raises(FreshTokenError.Storage) as raised:
            await client.session("u2", store).access_token()
        assert "larger than" in str(raised.value), str(raised.value)

    asyncio.run(scenario())


def _damaged_record(refresh_token):
    """A record file whose refresh token has one byte that is not UTF-8."""
    token = bytearray(refresh_token.encode())
    token[3] = 0xFF
    return b'{"schema":"freshtoken.record/1","refresh_token":"' + bytes(token) + b'","updated_at":1}'


@pytest.mark.parametrize("versions", [True, False], ids=["versions", "no flock"])
@pytest.mark.parametrize("name", ["today's", "earlier"])
def test_a_refresh_token_not_utf8_is_refused_nothing_sent_the_file_kept_until_a_relink(
        emu, tmp_path, monkeypatch, versions, name):
    # Read with replacement characters, the altered token was sent once
    # (invalid_grant) and the dead marker saved over the bytes.
    if not versions:
        monkeypatch.setattr(freshtoken._stores, "fcntl", None)  # as on Windows: load and save only
    elif freshtoken._stores.fcntl is None:
        pytest.skip("no flock on this OS")

    async def scenario():
        family = emu.seed()
        directory = tmp_path / "tokens"
        directory.mkdir()
        store = FileTokenStore(directory)
        path = store.path("u1") if name == "today's" else str(directory / legacy_file_name("u1"))
        raw = _damaged_record(family["refresh_token"])
        with open(path, "wb") as file:
            file.write(raw)
        assert store.supports_versions() is versions

        with pytest.raises(HostError.Failed) as raised:
            await store.load("u1")
        assert "not UTF-8" in str(raised.value) and family["refresh_token"][4:] not in str(raised.value)
        if versions:
            found = await store.load_versioned("u1")
            assert found.record == FileTokenStore.NOT_UTF8_RECORD
            assert found.version == hashlib.sha256(raw).hexdigest(), "the version of the file's bytes"

        client, _ = make_client(emu)
        session = client.session("u1", store)
        for call in (session.access_token, session.refresh, session.status):
            with pytest.raises(freshtoken.StorageError) as raised:
                await call()
            assert family["refresh_token"][4:] not in str(raised.value)
            if not versions:
                assert "not UTF-8" in str(raised.value), str(raised.value)
        assert emu.refresh_requests() == 0, "the damaged token was never sent"
        assert emu.refresh_token_state(family["refresh_token"]) == "active"
        with open(path, "rb") as file:
            assert file.read() == raw, "the file is byte for byte as it was"

        # A new link replaces it (compare-and-swap against the bytes' version).
        relinked = emu.seed()
        await session.seed(refresh_token=relinked["refresh_token"])
        same(json.loads(await store.load("u1"))["refresh_token"], relinked["refresh_token"], "the new link is saved")
        assert not os.path.exists(path) or path == store.path("u1")
        other, _ = make_client(emu)
        assert await other.session("u1", FileTokenStore(directory)).access_token()
        assert emu.refresh_requests() == 1 and emu.counters()["reuse_detected"] == 0

    asyncio.run(scenario())


def test_a_session_on_a_file_store_survives_a_new_client(emu, tmp_path):
    async def scenario():
        client, clock = make_client(emu)
        store = FileTokenStore(tmp_path / "tokens")
        session, family = await seeded(emu, client, store)
        token = await session.access_token()
        record = json.loads(await store.load("u1"))
        same(record["access_token"], token, "the file holds the handed-out token")
        assert record["refresh_token"] != family["refresh_token"]

        # A new process (client) reads the file: no request.
        later, _ = make_client(emu, clock)
        same(await later.session("u1", FileTokenStore(tmp_path / "tokens")).access_token(), token,
             "read back from the file")
        assert emu.refresh_requests() == 1

    asyncio.run(scenario())


def test_records_never_print_secrets():
    info = freshtoken.TokenInfo(access_token="at-SECRET", expires_at_ms=1, scope="s",
                                id_token="id-SECRET", refresh_expires_at_ms=None)
    seed = freshtoken.SeedOptions(refresh_token="rt-SECRET")
    request = freshtoken.HttpRequest(
        method="POST", url="https://x/connect/token?code=SECRET",
        headers=[freshtoken.HttpHeader(name="authorization", value="Basic SECRET")],
        body="refresh_token=rt-SECRET&client_secret=SECRET", timeout_ms=1, max_response_bytes=1)
    options = freshtoken.TokenClientOptions(token_endpoint="https://x?key=SECRET", client_id="c", client_secret="SECRET")
    stored = freshtoken.VersionedRecord(record='{"refresh_token":"rt-SECRET"}', version="1")
    code = freshtoken.ExchangeCodeOptions(code="c-SECRET", code_verifier="v-SECRET", redirect_uri="app://cb")
    for record in (info, seed, request, options, request.headers[0], stored, code):
        assert "SECRET" not in str(record) and "SECRET" not in repr(record), type(record).__name__
    # The text is the core's redacting Debug, the same as Kotlin's toString().
    assert "expires_at_ms: 1" in str(info) and repr(info) == str(info)
    assert "authorization" in str(request)
    # A URL's query may hold an API key: its length shows, not its text.
    assert '"https://x/connect/token?<11 chars>"' in str(request), str(request)


def test_session_wrapper_seeds_with_keywords_or_options(emu):
    async def scenario():
        client, _ = make_client(emu)
        family = emu.seed()
        session = client.session("u1", MemoryTokenStore())
        assert session.key == "u1"
        await session.seed(freshtoken.SeedOptions(refresh_token=family["refresh_token"]))
        assert isinstance(await session.access_token(), str)
        with pytest.raises(FreshTokenError.ReauthorizationRequired):
            await client.session("nobody", MemoryTokenStore()).access_token()

    asyncio.run(scenario())


class FleetStore(MemoryTokenStore):
    """A MemoryTokenStore with a lease and compare-and-swap versions, as a fleet store would have."""

    def __init__(self):
        super().__init__()
        self.versions = {}
        self.leases = {}
        self.acquired = 0
        self.cas_saves = 0

    def supports_lease(self):
        return True

    async def acquire(self, key, owner, ttl_ms):
        if self.leases.get(key) not in (None, owner):
            return False
        self.leases[key] = owner
        self.acquired += 1
        return True

    async def release(self, key, owner):
        if self.leases.get(key) == owner:
            del self.leases[key]

    def supports_versions(self):
        return True

    async def load_versioned(self, key):
        record = self.get(key)
        return None if record is None else freshtoken.VersionedRecord(record=record, version=str(self.versions[key]))

    async def save_versioned(self, key, record, expected):
        current = self.versions.get(key)
        if (None if current is None else str(current)) != expected:
            return freshtoken.CasResult.CONFLICT()
        self.versions[key] = (current or 0) + 1
        self.cas_saves += 1
        await super().save(key, record)
        return freshtoken.CasResult.SAVED(version=str(self.versions[key]))

    async def save(self, key, record):
        self.versions[key] = self.versions.get(key, 0) + 1
        await super().save(key, record)


def test_a_fleet_store_with_lease_and_versions_serves_two_clients_with_one_refresh(emu):
    async def scenario():
        store = FleetStore()
        # The system clock: a waiting client really waits for the other's
        # lease (a fake clock's instant sleeps would spin it past its budget).
        a = freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
        b = freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)  # another "process"
        family = emu.seed()
        await a.session("u1", store).seed(refresh_token=family["refresh_token"])
        emu.fault({"kind": "hold", "grant": "refresh_token"})

        tokens = await held_then_released(
            emu, *(c.session("u1", store).access_token() for c in (a, b) for _ in range(10)))
        assert len(set(tokens)) == 1, "both clients got the one rotated token"
        assert emu.refresh_requests() == 1
        assert emu.counters()["reuse_detected"] == 0
        assert store.acquired >= 1 and store.leases == {}, "the lease was taken and given back"

    asyncio.run(scenario())


def _generated_keys():
    """A large, varied set of keys: user ids and e-mails in every case
    variant, Unicode whose case folding is special, separators, and lengths
    across the hashing threshold."""
    import itertools
    import random

    rng = random.Random(11)
    alphabet = "aAbBjJoOhHnNsSkK0189_-./:@+= ßẞİıǅσςΣﬀKÅå😀"
    keys = {"JoHn", "Jobn", "john", "JOHN", "user/1", "User/1", "USER/1"}
    for word in ("john", "alice@example.com", "tenant:42/user:7", "straße", "ǆemal"):
        for mask in itertools.product((str.lower, str.upper), repeat=min(len(word), 8)):
            keys.add("".join(f(c) for f, c in zip(mask, word)) + word[len(mask):])
    for _ in range(25_000):
        length = rng.choice((1, 2, 3, 5, 8, 13, 21, 40, 59, 60, 61, 90, 91, 200))
        keys.add("".join(rng.choice(alphabet) for _ in range(length)))
    return keys


def test_file_names_of_distinct_keys_never_differ_only_in_case():
    keys = _generated_keys()
    assert len(keys) > 20_000
    names = {}
    for key in keys:
        name = file_name(key)
        assert re.fullmatch(r"(x\.(?:[0-9a-f]{2})*|h\.[0-9a-f]{64})\.json", name), name
        assert len(name) <= 130
        folded = name.casefold()
        assert folded not in names, f"{names[folded]!r} and {key!r} share a file on a case-insensitive disk"
        names[folded] = key
    # The old names did collide: JoHn and Jobn differ only in case there.
    assert legacy_file_name("JoHn").casefold() == legacy_file_name("Jobn").casefold()
    assert legacy_file_name("JoHn") != legacy_file_name("Jobn")


# Key → file name: the same table as bindings/js/test/stores.file-names.test.mjs
# and the Kotlin FileTokenStoreNamesTest, so the three stores share names.
PINNED_NAMES = [
    ("a", "x.61.json"),
    ("JoHn", "x.4a6f486e.json"),
    ("user@example", "x.75736572406578616d706c65.json"),
    ("x\u00e9\u65e5", "x.78c3a9e697a5.json"),
    ("\U0001F511", "x.f09f9491.json"),
    ("k" * 60, "x." + "6b" * 60 + ".json"),
    ("k" * 61, "h.3828098da5bc4c86c0488c22281c78f5e6c9d9699fa18cafa31a825452859529.json"),
    ("\u00e9" * 30, "x." + "c3a9" * 30 + ".json"),
    ("\u00e9" * 31, "h.f299f682f8ab27d5a1e24784fb220657d1d4c52e07988895131dbc1eae0e2e55.json"),
]


@pytest.mark.parametrize("key, name", PINNED_NAMES)
def test_file_names_are_those_of_the_javascript_and_kotlin_stores(tmp_path, key, name):
    assert file_name(key) == name
    store = FileTokenStore(tmp_path)
    assert os.path.basename(store.path(key)) == name
    asyncio.run(store.save(key, "record"))
    assert sorted(os.listdir(tmp_path)) == [name, name[: -len(".json")] + ".write.lock"]


def test_records_under_old_file_names_are_read_and_moved_on_save(tmp_path):
    directory = tmp_path / "tokens"
    directory.mkdir()
    short, middle, long_key = "JoHn", "m" * 80, "l" * 100  # k.<base64> → x., k.<base64> → h., h. both
    for key in (short, middle, long_key):
        (directory / legacy_file_name(key)).write_text(f'{{"key":"{key}"}}')
    assert legacy_file_name(middle).startswith("k.") and file_name(middle).startswith("h.")
    assert legacy_file_name(long_key) == file_name(long_key), "long keys keep their name"

    async def scenario():
        store = FileTokenStore(directory)
        for key in (short, middle, long_key):
            assert await store.load(key) == f'{{"key":"{key}"}}', "the old file is read"
        assert await store.load("Jobn") is None, "a key whose old name differs only in case reads nothing"

        await store.save(short, "new-short")
        await store.save(middle, "new-middle")
        assert await store.load(short) == "new-short"
        assert await store.load(middle) == "new-middle"
        assert sorted(n for n in os.listdir(directory) if n.endswith(".json")) == sorted(
            [file_name(short), file_name(middle), file_name(long_key)]), \
            "the old files are gone once the new ones are saved"
        # A new store (a restart) reads the new names.
        again = FileTokenStore(directory)
        assert await again.load(short) == "new-short"

    asyncio.run(scenario())


@pytest.mark.parametrize("listed", ["before", "during"])
def test_a_record_moved_from_its_old_name_during_a_load_is_read_under_the_new_one(tmp_path, monkeypatch, listed):
    """A load reads today's name (missing), another process's save then
    writes today's file and removes the old one, and the old name reads
    nothing: the record exists all along, so the load reads today's name
    again. The directory's old names listed before that load, or by it
    (the process's first load there, listing after the old file went)."""
    directory = tmp_path / "tokens"
    directory.mkdir()
    old = directory / legacy_file_name("u1")
    old.write_text('{"v":1}')
    store = FileTokenStore(directory)
    if listed == "before":
        assert asyncio.run(store.load("u1")) == '{"v":1}'
    real_read = _stores._read

    def racing_read(path):
        found = real_read(path)
        if path == store.path("u1") and found is None and old.exists():
            # The other process's save, between this load's first read and the next.
            with open(store.path("u1"), "w") as file:
                file.write('{"v":2}')
            os.unlink(old)
        return found

    monkeypatch.setattr(_stores, "_read", racing_read)
    assert asyncio.run(store.load("u1")) == '{"v":2}', "never None: the record was stored all along"
    assert asyncio.run(store.load_versioned("u1")).record == '{"v":2}'


class DirectoryFsyncs:
    """``os.fsync`` of a directory, made to fail with ``failing`` (an errno;
    None: the real fsync runs) as a failing disk would: that cannot be made
    real in a test. ``synced`` counts the real ones; ``listed`` holds each
    one's directory (its inode) and the names it held then. ``failing_at``
    (inode: errno) makes one directory's fail first."""

    def __init__(self, monkeypatch):
        self.failing = None
        self.failing_at = {}
        self.synced = 0
        self.listed = []
        real_fsync = os.fsync

        def fsync(fd):
            found = os.fstat(fd)
            if stat.S_ISDIR(found.st_mode):
                code = self.failing_at.get(found.st_ino, self.failing)
                if code is not None:
                    raise OSError(code, os.strerror(code))
                self.synced += 1
                self.listed.append((found.st_ino, sorted(os.listdir(fd))))
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)


def test_a_directory_fsync_that_fails_fails_the_save_one_the_platform_cannot_do_does_not(tmp_path, monkeypatch):
    """After the rename, a directory fsync that fails (EIO, ENOSPC) means the
    rename may not outlive a crash, and the old record, whose refresh token
    is spent, come back: the save fails (freshtoken keeps the record and
    saves it again). Where the platform cannot sync a directory at all
    (some file systems answer EINVAL or ENOTSUP) there is nothing to wait for."""
    store = FileTokenStore(tmp_path / "secret-user-tokens")
    fsyncs = DirectoryFsyncs(monkeypatch)
    for code in (errno.EIO, errno.ENOSPC):
        fsyncs.failing = code
        with pytest.raises(HostError.Failed) as raised:
            asyncio.run(store.save("u1", '{"v":1}'))
        assert raised.value.detail == f"cannot make the record file durable ({errno.errorcode[code]})"
        assert "secret-user" not in str(raised.value)
        with pytest.raises(HostError.Failed):
            asyncio.run(store.save_versioned(f"u{code}", '{"v":1}', None))
    for code in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
        fsyncs.failing = code
        asyncio.run(store.save("u1", f'{{"v":{code}}}'))
        assert asyncio.run(store.load("u1")) == f'{{"v":{code}}}'
    fsyncs.failing = None
    asyncio.run(store.save("u1", '{"v":"synced"}'))
    assert fsyncs.synced == 1


def test_a_new_directory_is_synced_into_the_parent_of_each_level_created(tmp_path, monkeypatch):
    """The store directory's fsync makes its files durable, not its own
    entry: a power loss could drop a directory just made, and the first
    record in it. Each parent is synced once the level in it exists; a
    directory that exists already needs nothing."""
    fsyncs = DirectoryFsyncs(monkeypatch)
    FileTokenStore(tmp_path / "a" / "b" / "tokens")
    assert sorted(fsyncs.listed) == sorted([
        (os.stat(tmp_path).st_ino, ["a"]),
        (os.stat(tmp_path / "a").st_ino, ["b"]),
        (os.stat(tmp_path / "a" / "b").st_ino, ["tokens"]),
    ])
    fsyncs.listed.clear()
    FileTokenStore(tmp_path / "a" / "b" / "tokens")
    FileTokenStore(tmp_path / "a")
    assert fsyncs.listed == []


def test_a_parent_fsync_that_fails_fails_the_store_and_undoes_the_directory(tmp_path, monkeypatch):
    """A parent's fsync that fails (EIO) raises, and the levels created are
    removed, so that the next try creates and syncs them again; one the
    platform cannot do (EINVAL, ENOTSUP) is no failure."""
    fsyncs = DirectoryFsyncs(monkeypatch)
    fsyncs.failing_at[os.stat(tmp_path).st_ino] = errno.EIO
    with pytest.raises(OSError) as raised:
        FileTokenStore(tmp_path / "a" / "tokens")
    assert raised.value.errno == errno.EIO
    assert os.listdir(tmp_path) == [], "removed again"
    fsyncs.failing_at.clear()
    fsyncs.listed.clear()
    store = FileTokenStore(tmp_path / "a" / "tokens")
    assert (os.stat(tmp_path).st_ino, ["a"]) in fsyncs.listed
    asyncio.run(store.save("u1", '{"v":1}'))
    for code in (errno.EINVAL, errno.ENOTSUP):
        fsyncs.failing_at[os.stat(tmp_path).st_ino] = code
        store = FileTokenStore(tmp_path / errno.errorcode[code])
        asyncio.run(store.save("u1", '{"v":1}'))
        assert asyncio.run(store.load("u1")) == '{"v":1}'


def test_a_failed_parent_fsync_removes_only_the_levels_this_store_created(tmp_path, monkeypatch):
    """Another process (here: another store) that creates a level after this
    store found it missing, before its mkdir, owns it: a failed sync leaves it
    there. That store's records are in a level not synced into its parent:
    its saves fail until that sync succeeds."""
    fsyncs = DirectoryFsyncs(monkeypatch)
    fsyncs.failing_at[os.stat(tmp_path).st_ino] = errno.EIO
    other = {}
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if os.fspath(path) == str(tmp_path / "a" / "b") and not other:
            monkeypatch.setattr(os, "mkdir", real_mkdir)
            other["store"] = FileTokenStore(tmp_path / "a" / "b")  # its parent "a" exists: synced
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.raises(OSError) as raised:
        FileTokenStore(tmp_path / "a" / "b" / "tokens")
    assert raised.value.errno == errno.EIO
    assert os.listdir(tmp_path / "a" / "b") == [], "this store's level removed"
    assert os.path.isdir(tmp_path / "a" / "b"), "the other store's level left"
    with pytest.raises(HostError.Failed):
        asyncio.run(other["store"].save("u1", '{"v":1}'))
    fsyncs.failing_at.clear()
    fsyncs.listed.clear()
    asyncio.run(other["store"].save("u1", '{"v":1}'))
    assert (os.stat(tmp_path).st_ino, ["a"]) in fsyncs.listed, "the level left, synced now"
    assert asyncio.run(other["store"].load("u1")) == '{"v":1}'
    fsyncs.listed.clear()
    asyncio.run(other["store"].save("u1", '{"v":2}'))
    assert [ino for ino, _ in fsyncs.listed] == [os.stat(tmp_path / "a" / "b").st_ino], "once synced, no more"


@pytest.mark.parametrize("alias", [False, True], ids=["same path", "through a link"])
def test_a_store_that_finds_a_directory_another_is_still_creating_syncs_its_parent_too(tmp_path, monkeypatch, alias):
    """Another thread's store may have just made the directory and not yet
    synced it into its parent: a save into it syncs that parent as well,
    else it could report a record durable whose directory is not (also when
    it names the directory through a link)."""
    fsyncs = DirectoryFsyncs(monkeypatch)
    tokens = tmp_path / "new" / "tokens"
    os.symlink(tmp_path, tmp_path / "link")
    others = tmp_path / "link" / "new" / "tokens" if alias else tokens
    real_fsync = os.fsync
    during = {}

    def fsync(fd):
        # The first store's sync of "new" into tmp_path: the other store comes now.
        if os.fstat(fd).st_ino == os.stat(tmp_path).st_ino and not during:
            during["listed"] = fsyncs.listed
            fsyncs.listed = []
            store = FileTokenStore(others)
            asyncio.run(store.save("u2", '{"v":2}'))
            during["other"], fsyncs.listed = fsyncs.listed, during["listed"]
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    FileTokenStore(tokens)
    assert [ino for ino, _ in during["other"]] == [os.stat(tokens).st_ino, os.stat(tmp_path).st_ino], \
        "its directory, then the parent of the level still unsynced"
    assert during["other"][1][1] == ["link", "new"]


def test_a_save_makes_a_directory_removed_since_again(tmp_path, monkeypatch):
    """A store whose directory is gone (removed, or its creation undone by a
    failed sync in another store) makes it again, synced into its parent, at
    its next save, as the Kotlin store and the CLI do."""
    store = FileTokenStore(tmp_path / "tokens")
    os.rmdir(tmp_path / "tokens")
    fsyncs = DirectoryFsyncs(monkeypatch)
    asyncio.run(store.save("u1", '{"v":1}'))
    assert (os.stat(tmp_path).st_ino, ["tokens"]) in fsyncs.listed
    assert stat.S_IMODE(os.stat(tmp_path / "tokens").st_mode) == 0o700
    shutil.rmtree(tmp_path / "tokens")
    assert asyncio.run(store.save_versioned("u1", '{"v":2}', None)) == freshtoken.CasResult.SAVED(
        version=hashlib.sha256(b'{"v":2}').hexdigest())
    assert asyncio.run(store.load("u1")) == '{"v":2}'


@pytest.mark.parametrize("code, fails", [(errno.EMFILE, True), (errno.EACCES, False)], ids=["EMFILE", "EACCES"])
def test_a_directory_that_cannot_be_opened_fails_the_save_unless_the_platform_opens_none(
        tmp_path, monkeypatch, code, fails):
    """Windows opens no directory with os.open (EACCES); a process out of
    file descriptors (EMFILE) syncs nothing, and its save must say so."""
    store = FileTokenStore(tmp_path / "tokens")
    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if os.fspath(path) == store.directory:
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    if fails:
        with pytest.raises(HostError.Failed, match=r"cannot make the record file durable \(EMFILE\)"):
            asyncio.run(store.save("u1", '{"v":1}'))
    else:
        asyncio.run(store.save("u1", '{"v":1}'))
    monkeypatch.undo()
    assert asyncio.run(store.load("u1")) == '{"v":1}', "renamed, durable or not"


def test_a_compare_and_swap_that_finds_its_own_unsynced_record_syncs_it_before_answering(tmp_path, monkeypatch):
    """A save whose directory fsync failed left its record renamed into
    place; freshtoken saves it again with the version it had, finds the
    stored record moved on to exactly the one it saves (a conflict), and
    takes it as saved: the store makes the rename durable before that
    answer, or fails again."""
    store = FileTokenStore(tmp_path / "tokens")
    fsyncs = DirectoryFsyncs(monkeypatch)
    fsyncs.failing = errno.EIO
    with pytest.raises(HostError.Failed):
        asyncio.run(store.save_versioned("u1", '{"v":1}', None))
    assert asyncio.run(store.load("u1")) == '{"v":1}', "renamed, not durable"
    with pytest.raises(HostError.Failed):
        asyncio.run(store.save_versioned("u1", '{"v":1}', None))  # still failing: not a conflict
    fsyncs.failing = None
    assert asyncio.run(store.save_versioned("u1", '{"v":1}', None)) == freshtoken.CasResult.CONFLICT()
    assert fsyncs.synced == 1, "the rename made durable"
    # Another record is a conflict as before, with nothing to sync.
    assert asyncio.run(store.save_versioned("u1", '{"v":2}', None)) == freshtoken.CasResult.CONFLICT()
    assert fsyncs.synced == 1


def test_a_rotation_whose_directory_fsync_fails_is_a_storage_error_and_saved_durably_later(emu, tmp_path, monkeypatch):
    """End to end: the rotated record's directory fsync fails, the caller gets
    a StorageError, the record stays in memory, and save_unsaved() saves it
    again (a compare-and-swap that finds it renamed already) durably."""
    client, _ = make_sync_client(emu)
    store = FileTokenStore(tmp_path / "tokens")
    session, family = seeded_sync(emu, client, store)
    fsyncs = DirectoryFsyncs(monkeypatch)
    real_replace = os.replace

    def replace(source, target):
        with open(source, encoding="utf-8") as file:
            if not json.loads(file.read()).get("in_doubt"):  # the rotated record, not the write-ahead marker
                fsyncs.failing = errno.EIO
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(FreshTokenError.Storage):
        session.access_token()
    assert emu.refresh_requests() == 1
    rotated = json.loads(open(store.path("u1"), encoding="utf-8").read())
    differ(rotated["refresh_token"], family["refresh_token"], "renamed into place, not durable")
    assert session.status().unpersisted is True

    fsyncs.failing = None
    synced = fsyncs.synced
    client.save_unsaved(timeout=30)
    assert fsyncs.synced > synced, "the retry made the rename durable"
    assert session.status().unpersisted is False
    same(json.loads(open(store.path("u1"), encoding="utf-8").read())["refresh_token"], rotated["refresh_token"],
         "the rotated record is stored")
    assert emu.refresh_token_state(rotated["refresh_token"]) == "active"
    assert emu.refresh_requests() == 1
