"""Store members the core asks synchronously (``supports_lease``,
``supports_versions``) and members a duck-typed store lacks. An ``async
def`` supports_* would answer with a coroutine, which is truthy: the store
was read as a fleet store ("this store has no versions" on every call) and
Python warned "coroutine … was never awaited". Now ``client.session``
refuses it as ``ConfigError`` naming the store; a coroutine that still
arrives at run time is closed unrun and fails the session with
``StorageError``. A duck-typed store's
missing members are looked up inside the guard: a typed failure naming the
member, never a traceback from uniffi's generated code."""

import gc
import json
import threading
import warnings

import pytest

import freshtoken
from freshtoken import ConfigError, MemoryTokenStore

from helpers import DictStore, make_sync_client, same


class AsyncSupports(MemoryTokenStore):
    async def supports_versions(self):
        return False

    async def supports_lease(self):
        return False


class DuckAsyncSupports:
    def __init__(self):
        self.records = {}

    async def load(self, key):
        return self.records.get(key)

    async def save(self, key, record):
        self.records[key] = record

    async def supports_versions(self):
        return False


class InstanceAsyncSupports(MemoryTokenStore):
    def __init__(self):
        super().__init__()

        async def supports_lease():
            return False

        self.supports_lease = supports_lease


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("make", [AsyncSupports, DuckAsyncSupports, InstanceAsyncSupports],
                         ids=lambda c: c.__name__)
def test_an_async_supports_member_is_refused_by_session(emu, capfd, make):
    client, _ = make_sync_client(emu)
    store = make()
    with pytest.raises(ConfigError) as raised:
        client.session("u1", store)
    assert raised.value.field == "store"
    assert "plain method" in str(raised.value) and "supports_" in str(raised.value)
    with pytest.raises(ConfigError):
        client.exchange_code("u1", store, code="c", code_verifier="v" * 43, redirect_uri="https://app.example/cb")
    assert emu.grant_requests("authorization_code") == 0
    gc.collect()
    assert capfd.readouterr().err == ""


class CoroutineAtRunTime(MemoryTokenStore):
    """A plain ``supports_versions`` (it passes the check) that hands back a
    coroutine all the same."""

    def __init__(self):
        super().__init__()
        self.handed = []

    def supports_versions(self):
        async def answer():
            return True

        coroutine = answer()
        self.handed.append(coroutine)
        return coroutine


def test_a_coroutine_from_a_plain_supports_member_is_closed_and_fails_the_session(emu, capfd):
    # Read as False, a fleet store's lease would be skipped; the session is
    # refused instead, with nothing sent.
    client, _ = make_sync_client(emu)
    store = CoroutineAtRunTime()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = client.session("u1", store)  # opened in the core at its first call
        with pytest.raises(freshtoken.StorageError) as raised:
            session.seed(refresh_token=emu.seed()["refresh_token"])
        gc.collect()
    assert "supports_versions()" in str(raised.value) and "plain method" in str(raised.value), str(raised.value)
    assert store.handed, "the core asked"
    assert all(c.cr_frame is None for c in store.handed), "each coroutine was closed"
    assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]
    assert emu.grant_requests("refresh_token") == 0
    assert capfd.readouterr().err == ""


class Duck:
    """A store that is no TokenStoreBase, with load and save only."""

    def __init__(self):
        self.records = {}

    async def load(self, key):
        return self.records.get(key)

    def save(self, key, record):
        self.records[key] = record


def test_a_duck_store_without_supports_members_serves_one_process(emu, capfd):
    client, _ = make_sync_client(emu)
    store = Duck()
    family = emu.seed()
    client.session("u1", store).seed(refresh_token=family["refresh_token"])
    token = client.session("u1", store).access_token()
    assert emu.refresh_requests() == 1 and isinstance(token, str)
    assert capfd.readouterr().err == "", "no lookup outside the guard"


class DuckClaimingVersions(Duck):
    def supports_versions(self):
        return True


def test_a_duck_store_missing_a_member_it_claims_is_a_storage_error_naming_it(emu, capfd):
    client, _ = make_sync_client(emu)
    with pytest.raises(freshtoken.StorageError) as raised:
        client.session("u1", DuckClaimingVersions()).seed(refresh_token=emu.seed()["refresh_token"])
    assert "load_versioned()" in str(raised.value) and "DuckClaimingVersions" in str(raised.value)
    assert emu.refresh_requests() == 0
    assert capfd.readouterr().err == "", "no traceback from uniffi's generated code"


class CountingSupports(MemoryTokenStore):
    """Records the thread of every capability question."""

    def __init__(self):
        super().__init__()
        self.asked = []

    def supports_lease(self):
        self.asked.append(("lease", threading.get_ident()))
        return False

    def supports_versions(self):
        self.asked.append(("versions", threading.get_ident()))
        return False


def test_capabilities_are_asked_once_on_the_callers_thread(emu):
    # The core would otherwise ask them on its own threads, where a blocking
    # answer has no deadline and stalls every client's refreshes.
    client, _ = make_sync_client(emu)
    store = CountingSupports()
    family = emu.seed()
    session = client.session("u1", store)
    session.seed(refresh_token=family["refresh_token"])
    session.access_token()
    session.refresh()
    assert emu.refresh_requests() == 2
    here = threading.get_ident()
    assert sorted(store.asked) == [("lease", here), ("versions", here)], store.asked


class PlainDictMixin:
    """Plain (blocking-driver style) members from a class that is not a TokenStoreBase."""

    def load(self, key):
        return self.records.get(key)

    def save(self, key, record):
        self.records[key] = record


class MixinStore(PlainDictMixin, freshtoken.TokenStoreBase):
    def __init__(self):
        self.records = {}


class BytesMixin:
    async def load(self, key):
        return b'{"schema":"freshtoken.record/1"}'

    async def save(self, key, record):
        pass


class BytesMixinStore(BytesMixin, freshtoken.TokenStoreBase):
    pass


class PatchedLater(freshtoken.TokenStoreBase):
    def __init__(self):
        self.records = {}

    async def load(self, key):
        return None

    async def save(self, key, record):
        pass


PatchedLater.load = PlainDictMixin.load  # set on the class after it was made
PatchedLater.save = PlainDictMixin.save


@pytest.mark.parametrize("make", [MixinStore, PatchedLater], ids=["mixin", "patched later"])
def test_plain_members_from_a_mixin_or_set_later_run_behind_the_guard(emu, capfd, make):
    client, _ = make_sync_client(emu)
    store = make()
    family = emu.seed()
    client.session("u1", store).seed(refresh_token=family["refresh_token"])
    token = client.session("u1", store).access_token()
    assert emu.refresh_requests() == 1
    same(json.loads(store.records["u1"])["access_token"], token, "saved through the plain member")
    assert capfd.readouterr().err == "", "no traceback from uniffi's generated code"


def test_a_mixin_member_answering_the_wrong_type_is_a_storage_error_naming_it(emu, capfd):
    client, _ = make_sync_client(emu)
    with pytest.raises(freshtoken.StorageError) as raised:
        client.session("u1", BytesMixinStore()).access_token()
    assert "load()" in str(raised.value), str(raised.value)
    assert capfd.readouterr().err == "", "no traceback from uniffi's generated code"


class AuditedStore(DictStore):
    """A plain ``save`` that adds to its parent's through ``super()``."""

    def __init__(self):
        super().__init__()
        self.audited = []

    def save(self, key, record):
        self.audited.append(key)
        super().save(key, record)


@pytest.mark.filterwarnings("error")
def test_a_plain_save_calling_its_parents_plain_save_saves(emu, capfd):
    # TokenStoreBase used to turn every member of every subclass into a
    # coroutine function: the parent's save, called here through super(),
    # answered a coroutine nobody awaited, the save reported success and the
    # rotated refresh token was never stored.
    client, _ = make_sync_client(emu)
    store = AuditedStore()
    family = emu.seed()
    client.session("u1", store).seed(refresh_token=family["refresh_token"])
    token = client.session("u1", store).access_token()
    assert emu.refresh_requests() == 1
    same(json.loads(store.records["u1"])["access_token"], token, "the rotation reached the parent's save")
    assert store.audited == ["u1"] * 3, "the seed, the write-ahead marker, the rotation"
    assert store.load("u1") == store.records["u1"], "members stay as written: a plain load answers at once"
    gc.collect()
    assert capfd.readouterr().err == "", "no coroutine left unawaited"
