"""Host callbacks (stores, HTTP) at the boundary (issue 11, items 1, 2, 5):
where they run, deadlines for those that never answer, exceptions of every
kind reaching the core as failures, and host messages scrubbed of tokens."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import pytest

import freshtoken
from freshtoken import FreshTokenError, HostError, MemoryTokenStore, TokenStoreBase

from helpers import (CLIENT_ID, CLIENT_SECRET, Signal, TestStore, make_client, make_sync_client, same, seeded,
                     seeded_sync)


def test_callbacks_run_on_freshtokens_loop_and_plain_methods_in_worker_threads(emu):
    class Recording(TokenStoreBase):
        def __init__(self):
            self.data = {}
            self.threads = []

        async def load(self, key):
            self.threads.append(("async", threading.current_thread().name))
            return self.data.get(key)

        def save(self, key, record):  # a plain method
            self.threads.append(("plain", threading.current_thread().name))
            self.data[key] = record

    store = Recording()

    async def scenario():
        client, _ = make_client(emu)
        session, _ = await seeded(emu, client, store)
        await session.access_token()

    asyncio.run(scenario())
    async_threads = {name for kind, name in store.threads if kind == "async"}
    plain_threads = {name for kind, name in store.threads if kind == "plain"}
    assert async_threads == {"freshtoken-loop"}, "async members run on freshtoken's loop"
    assert plain_threads and all(name.startswith("freshtoken-host") for name in plain_threads), \
        "plain members run in freshtoken's worker threads"


def test_a_blocking_plain_store_does_not_hold_up_other_sessions(emu):
    release = threading.Event()
    blocked = threading.Event()

    class Blocking(TokenStoreBase):
        def __init__(self):
            self.data = {}

        def load(self, key):
            return self.data.get(key)

        def save(self, key, record):
            if key == "slow":
                blocked.set()
                release.wait(30)  # a database call that takes its time
            self.data[key] = record

    async def scenario():
        client, _ = make_client(emu)
        store = Blocking()
        slow = asyncio.ensure_future(client.session("slow", store).seed(refresh_token="rt-slow"))
        assert await asyncio.to_thread(blocked.wait, 30)
        # While that save blocks its worker thread, another session refreshes.
        other, _ = await seeded(emu, client, MemoryTokenStore(), key="other")
        token = await other.access_token()
        assert isinstance(token, str) and not slow.done()
        release.set()
        await slow

    asyncio.run(scenario())


class StallingStore(TestStore):
    """Its next `stall_*` calls of a kind never answer (until cancelled, which
    it records): loads, saves of the in-doubt marker (written before the
    request is sent), saves of the rotated record (after the server rotated)."""

    __test__ = False

    def __init__(self):
        super().__init__()
        self.stall_saves = 0
        self.stall_marker_saves = 0
        self.stall_loads = 0
        self.abandoned = Signal()
        self._stalled = []  # (loop, future) of each stalled call

    async def _stall(self):
        loop = asyncio.get_running_loop()
        stalled = loop.create_future()  # resolved only by unstall()
        self._stalled.append((loop, stalled))
        try:
            await stalled
        except asyncio.CancelledError:
            self.abandoned.set()
            raise

    def unstall(self):
        """Lets every stalled call go on, once the test is done with them: a
        store call still running keeps the interpreter's exit waiting."""
        for loop, stalled in self._stalled:
            loop.call_soon_threadsafe(lambda f=stalled: f.done() or f.set_result(None))

    async def save(self, key, record):
        if json.loads(record).get("in_doubt"):
            if self.stall_marker_saves > 0:
                self.stall_marker_saves -= 1
                await self._stall()
        elif self.stall_saves > 0:
            self.stall_saves -= 1
            await self._stall()
        await super().save(key, record)

    async def load(self, key):
        if self.stall_loads > 0:
            self.stall_loads -= 1
            await self._stall()
        return await super().load(key)


# The store deadline of the tests below: it also bounds their healthy store
# calls, which must not reach it on a busy machine.
DEADLINE_MS = 1_000


@pytest.mark.parametrize("stalled", ["marker", "rotated"])
def test_a_save_that_never_returns_is_storage_within_the_deadline_and_the_session_goes_on(emu, stalled):
    store = StallingStore()

    async def checked():
        client, clock = make_client(emu, store_timeout_ms=DEADLINE_MS)
        session, family = await seeded(emu, client, store)
        if stalled == "marker":
            store.stall_marker_saves = 1
        else:
            store.stall_saves = 1

        started = time.monotonic()
        try:
            await asyncio.wait_for(session.access_token(), 30)  # the test's own safety net
        except FreshTokenError.Storage as err:
            elapsed = time.monotonic() - started
            assert f"{DEADLINE_MS} ms" in str(err), f"the message names the deadline: {err}"
        else:
            raise AssertionError("a save that never returns must fail the call")
        assert elapsed >= DEADLINE_MS / 1000, f"failed after {elapsed:.2f} s, before the deadline"
        # The stalled save is kept, not cancelled: were it a write still under
        # way, it could land later over a newer refresh token.
        assert not store.abandoned.is_set(), "the stalled save is kept running"
        # A stalled marker save lets nothing be sent; a stalled rotated save
        # comes after the one request, whose answer is kept in memory.
        assert emu.refresh_requests() == (0 if stalled == "marker" else 1)

        if stalled == "marker":
            # A refresh would make a newer refresh token: it waits for the
            # stalled save (within the deadline) and sends nothing ...
            try:
                await asyncio.wait_for(session.access_token(), 30)
            except FreshTokenError.Storage as err:
                assert "abandoned at its deadline" in str(err), str(err)
            else:
                raise AssertionError("no refresh while the stalled save may still land")
            assert emu.refresh_requests() == 0
            # ... until the save is given up, 12 store deadlines after it was abandoned.
            clock.advance(12 * DEADLINE_MS)

        # Not stuck: the next call (same handle, or a new one) works, sending the
        # consumed refresh token never again.
        token = await asyncio.wait_for(session.access_token(), 30)
        same(store.record("u1")["access_token"], token, "the renewed record was saved")
        same(await client.session("u1", store).access_token(), token, "a new handle gets it too")
        assert emu.refresh_requests() == 1, "the consumed refresh token was never sent again"
        assert emu.counters()["reuse_detected"] == 0
        assert emu.refresh_token_state(store.record("u1")["refresh_token"]) == "active"
        if stalled == "marker":
            assert await asyncio.to_thread(store.abandoned.wait_blocking), "given up: cancelled"

    try:
        asyncio.run(checked())
    finally:
        store.unstall()


def test_a_load_that_never_returns_is_storage_within_the_deadline(emu):
    async def scenario():
        client, clock = make_client(emu, store_timeout_ms=DEADLINE_MS)
        store = StallingStore()
        await seeded(emu, client, store)
        other, _ = make_client(emu, clock, store_timeout_ms=DEADLINE_MS)  # nothing in memory: it loads
        session = other.session("u1", store)
        store.stall_loads = 1
        started = time.monotonic()
        try:
            await asyncio.wait_for(session.access_token(), 30)
        except FreshTokenError.Storage:
            elapsed = time.monotonic() - started
        else:
            raise AssertionError("a load that never returns must fail the call")
        assert elapsed >= DEADLINE_MS / 1000, f"failed after {elapsed:.2f} s, before the deadline"
        assert emu.refresh_requests() == 0, "nothing was sent"
        assert isinstance(await asyncio.wait_for(session.access_token(), 30), str), "not stuck"
        assert emu.refresh_requests() == 1

    asyncio.run(scenario())


def test_a_store_error_quoting_the_record_puts_no_token_in_the_message(emu):
    class Quoting(TestStore):
        __test__ = False
        fail = False

        async def save(self, key, record):
            if self.fail:
                raise RuntimeError(f"could not store {record} for {key}")
            await super().save(key, record)

    async def scenario():
        client, _ = make_client(emu)
        store = Quoting()
        family = emu.seed()
        session = client.session("u1", store)
        store.fail = True
        seed_error = None
        try:
            await session.seed(refresh_token=family["refresh_token"], access_token=family["access_token"],
                               expires_in=1)
        except FreshTokenError.Storage as err:
            seed_error = err
        assert seed_error is not None, "the failing save failed seed()"

        store.fail = False
        await session.seed(refresh_token=family["refresh_token"])
        store.fail = True
        refresh_error = None
        try:
            await session.access_token()
        except FreshTokenError.Storage as err:
            refresh_error = err
        assert refresh_error is not None, "the failing save failed the refresh"
        store.fail = False
        token = await session.access_token()  # the kept record is saved now
        record = store.record("u1")
        secrets = [family["refresh_token"], family["access_token"], token, record["refresh_token"],
                   record["id_token"], CLIENT_SECRET]
        for err in (seed_error, refresh_error):
            text = " ".join([str(err), repr(err), *(str(v) for v in vars(err).values())])
            assert "could not store" in text, "the store's message is kept"
            for secret in secrets:
                assert secret not in text, f"the store's message leaked a token: {type(err).__name__}"

    asyncio.run(scenario())


def test_an_http_error_quoting_the_request_puts_no_secret_in_the_message(emu):
    class Quoting(freshtoken.HttpClient):
        async def send(self, request):
            raise HostError.Failed(detail=f"proxy refused {request.body} with {request.headers}")

    async def scenario():
        family = emu.seed()
        client = freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, http=Quoting())
        session = client.session("u1", MemoryTokenStore())
        await session.seed(refresh_token=family["refresh_token"])
        try:
            await session.access_token()
        except FreshTokenError.Network as err:
            text = " ".join([str(err), repr(err), *(str(v) for v in vars(err).values())])
            assert "proxy refused" in text
            for secret in (family["refresh_token"], CLIENT_SECRET):
                assert secret not in text, "the HTTP client's message leaked a secret"
        else:
            raise AssertionError("expected FreshTokenError.Network")

    asyncio.run(scenario())


def test_an_http_client_that_raises_any_exception_is_a_failure_not_a_hang(emu):
    class Exiting(freshtoken.HttpClient):
        """Not a TokenStoreBase or UrllibHttpClient: Client guards it."""

        async def send(self, request):
            raise SystemExit(3)

    async def scenario():
        client = freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, http=Exiting())
        session = client.session("u1", MemoryTokenStore())
        await session.seed(refresh_token=emu.seed()["refresh_token"])
        try:
            await asyncio.wait_for(session.access_token(), 30)
        except FreshTokenError.Network as err:
            assert "SystemExit" in str(err)
        else:
            raise AssertionError("expected FreshTokenError.Network")

    asyncio.run(scenario())


def test_system_exit_in_a_store_fails_the_call_and_the_process_goes_on(emu):
    class Exiting(TestStore):
        __test__ = False
        exit_next = False

        def save(self, key, record):  # plain: runs in a worker thread
            if self.exit_next:
                self.exit_next = False
                raise SystemExit(1)
            self._records[key] = record

    async def scenario():
        client, _ = make_client(emu)
        store = Exiting()
        family = emu.seed()
        session = client.session("u1", store)
        store.exit_next = True
        try:
            await session.seed(refresh_token=family["refresh_token"])
        except FreshTokenError.Storage as err:
            assert "SystemExit" in str(err)
        else:
            raise AssertionError("expected FreshTokenError.Storage")
        await session.seed(refresh_token=family["refresh_token"])
        assert isinstance(await session.access_token(), str)

    asyncio.run(scenario())


KEYBOARD_INTERRUPT = r"""
import asyncio, json, signal, sys
import freshtoken

# Our own SIGINT handler records the interrupt instead of raising it, so the
# outcome does not depend on when asyncio's handler would have run.
interrupts = []
signal.signal(signal.SIGINT, lambda signum, frame: interrupts.append(signum))

class Interrupting(freshtoken.MemoryTokenStore):
    interrupt_next = True
    async def save(self, key, record):
        if self.interrupt_next:
            self.interrupt_next = False
            raise KeyboardInterrupt
        await super().save(key, record)

client = freshtoken.AsyncClient("http://127.0.0.1:9/connect/token", "c", client_secret="s")
store = Interrupting()
report = {}
try:
    asyncio.run(client.session("u1", store).seed(refresh_token="rt-1"))
    report["first"] = "returned"
except KeyboardInterrupt:
    report["first"] = "KeyboardInterrupt"
except freshtoken.FreshTokenError as err:
    report["first"] = freshtoken.error_code(err)
asyncio.run(client.session("u1", store).seed(refresh_token="rt-2"))
report["interrupted"] = len(interrupts)
report["stored"] = store.get("u1") is not None
print(json.dumps(report))
"""


def test_keyboard_interrupt_in_a_store_reaches_the_main_thread_and_the_session_goes_on(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(freshtoken.__file__))  # the package under test
    result = subprocess.run([sys.executable, "-c", KEYBOARD_INTERRUPT], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The interrupt reached the main thread as SIGINT (once), the core got a
    # failure (storage), and the session went on.
    assert report == {"first": "storage", "interrupted": 1, "stored": True}, report


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_generator_exit_in_a_store_fails_the_call_at_once(emu, kind):
    """GeneratorExit is a BaseException like CancelledError and SystemExit: it
    fails the call (StorageError naming it) instead of leaving the core to
    wait out store_timeout_ms."""
    class Exiting(TestStore):
        __test__ = False
        exit_next = False

        def _exit(self):
            if self.exit_next:
                self.exit_next = False
                raise GeneratorExit

        if kind == "plain":
            def load(self, key):
                self._exit()
                return self._records.get(key)
        else:
            async def load(self, key):
                self._exit()
                return self._records.get(key)

    client, _ = make_sync_client(emu, store_timeout_ms=2000)
    store = Exiting()
    family = emu.seed()
    client.session("u1", store).seed(refresh_token=family["refresh_token"])
    fresh, _ = make_sync_client(emu, store_timeout_ms=2000)  # nothing in memory: its first call loads
    store.exit_next = True
    with pytest.raises(freshtoken.StorageError) as raised:
        fresh.session("u1", store).access_token()
    assert "GeneratorExit" in str(raised.value), f"the cause, not a deadline: {raised.value}"
    assert emu.refresh_requests() == 0
    assert isinstance(fresh.session("u1", store).access_token(), str), "the session goes on"


def test_generator_exit_in_an_http_client_is_a_network_failure_at_once(emu):
    class Exiting(freshtoken.HttpClient):
        def __init__(self):
            self.real = freshtoken.UrllibHttpClient()
            self.exit_next = False

        async def send(self, request):
            if self.exit_next:
                self.exit_next = False
                raise GeneratorExit
            return await self.real.send(request)

    http = Exiting()
    client, _ = make_sync_client(emu, http=http, timeout_ms=1000)
    session, _ = seeded_sync(emu, client, TestStore())
    http.exit_next = True
    with pytest.raises(freshtoken.NetworkError) as raised:
        session.access_token()
    assert "GeneratorExit" in str(raised.value), f"the cause, not a deadline: {raised.value}"
    assert raised.value.maybe_sent is True, "whether it left is unknown"
    assert emu.refresh_requests() == 0


def test_stop_iteration_from_a_plain_store_method_fails_the_call_at_once(emu, capfd):
    """``next()`` on an empty result in a plain (threaded) store method: an
    asyncio future cannot take a StopIteration from the thread, so the call
    waited out store_timeout_ms, and asyncio printed a traceback."""
    class Rows(TestStore):
        __test__ = False
        empty_next = False

        def load(self, key):
            if self.empty_next:
                self.empty_next = False
                return next(iter([]))  # no row
            return self._records.get(key)

    client, _ = make_sync_client(emu, store_timeout_ms=2000)
    store = Rows()
    family = emu.seed()
    client.session("u1", store).seed(refresh_token=family["refresh_token"])
    fresh, _ = make_sync_client(emu, store_timeout_ms=2000)  # nothing in memory: its first call loads
    store.empty_next = True
    with pytest.raises(freshtoken.StorageError) as raised:
        fresh.session("u1", store).access_token()
    assert "StopIteration" in str(raised.value), f"the cause, not a deadline: {raised.value}"
    assert emu.refresh_requests() == 0
    assert isinstance(fresh.session("u1", store).access_token(), str), "the session goes on"
    assert capfd.readouterr().err == "", "no traceback from asyncio"


def test_stop_iteration_from_a_plain_send_is_a_network_failure_at_once(emu, capfd):
    class Stopping(freshtoken.HttpClient):
        def __init__(self):
            self.real = freshtoken.UrllibHttpClient()
            self.stop_next = False

        def send(self, request):
            if self.stop_next:
                self.stop_next = False
                raise StopIteration
            return self.real._send(request)

    http = Stopping()
    client, _ = make_sync_client(emu, http=http, timeout_ms=2000, retry={"max_attempts": 1})
    session, _ = seeded_sync(emu, client, TestStore())
    http.stop_next = True
    with pytest.raises(freshtoken.NetworkError) as raised:
        session.access_token()
    assert "StopIteration" in str(raised.value), f"the cause, not a timeout: {raised.value}"
    assert emu.refresh_requests() == 0
    assert isinstance(session.access_token(), str), "the session goes on"
    assert capfd.readouterr().err == "", "no traceback from asyncio"


class DatabaseDown(HostError):
    """An application's own error type derived from HostError, none of its variants."""


@pytest.mark.parametrize("raised", [lambda: HostError("database unavailable"),
                                    lambda: DatabaseDown("database unavailable")],
                         ids=["HostError", "a subclass"])
def test_a_host_error_that_is_none_of_its_variants_is_a_failure_with_its_message(emu, capfd, raised):
    """``raise HostError("…")`` (the base class, or an app's subclass of it):
    uniffi's generated code sent the core an empty error, read as "Error
    lifting from rust buffer", and the host's message was lost."""
    class Down(TestStore):
        __test__ = False
        fail_next = False

        async def load(self, key):
            if self.fail_next:
                self.fail_next = False
                raise raised()
            return await super().load(key)

    class Refusing(freshtoken.HttpClient):
        def __init__(self):
            self.real = freshtoken.UrllibHttpClient()
            self.fail_next = False

        async def send(self, request):
            if self.fail_next:
                self.fail_next = False
                raise raised()
            return await self.real.send(request)

    store = Down()
    http = Refusing()
    client, _ = make_sync_client(emu, http=http, retry={"max_attempts": 1})
    session, _ = seeded_sync(emu, client, store)
    fresh, _ = make_sync_client(emu)  # nothing in memory: its first call loads
    store.fail_next = True
    with pytest.raises(freshtoken.StorageError) as raised_storage:
        fresh.session("u1", store).access_token()
    assert "database unavailable" in str(raised_storage.value), str(raised_storage.value)
    http.fail_next = True
    with pytest.raises(freshtoken.NetworkError) as raised_network:
        session.access_token()
    assert "database unavailable" in str(raised_network.value), str(raised_network.value)
    assert emu.refresh_requests() == 0
    assert isinstance(session.access_token(), str), "the session goes on"
    assert capfd.readouterr().err == ""


class PerInstance(TokenStoreBase):
    """Members set on the instance, plain functions (no `self`), which the
    class's wrapping does not see."""

    def __init__(self, load_result=None):
        self.records = {}
        self.threads = []

        def load(key):
            self.threads.append(threading.current_thread().name)
            if load_result is not None:
                return load_result
            return self.records.get(key)

        def save(key, record):
            self.records[key] = record

        self.load = load
        self.save = save


def test_store_members_set_on_the_instance_are_guarded(emu, capfd):
    client, _ = make_sync_client(emu)
    store = PerInstance()
    session, family = seeded_sync(emu, client, store)
    token = session.access_token()
    same(json.loads(store.records["u1"])["access_token"], token, "saved through the instance's save")
    fresh, _ = make_sync_client(emu)
    same(fresh.session("u1", store).access_token(), token, "loaded through the instance's load")
    assert store.threads and all(name.startswith("freshtoken-host") for name in store.threads), \
        "plain members run in worker threads"

    wrong, _ = make_sync_client(emu)
    with pytest.raises(freshtoken.StorageError) as raised:
        wrong.session("u1", PerInstance(load_result=b"bytes")).access_token()
    assert "load()" in str(raised.value) and "str or None" in str(raised.value), str(raised.value)
    assert capfd.readouterr().err == "", "nothing printed"


def test_store_members_of_any_kind_in_the_class_are_guarded(emu, capfd):
    records = {}

    class Saver:
        """A callable object as a class attribute (not bound to the store)."""

        def __call__(self, key, record):
            records[key] = record

    class Odd(TokenStoreBase):
        @staticmethod
        def load(key):
            return records.get(key)

        save = Saver()

    class OddClass(TokenStoreBase):
        @classmethod
        async def load(cls, key):
            return records.get(key)

        @classmethod
        def save(cls, key, record):
            records[key] = record

    for store in (Odd(), OddClass()):
        records.clear()
        client, _ = make_sync_client(emu)
        session, _ = seeded_sync(emu, client, store)
        token = session.access_token()
        same(json.loads(records["u1"])["access_token"], token, f"{type(store).__name__} saved")
        fresh, _ = make_sync_client(emu)
        same(fresh.session("u1", store).access_token(), token, f"{type(store).__name__} loaded")
    assert capfd.readouterr().err == ""


def test_hung_plain_store_calls_never_keep_token_requests_from_being_sent(emu):
    """Plain store methods share STORE_WORKERS threads; the default HTTP
    client has a pool of its own, so even with every store thread hung
    (database calls that never return), token requests are still sent."""
    from freshtoken._loop import STORE_WORKERS

    entered = threading.Semaphore(0)
    release = threading.Event()

    class Hanging(TokenStoreBase):
        def load(self, key):
            entered.release()
            release.wait(60)
            return None

        def save(self, key, record):
            pass

    client, _ = make_sync_client(emu, timeout_ms=2000)
    hanging = Hanging()

    def hung(i):
        try:
            client.session(f"hung-{i}", hanging).access_token()
        except FreshTokenError:
            pass  # no record: reauthorization_required, once released

    threads = [threading.Thread(target=hung, args=(i,)) for i in range(STORE_WORKERS)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(STORE_WORKERS):
            assert entered.acquire(timeout=30), "every store thread is taken"
        session, family = seeded_sync(emu, client, MemoryTokenStore(), key="healthy")
        token = session.access_token(timeout=30)
        assert isinstance(token, str)
        assert emu.refresh_requests() == 1
    finally:
        release.set()
        for thread in threads:
            thread.join(30)


class SlowCapabilities(TestStore):
    """A fleet-capable store whose `supports_lease()` blocks its thread once
    armed (a plain method asking a database, behind a lock another thread
    holds) until `answer` is set; it records the thread that asked."""

    __test__ = False

    def __init__(self):
        super().__init__()
        self.armed = False
        self.asking = threading.Event()
        self.answer = threading.Event()
        self.asked_on = []

    def supports_lease(self):
        self.asked_on.append(threading.current_thread().name)
        if self.armed:
            self.armed = False
            self.asking.set()
            self.answer.wait(60)
        return False


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_code_exchanges_store_capabilities_are_asked_on_the_callers_thread_not_freshtokens_loop(emu, kind):
    """The core asks ``supports_lease()``/``supports_versions()``
    synchronously, with no deadline, when it adopts a store: for
    ``session()`` on the caller's thread, but for ``exchange_code`` when its
    future was first polled, on freshtoken's loop. A slow answer there held
    up the loop, and every call of every client in the process waited."""
    from helpers import authorization_code

    redirect_uri = "https://app.example/callback"
    client, _ = make_sync_client(emu)
    request = client.authorization_url(redirect_uri, scopes=["openid", "offline_access"])
    code = authorization_code(request.url)
    store = SlowCapabilities()
    store.armed = True
    options = dict(code=code, code_verifier=request.code_verifier, redirect_uri=redirect_uri)
    outcome = {}

    def exchange():
        try:
            if kind == "sync":
                outcome["session"] = client.exchange_code("u1", store, timeout=60, **options)
            else:
                async_client = freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
                outcome["session"] = asyncio.run(async_client.exchange_code("u1", store, **options))
        except BaseException as error:  # noqa: BLE001 - checked below
            outcome["error"] = error

    exchanging = threading.Thread(target=exchange, name="the-callers-thread")
    exchanging.start()
    try:
        assert store.asking.wait(30), "the store was asked"
        # While that answer is slow, another client's session goes on.
        other, _ = make_sync_client(emu)
        other_session = other.session("other", TestStore())
        other_session.seed(refresh_token=emu.seed()["refresh_token"], timeout=30)
        assert isinstance(other_session.access_token(timeout=30), str)
    finally:
        store.answer.set()
        exchanging.join(60)
    assert "error" not in outcome, repr(outcome.get("error"))
    assert outcome["session"].key == "u1"
    same(client.session("u1", store).access_token(timeout=30), store.record("u1")["access_token"],
         "the exchanged record was saved")
    assert store.asked_on[0] == "the-callers-thread", store.asked_on
    assert "freshtoken-loop" not in store.asked_on, store.asked_on
