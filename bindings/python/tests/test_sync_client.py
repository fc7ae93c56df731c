"""The synchronous client: threads sharing one session, and a Flask-style
request loop with per-request timeouts and a restart. Deterministic: the
emulator's `hold` fault and a gated store decide the order, never sleeps."""

import asyncio
import threading

import pytest

import freshtoken

from helpers import (CLIENT_ID, CLIENT_SECRET, FakeClock, TestStore, count_submissions, differ, make_sync_client,
                     same, seeded_sync, turn_freshtoken_loop)


def _run_on_freshtoken_loop(coroutine):
    return asyncio.run_coroutine_threadsafe(coroutine, freshtoken.event_loop()).result(30)


def test_8_threads_sharing_one_session_at_expiry_cause_exactly_one_refresh(emu, monkeypatch):
    client, _ = make_sync_client(emu)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    emu.fault({"kind": "hold", "grant": "refresh_token"})

    # Count the calls handed to freshtoken's loop, to know when all 8 callers are in.
    submitted = count_submissions(monkeypatch)
    results, errors = [None] * 8, []

    def caller(i):
        try:
            results[i] = session.access_token(timeout=60)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for _ in range(8):
        assert submitted.acquire(timeout=30), "every thread handed its call to freshtoken's loop"
    assert emu.wait_held(1) == 1, "the one refresh is held at the server"
    # The 8 calls were queued before these turns: each has started and joined the flight.
    turn_freshtoken_loop(3)
    assert emu.release_held() == 1
    for thread in threads:
        thread.join(60)

    assert not errors, errors
    assert emu.refresh_requests() == 1
    counters = emu.counters()
    assert counters["max_concurrent_token_requests"] == 1
    assert counters["reuse_detected"] == 0
    assert len(set(results)) == 1 and results[0] is not None, "every thread got the same token"
    same(store.record("u1")["access_token"], results[0], "the stored token is the one handed out")


def test_a_flask_style_loop_with_timeouts_loses_nothing(emu, tmp_path):
    """Per-request handles and timeouts: a timeout fires while the rotated
    record's save is slow, more requests come (and time out) while it still
    is, then it finishes; later requests and a restarted process use the
    saved record: one refresh in all, nothing lost, no refresh token reused."""
    clock = FakeClock()
    store = GatedFileStore(str(tmp_path / "tokens"))
    client, _ = make_sync_client(emu, clock)
    family = emu.seed()
    client.session("u1", store).seed(refresh_token=family["refresh_token"])
    store.gate()

    def handle_request(timeout):
        """What a Flask view does: a handle per request, a bounded wait."""
        return client.session("u1", store).access_token(timeout=timeout)

    with pytest.raises(TimeoutError):
        handle_request(0.05)  # the save below is held: this request gives up
    assert store.entered.wait(30), "the refresh reached the slow save"
    assert emu.refresh_requests() == 1
    for _ in range(3):
        with pytest.raises(TimeoutError):
            handle_request(0.05)  # joins the same refresh, gives up too
    assert emu.refresh_requests() == 1, "the timed-out requests started nothing new"

    store.open_gate()
    token = handle_request(30)
    for _ in range(20):
        same(handle_request(30), token, "every later request gets the rotated token")
    assert emu.refresh_requests() == 1
    saved = store.record("u1")
    same(saved["access_token"], token, "the saved record holds the token handed out")
    differ(saved["refresh_token"], family["refresh_token"], "the rotated refresh token is saved")

    # A restart: a new process (client) on the same directory.
    restarted, _ = make_sync_client(emu, FakeClock(clock.ms))
    same(restarted.session("u1", freshtoken.FileTokenStore(str(tmp_path / "tokens"))).access_token(), token,
         "the restarted process reads the saved record")
    assert emu.refresh_requests() == 1, "exactly one refresh in all"
    assert emu.counters()["reuse_detected"] == 0
    assert emu.refresh_token_state(saved["refresh_token"]) == "active"
    assert emu.refresh_token_state(family["refresh_token"]) == "consumed"


class GatedFileStore(freshtoken.FileTokenStore):
    """A FileTokenStore whose saves of rotated records (not the write-ahead
    marker) wait at a gate the test opens."""

    def __init__(self, directory):
        super().__init__(directory)
        self._gate = None
        self.entered = threading.Event()

    def gate(self):
        self._gate = threading.Event()

    def open_gate(self):
        self._gate.set()

    async def _pass_gate(self, record):
        import json

        if self._gate is not None and not json.loads(record).get("in_doubt"):
            self.entered.set()
            await asyncio.to_thread(self._gate.wait, 60)

    async def save(self, key, record):
        await self._pass_gate(record)
        await super().save(key, record)

    async def save_versioned(self, key, record, expected):
        # The store has versions (flock): freshtoken saves through this one.
        await self._pass_gate(record)
        return await super().save_versioned(key, record, expected)

    def record(self, key):
        import json

        return json.loads(asyncio.run(self.load(key)))


def test_sync_errors_are_the_top_level_classes(emu):
    client, _ = make_sync_client(emu)
    store = TestStore()
    with pytest.raises(freshtoken.ReauthorizationRequired) as raised:
        client.session("nobody", store).access_token()
    err = raised.value
    assert isinstance(err, freshtoken.FreshTokenError)
    assert (err.code, err.reason) == ("reauthorization_required", "no_refresh_token")
    with pytest.raises(freshtoken.ConfigError) as bad:
        client.session("", store)
    assert bad.value.field == "key" and isinstance(bad.value, ValueError)
    with pytest.raises(freshtoken.ConfigError):
        client.session("\ud800", store)


def test_a_blocking_call_on_freshtokens_own_loop_is_refused(emu):
    client, _ = make_sync_client(emu)
    session = client.session("u1", TestStore())

    async def from_the_loop():
        try:
            session.status()
        except RuntimeError as error:
            return str(error)
        return "returned"

    assert "async client" in _run_on_freshtoken_loop(from_the_loop())


def test_a_core_timeout_reaches_sync_callers_as_freshtokens_timeout_error(emu):
    """The core's `timeout` (the request got no answer within timeout_ms) is
    freshtoken.TimeoutError with its code, as from the asyncio client, whether
    or not the caller bounded its own wait; only the caller's own wait running
    out is the plain built-in TimeoutError."""
    client, _ = make_sync_client(emu, timeout_ms=300)
    first, _ = seeded_sync(emu, client, TestStore(), key="u1")
    second, _ = seeded_sync(emu, client, TestStore(), key="u2")
    emu.fault({"kind": "hold", "grant": "refresh_token", "count": 2})  # never answered (reset releases them)

    errors = []
    for session, timeout in ((first, None), (second, 30)):
        with pytest.raises(freshtoken.TimeoutError) as raised:
            session.refresh(timeout=timeout)
        errors.append(raised.value)
    for error in errors:
        assert type(error) is freshtoken.TimeoutError and error.code == "timeout", repr(error)
        assert "within" not in str(error), "the core's message, not the caller's wait's"

    async def from_asyncio():
        aclient = freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET,
                                         clock=FakeClock(), timeout_ms=300)
        session = aclient.session("u3", TestStore())
        await session.seed(refresh_token=emu.seed()["refresh_token"])
        emu.fault({"kind": "hold", "grant": "refresh_token"})
        try:
            await session.refresh()
        except freshtoken.FreshTokenError as error:
            return error
        raise AssertionError("a held request must time out")

    async_error = asyncio.run(from_asyncio())
    assert type(async_error) is type(errors[0]) and str(async_error) == str(errors[0]), \
        "the asyncio and the synchronous client raise the same exception"


def test_only_the_callers_own_wait_running_out_is_the_builtin_timeout_error(emu):
    client, _ = make_sync_client(emu)  # timeout_ms: the default (the core waits long)
    session, _ = seeded_sync(emu, client, TestStore())
    emu.fault({"kind": "hold", "grant": "refresh_token"})
    try:
        with pytest.raises(TimeoutError) as raised:
            session.refresh(timeout=0.05)
        assert type(raised.value) is TimeoutError, "the built-in class, not freshtoken's"
        assert not isinstance(raised.value, freshtoken.FreshTokenError)
        assert "0.05 s" in str(raised.value)
    finally:
        assert emu.wait_held(1) == 1
        emu.release_held()


CLIENT_COPIES = """
import asyncio, copy, gc, json, pickle, sys
import freshtoken
endpoint = sys.argv[1]
report = {}
for mode in ("copy", "deepcopy", "pickle"):
    client = freshtoken.Client(endpoint, "test-client", client_secret="test-secret")
    aclient = freshtoken.AsyncClient(endpoint, "test-client", client_secret="test-secret")
    session = client.session("u1", freshtoken.MemoryTokenStore())
    originals = [client, aclient, session]
    try:
        if mode == "pickle":
            copies = [pickle.loads(pickle.dumps(o)) for o in originals]
        else:
            copies = [getattr(copy, mode)(o) for o in originals]
            copies.append(getattr(copy, mode)({"oauth": client})["oauth"])
    except TypeError as error:
        report[mode] = "refused: " + str(error)
    else:
        report[mode] = [c is o for c, o in zip(copies, originals + [client])]
        del copies
    gc.collect()
    # Native memory is reused meanwhile; the originals still work.
    others = [freshtoken.Client(endpoint, "test-client") for _ in range(50)]
    assert client.session_count >= 0 and aclient.session_count >= 0
    assert session.status().has_record is False
    del others, originals, client, aclient, session
    gc.collect()
print(json.dumps(report))
"""


def test_a_copy_of_a_client_or_session_is_itself_and_pickling_is_refused(emu, tmp_path):
    # A deep copy (of a client, a session, or any container holding one)
    # made a second native handle object whose failed copy freed the
    # client's native state: the next call crashed the process.
    import json, os, subprocess, sys
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(freshtoken.__file__)))
    result = subprocess.run([sys.executable, "-c", CLIENT_COPIES, emu.token_endpoint], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["copy"] == [True] * 4 and report["deepcopy"] == [True] * 4, report
    assert report["pickle"].startswith("refused: cannot pickle 'Client' object"), report
