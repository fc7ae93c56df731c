"""Callers that give up (issue 11, item 2): a synchronous web app that runs
``asyncio.run(asyncio.wait_for(..., 0.05))`` per request, threads that each
run their own loop, and host callbacks that are cancelled. A caller that
gives up never stops the shared refresh from finishing and saving, never
wedges the session, and a restart never sends a consumed refresh token."""

import asyncio
import json
import threading

import freshtoken
from freshtoken import FreshTokenError

from helpers import (CLIENT_ID, CLIENT_SECRET, Signal, TestStore, authorization_code, count_submissions, same,
                     turn_freshtoken_loop)

TIMEOUT = 0.05  # the app's per-request timeout


class SlowSaveStore(TestStore):
    """Saving a rotated record (one whose refresh token is not the seeded one)
    is slow: it waits for `release`, as a stalled database would. `started`
    is set when such a save starts, `saved` when it has written."""

    __test__ = False

    def __init__(self, seeded_refresh_token):
        super().__init__()
        self.seeded = seeded_refresh_token
        self.started = Signal()
        self.release = Signal()
        self.saved = Signal()

    async def save(self, key, record):
        rotated = json.loads(record).get("refresh_token") != self.seeded
        if rotated:
            self.started.set()
            await self.release.wait()
        await super().save(key, record)
        if rotated:
            self.saved.set()


def make_app(emu, store):
    """The web app's module-level state: one Client for the process."""
    return freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)


def handle_request(client, store, timeout=TIMEOUT):
    """One request of a synchronous app: a fresh event loop, a timeout."""
    async def view():
        return await asyncio.wait_for(client.session("u1", store).access_token(), timeout)

    return asyncio.run(view())


def test_a_request_that_times_out_during_the_save_never_loses_the_refresh(emu, monkeypatch):
    family = emu.seed()
    store = SlowSaveStore(family["refresh_token"])
    client = make_app(emu, store)
    asyncio.run(client.session("u1", store).seed(refresh_token=family["refresh_token"]))

    # Request 1 times out (its loop closes) while the rotated record is being saved.
    try:
        handle_request(client, store)
    except asyncio.TimeoutError:
        pass
    else:
        raise AssertionError("request 1 should have timed out: the save is held")
    assert store.started.wait_blocking(), "the refresh went on to save the rotated record"
    assert emu.counters()["rotations"] == 1, "the server rotated"
    assert not store.saved.is_set()

    # Request 2 arrives while the save is still pending: it joins the same
    # refresh. Its call is counted into freshtoken's loop, and the loop turned,
    # before the save is let go (else it could come after, and read the record).
    submitted = count_submissions(monkeypatch)
    results = []
    joiner = threading.Thread(target=lambda: results.append(handle_request(client, store, timeout=30)))
    joiner.start()
    assert submitted.acquire(timeout=30), "request 2 handed its call to freshtoken's loop"
    turn_freshtoken_loop(3)
    assert not store.saved.is_set(), "request 2 came while the save was pending"
    store.release.set()  # the slow save completes
    joiner.join(60)
    assert not joiner.is_alive(), "request 2 hung"
    assert store.saved.wait_blocking(), "the abandoned refresh saved its record"
    token = results[0]
    same(store.record("u1")["access_token"], token, "the saved record holds the token handed out")

    # More requests, each with its own loop and the 50 ms timeout: the cached token.
    for _ in range(5):
        same(handle_request(client, store), token, "a later request gets the saved token")
    assert emu.refresh_requests() == 1, "no second refresh"

    # A restart: a new Client (a new process) on the same store. Its first
    # request loads the store (no mirror yet): a generous timeout, as a
    # timeout is not what this checks.
    restarted = make_app(emu, store)
    same(handle_request(restarted, store, timeout=30), token, "the restarted app reads the saved record")
    assert emu.refresh_requests() == 1, "the consumed refresh token was never sent again"
    counters = emu.counters()
    assert counters["rotations"] == 1 and counters["reuse_detected"] == 0
    assert emu.refresh_token_state(family["refresh_token"]) == "consumed"
    assert emu.refresh_token_state(store.record("u1")["refresh_token"]) == "active", "the family is not revoked"


def test_a_cancelled_caller_whose_loop_closes_leaves_the_session_usable(emu):
    """The same without a second caller: nobody waits when the save finishes."""
    family = emu.seed()
    store = SlowSaveStore(family["refresh_token"])
    client = make_app(emu, store)
    asyncio.run(client.session("u1", store).seed(refresh_token=family["refresh_token"]))
    try:
        handle_request(client, store)
    except asyncio.TimeoutError:
        pass
    else:
        raise AssertionError("the request should have timed out: the save is held")
    assert store.started.wait_blocking()
    store.release.set()
    assert store.saved.wait_blocking(), "the save finished with no caller left"

    # Nothing mirrored the token (its only caller gave up), and a restart
    # loads the store: calls into the core, with a generous timeout (a
    # wedged session still fails them).
    token = handle_request(client, store, timeout=30)
    same(store.record("u1")["access_token"], token, "the request gets the saved token")
    restarted = make_app(emu, store)
    same(handle_request(restarted, store, timeout=30), token, "so does a restarted app")
    assert emu.refresh_requests() == 1
    assert emu.counters()["reuse_detected"] == 0


def test_eight_threads_each_running_their_own_loop_share_one_refresh(emu):
    family = emu.seed()
    store = TestStore()
    client = freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
    session = client.session("u1", store)  # one handle shared by every thread
    asyncio.run(session.seed(refresh_token=family["refresh_token"]))
    emu.fault({"kind": "hold", "grant": "refresh_token"})

    start = threading.Barrier(9)
    tokens, errors = [], []

    def worker():
        start.wait(30)
        try:
            tokens.append(asyncio.run(session.access_token()))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    start.wait(30)
    assert emu.wait_held(1) == 1, "one refresh request reached the server"
    assert emu.release_held() == 1
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert errors == []
    assert len(tokens) == 8 and len(set(tokens)) == 1, "every thread got the one refreshed token"
    assert emu.refresh_requests() == 1
    assert emu.counters()["max_concurrent_token_requests"] == 1
    same(store.record("u1")["access_token"], tokens[0], "the stored token is the one handed out")


def test_a_store_call_that_is_cancelled_reaches_the_core_as_a_storage_error(emu):
    class CancellingStore(TestStore):
        __test__ = False
        cancel_next = 0

        async def save(self, key, record):
            if self.cancel_next > 0:
                self.cancel_next -= 1
                raise asyncio.CancelledError()  # as a cancelled driver call would
            await super().save(key, record)

    async def scenario():
        family = emu.seed()
        store = CancellingStore()
        client = freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
        session = client.session("u1", store)
        store.cancel_next = 1
        try:
            await session.seed(refresh_token=family["refresh_token"])
        except FreshTokenError.Storage as err:
            assert "cancelled" in str(err)
        else:
            raise AssertionError("a cancelled save must fail the call")

        await session.seed(refresh_token=family["refresh_token"])
        token = await session.access_token()
        same(store.record("u1")["access_token"], token, "the session works after the cancelled save")
        assert emu.refresh_requests() == 1

    asyncio.run(scenario())


def test_a_caller_cancelled_while_waiting_does_not_cancel_the_refresh_for_others(emu):
    async def scenario():
        family = emu.seed()
        store = TestStore()
        client = freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
        session = client.session("u1", store)
        await session.seed(refresh_token=family["refresh_token"])
        emu.fault({"kind": "hold", "grant": "refresh_token"})

        quitter = asyncio.ensure_future(session.access_token())
        stayer = asyncio.ensure_future(session.access_token())
        assert await asyncio.to_thread(emu.wait_held, 1) == 1
        quitter.cancel()
        try:
            await quitter
        except asyncio.CancelledError:
            pass
        assert emu.release_held() == 1
        token = await stayer
        same(store.record("u1")["access_token"], token, "the refresh finished and saved")
        assert emu.refresh_requests() == 1

    asyncio.run(scenario())


class LandedStore(TestStore):
    """A store that tells when a save has written."""

    __test__ = False

    def __init__(self):
        super().__init__()
        self.saved = Signal()

    async def save(self, key, record):
        await super().save(key, record)
        self.saved.set()


def test_a_code_exchange_whose_caller_gave_up_still_saves_what_the_code_brought(emu):
    """The code is single use: once it was sent, a caller whose wait ends
    (a request timeout) must not throw away the tokens the server issued."""
    client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
    store = LandedStore()
    request = client.authorization_url("https://app.example/callback", scopes=["openid", "offline_access"])
    code = authorization_code(request.url)
    emu.fault({"kind": "hold", "grant": "authorization_code"})  # answered only when the test says
    try:
        client.exchange_code("u1", store, code=code, code_verifier=request.code_verifier,
                             redirect_uri="https://app.example/callback", timeout=TIMEOUT)
    except TimeoutError:
        pass
    else:
        raise AssertionError("the exchange should have timed out: its request is held")
    assert emu.wait_held(1) == 1, "the code was sent"
    assert store.record("u1") is None
    assert emu.release_held() == 1  # the server answers after the caller left
    assert store.saved.wait_blocking(), "the exchange went on and saved"
    refresh_token = store.record("u1")["refresh_token"]
    assert emu.refresh_token_state(refresh_token) == "active"
    client.session("u1", store).access_token(timeout=30)
    assert emu.refresh_requests() == 0, "the exchanged access token is used"
