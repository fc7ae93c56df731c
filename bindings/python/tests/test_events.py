"""Events through the Python API against the token emulator (issue 14):
``on_event=`` gets a refresh's kinds in order (then failures, re-links,
revocations, client tokens) as frozen ``freshtoken.TokenEvent``s;
``event_keys="hidden"`` leaves the key out; a callback that raises or
blocks changes and delays nothing; an ``async def`` callback runs on the
loop that made the client; the options are checked; and no event of any
kind carries a token or a secret. Mirrors tests/events.rs and
bindings/js/test/events.test.mjs.

Events arrive on freshtoken's events thread, after the fact: tests wait
for the kind they expect on a Condition (bounded, for safety), never on a
timer. Time is fake (a FakeClock) unless a test says otherwise. Assertions
never print a token: a leaked secret is reported replaced.
"""

import asyncio
import dataclasses
import gc
import inspect
import logging
import threading
import weakref

import pytest

import freshtoken
from freshtoken import _events
from freshtoken import (EVENT_KINDS, ConfigError, ConflictError, InvalidClientError, MemoryTokenStore,
                        ReauthorizationRequired, StorageError, TokenEvent, TransientError)

from helpers import (CLIENT_ID, CLIENT_SECRET, FakeClock, TestStore, authorization_code, differ, make_client,
                     make_sync_client, same, seeded, seeded_sync)

REDIRECT_URI = "https://app.example/callback"
# A bound on every wait for an event (safety only: events come at once).
WAIT = 30


def kinds(events):
    return [e.kind for e in events]


class Recorder:
    """A client's ``on_event``: keeps every event (they arrive on freshtoken's
    events thread) and lets the test wait for the one it expects."""

    def __init__(self):
        self.events = []
        self._taken = 0
        self._changed = threading.Condition()

    def __call__(self, event):
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def until(self, kind, **fields):
        """The events not taken yet, up to and including the first of ``kind``
        (with ``fields``), once it has arrived; later calls start after it."""

        def found():
            for i in range(self._taken, len(self.events)):
                event = self.events[i]
                if event.kind == kind and all(getattr(event, k) == v for k, v in fields.items()):
                    return i
            return None

        with self._changed:
            arrived = self._changed.wait_for(lambda: found() is not None, WAIT)
            assert arrived, f"no {kind} {fields or ''} event; got {kinds(self.events[self._taken:])}"
            end = found() + 1
            taken, self._taken = self.events[self._taken:end], end
            return taken

    def wait_count(self, count):
        """Every event once ``count`` have arrived."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.events) >= count, WAIT), kinds(self.events)
            return list(self.events)


def test_a_client_from_credentials_json_takes_the_options_the_json_does_not_set(emu):
    # Stitch's credentials JSON sets the identity; the keyword options set
    # the rest: here the listener, the clock and the leeway.
    import json

    recorder = Recorder()
    credentials = json.dumps({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
                              "tokenEndpoint": emu.token_endpoint, "slidingRefreshTokenLifetime": 3600})
    clock = FakeClock()
    client = freshtoken.Client.from_credentials_json(credentials, clock=clock, on_event=recorder,
                                                     leeway_seconds=120)
    store = MemoryTokenStore()
    session = client.session("u1", store)
    session.seed(refresh_token=emu.seed()["refresh_token"])
    first = session.access_token()
    assert [e.key for e in recorder.until("refreshed")][-1] == "u1"
    assert emu.grant_requests("refresh_token") == 1
    clock.advance((900 - 121) * 1000)  # within the 120 s leeway, on the fake clock
    assert session.access_token() == first, "not yet within the leeway"
    clock.advance(2000)
    assert session.access_token() != first, "refreshed 120 s before expiry"
    recorder.until("refreshed")
    assert emu.grant_requests("refresh_token") == 2
    assert session.status().refresh_expires_at_ms == clock.now_ms() + 3600 * 1000, "the JSON's sliding lifetime"

    for name, value in [("client_secret", "other"), ("token_endpoint", emu.token_endpoint), ("client_id", "x")]:
        with pytest.raises(ConfigError) as raised:
            freshtoken.Client.from_credentials_json(credentials, **{name: value})
        assert raised.value.field == name and "credentials JSON" in str(raised.value)


class LeaseStore(TestStore):
    """A store with a lease (expiring on ``clock``; never when ``clock`` is
    None or the ttl None) and compare-and-swap versions: a fleet's store."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.leases = {}  # key -> (owner, until ms or None)
        self.versions = {}

    def supports_lease(self):
        return True

    def acquire_now(self, key, owner, ttl_ms):
        held = self.leases.get(key)
        if held is not None and held[0] != owner and (
                held[1] is None or self.clock is None or held[1] > self.clock.now_ms()):
            return False
        until = None if ttl_ms is None or self.clock is None else self.clock.now_ms() + ttl_ms
        self.leases[key] = (owner, until)
        return True

    async def acquire(self, key, owner, ttl_ms):
        return self.acquire_now(key, owner, ttl_ms)

    async def release(self, key, owner):
        if self.leases.get(key, (None,))[0] == owner:
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
        await self.save(key, record)
        return freshtoken.CasResult.SAVED(version=str(self.versions[key]))

    async def save(self, key, record):
        self.versions[key] = self.versions.get(key, 0) + 1
        await super().save(key, record)


def fence(client, recorder):
    """Every event the client emitted before this call: a seed under another
    key emits one ``saved`` (no request), and events come in order."""
    client.session("fence", MemoryTokenStore()).seed(refresh_token="fence-refresh-token")
    return recorder.until("saved", key="fence")[:-1]


def recorded_sync(emu, **options):
    """A synchronous client on fake time whose events go to a new Recorder."""
    recorder = Recorder()
    client, clock = make_sync_client(emu, on_event=recorder, **options)
    return client, clock, recorder


def record_secrets(store, key):
    """The tokens a stored record holds."""
    record = store.record(key) or {}
    return [record[name] for name in ("access_token", "refresh_token", "id_token") if isinstance(record.get(name), str)]


# --- What each kind says ---


def test_a_refresh_emits_saved_refresh_started_saved_refreshed_in_order(emu):
    client, clock, events = recorded_sync(emu)
    store = TestStore()
    session, family = seeded_sync(emu, client, store)
    seed = events.until("saved")
    assert kinds(seed) == ["saved"], "the seed's save"
    assert seed[0].key == "u1" and seed[0].duration_ms == 0

    token = session.access_token()
    seen = events.until("refreshed")
    assert kinds(seen) == ["saved", "refresh_started", "saved", "refreshed"]
    refreshed = seen[3]
    assert isinstance(refreshed, TokenEvent)
    assert refreshed.key == "u1"
    assert refreshed.attempts == 1
    assert refreshed.duration_ms == 0, "fake time did not move"
    assert refreshed.duration is not None and refreshed.duration.total_seconds() == 0
    assert refreshed.error_code is None and refreshed.reason is None and refreshed.scope is None
    assert refreshed.at_ms == clock.ms
    assert refreshed.at == freshtoken.from_ms(clock.ms) and refreshed.at.tzinfo is not None
    assert seen[1].duration_ms is None and seen[1].attempts is None, "refresh_started has neither"
    with pytest.raises(dataclasses.FrozenInstanceError):
        refreshed.kind = "saved"
    same(token, store.record("u1")["access_token"], "the refresh's token")
    assert fence(client, events) == [], "nothing else"


def test_a_failed_refresh_emits_refresh_failed_with_its_code_and_attempts(emu):
    client, clock, events = recorded_sync(emu)
    session, _ = seeded_sync(emu, client, TestStore())
    emu.fault({"kind": "status", "status": 503, "count": 4, "grant": "refresh_token"})
    with pytest.raises(TransientError):
        session.access_token()
    seen = events.until("refresh_failed")
    assert kinds(seen) == ["saved", "saved", "refresh_started", "refresh_failed"]
    failed = seen[3]
    assert failed.key == "u1"
    assert failed.error_code == "transient"
    assert failed.attempts == 4
    assert len(clock.sleeps) == 3 and failed.duration_ms == sum(clock.sleeps) > 0, \
        "three backoffs on fake time"
    assert failed.reason is None


def test_a_relink_emits_reauthorization_required_with_its_reason(emu):
    client, _, events = recorded_sync(emu)
    session = client.session("u1", TestStore())
    session.seed(refresh_token="a-refresh-token-the-server-never-issued")
    with pytest.raises(ReauthorizationRequired):
        session.access_token()
    seen = events.until("reauthorization_required")
    assert kinds(seen) == ["saved", "saved", "refresh_started", "saved", "reauthorization_required"]
    assert seen[4].reason == "invalid_grant"
    assert seen[4].error_code is None and seen[4].key == "u1"

    with pytest.raises(ReauthorizationRequired):
        session.access_token()
    assert fence(client, events) == [], "later calls fail fast, silently"


def test_a_failed_save_emits_save_failed_with_storage(emu):
    client, _, events = recorded_sync(emu)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    store.fail_saves = 1
    with pytest.raises(StorageError):
        session.access_token()
    seen = events.until("save_failed")
    assert kinds(seen) == ["saved", "saved", "refresh_started", "save_failed"]
    assert seen[3].error_code == "storage" and seen[3].duration_ms is not None


def test_a_revocation_emits_revoked_and_a_client_token_its_scope(emu):
    async def scenario():
        recorder = Recorder()
        client, _ = make_client(emu, on_event=recorder)
        store = TestStore()
        session, _ = await seeded(emu, client, store)
        await session.access_token()
        await asyncio.to_thread(recorder.until, "refreshed")

        await session.revoke()
        seen = await asyncio.to_thread(recorder.until, "revoked")
        assert kinds(seen) == ["saved", "saved", "revoked"], "revoked after the last save"
        assert seen[2].key == "u1" and seen[2].error_code is None and seen[2].duration_ms is not None

        await client.client_token(["accounts"])
        await client.revoke_client_tokens()
        seen = await asyncio.to_thread(recorder.until, "revoked")
        assert kinds(seen) == ["client_token_issued", "revoked"]
        assert seen[1].scope == "accounts" and seen[1].key is None

    asyncio.run(scenario())


def test_a_client_token_emits_client_token_issued_with_its_sorted_scope(emu):
    client, clock, events = recorded_sync(emu)
    client.client_token(["payments", "accounts"])
    seen = events.until("client_token_issued")
    assert len(seen) == 1
    issued = seen[0]
    assert issued.scope == "accounts payments"
    assert issued.key is None
    assert issued.attempts == 1 and issued.duration_ms == 0
    assert issued.at_ms == clock.ms
    client.client_token(["accounts", "payments"])
    assert fence(client, events) == [], "a cached client token emits nothing"


def test_waiting_for_another_process_lease_emits_lease_waited(emu):
    client, clock, events = recorded_sync(emu)
    store = LeaseStore(clock)
    session, _ = seeded_sync(emu, client, store)
    events.until("saved")
    assert store.acquire_now("u1", "another-process", 30_000)
    started = clock.ms
    session.access_token()
    seen = events.until("refreshed")
    assert kinds(seen) == ["lease_waited", "saved", "refresh_started", "saved", "refreshed"]
    waited = seen[0]
    assert waited.key == "u1" and waited.error_code is None
    assert 30_000 <= waited.duration_ms <= clock.ms - started


def test_giving_up_on_a_lease_emits_lease_waited_with_conflict(emu):
    client, _, events = recorded_sync(emu, lease_wait_ms=5_000)
    store = LeaseStore(None)  # the lease below never expires
    session, _ = seeded_sync(emu, client, store)
    events.until("saved")
    assert store.acquire_now("u1", "busy", None)
    with pytest.raises(ConflictError):
        session.access_token()
    seen = events.until("lease_waited")
    assert kinds(seen) == ["lease_waited"]
    assert seen[0].error_code == "conflict" and seen[0].duration_ms >= 5_000


def test_event_keys_hidden_leaves_the_key_out(emu):
    client, _, events = recorded_sync(emu, event_keys="hidden")
    store = TestStore()
    session, _ = seeded_sync(emu, client, store, key="user-with-a-name")
    session.access_token()
    seen = events.wait_count(5)
    assert kinds(seen) == ["saved", "saved", "refresh_started", "saved", "refreshed"]
    assert all(e.key is None for e in seen)
    assert "user-with-a-name" not in repr(seen)


# --- Callbacks that fail, block or are coroutines ---


def test_a_callback_that_raises_changes_nothing_and_is_logged_once_by_type(emu, caplog):
    calls = []
    changed = threading.Condition()

    def raising(event):
        with changed:
            calls.append(event.kind)
            changed.notify_all()
        raise RuntimeError("a callback that fails, with details")

    caplog.set_level(logging.DEBUG, logger="freshtoken")
    client, _ = make_sync_client(emu, on_event=raising)
    store = TestStore()
    session, family = seeded_sync(emu, client, store)
    token = session.access_token()
    same(token, store.record("u1")["access_token"], "the stored token is the one handed out")
    differ(store.record("u1")["refresh_token"], family["refresh_token"], "rotated and saved")
    assert emu.refresh_requests() == 1

    with changed:
        assert changed.wait_for(lambda: len(calls) >= 5, WAIT), calls
    assert calls == ["saved", "saved", "refresh_started", "saved", "refreshed"]
    warnings = [r for r in caplog.records if r.name == "freshtoken" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "RuntimeError" in warnings[0].getMessage()
    assert "details" not in caplog.text, "the exception's message is not logged"


def test_a_slow_callback_never_delays_the_refresh(emu):
    entered = threading.Event()
    release = threading.Event()
    recorder = Recorder()

    def slow(event):
        if not entered.is_set():
            entered.set()
            assert release.wait(WAIT), "the test releases the callback"
        recorder(event)

    client, _ = make_sync_client(emu, on_event=slow)
    store = TestStore()
    session, family = seeded_sync(emu, client, store)
    assert entered.wait(WAIT), "the seed's event is in the callback"
    try:
        token = session.access_token(timeout=WAIT)  # answers while the callback is stuck
        assert recorder.events == [], "the callback is still blocked on the first event"
        same(token, store.record("u1")["access_token"], "the refresh finished and saved")
        differ(store.record("u1")["refresh_token"], family["refresh_token"], "rotated")
        assert emu.refresh_requests() == 1
    finally:
        release.set()
    assert kinds(recorder.until("refreshed")) == ["saved", "saved", "refresh_started", "saved", "refreshed"]


def test_an_async_callback_runs_on_the_loop_that_made_the_client(emu):
    async def scenario():
        loop = asyncio.get_running_loop()
        seen = []
        arrived = asyncio.Event()
        where = []

        async def on_event(event):
            where.append((asyncio.get_running_loop(), threading.current_thread()))
            seen.append(event)
            if event.kind == "refreshed":
                arrived.set()
            if event.kind == "refresh_started":
                raise RuntimeError("a coroutine that fails")

        client, _ = make_client(emu, on_event=on_event)
        session, _ = await seeded(emu, client, TestStore())
        await session.access_token()
        await asyncio.wait_for(arrived.wait(), WAIT)
        assert kinds(seen) == ["saved", "saved", "refresh_started", "saved", "refreshed"]
        assert all(running is loop and thread is threading.main_thread() for running, thread in where)

    asyncio.run(scenario())


class AppAbort(BaseException):
    """An application's own BaseException."""


@pytest.mark.parametrize("raised", [SystemExit, GeneratorExit, AppAbort])
def test_an_async_callback_raising_a_base_exception_does_not_reach_the_apps_loop(emu, raised):
    # Raised in the task that runs the coroutine on the app's loop, a
    # SystemExit ended the app's asyncio.run(); what it raises is ignored.
    async def scenario():
        seen = []
        arrived = asyncio.Event()

        async def on_event(event):
            seen.append(event)
            if event.kind == "refreshed":
                arrived.set()
            if event.kind == "refresh_started":
                raise raised()

        client, _ = make_client(emu, on_event=on_event)
        session, _ = await seeded(emu, client, TestStore())
        await session.access_token()
        await asyncio.wait_for(arrived.wait(), WAIT)
        return kinds(seen)

    assert asyncio.run(scenario()) == ["saved", "saved", "refresh_started", "saved", "refreshed"]


def test_a_coroutine_with_no_loop_to_run_on_is_closed_unrun(emu, caplog):
    caplog.set_level(logging.DEBUG, logger="freshtoken")
    ran = []
    returned = []
    changed = threading.Condition()

    async def record(event):
        ran.append(event)

    def on_event(event):
        coroutine = record(event)
        with changed:
            returned.append(coroutine)
            changed.notify_all()
        return coroutine

    client, _ = make_sync_client(emu, on_event=on_event)  # made outside any event loop
    session, _ = seeded_sync(emu, client, TestStore())
    session.access_token()
    with changed:
        assert changed.wait_for(lambda: len(returned) >= 5, WAIT)
    # Each coroutine is closed before the next event is handed over.
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in returned[:4])
    assert ran == []
    warnings = [r for r in caplog.records if r.name == "freshtoken" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not run" in warnings[0].getMessage()


def test_a_generated_event_listener_gets_the_generated_records(emu):
    got = []
    arrived = threading.Event()

    class Listener(freshtoken.EventListener):
        def on_event(self, event):
            got.append(event)
            arrived.set()

    client, _ = make_sync_client(emu, on_event=Listener())
    client.client_token(["accounts"])
    assert arrived.wait(WAIT)
    from freshtoken._ffi import freshtoken as generated

    assert isinstance(got[0], generated.TokenEvent) and got[0].kind == generated.EventKind.CLIENT_TOKEN_ISSUED


# --- Options ---


def test_the_event_options_are_checked(emu):
    with pytest.raises(ConfigError) as raised:
        freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, on_event="log")
    assert raised.value.field == "on_event"
    with pytest.raises(ConfigError) as raised:
        freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, event_keys="hashed")
    assert raised.value.field == "event_keys"
    with pytest.raises(ConfigError) as raised:
        freshtoken.Client.discover(emu.issuer, CLIENT_ID, client_secret=CLIENT_SECRET, event_keys="hashed",
                                   timeout=WAIT)
    assert raised.value.field == "event_keys"
    # None (the default) is no listener.
    freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, on_event=None, event_keys="full")


def test_discovered_clients_take_the_event_options(emu):
    recorder = Recorder()
    client = freshtoken.Client.discover(emu.issuer, CLIENT_ID, client_secret=CLIENT_SECRET, on_event=recorder,
                                        clock=FakeClock(), timeout=WAIT)
    client.client_token(["accounts"])
    assert kinds(recorder.until("client_token_issued")) == ["client_token_issued"]

    async def scenario():
        seen = []
        arrived = asyncio.Event()

        async def on_event(event):  # runs on this loop: discover() was awaited here
            seen.append(event)
            arrived.set()

        aclient = await freshtoken.AsyncClient.discover(emu.issuer, CLIENT_ID, client_secret=CLIENT_SECRET,
                                                        on_event=on_event, event_keys="hidden", clock=FakeClock())
        await aclient.client_token(["payments"])
        await asyncio.wait_for(arrived.wait(), WAIT)
        assert [(e.kind, e.scope) for e in seen] == [("client_token_issued", "payments")]

    asyncio.run(scenario())


def test_event_kinds_are_the_cores_names_in_its_order():
    from freshtoken._ffi import freshtoken as generated

    assert EVENT_KINDS == tuple(kind.name.lower() for kind in generated.EventKind)
    assert EVENT_KINDS == ("refresh_started", "refreshed", "refresh_failed", "reauthorization_required", "saved",
                           "save_failed", "lease_waited", "client_token_issued", "client_token_failed", "revoked")


def test_an_event_prints_only_the_fields_that_apply():
    event = TokenEvent(kind="refreshed", key="u1", duration_ms=12, attempts=2, at_ms=1_700_000_000_000)
    assert repr(event) == "TokenEvent('refreshed', key='u1', duration_ms=12, attempts=2, at_ms=1700000000000)"
    assert event == TokenEvent("refreshed", "u1", None, 12, 2, None, None, 1_700_000_000_000)
    assert hash(event) == hash(dataclasses.replace(event))


# --- The secret scan: every kind, from a scenario that produces it ---


def scenario(emu, kind):
    """Runs a scenario that emits ``kind``; returns (every event it emitted, the secrets it saw)."""
    client, clock, events = recorded_sync(emu)
    store = TestStore()
    secrets = [CLIENT_SECRET]
    if kind in ("refresh_started", "refreshed", "saved"):
        request = client.authorization_url(REDIRECT_URI, scopes=["openid"])
        code = authorization_code(request.url)
        secrets += [code, request.code_verifier]
        session = client.exchange_code("u1", store, code=code, code_verifier=request.code_verifier,
                                       redirect_uri=REDIRECT_URI)
        secrets += record_secrets(store, "u1")
        for _ in range(2):
            secrets += [session.refresh().access_token, *record_secrets(store, "u1")]
    elif kind == "refresh_failed":
        session, family = seeded_sync(emu, client, store)
        secrets += [family["refresh_token"], family["access_token"]]
        emu.fault({"kind": "status", "status": 503, "count": 4, "grant": "refresh_token"})
        with pytest.raises(TransientError):
            session.access_token()
    elif kind == "reauthorization_required":
        session, family = seeded_sync(emu, client, store)
        secrets += [family["refresh_token"], family["access_token"], *record_secrets(store, "u1")]
        # The server refuses the token (as after its use elsewhere).
        emu.fault({"kind": "body", "status": 400, "body": '{"error":"invalid_grant"}', "grant": "refresh_token"})
        with pytest.raises(ReauthorizationRequired):
            session.access_token()
    elif kind == "save_failed":
        session, family = seeded_sync(emu, client, store)
        secrets.append(family["refresh_token"])
        store.fail_saves = 1
        with pytest.raises(StorageError):
            session.access_token()
        secrets += [session.access_token(), *record_secrets(store, "u1")]
    elif kind == "lease_waited":
        fleet = LeaseStore(clock)
        session, family = seeded_sync(emu, client, fleet)
        secrets.append(family["refresh_token"])
        assert fleet.acquire_now("u1", "another-process", 30_000)
        secrets += [session.access_token(), *record_secrets(fleet, "u1")]
    elif kind == "client_token_issued":
        secrets += [client.client_token(["accounts"]), client.client_token(["payments"])]
    elif kind == "client_token_failed":
        secrets += [client.client_token(["accounts"]), client.client_token(["balances"])]
        emu.fault({"kind": "body", "status": 401, "body": '{"error":"invalid_client"}',
                   "grant": "client_credentials"})
        with pytest.raises(InvalidClientError):
            client.client_token(["payments"])
    elif kind == "revoked":
        session, family = seeded_sync(emu, client, store)
        secrets += [family["refresh_token"], session.access_token(), *record_secrets(store, "u1")]
        session.revoke()
        secrets.append(client.client_token(["accounts"]))
        client.revoke_client_tokens()
    else:
        raise AssertionError(f"{kind} has no scenario")  # each new kind gets its scenario here
    return fence(client, events), secrets


def test_no_event_of_any_kind_carries_a_token_or_a_secret(emu):
    emitted = set()
    for kind in EVENT_KINDS:
        emu.reset()
        events, secrets = scenario(emu, kind)
        assert kind in kinds(events), f"the {kind} scenario emitted {kinds(events)}"
        assert len(secrets) >= 3 and all(isinstance(s, str) and len(s) >= 8 for s in secrets), f"{kind}: its secrets"
        emitted.update(kinds(events))
        for event in events:
            shown = " ".join([repr(event), str(event), repr(dataclasses.asdict(event)), str(event.at),
                              *(str(value) for value in vars(event).values())])
            for secret in secrets:
                if secret in shown:
                    raise AssertionError(f"a {kind}-scenario event shows a secret: "
                                         f"{shown.replace(secret, '<the secret>')}")
    assert emitted == set(EVENT_KINDS), "every kind was scanned"


# --- Ownership ---


class Service:
    """The common service object: it holds the client, whose ``on_event`` is
    a bound method of its own (a cycle through the core's listener)."""

    def __init__(self, emu, cls):
        self.events = Recorder()
        self.thread = None
        make = make_sync_client if cls is freshtoken.Client else make_client
        self.client, _ = make(emu, on_event=self._on_event)

    def _on_event(self, event):
        self.thread = threading.current_thread()
        self.events(event)


def run(result):
    """``result``, awaited (on a loop of its own) when it is awaitable."""
    return asyncio.run(result) if inspect.isawaitable(result) else result


def on_event_threads():
    return {thread for thread in threading.enumerate() if thread.name == "freshtoken-on-event"}


@pytest.mark.parametrize("cls", [freshtoken.Client, freshtoken.AsyncClient], ids=["Client", "AsyncClient"])
def test_a_client_whose_callable_refers_back_to_it_is_freed_with_its_thread(emu, cls, monkeypatch):
    # The core holds the listener in uniffi's handle map, which the
    # collector cannot see into: a listener holding the callable strongly
    # made service -> client -> core -> listener -> callable -> service a
    # cycle never freed, each one keeping its client and both its threads
    # for the life of the process.
    completed = {}  # thread -> deliveries it has returned from
    returned = threading.Condition()
    deliver_next = _events._deliver_next

    def counted(events):
        more = deliver_next(events)  # its frame (holding the delivery) is gone now
        with returned:
            thread = threading.current_thread()
            completed[thread] = completed.get(thread, 0) + 1
            returned.notify_all()
        return more

    monkeypatch.setattr(_events, "_deliver_next", counted)

    def idle(service):
        """Waits until the service's thread holds nothing of it: it has
        returned from every event delivered (the collector cannot free what a
        running thread holds)."""
        with returned:
            assert returned.wait_for(lambda: completed.get(service.thread, 0) >= len(service.events.events), WAIT)

    before = on_event_threads()
    services = [Service(emu, cls) for _ in range(10)]
    live = Service(emu, cls)
    for service in services + [live]:
        run(service.client.client_token(["accounts"]))
        service.events.until("client_token_issued")
        idle(service)
    started = on_event_threads() - before
    assert len(started) == 11, "one delivery thread per client"
    dropped = [weakref.ref(service) for service in services]
    threads = {service.thread for service in services}
    del services, service

    gc.collect()
    assert sum(ref() is not None for ref in dropped) == 0, "every dropped service is freed"
    for thread in threads:
        thread.join(WAIT)  # released by the core's events thread once the client is freed
    assert [thread for thread in threads if thread.is_alive()] == []
    assert on_event_threads() - before == {live.thread}, "only the live client's thread is left"

    # The live one (its listener holding the callable only weakly) still gets every event.
    async def refresh():
        session, _ = await seeded(emu, live.client, TestStore())
        return await session.access_token()

    if cls is freshtoken.Client:
        session, _ = seeded_sync(emu, live.client, TestStore())
        session.access_token()
    else:
        asyncio.run(refresh())
    assert kinds(live.events.until("refreshed")) == ["saved", "saved", "refresh_started", "saved", "refreshed"], \
        "the seed's save, then the refresh's events"
    assert live.thread.is_alive()


# --- Exit ---

EXIT_SCRIPT = """
import gc
import freshtoken

class Holder:
    pass

def cyclic_clients(n):
    for _ in range(n):
        holder = Holder()
        holder.client = freshtoken.Client("http://127.0.0.1:9/connect/token", "c", client_secret="s",
                                          on_event=lambda event: None)
        holder.me = holder

cyclic_clients(50)
gc.collect()        # their events threads are releasing their listeners now
cyclic_clients(50)  # garbage that the collector frees while the interpreter finalizes
gc.disable()
"""


# Events still queued when the script ends: the events thread would deliver
# them while the interpreter finalizes. Each event takes the listener 2 ms
# and 300 arrive within a few ms, so hundreds are still waiting at exit.
QUEUED_AT_EXIT_SCRIPT = """
import time
import freshtoken

client = freshtoken.Client("http://127.0.0.1:9/connect/token", "c", client_secret="s",
                           on_event=lambda event: time.sleep(0.002))
store = freshtoken.MemoryTokenStore()
for i in range(300):
    client.session(f"user-{i}", store).seed(refresh_token=f"refresh-token-{i:04}")
"""


def run_exit_script(tmp_path, text, runs):
    """Runs ``text`` as a script ``runs`` times; each must exit with 0 and no FATAL."""
    import os
    import subprocess
    import sys

    script = tmp_path / "exit.py"
    script.write_text(text)
    package_dir = os.path.dirname(os.path.dirname(freshtoken.__file__))
    env = dict(os.environ, PYTHONPATH=package_dir)
    for _ in range(runs):
        run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert (run.returncode, "FATAL" in run.stderr) == (0, False), run.stderr[-2000:]


def test_a_process_with_events_queued_at_exit_exits_cleanly(tmp_path):
    # Without the exit hook (shutdown_host_calls: nothing is delivered or
    # released once the interpreter exits) this script aborted in every run.
    run_exit_script(tmp_path, QUEUED_AT_EXIT_SCRIPT, 3)


def test_a_process_with_clients_to_release_exits_cleanly(tmp_path):
    # Each client's listener is released by its events thread, a Rust
    # thread; one that called into Python during finalization was ended by
    # CPython with pthread_exit and aborted the process ("FATAL: exception
    # not rethrown"). Without freshtoken's exit hook (_loop._at_exit)
    # this script aborted in 13 to 18 runs of 20; four runs all exiting
    # cleanly leave a regression about one chance in ten thousand.
    run_exit_script(tmp_path, EXIT_SCRIPT, 4)


# A callback that never returns (it polls for something that never comes),
# still running when the script ends. On the core's events thread it was
# ended by CPython with pthread_exit once the interpreter finalized, and the
# process aborted ("FATAL: exception not rethrown") in every run: exit waits
# for it at most _loop.CORE_EXIT_WAIT_S. On the listener's Python thread it ends like
# any daemon thread.
STALLED_AT_EXIT_SCRIPT = """
import threading
import time
import freshtoken

entered = threading.Event()


def never_returns(event):
    entered.set()
    while True:
        time.sleep(0.001)


client = freshtoken.Client("http://127.0.0.1:9/connect/token", "c", client_secret="s",
                           on_event=never_returns)
client.session("u", freshtoken.MemoryTokenStore()).seed(refresh_token="refresh-token-0001")
assert entered.wait(30)
"""


def test_a_process_whose_callback_never_returns_exits_cleanly(tmp_path):
    run_exit_script(tmp_path, STALLED_AT_EXIT_SCRIPT, 2)
