"""A process paused (SIGSTOP, ``docker pause``, a long GC) while the token
endpoint answers: on resume every deadline is overdue at once, but the
answer is already in the socket. It must be taken, not counted as timed out:
otherwise the rotated refresh token is lost, the one sent is in doubt, and
the session's next call reads ``lost_rotation`` (the user links the bank
again)."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import freshtoken

from helpers import CLIENT_ID, CLIENT_SECRET

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")

# The child: a synchronous client on the default UrllibHttpClient, a file
# store, one refresh (held at the emulator until the parent has stopped
# this process), and its outcome as one JSON line.
PAUSED = r"""
import json, sys
import freshtoken

endpoint, refresh_token, directory, timeout_ms = sys.argv[1:5]
client = freshtoken.Client(endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, timeout_ms=int(timeout_ms),
                           retry={"max_attempts": 1})
store = freshtoken.FileTokenStore(directory)
session = client.session("u1", store)
session.seed(refresh_token=refresh_token)
print("ready", flush=True)
try:
    session.refresh()
    outcome = {"refresh": "ok"}
except freshtoken.FreshTokenError as error:
    outcome = {"refresh": error.code, "message": str(error)}
outcome["in_doubt"] = session.status().in_doubt
print(json.dumps(outcome), flush=True)
""".replace("CLIENT_ID", repr(CLIENT_ID)).replace("CLIENT_SECRET", repr(CLIENT_SECRET))

TIMEOUT_MS = 1500


def _wait_answered(emu, child):
    """Until the emulator has written its answer (no token request in flight, none held)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if emu._call("GET", "/connections")["token_requests_in_flight"] == 0 and \
                emu._call("GET", "/held")["held"] == 0:
            return
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGCONT)
    raise AssertionError("the emulator did not answer the released request")


def test_a_refresh_answered_while_the_process_was_paused_is_kept(emu, tmp_path):
    family = emu.seed()
    directory = tmp_path / "tokens"
    emu.fault({"kind": "hold", "grant": "refresh_token"})
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(freshtoken.__file__))  # the package under test
    child = subprocess.Popen([sys.executable, "-c", PAUSED, emu.token_endpoint, family["refresh_token"],
                              str(directory), str(TIMEOUT_MS)],
                             env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert emu.wait_held(1) == 1  # the refresh request is at the server
        os.kill(child.pid, signal.SIGSTOP)
        assert emu.release_held() == 1
        _wait_answered(emu, child)  # the answer (the rotated refresh token) is in the child's socket
        # The fault: the process stays paused past its request's timeout.
        time.sleep(TIMEOUT_MS / 1000 + 1.5)
        os.kill(child.pid, signal.SIGCONT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            child.communicate()
    assert child.returncode == 0, err[-2000:]
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome == {"refresh": "ok", "in_doubt": False}, (outcome, err[-2000:])
    assert emu.refresh_requests() == 1
    assert emu.refresh_token_state(family["refresh_token"]) == "consumed"
    record = json.loads(asyncio.run(freshtoken.FileTokenStore(directory).load("u1")))
    assert record.get("in_doubt") is not True, "the stored record is not in doubt"
    assert emu.refresh_token_state(record["refresh_token"]) == "active", "the store holds the rotated token"
