"""Two clients of one process and one refresh token: the core sends it once
(one refresh per refresh token per process, whatever client holds it).
Without that, a client made per request sent the token a second time, and
the server revoked the grant: the user had to re-link."""

import threading

from helpers import TestStore, make_sync_client, same, seeded_sync


class LoadSeen(TestStore):
    """A TestStore that says when a load has answered."""

    __test__ = False

    def __init__(self):
        super().__init__()
        self.loaded = threading.Event()

    async def load(self, key):
        try:
            return await super().load(key)
        finally:
            self.loaded.set()


def test_two_clients_on_one_store_send_the_refresh_token_once(emu):
    store = LoadSeen()
    first, clock = make_sync_client(emu)
    second, _ = make_sync_client(emu, clock=clock)
    session, family = seeded_sync(emu, first, store)
    emu.fault({"kind": "hold", "grant": "refresh_token"})
    tokens = {}
    a = threading.Thread(target=lambda: tokens.setdefault("first", session.access_token(timeout=30)))
    a.start()
    assert emu.wait_held(1) == 1
    # The second client reads the store while the first one's request is out.
    store.loaded.clear()
    b = threading.Thread(target=lambda: tokens.setdefault(
        "second", second.session("u1", store).access_token(timeout=30)))
    b.start()
    assert store.loaded.wait(30)
    assert emu.release_held() == 1
    a.join(40)
    b.join(40)
    same(tokens.get("first"), tokens.get("second"), "both clients got the one new token")
    assert emu.refresh_requests() == 1
    assert emu.counters()["reuse_detected"] == 0
    assert emu.refresh_token_state(family["refresh_token"]) == "consumed"
    assert emu.refresh_token_state(store.record("u1")["refresh_token"]) == "active"
