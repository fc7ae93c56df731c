"""freshtoken's own event loop: one per process, started on first use,
started again in a forked child, and the loop every core call runs on."""

import asyncio
import json
import os
import subprocess
import sys
import threading

import pytest

import freshtoken

from helpers import TestStore, make_client, make_sync_client, same, seeded, seeded_sync


def test_one_loop_per_process_on_a_daemon_thread():
    loop = freshtoken.event_loop()
    assert freshtoken.event_loop() is loop
    assert loop.is_running()
    thread = next(t for t in threading.enumerate() if t.name == "freshtoken-loop")
    assert thread.daemon, "it never keeps the process alive"


def test_core_calls_run_on_freshtokens_loop_whatever_loop_awaits_them(emu):
    seen = []

    class Spy(freshtoken.MemoryTokenStore):
        async def save(self, key, record):
            seen.append(asyncio.get_running_loop())
            await super().save(key, record)

    async def scenario():
        client, _ = make_client(emu)
        session, _ = await seeded(emu, client, Spy())
        await session.access_token()
        return asyncio.get_running_loop()

    callers = [asyncio.run(scenario()) for _ in range(2)]
    assert seen and set(map(id, seen)) == {id(freshtoken.event_loop())}
    assert not any(loop is freshtoken.event_loop() for loop in callers)


FORK = r"""
import asyncio, json, os
import freshtoken

def seed(key):
    store = freshtoken.MemoryTokenStore()
    client = freshtoken.AsyncClient("http://127.0.0.1:9/connect/token", "c", client_secret="s")
    asyncio.run(asyncio.wait_for(client.session(key, store).seed(refresh_token="rt-" + key), 10))
    return store.get(key) is not None

report = {"parent_before": seed("a")}
parent_loop = freshtoken.event_loop()
pid = os.fork()
if pid == 0:
    ok = seed("b") and freshtoken.event_loop() is not parent_loop
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
report["child_exit"] = os.waitstatus_to_exitcode(status)
report["parent_after"] = seed("c")
print(json.dumps(report))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_gets_a_loop_of_its_own(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(freshtoken.__file__))
    result = subprocess.run([sys.executable, "-c", FORK], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"parent_before": True, "child_exit": 0, "parent_after": True}, report


def test_a_host_callback_that_stops_freshtokens_loop_does_not_stop_freshtoken(emu):
    # loop.stop() in an async store method ended the loop's thread: every
    # call in the process then waited for good (here, for its timeout=).
    class Stopping(TestStore):
        __test__ = False
        stop_next = False

        async def save(self, key, record):
            if self.stop_next:
                self.stop_next = False
                asyncio.get_running_loop().stop()
            await super().save(key, record)

    client, _ = make_sync_client(emu)
    store = Stopping()
    session, family = seeded_sync(emu, client, store)
    store.stop_next = True
    token = session.access_token(timeout=10)
    same(store.record("u1")["access_token"], token, "the refresh saved and answered")
    assert client.session("u2", TestStore()).status(timeout=10).has_record is False, "other calls are served"
