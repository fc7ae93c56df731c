"""Closing a client: ``close()`` / ``aclose()``, ``with Client(...)`` /
``async with AsyncClient(...)``, and the exit hook. A rotation whose save
the store refused lives only in the client's memory: it is the session's
newest refresh token (the stored one is spent), so closing the client, or
the process ending, saves it first, and says so at ERROR when the store
still refuses it (a user who will have to link their bank again)."""

import asyncio
import json
import logging
import subprocess
import sys

import pytest

import freshtoken

from child_store import child_env
from helpers import CLIENT_ID, CLIENT_SECRET, TestStore, make_client, make_sync_client, seeded, seeded_sync


class RefusingStore(TestStore):
    """A TestStore whose refused saves (``fail_saves``: rotated records, not
    the write-ahead marker) are noted, and whose error names the key."""

    __test__ = False

    def __init__(self):
        super().__init__()
        self.refused = []

    async def save(self, key, record):
        if self.fail_saves > 0 and json.loads(record).get("in_doubt") is not True:
            self.fail_saves -= 1
            self.refused.append(record)
            raise OSError(f"no room for {key}")
        return await super().save(key, record)


def secrets_of(records):
    """Every token in ``records`` (JSON texts)."""
    found = set()
    for record in records:
        value = json.loads(record)
        for name in ("refresh_token", "access_token", "id_token"):
            if isinstance(value.get(name), str) and len(value[name]) > 3:
                found.add(value[name])
    return found


def test_leaving_a_with_block_saves_a_rotation_the_store_refused(emu):
    store = RefusingStore()
    with make_sync_client(emu)[0] as client:
        other, _ = seeded_sync(emu, client, store, key="u2")
        other.access_token()  # refreshed, and mirrored: the next read is a dict read
        session, family = seeded_sync(emu, client, store)
        store.fail_saves = 1
        with pytest.raises(freshtoken.StorageError):
            session.refresh()  # the server rotated; the store refused the new record
        assert store.refused, "the rotated record was refused"
        assert store.record("u1").get("refresh_token") == family["refresh_token"] or \
            store.record("u1").get("in_doubt") is True, "the store still holds the spent token"
    assert client.is_closed
    record = store.record("u1")
    assert record.get("in_doubt") is not True
    assert emu.refresh_token_state(record["refresh_token"]) == "active", "the store holds the rotated token"
    assert emu.refresh_token_state(family["refresh_token"]) == "consumed"
    assert emu.refresh_requests() == 2

    # Closed: every later call raises, a mirrored token's read and a new handle's included; nothing is sent.
    for call in (other.access_token, other.cached_access_token, lambda: other.access_token(timeout=5),
                 session.access_token, session.cached_access_token, session.refresh, session.status,
                 lambda: client.session("u2", store).access_token(), lambda: client.client_token(["a"]),
                 lambda: client.session_count, client.save_unsaved):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    with pytest.raises(RuntimeError, match="closed"):
        client.__enter__()
    client.close()  # closing again does nothing
    assert emu.refresh_requests() == 2


def test_leaving_a_with_block_by_an_exception_saves_too(emu):
    store = RefusingStore()
    with pytest.raises(KeyError):
        with make_sync_client(emu)[0] as client:
            session, _ = seeded_sync(emu, client, store)
            store.fail_saves = 1
            with pytest.raises(freshtoken.StorageError):
                session.refresh()
            raise KeyError("the app's own failure")
    assert emu.refresh_token_state(store.record("u1")["refresh_token"]) == "active"


def test_leaving_an_async_with_block_saves_a_rotation_the_store_refused(emu):
    store = RefusingStore()

    async def main():
        async with make_client(emu)[0] as client:
            session, family = await seeded(emu, client, store)
            store.fail_saves = 1
            with pytest.raises(freshtoken.StorageError):
                await session.refresh()
        assert client.is_closed
        with pytest.raises(RuntimeError, match="closed"):
            await session.access_token()
        with pytest.raises(RuntimeError, match="closed"):
            await client.save_unsaved()
        await client.aclose()  # closing again does nothing
        return family

    family = asyncio.run(main())
    record = store.record("u1")
    assert emu.refresh_token_state(record["refresh_token"]) == "active", "the store holds the rotated token"
    assert emu.refresh_token_state(family["refresh_token"]) == "consumed"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_closed_client_serves_no_mirrored_token(emu, kind):
    # The system clock's fast path (a dict read, no call into the core) is closed too.
    cls = freshtoken.Client if kind == "sync" else freshtoken.AsyncClient
    client = cls(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
    session = client.session("u1", freshtoken.MemoryTokenStore())
    family = emu.seed()
    seed = dict(refresh_token=family["refresh_token"], access_token="an-access-token-of-the-seed", expires_in=900)
    if kind == "sync":
        session.seed(**seed)
        assert session.access_token() == "an-access-token-of-the-seed"
        client.close()
        with pytest.raises(RuntimeError, match="closed"):
            session.access_token()
    else:
        async def main():
            await session.seed(**seed)
            assert await session.access_token() == "an-access-token-of-the-seed"
            await client.aclose()
            with pytest.raises(RuntimeError, match="closed"):
                await session.access_token()
        asyncio.run(main())
    with pytest.raises(RuntimeError, match="closed"):
        session.cached_access_token()
    assert emu.refresh_requests() == 0


@pytest.mark.parametrize("event_keys", ["full", "hidden"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_close_that_cannot_save_raises_storage_error_and_logs_at_error(emu, caplog, event_keys, kind):
    store = RefusingStore()
    key = "user-4242"
    if kind == "sync":
        client, _ = make_sync_client(emu, event_keys=event_keys)
        session, family = seeded_sync(emu, client, store, key=key)
    else:
        client, _ = make_client(emu, event_keys=event_keys)
        session, family = asyncio.run(seeded(emu, client, store, key=key))
    store.fail_saves = 1_000_000
    with pytest.raises(freshtoken.StorageError):
        session.refresh() if kind == "sync" else asyncio.run(session.refresh())

    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="freshtoken"):
        with pytest.raises(freshtoken.StorageError) as raised:
            client.close() if kind == "sync" else asyncio.run(client.aclose())
    assert "1 session record(s)" in str(raised.value)
    logged = [r for r in caplog.records if r.name == "freshtoken" and r.levelno == logging.ERROR]
    assert len(logged) == 1, [r.getMessage() for r in caplog.records]
    message = logged[0].getMessage()
    assert "1 session record(s)" in message and "lost" in message, message
    for secret in secrets_of(store.refused) | {family["refresh_token"], CLIENT_SECRET}:
        assert secret not in message, "no token or secret in the log"
    if event_keys == "hidden":
        assert key not in message, "no key when the client hides keys"
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        session.status() if kind == "sync" else asyncio.run(session.status())

    # The record is still held: once the store takes saves again, closing again saves it.
    store.fail_saves = 0
    client.close() if kind == "sync" else asyncio.run(client.aclose())
    record = store.record(key)
    assert emu.refresh_token_state(record["refresh_token"]) == "active", "the store holds the rotated token"


# The child: a client at module level, a file-backed store whose save of the
# rotated record fails (once, or always), one refresh, then a normal exit
# with the client still alive and its record unsaved.
AT_EXIT = r"""
import json, sys
import freshtoken
from child_store import OneFileStore, is_rotated

endpoint, refresh_token, path, failures, event_keys = sys.argv[1:6]


class FlakyFileStore(OneFileStore):
    failures = 0

    def save(self, key, record):
        if self.failures > 0 and is_rotated(record):
            self.failures -= 1
            raise OSError(f"database briefly unavailable for {key}")
        super().save(key, record)


client = freshtoken.Client(endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, retry={"max_attempts": 1},
                           event_keys=event_keys)
store = FlakyFileStore(path)
session = client.session("user-4242", store)
session.seed(refresh_token=refresh_token)
store.failures = int(failures)
try:
    session.refresh()
    print(json.dumps({"refresh": "ok"}), flush=True)
except freshtoken.FreshTokenError as error:
    print(json.dumps({"refresh": error.code}), flush=True)
""".replace("CLIENT_ID", repr(CLIENT_ID)).replace("CLIENT_SECRET", repr(CLIENT_SECRET))


def run_at_exit(emu, tmp_path, failures, event_keys="hidden"):
    family = emu.seed()
    path = tmp_path / "record.json"
    result = subprocess.run([sys.executable, "-c", AT_EXIT, emu.token_endpoint, family["refresh_token"], str(path),
                             str(failures), event_keys],
                            env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"refresh": "storage"}
    assert emu.refresh_requests() == 1
    assert emu.refresh_token_state(family["refresh_token"]) == "consumed"
    return family, json.loads(path.read_text()), result.stderr


def test_at_exit_a_rotation_the_store_refused_once_is_saved(emu, tmp_path):
    _, record, stderr = run_at_exit(emu, tmp_path, failures=1)
    assert record.get("in_doubt") is not True
    assert emu.refresh_token_state(record["refresh_token"]) == "active", "the file holds the rotated token"
    assert "freshtoken" not in stderr, stderr[-2000:]


@pytest.mark.parametrize("event_keys", ["full", "hidden"])
def test_at_exit_a_rotation_the_store_keeps_refusing_is_logged_at_error(emu, tmp_path, event_keys):
    family, record, stderr = run_at_exit(emu, tmp_path, failures=1_000_000, event_keys=event_keys)
    assert record.get("in_doubt") is True, "the file holds only the write-ahead marker of the spent token"
    lines = [line for line in stderr.splitlines() if "freshtoken: the process is exiting" in line]
    assert len(lines) == 1, stderr[-2000:]
    assert "1 session record(s)" in lines[0] and "lost" in lines[0], lines[0]
    assert family["refresh_token"] not in stderr and CLIENT_SECRET not in stderr
    # The rotated token is the consumed one's successor: it went with the process.
    state = emu._call("POST", "/refresh-token-state", {"refresh_token": family["refresh_token"]})
    assert state["successor_state"] == "active"
    if event_keys == "hidden":
        assert "user-4242" not in stderr
