"""Interpreter shutdown with calls in flight: when the main thread ends while
other (non-daemon) threads still use freshtoken, Python shuts down
``concurrent.futures``' thread pools before it joins those threads. Host
calls must still be served then: a refresh that got its answer while the
process was ending must still save the rotated refresh token, and a write
in progress when the process ends finishes."""

import json
import subprocess
import sys


import freshtoken

from child_store import child_env
from helpers import CLIENT_ID, CLIENT_SECRET, make_sync_client

# The main thread seeds a session, starts a worker thread whose access_token()
# refreshes, and ends as soon as the refresh's answer has come back and its
# rotated record is about to be saved. The store holds that save until the
# main thread has ended (threading.main_thread().join() returns once Python's
# shutdown has run its thread-pool exit hooks), then saves it through
# FileTokenStore, whose file I/O runs in a worker thread.
AT_EXIT = r"""
import asyncio, json, sys, threading
import pytest

import freshtoken

endpoint, refresh_token, directory = sys.argv[1:4]
client = freshtoken.Client(endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, retry={"max_attempts": 1})
answered = threading.Event()


class EndingStore(freshtoken.FileTokenStore):
    async def save_versioned(self, key, record, expected):
        if self.armed and json.loads(record).get("in_doubt") is not True:  # the rotated record
            loop = asyncio.get_running_loop()
            ended = loop.create_future()

            def wait_for_main():
                threading.main_thread().join()
                loop.call_soon_threadsafe(ended.set_result, None)

            threading.Thread(target=wait_for_main, daemon=True).start()
            answered.set()
            await ended
        return await super().save_versioned(key, record, expected)


store = EndingStore(directory)
store.armed = False
client.session("u1", store).seed(refresh_token=refresh_token)
store.armed = True


def worker():
    try:
        client.session("u1", store).access_token()
        print(json.dumps({"worker": "token"}), flush=True)
    except freshtoken.FreshTokenError as error:
        print(json.dumps({"worker": error.code, "message": str(error)}), flush=True)


threading.Thread(target=worker).start()  # not a daemon: the interpreter waits for it
answered.wait()
""".replace("CLIENT_ID", repr(CLIENT_ID)).replace("CLIENT_SECRET", repr(CLIENT_SECRET))


def test_a_refresh_answered_while_the_interpreter_shuts_down_still_saves_its_refresh_token(emu, tmp_path):
    family = emu.seed()
    directory = tmp_path / "tokens"
    result = subprocess.run([sys.executable, "-c", AT_EXIT, emu.token_endpoint, family["refresh_token"],
                             str(directory)], env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"worker": "token"}, f"the worker's refresh was saved: {report}"
    assert emu.refresh_requests() == 1
    # The rotated refresh token is on disk: another process goes on from it.
    client, _ = make_sync_client(emu)
    store = freshtoken.FileTokenStore(directory)
    assert client.session("u1", store).status().in_doubt is False
    client.session("u1", store).refresh()
    assert emu.refresh_requests() == 2 and emu.counters()["reuse_detected"] == 0


# The main thread gives up on a refresh (its caller is a daemon thread) while
# a plain store method writes the rotated record, and ends. The write goes on
# in one of freshtoken's threads, which are daemons: the exit must wait for
# it. The store holds the write until the script's own exit hook runs (so it
# is still in progress when the interpreter begins to exit).
GAVE_UP_AT_EXIT = r"""
import atexit, sys, threading
import pytest

import freshtoken
from child_store import OneFileStore, is_rotated

endpoint, refresh_token, path = sys.argv[1:4]
client = freshtoken.Client(endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
writing, exiting = threading.Event(), threading.Event()


class PlainFileStore(OneFileStore):
    armed = False

    def save(self, key, record):
        if self.armed and is_rotated(record):
            writing.set()
            exiting.wait()
        super().save(key, record)


store = PlainFileStore(path)
client.session("u1", store).seed(refresh_token=refresh_token)
store.armed = True
atexit.register(exiting.set)  # runs before freshtoken's own exit hooks (registered earlier)
threading.Thread(target=lambda: client.session("u1", store).access_token(), daemon=True).start()
writing.wait()
""".replace("CLIENT_ID", repr(CLIENT_ID)).replace("CLIENT_SECRET", repr(CLIENT_SECRET))


def test_a_plain_store_write_in_progress_at_exit_finishes(emu, tmp_path):
    family = emu.seed()
    path = tmp_path / "u1.json"
    result = subprocess.run([sys.executable, "-c", GAVE_UP_AT_EXIT, emu.token_endpoint, family["refresh_token"],
                             str(path)], env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(path.read_text())
    assert record.get("in_doubt") is not True, "the rotated record was written, not only the write-ahead marker"
    assert emu.refresh_token_state(record["refresh_token"]) == "active", "the stored token is the current one"
    assert emu.refresh_requests() == 1


# The caller gives up on a refresh the emulator holds, and the script ends;
# the test lets the answer go while the script's exit hooks run. The core's
# own threads then finish the refresh (the async store's save, waking its
# futures) while the interpreter finalizes.
FINISHING_AT_EXIT = r"""
import atexit, sys
import pytest

import freshtoken

endpoint, refresh_token = sys.argv[1:3]
client = freshtoken.Client(endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
session = client.session("u1", freshtoken.MemoryTokenStore())
session.seed(refresh_token=refresh_token)
atexit.register(lambda: (print("exiting", flush=True), sys.stdin.readline()))
try:
    session.access_token(timeout=0)  # gives up at once; the refresh goes on
except TimeoutError:
    pass
print("gave up", flush=True)
sys.stdin.readline()
""".replace("CLIENT_ID", repr(CLIENT_ID)).replace("CLIENT_SECRET", repr(CLIENT_SECRET))


# The core's thread finishing the refresh (its save, its callers' wake-up)
# called into Python while the interpreter finalized, and CPython ended it
# with pthread_exit, which Rust cannot unwind: the process aborted, about 1
# run in 5 here before the core's shutdown_host_calls (the exit hook).
def test_a_refresh_finishing_while_the_interpreter_exits_never_aborts_the_process(emu, tmp_path):
    aborted = []
    for _ in range(25):  # the abort needs the core's thread to call in during finalization: seen 1 run in 5
        emu.reset()
        family = emu.seed()
        emu.fault({"kind": "hold", "grant": "refresh_token"})
        child = subprocess.Popen([sys.executable, "-c", FINISHING_AT_EXIT, emu.token_endpoint,
                                  family["refresh_token"]], env=child_env(), cwd=tmp_path, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert child.stdout.readline().strip() == "gave up"
            assert emu.wait_held(1) == 1
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "exiting"
            emu.release_held()
            child.stdin.write("\n")
            child.stdin.flush()
            _, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        if child.returncode != 0:
            aborted.append((child.returncode, err.strip()[-200:]))
            break
    assert aborted == [], f"the process aborted at exit: {aborted}"


# An exit hook registered before `import freshtoken` runs after freshtoken's
# own, which has stopped the core from calling into Python: a call made
# there got no wake-up and waited for good. It now fails at once.
CALLED_AFTER_EXIT_HOOK = r"""
import atexit, json, sys


def late():
    try:
        session.access_token()
        print(json.dumps({"late": "token"}), flush=True)
    except freshtoken.FreshTokenError as error:
        print(json.dumps({"late": error.code, "message": str(error)}), flush=True)


atexit.register(late)  # before freshtoken's: runs after it

import freshtoken

endpoint, refresh_token = sys.argv[1:3]
client = freshtoken.Client(endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
session = client.session("u1", freshtoken.MemoryTokenStore())
session.seed(refresh_token=refresh_token)  # no access token: a call needs the core
""".replace("CLIENT_ID", repr(CLIENT_ID)).replace("CLIENT_SECRET", repr(CLIENT_SECRET))


def test_a_call_made_after_the_exit_hook_fails_at_once_and_sends_nothing(emu, tmp_path):
    family = emu.seed()
    result = subprocess.run([sys.executable, "-c", CALLED_AFTER_EXIT_HOOK, emu.token_endpoint,
                             family["refresh_token"]], env=child_env(), cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["late"] == "network" and "exiting" in report["message"], report
    assert emu.refresh_requests() == 0
