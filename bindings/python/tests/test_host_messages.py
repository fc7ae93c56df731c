"""Host failures whose message cannot cross as it is, and ``on_event``
callables that raise a ``BaseException``: typed and quiet, as the README
promises. Before, uniffi's generated code failed to encode the message (a
lone surrogate, e.g. from ``os.fsdecode`` of a non-UTF-8 path), or
``str(error)`` raised inside the guard, and a traceback reached stderr; an
``on_event`` raising ``GeneratorExit`` or an app's own ``BaseException``
was printed by the ctypes callback ("Exception ignored …")."""

import logging
import os
import threading
import time

import pytest

import freshtoken
from freshtoken import HostError, HttpClient

from helpers import CLIENT_ID, CLIENT_SECRET, TestStore, differ, make_sync_client, same, seeded_sync

# A path as Python reads a non-UTF-8 file name: "\udcff" in it.
PATH = os.fsdecode(b"/srv/tok\xffens/x.json")
assert "\udcff" in PATH


class SurrogateLoad(TestStore):
    async def load(self, key):
        raise OSError(f"cannot open {PATH}")


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("__str__ failed")


class UnprintableLoad(TestStore):
    async def load(self, key):
        raise UnprintableError()


class OddHostErrors(TestStore):
    def __init__(self, detail):
        super().__init__()
        self.detail = detail

    async def load(self, key):
        raise HostError.Failed(detail=self.detail)


@pytest.mark.parametrize("store,expected", [
    (SurrogateLoad, "cannot open /srv/tok\\udcffens/x.json"),
    (UnprintableLoad, "UnprintableError"),
    (lambda: OddHostErrors("no such \udcff file"), "no such \\udcff file"),
    (lambda: OddHostErrors(5), "a HostError with a int detail"),
], ids=["lone surrogate", "__str__ raises", "HostError with a surrogate", "HostError with an int"])
def test_a_store_message_that_cannot_cross_as_it_is_is_a_quiet_storage_error(emu, capfd, store, expected):
    client, _ = make_sync_client(emu)
    with pytest.raises(freshtoken.StorageError) as raised:
        client.session("u1", store()).status()
    assert expected in str(raised.value), str(raised.value)
    assert capfd.readouterr().err == "", "no traceback from uniffi's generated code"


class FailingSave(TestStore):
    failing = False

    async def save(self, key, record):
        if self.failing:
            raise PermissionError(f"cannot write {PATH}")
        await super().save(key, record)


def test_a_failed_rotation_save_with_such_a_message_keeps_the_renewed_record(emu, capfd):
    client, _ = make_sync_client(emu)
    store = FailingSave()
    session, family = seeded_sync(emu, client, store)
    store.failing = True
    with pytest.raises(freshtoken.StorageError) as raised:
        session.access_token()
    assert "\\udcff" in str(raised.value)
    store.failing = False
    token = session.access_token()  # the unpersisted record is saved first
    same(token, store.record("u1")["access_token"], "the renewed record was kept and saved")
    differ(store.record("u1")["refresh_token"], family["refresh_token"], "rotated")
    assert emu.refresh_requests() == 1 and emu.refresh_token_state(family["refresh_token"]) == "consumed"
    assert capfd.readouterr().err == ""


class SurrogateHttp(HttpClient):
    async def send(self, request):
        raise ConnectionError(f"proxy said {PATH}")


def test_an_http_message_that_cannot_cross_as_it_is_is_a_quiet_network_error(emu, capfd):
    client, _ = make_sync_client(emu, http=SurrogateHttp())
    session, _ = seeded_sync(emu, client, TestStore())
    with pytest.raises(freshtoken.NetworkError) as raised:
        session.access_token()
    assert "\\udcff" in str(raised.value)
    assert capfd.readouterr().err == ""


class AppStop(BaseException):
    """An application's own BaseException."""


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("raised", [GeneratorExit, AppStop, SystemExit])
def test_an_on_event_raising_a_base_exception_is_swallowed_and_logged_by_type(emu, capfd, caplog, raised):
    calls = []
    changed = threading.Condition()

    def on_event(event):
        with changed:
            calls.append(event.kind)
            changed.notify_all()
        raise raised()

    caplog.set_level(logging.DEBUG, logger="freshtoken")
    client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, on_event=on_event)
    session, _ = seeded_sync(emu, client, TestStore())
    session.access_token()
    session.refresh()
    with changed:
        # Every event after the first was still delivered.
        assert changed.wait_for(lambda: calls.count("refreshed") == 2, 30), calls
    assert calls[-4:] == ["saved", "refresh_started", "saved", "refreshed"]
    warnings = [r for r in caplog.records if r.name == "freshtoken" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and raised.__name__ in warnings[0].getMessage()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err, err


# -- an exception whose __str__ raises a BaseException ------------------------------
#
# The guard turned what a host callback raised into HostError.Failed with
# str(error), catching only an Exception from __str__: one raising a
# BaseException (an app's own, GeneratorExit, SystemExit) escaped the guard.
# A store's async load, or an HTTP send, then never answered the core (the
# call waited out its deadline), and a fleet store's supports_lease() was
# printed by the ctypes callback and read as False: the refresh ran without
# the store's lease, beside other processes refreshing the same single-use
# token.


class UnprintableBase(Exception):
    """An exception whose __str__ raises a BaseException."""

    def __init__(self, raised=AppStop):
        super().__init__()
        self.raised = raised

    def __str__(self):
        raise self.raised()


class ArgumentUnprintable:
    """A HostError argument whose __str__ raises a BaseException."""

    def __str__(self):
        raise AppStop()


UNPRINTABLE = [
    pytest.param(lambda: UnprintableBase(AppStop), id="an app's BaseException"),
    pytest.param(lambda: UnprintableBase(GeneratorExit), id="GeneratorExit"),
    pytest.param(lambda: UnprintableBase(SystemExit), id="SystemExit"),
    pytest.param(lambda: HostError(ArgumentUnprintable()), id="HostError whose argument"),
]


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("raised", UNPRINTABLE)
def test_a_fleet_store_raising_an_unprintable_error_from_supports_lease_is_refused(emu, capfd, raised):
    class Fleet(TestStore):
        __test__ = False
        broken = False
        acquired = 0

        def supports_lease(self):
            if self.broken:
                raise raised()
            return True

        async def acquire(self, key, owner, ttl_ms):
            self.acquired += 1
            return True

    store = Fleet()
    client, _ = make_sync_client(emu)
    session, _ = seeded_sync(emu, client, store)
    store.broken = True
    other, _ = make_sync_client(emu)  # another process: it asks the store anew
    with pytest.raises(freshtoken.StorageError) as error:
        other.session("u1", store).access_token(timeout=30)
    assert "supports_lease()" in str(error.value), str(error.value)
    assert emu.refresh_requests() == 0, "no refresh without the store's lease"
    store.broken = False
    assert isinstance(other.session("u1", store).access_token(timeout=30), str)
    assert emu.refresh_requests() == 1 and store.acquired == 1, "the refresh took the lease"
    assert capfd.readouterr().err == "", "nothing printed by the ctypes callback"


@pytest.mark.parametrize("raised", UNPRINTABLE)
@pytest.mark.parametrize("plain", [False, True], ids=["async", "plain"])
def test_a_store_raising_an_unprintable_error_is_a_storage_error_at_once(emu, capfd, raised, plain):
    class Failing(TestStore):
        __test__ = False

        async def load(self, key):
            raise raised()

    class PlainFailing(TestStore):
        __test__ = False

        def load(self, key):
            raise raised()

    # With a deadline no test waits for: the answer must come from the
    # store's failure, not from the core giving up on it.
    client, _ = make_sync_client(emu, store_timeout_ms=600_000)
    with pytest.raises(freshtoken.StorageError) as error:
        client.session("u1", PlainFailing() if plain else Failing()).status(timeout=30)
    assert "within" not in str(error.value), str(error.value)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("raised", UNPRINTABLE)
def test_an_http_client_raising_an_unprintable_error_is_a_network_error_at_once(emu, capfd, raised):
    class Failing(HttpClient):
        async def send(self, request):
            raise raised()

    client, _ = make_sync_client(emu, http=Failing(), timeout_ms=120_000, retry={"max_attempts": 1})
    session, _ = seeded_sync(emu, client, TestStore())
    with pytest.raises(freshtoken.NetworkError):
        session.access_token(timeout=30)
    assert capfd.readouterr().err == ""


class UnprintableClock(freshtoken.Clock):
    """A clock whose now_ms raises a HostError carrying an unprintable argument once armed."""

    armed = False
    misread = 0

    def now_ms(self):
        if self.armed and threading.current_thread() is not threading.main_thread():
            self.misread += 1
            raise HostError(ArgumentUnprintable())
        return int(time.time() * 1000)

    async def sleep(self, ms):
        pass


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_clock_raising_an_unprintable_host_error_falls_back_to_the_system_clock(emu, capfd):
    clock = UnprintableClock()
    client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    before = int(time.time() * 1000)
    clock.armed = True
    session.access_token(timeout=30)
    clock.armed = False
    assert clock.misread > 0, "the core read the clock"
    assert store.record("u1")["expires_at"] >= before, "the expiry is on the system clock, not 1970"
    assert capfd.readouterr().err == "", "nothing escaped into the FFI"
