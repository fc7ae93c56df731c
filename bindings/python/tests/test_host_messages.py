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
