"""What host callbacks hand back, at the boundary: HTTP answers with bodies,
statuses and headers of other types, stores returning the wrong type, and
clocks that raise or read outside the core's range. Each is converted or
becomes a clear typed failure, never garbage sent to the core, a call left
pending, or a traceback from uniffi's generated code on stderr."""

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time

import pytest

import freshtoken
from freshtoken import (CasResult, FreshTokenError, HostError, HttpClient, HttpHeader, MemoryTokenStore,
                        TokenStoreBase, VersionedRecord)
from freshtoken._host import GuardedClock

from helpers import CLIENT_SECRET, FakeClock, TestStore, make_sync_client, same, seeded_sync

# -- HTTP answers ----------------------------------------------------------------


class Reshaping(HttpClient):
    """The default client, whose next token answer `reshape` changes (as a host
    client built on another library might hand it back)."""

    def __init__(self, reshape):
        self.real = freshtoken.UrllibHttpClient()
        self.reshape = reshape
        self.armed = False

    async def send(self, request):
        response = await self.real.send(request)
        if self.armed:
            self.armed = False
            changed = self.reshape(response)
            return response if changed is None else changed
        return response


def body_as(convert):
    def reshape(response):
        response.body = convert(response.body)
    return reshape


@pytest.mark.parametrize("convert", [bytearray, memoryview, lambda body: body.decode("utf-8")],
                         ids=["bytearray", "memoryview", "str"])
def test_bytes_like_and_str_bodies_reach_the_core_as_their_bytes(emu, capfd, convert):
    http = Reshaping(body_as(convert))
    client, _ = make_sync_client(emu, http=http)
    store = TestStore()
    session, family = seeded_sync(emu, client, store)
    http.armed = True
    token = session.access_token()
    record = store.record("u1")
    same(record["access_token"], token, "the answer was read, and the rotated record saved")
    assert emu.refresh_token_state(record["refresh_token"]) == "active"
    # Nothing lost: a well-behaved client in another process goes on from it.
    other, _ = make_sync_client(emu)
    same(other.session("u1", store).access_token(), token, "the saved token is the one handed out")
    assert emu.refresh_requests() == 1 and emu.counters()["reuse_detected"] == 0
    assert capfd.readouterr().err == ""


def status_as(value):
    def reshape(response):
        response.status = value
    return reshape


def headers_as(value):
    def reshape(response):
        response.headers = value(response.headers)
    return reshape


WRONG_ANSWERS = {
    "status str": (status_as("200"), "status of type str"),
    "status float": (status_as(200.0), "status of type float"),
    "status bool": (status_as(True), "status of type bool"),
    "status None": (status_as(None), "status of type NoneType"),
    "status past 32 bits": (status_as(2 ** 31), "32-bit"),
    "headers dict": (headers_as(lambda hs: {h.name: h.value for h in hs}), "headers of type dict"),
    "headers tuples": (headers_as(lambda hs: [(h.name, h.value) for h in hs]), "header of type tuple"),
    "header value int": (headers_as(lambda hs: hs + [HttpHeader(name="x-n", value=5)]), "not a str"),
    "headers None": (headers_as(lambda hs: None), "headers of type NoneType"),
    "body None": (body_as(lambda body: None), "body of type NoneType"),
    "body int": (body_as(lambda body: 5), "body of type int"),
    "not a response": (lambda response: {"status": 200, "headers": [], "body": response.body}, "returned dict"),
}


@pytest.mark.parametrize("case", list(WRONG_ANSWERS))
def test_an_answer_of_the_wrong_types_is_a_failure_of_the_send(emu, capfd, case):
    reshape, named = WRONG_ANSWERS[case]
    http = Reshaping(reshape)
    client, _ = make_sync_client(emu, http=http, retry={"max_attempts": 1})
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    http.armed = True
    with pytest.raises(freshtoken.NetworkError) as raised:
        session.access_token()
    error = raised.value
    assert named in str(error), f"the message says what was wrong: {error}"
    assert error.maybe_sent is True, "the request was sent: its refresh token is in doubt"
    assert session.status().in_doubt is True
    assert capfd.readouterr().err == "", "no traceback from the generated code"


@pytest.mark.parametrize("status", [0, 99, 600, 70000, -200])
def test_int_statuses_outside_100_to_599_reach_the_core_unchanged(emu, capfd, status):
    http = Reshaping(status_as(status))
    client, _ = make_sync_client(emu, http=http, retry={"max_attempts": 1})
    session, _ = seeded_sync(emu, client, TestStore())
    http.armed = True
    with pytest.raises(FreshTokenError) as raised:
        session.access_token()
    assert "HTTP client's answer" not in str(raised.value), "the binding let it through"
    assert str(status) in str(raised.value), f"the core saw the status: {raised.value}"
    # Not an HTTP status: an answer not understood, which the server may have
    # acted on (it did: the emulator rotated), so the record stays in doubt.
    assert isinstance(raised.value, freshtoken.NetworkError), repr(raised.value)
    assert "not an HTTP status" in str(raised.value), str(raised.value)
    assert session.status().in_doubt
    assert capfd.readouterr().err == ""


class ChangingHeaders(list):
    """Headers whose own iteration gives the real headers once (when they
    are checked), then (tuples) what a well-formed answer cannot hold."""

    def __init__(self, headers):
        super().__init__(headers)
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        if self.passes == 1:
            return list.__iter__(self)
        return iter([(h.name, h.value) for h in list.__iter__(self)])


class RenamingHeader(HttpHeader):
    """A header whose name is a str when read first, then an int."""

    def __init__(self, name, value):
        super().__init__(name=name, value=value)
        self.reads = 0

    def __getattribute__(self, attribute):
        if attribute == "name":
            reads = object.__getattribute__(self, "reads") + 1
            object.__setattr__(self, "reads", reads)
            if reads > 1:
                return 5
        return object.__getattribute__(self, attribute)


@pytest.mark.parametrize("reshape", [
    headers_as(ChangingHeaders),
    headers_as(lambda hs: [RenamingHeader(h.name, h.value) for h in hs]),
], ids=["list subclass iterating otherwise", "header renamed after the check"])
def test_headers_are_sent_to_the_core_as_they_were_checked(emu, capfd, reshape):
    # The check read the headers once, uniffi's generated code again: it got
    # values of the wrong type, printed a traceback and failed the send, and
    # the rotation the server had made was thrown away.
    http = Reshaping(reshape)
    client, _ = make_sync_client(emu, http=http, retry={"max_attempts": 1})
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    http.armed = True
    token = session.access_token()
    same(store.record("u1")["access_token"], token, "the answer was read, and the rotated record saved")
    assert emu.refresh_requests() == 1
    assert capfd.readouterr().err == "", "no traceback from the generated code"


class MisconvertingStatus(int):
    """An int status whose own conversions give another number than its value."""

    def __int__(self):
        return 503

    def __index__(self):
        return 503


def test_an_int_subclass_status_reaches_the_core_as_its_value(emu, capfd):
    # Read through its __int__, the emulator's 200 reached the core as a 503:
    # the rotation the server made was thrown away, its refresh token spent.
    http = Reshaping(lambda response: status_as(MisconvertingStatus(response.status))(response))
    client, _ = make_sync_client(emu, http=http, retry={"max_attempts": 1})
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    http.armed = True
    token = session.access_token()
    same(store.record("u1")["access_token"], token, "the 200 answer was read, and the rotated record saved")
    assert emu.refresh_requests() == 1
    assert capfd.readouterr().err == ""


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("raised", [SystemExit, GeneratorExit])
def test_a_supports_lease_that_raises_is_a_failure_not_a_dropped_exception(emu, capfd, raised):
    class Raising(MemoryTokenStore):
        def supports_lease(self):
            raise raised()

    client, _ = make_sync_client(emu)
    session = client.session("u1", Raising())
    with pytest.raises(freshtoken.StorageError) as error:
        session.seed(refresh_token=emu.seed()["refresh_token"])
    assert "supports_lease()" in str(error.value), str(error.value)
    assert emu.refresh_requests() == 0
    assert capfd.readouterr().err == "", "nothing printed by the ctypes callback"


class FlakyCapabilities(TokenStoreBase):
    """A fleet store (lease and compare-and-swap in memory) whose `member`
    raises the first time it is asked, quoting the client secret."""

    def __init__(self, member):
        self.records = {}
        self.leases = {}
        self.acquired = 0
        self.failing = member

    def _fail_once(self, member):
        if self.failing == member:
            self.failing = None
            raise ConnectionError(f"replica down (client secret {CLIENT_SECRET})")

    def supports_lease(self):
        self._fail_once("supports_lease")
        return True

    def supports_versions(self):
        self._fail_once("supports_versions")
        return True

    def load(self, key):
        return self.records.get(key, (None,))[0]

    def save(self, key, record):
        self.records[key] = (record, str(len(self.records) + 1))

    def acquire(self, key, owner, ttl_ms):
        if self.leases.setdefault(key, owner) != owner:
            return False
        self.acquired += 1
        return True

    def release(self, key, owner):
        if self.leases.get(key) == owner:
            del self.leases[key]

    def load_versioned(self, key):
        found = self.records.get(key)
        return VersionedRecord(record=found[0], version=found[1]) if found else None

    def save_versioned(self, key, record, expected):
        if self.records.get(key, (None, None))[1] != expected:
            return CasResult.CONFLICT()
        version = str(int(expected or 0) + 1)
        self.records[key] = (record, version)
        return CasResult.SAVED(version=version)


@pytest.mark.parametrize("member", ["supports_lease", "supports_versions"])
def test_a_fleet_store_whose_capability_raises_is_refused_not_run_without_its_lease(emu, capfd, member):
    # Read as False (as before), the store's lease was skipped: this process
    # would refresh beside another one refreshing the same single-use token.
    client, _ = make_sync_client(emu)
    store = FlakyCapabilities(member)
    family = emu.seed()
    session = client.session("u1", store)  # opened in the core at its first call
    with pytest.raises(freshtoken.StorageError) as raised:
        session.seed(refresh_token=family["refresh_token"])
    text = str(raised.value)
    assert f"{member}()" in text and "replica down" in text, text
    assert CLIENT_SECRET not in text, text
    with pytest.raises(freshtoken.StorageError):
        client.exchange_code("u1", FlakyCapabilities(member), code="c", code_verifier="v" * 43,
                             redirect_uri="https://app.example/cb")
    with pytest.raises(freshtoken.StorageError):
        freshtoken.EncryptedStore(FlakyCapabilities(member), current=freshtoken.EncryptionKey("k1", bytes(32)))
    assert emu.counters()["token_requests"] == 0, "nothing sent"

    # Asked again by the next call: the store now answers, and the refresh
    # takes its lease.
    session.seed(refresh_token=family["refresh_token"])
    assert isinstance(session.access_token(), str)
    assert emu.refresh_requests() == 1 and store.acquired == 1
    assert capfd.readouterr().err == ""


# -- store results ---------------------------------------------------------------


class Versioned(TokenStoreBase):
    """A fleet store in memory (lease and compare-and-swap), whose member
    `wrong` returns `value` instead of what it should."""

    def __init__(self, wrong=None, value=None):
        self.records = {}
        self.wrong = wrong
        self.value = value

    def _answer(self, name, right):
        return self.value if name == self.wrong else right

    def load(self, key):
        return self._answer("load", self.records.get(key, (None,))[0])

    def save(self, key, record):
        self.records[key] = (record, str(len(self.records) + 1))
        return self._answer("save", None)

    def supports_lease(self):
        return True

    def acquire(self, key, owner, ttl_ms):
        return self._answer("acquire", True)

    def release(self, key, owner):
        return self._answer("release", None)

    def supports_versions(self):
        return True

    def load_versioned(self, key):
        found = self.records.get(key)
        right = None if found is None else VersionedRecord(record=found[0], version=found[1])
        return self._answer("load_versioned", right)

    def save_versioned(self, key, record, expected):
        found = self.records.get(key)
        if (found and found[1]) != expected:
            return self._answer("save_versioned", CasResult.CONFLICT())
        version = str(int(expected or 0) + 1)
        self.records[key] = (record, version)
        return self._answer("save_versioned", CasResult.SAVED(version=version))


def a_future():
    future = concurrent.futures.Future()
    future.set_result("{}")
    return future


class Plain(TokenStoreBase):
    """A one-process store whose load returns `value`."""

    def __init__(self, value):
        self.value = value

    def load(self, key):
        return self.value

    def save(self, key, record):
        pass


WRONG_RESULTS = {
    "load bytes": (lambda: Plain(b'{"refresh_token": "x"}'), "load()", "str or None"),
    "load int": (lambda: Plain(7), "load()", "str or None"),
    "load list": (lambda: Plain(["{}"]), "load()", "str or None"),
    "load future": (lambda: Plain(a_future()), "load()", "str or None"),
    "load lone surrogate": (lambda: Plain('{"refresh_token": "x\udc80"}'), "load()", "not valid Unicode"),
    "load_versioned dict": (lambda: Versioned("load_versioned", {"record": "{}", "version": "1"}),
                            "load_versioned()", "VersionedRecord or None"),
    "save_versioned bool": (lambda: Versioned("save_versioned", True), "save_versioned()", "CasResult"),
    "acquire future": (lambda: Versioned("acquire", a_future()), "acquire()", "bool"),
    # Truthy or falsy, only a bool is an answer (asyncpg's execute() status, a row count, None).
    "acquire status str": (lambda: Versioned("acquire", "INSERT 0 1"), "acquire() returned str", "bool"),
    "acquire int": (lambda: Versioned("acquire", 1), "acquire() returned int", "bool"),
    "acquire None": (lambda: Versioned("acquire", None), "acquire() returned NoneType", "bool"),
}


@pytest.mark.parametrize("case", list(WRONG_RESULTS))
def test_a_store_result_of_the_wrong_type_is_a_storage_error_naming_the_method(emu, capfd, case):
    make, method, expected = WRONG_RESULTS[case]
    store = make()
    if isinstance(store, Versioned):
        good = Versioned()
        seeded_sync(emu, make_sync_client(emu)[0], good)  # a good record to read
        store.records = good.records
    session = make_sync_client(emu)[0].session("u1", store)
    with pytest.raises(FreshTokenError) as raised:
        session.access_token()
    error = raised.value
    assert isinstance(error, (freshtoken.StorageError, freshtoken.ConflictError)), repr(error)
    assert method in str(error) and expected in str(error), f"names the method and the type: {error}"
    assert capfd.readouterr().err == "", "no traceback from the generated code"


class StatusLeaseStore(TokenStoreBase):
    """Records and a real lease shared by several clients (processes), whose
    acquire answers with the SQL command status, as asyncpg's execute() does:
    "INSERT 0 0" (not taken) is truthy."""

    def __init__(self, shared):
        self.shared = shared

    def load(self, key):
        return self.shared["records"].get(key)

    def save(self, key, record):
        self.shared["records"][key] = record

    def supports_lease(self):
        return True

    def acquire(self, key, owner, ttl_ms):
        self.shared["asked"] += 1
        holder = self.shared["leases"].get(key)
        if holder is None or holder == owner:
            self.shared["leases"][key] = owner
            return "INSERT 0 1"
        return "INSERT 0 0"

    def release(self, key, owner):
        if self.shared["leases"].get(key) == owner:
            del self.shared["leases"][key]


def test_an_acquire_answering_a_truthy_status_is_refused_and_nothing_is_sent(emu, capfd):
    # Read with bool(), both clients "held" the lease and both sent the same
    # single-use refresh token: the grant was revoked.
    shared = {"records": {}, "leases": {}, "asked": 0}
    family = emu.seed()
    a, clock = make_sync_client(emu)
    b, _ = make_sync_client(emu, clock)
    a.session("u1", StatusLeaseStore(shared)).seed(refresh_token=family["refresh_token"])
    for client in (a, b):
        with pytest.raises(freshtoken.StorageError) as raised:
            client.session("u1", StatusLeaseStore(shared)).access_token()
        message = str(raised.value)
        assert "acquire() returned str" in message and "bool" in message, message
        assert "INSERT" not in message, "the value is not in the message"
    assert shared["asked"] >= 2, "each client asked for the lease"
    assert emu.refresh_requests() == 0, "no refresh token was sent"
    assert emu.refresh_token_state(family["refresh_token"]) == "active"
    assert capfd.readouterr().err == ""


class TruthySupports(MemoryTokenStore):
    def __init__(self, member, value):
        super().__init__()
        self.member, self.value = member, value

    def supports_lease(self):
        return self.value if self.member == "supports_lease" else False

    def supports_versions(self):
        return self.value if self.member == "supports_versions" else False


@pytest.mark.parametrize("value", [1, "yes", None], ids=["int", "str", "None"])
@pytest.mark.parametrize("member", ["supports_lease", "supports_versions"])
def test_a_supports_member_answering_anything_but_a_bool_fails_the_session(emu, capfd, member, value):
    client, _ = make_sync_client(emu)
    session = client.session("u1", TruthySupports(member, value))
    with pytest.raises(freshtoken.StorageError) as raised:
        session.seed(refresh_token=emu.seed()["refresh_token"])
    message = str(raised.value)
    assert f"{member}() returned {type(value).__name__}" in message and "bool" in message, message
    assert "yes" not in message
    assert emu.grant_requests("refresh_token") == 0
    assert capfd.readouterr().err == ""


class ChangingVersioned(VersionedRecord):
    """A VersionedRecord whose version is a str when read first, then an int."""

    def __getattribute__(self, attribute):
        if attribute == "version":
            reads = object.__getattribute__(self, "__dict__").get("reads", 0) + 1
            object.__getattribute__(self, "__dict__")["reads"] = reads
            if reads > 1:
                return 7
        return object.__getattribute__(self, attribute)


class ReadsChangingVersion(Versioned):
    def load_versioned(self, key):
        found = self.records.get(key)
        return None if found is None else ChangingVersioned(record=found[0], version=found[1])


def test_a_versioned_record_reaches_the_core_as_it_was_checked(emu, capfd):
    # Checked on one read of its fields and sent on another: a version that
    # changed type in between failed in uniffi's generated code (a traceback,
    # and StorageError) instead of reaching the core as checked.
    good = Versioned()
    seeded_sync(emu, make_sync_client(emu)[0], good)
    store = ReadsChangingVersion()
    store.records = good.records
    client, _ = make_sync_client(emu)
    token = client.session("u1", store).access_token()
    same(json.loads(store.records["u1"][0])["access_token"], token, "refreshed, and saved by compare-and-swap")
    assert emu.refresh_requests() == 1
    assert capfd.readouterr().err == "", "no traceback from the generated code"


def test_a_save_returning_a_future_is_a_storage_error_not_a_save(emu, capfd):
    class Deferred(MemoryTokenStore):
        def save(self, key, record):
            return a_future()  # the work happens elsewhere: nothing says it is done

    client, _ = make_sync_client(emu)
    with pytest.raises(freshtoken.StorageError) as raised:
        client.session("u1", Deferred()).seed(refresh_token=emu.seed()["refresh_token"])
    assert "save()" in str(raised.value) and "None" in str(raised.value), str(raised.value)
    assert capfd.readouterr().err == ""


def test_a_save_returning_false_is_a_storage_error_not_a_save(emu, capfd):
    # A client's "not written" reply returned as is (`return self.kv.set(...)`
    # with a set that answers False): taken as a save, the rotated token
    # would be handed out and the store keep the spent one.
    class Refusing(MemoryTokenStore):
        def __init__(self):
            super().__init__()
            self.refuse = False

        def save(self, key, record):
            if self.refuse:
                return False
            return super().save(key, record)

    store = Refusing()

    def refuse(on):
        store.refuse = on

    session, stored = _a_refresh_whose_save_is_not_a_save_sends_nothing(emu, store, refuse, "False")
    session.refresh()
    assert emu.refresh_token_state(stored) == "consumed", "refreshed once it saves"
    assert capfd.readouterr().err == ""


def _a_refresh_whose_save_is_not_a_save_sends_nothing(emu, store, arm, says):
    """Seeds `store`, calls `arm(True)`, and checks that a refresh fails with
    StorageError saying `says`, its refresh token unsent and still stored;
    then calls `arm(False)`. Returns the session and that refresh token."""
    client, _ = make_sync_client(emu)
    session, _ = seeded_sync(emu, client, store)
    stored = json.loads(store.get("u1"))["refresh_token"]
    arm(True)
    with pytest.raises(freshtoken.StorageError) as raised:
        session.refresh()
    assert "save()" in str(raised.value) and says in str(raised.value), str(raised.value)
    assert json.loads(store.get("u1"))["refresh_token"] == stored
    assert emu.refresh_token_state(stored) == "active", "nothing was sent"
    arm(False)
    return session, stored


@pytest.mark.parametrize("kind", ["coroutine", "task", "future"])
def test_an_async_save_returning_what_it_did_not_await_is_a_storage_error(emu, capfd, kind):
    # `return self.redis.set(...)` in an `async def save` returns the write
    # unstarted: taken as a save, the rotated token would be handed out and
    # the store keep the spent one (a restart sends it: a re-link).
    class Unawaited(MemoryTokenStore):
        def __init__(self):
            super().__init__()
            self.forget = False

        async def _write(self, key, record):
            self._records[key] = record

        async def save(self, key, record):
            if not self.forget:
                self._records[key] = record
                return None
            if kind == "coroutine":
                return self._write(key, record)
            if kind == "task":
                return asyncio.ensure_future(self._write(key, record))  # not done yet
            return asyncio.get_running_loop().create_future()

    store = Unawaited()

    def forget(on):
        store.forget = on

    _a_refresh_whose_save_is_not_a_save_sends_nothing(emu, store, forget, "await it")
    assert "never awaited" not in capfd.readouterr().err


# -- clocks ---------------------------------------------------------------------


class Misreading(freshtoken.Clock):
    """The system clock, except when the core reads it (off the main thread)
    while armed: then it misbehaves as `kind` says. The mirror's own reads, on
    the caller's (main) thread, stay right."""

    def __init__(self, kind):
        self.kind = kind
        self.armed = False
        self.misread = 0

    def now_ms(self):
        if self.armed and threading.current_thread() is not threading.main_thread():
            self.misread += 1
            if self.kind == "past 64 bits":
                return 2 ** 64 + 5000  # would wrap to 5000 ms (1970)
            if self.kind == "below 64 bits":
                return -(2 ** 63) - 1
            if self.kind == "bool":
                return True
            if self.kind == "SystemExit":
                raise SystemExit(1)
            if self.kind == "GeneratorExit":
                raise GeneratorExit
        return int(time.time() * 1000)

    async def sleep(self, ms):
        await asyncio.sleep(ms / 1000)


@pytest.mark.parametrize("kind", ["past 64 bits", "below 64 bits", "bool", "SystemExit", "GeneratorExit"])
def test_a_clock_reading_the_core_cannot_use_falls_back_to_the_system_clock(emu, capfd, kind):
    clock = Misreading(kind)
    client = freshtoken.Client(emu.token_endpoint, "test-client", client_secret="test-secret", clock=clock)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    before = int(time.time() * 1000)
    clock.armed = True
    token = session.access_token()
    clock.armed = False
    after = int(time.time() * 1000)
    assert clock.misread > 0, "the core read the clock"
    record = store.record("u1")
    assert before <= record["expires_at"] <= after + 24 * 3600 * 1000, \
        "the expiry was computed on the system clock, not on a wrapped or zero reading"
    same(session.access_token(), token, "still fresh: no refresh, no re-link")
    assert emu.refresh_requests() == 1
    assert session.status().reauthorization_reason is None
    assert capfd.readouterr().err == "", "nothing escaped into the FFI"


CLOCK_INTERRUPT = r"""
import json, signal, sys, threading, time
import freshtoken

# Our own SIGINT handler records the interrupt instead of raising it.
interrupts = []
signal.signal(signal.SIGINT, lambda signum, frame: interrupts.append(signum))

class Interrupting(freshtoken.Clock):
    armed = False
    def now_ms(self):
        if self.armed and threading.current_thread() is not threading.main_thread():
            self.armed = False
            raise KeyboardInterrupt
        return int(time.time() * 1000)
    async def sleep(self, ms):
        pass

endpoint, refresh_token = sys.argv[1], sys.argv[2]
clock = Interrupting()
store = freshtoken.MemoryTokenStore()
client = freshtoken.Client(endpoint, "test-client", client_secret="test-secret", clock=clock)
session = client.session("u1", store)
session.seed(refresh_token=refresh_token)
before = int(time.time() * 1000)
clock.armed = True
session.access_token()
report = {"interrupted": len(interrupts), "read": not clock.armed,
          "expiry_on_system_clock": json.loads(store.get("u1"))["expires_at"] >= before}
print(json.dumps(report))
"""


def test_a_keyboard_interrupt_in_the_clock_reaches_the_main_thread_and_the_core_reads_the_system_clock(emu, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(freshtoken.__file__))  # the package under test
    family = emu.seed()
    result = subprocess.run([sys.executable, "-c", CLOCK_INTERRUPT, emu.token_endpoint, family["refresh_token"]],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"interrupted": 1, "read": True, "expiry_on_system_clock": True}, report
    assert result.stderr == "", result.stderr[-2000:]


@pytest.mark.parametrize("raised", [GeneratorExit, SystemExit, KeyboardInterrupt, RuntimeError])
def test_a_clock_sleep_that_raises_is_a_failure_for_the_core(raised, monkeypatch):
    """What the core gets from a host sleep that raises: HostError (then it
    sleeps in real time), never the exception itself or a call left pending."""
    import _thread

    interrupts = []
    monkeypatch.setattr(_thread, "interrupt_main", lambda *args: interrupts.append(args))

    class Raising(freshtoken.Clock):
        def now_ms(self):
            return 0

        async def sleep(self, ms):
            raise raised()

    future = asyncio.run_coroutine_threadsafe(GuardedClock(Raising()).sleep(5), freshtoken.event_loop())
    with pytest.raises(HostError.Failed):
        future.result(30)
    assert len(interrupts) == (1 if raised is KeyboardInterrupt else 0), "Ctrl-C goes on to the main thread"


def test_a_clock_whose_sleep_raises_still_lets_retries_run(emu, capfd):
    class Exiting(freshtoken.Clock):
        def __init__(self):
            self.sleeps = 0

        def now_ms(self):
            return int(time.time() * 1000)

        async def sleep(self, ms):
            self.sleeps += 1
            raise GeneratorExit

    clock = Exiting()
    client = freshtoken.Client(emu.token_endpoint, "test-client", client_secret="test-secret", clock=clock,
                               retry={"max_attempts": 2, "initial_backoff_ms": 1, "max_backoff_ms": 1})
    session, _ = seeded_sync(emu, client, TestStore())
    emu.fault({"kind": "status", "status": 503, "grant": "refresh_token"})
    assert isinstance(session.access_token(timeout=30), str)
    assert clock.sleeps == 1 and emu.refresh_requests() == 2
    assert capfd.readouterr().err == ""


class AlwaysEarlier(int):
    """A clock reading (an int subclass) that says it is earlier than anything."""

    def __lt__(self, other):
        return True


class EarlierClock(FakeClock):
    def now_ms(self):
        return AlwaysEarlier(self.ms)


def test_a_clock_reading_of_an_int_subclass_is_compared_as_its_value(emu):
    # The mirror compared the reading itself, whose __lt__ said "fresh"
    # forever: an expired token was served and nothing refreshed it.
    clock = EarlierClock()
    client, _ = make_sync_client(emu, clock=clock)
    session, _ = seeded_sync(emu, client, TestStore())
    first = session.access_token()
    clock.advance(2 * 3600 * 1000)  # far past the token's expiry
    second = session.access_token()
    assert first != second, "the expired token was not served from the mirror"
    assert emu.refresh_requests() == 2
