"""FileTokenStore and the ``freshtoken`` command on one directory (a cron
job beside a web app): the command waits for the store's refresh lease and
serves the record the store saved, and a re-link the store saves during the
command's refresh is kept. The real command binary (target/debug/freshtoken,
or $FRESHTOKEN_COMMAND_BIN); waits are on the kernel's lock table and the
emulator's held requests, never on time."""

import json
import os
import subprocess
import time

import pytest

import freshtoken
from freshtoken import FileTokenStore

from helpers import CLIENT_ID, CLIENT_SECRET, REPO, same
from test_file_store_processes import in_thread

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="reads Linux's lock table")

COMMAND = os.environ.get("FRESHTOKEN_COMMAND_BIN") or os.path.join(REPO, "target", "debug", "freshtoken")


def start_command(emu, tmp_path, directory):
    """``freshtoken --json token`` for key u1 on ``directory``."""
    assert os.path.exists(COMMAND), f"{COMMAND} missing: run `cargo build -p freshtoken-cli` first"
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
                                 "tokenEndpoint": emu.token_endpoint, "slidingRefreshTokenLifetime": 31_536_000}))
    creds.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHTOKEN_")}
    return subprocess.Popen([COMMAND, "--json", "token", "--credentials", str(creds), "--store", str(directory),
                             "--key", "u1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def wait_blocked_on_a_lock(child):
    """Until the kernel's lock table shows ``child`` waiting for a lock
    (a ``->`` line naming its pid); fails at once if it ends first."""
    pid = str(child.pid)
    limit = time.monotonic() + 30
    while True:
        with open("/proc/locks") as table:
            if any(line.split()[1:2] == ["->"] and line.split()[5:6] == [pid] for line in table):
                return
        assert child.poll() is None, "the command ended instead of waiting for the lock"
        assert time.monotonic() < limit, "the command never waited for the lock"
        time.sleep(0.005)


def command_result(child):
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err.decode()[-400:]
    return json.loads(out)


def test_the_command_waits_for_this_stores_lease_and_serves_the_record_it_saved(emu, tmp_path):
    directory = tmp_path / "tokens"
    store = FileTokenStore(directory)
    client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
    client.session("u1", store).seed(refresh_token=emu.seed()["refresh_token"])
    before = emu.refresh_requests()
    emu.fault({"kind": "hold", "grant": "refresh_token"})
    thread, mine = in_thread(lambda: client.session("u1", store).access_token(timeout=60))
    assert emu.wait_held(1) == 1  # this store holds the lease now

    command = start_command(emu, tmp_path, directory)
    wait_blocked_on_a_lock(command)
    assert emu.refresh_requests() - before == 1, "the command sends nothing while the store holds the lease"
    assert emu.release_held() == 1
    thread.join(60)
    theirs = command_result(command)

    assert "token" in mine, mine.get("error")
    same(theirs["access_token"], mine["token"], "the command served the record this store saved")
    assert emu.refresh_requests() - before == 1, "one refresh for both"


def test_a_relink_this_store_saves_during_the_commands_refresh_is_kept(emu, tmp_path):
    directory = tmp_path / "tokens"
    client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
    old, relinked = emu.seed(), emu.seed()
    client.session("u1", FileTokenStore(directory)).seed(refresh_token=old["refresh_token"])
    emu.fault({"kind": "hold", "grant": "refresh_token"})
    command = start_command(emu, tmp_path, directory)
    assert emu.wait_held(1) == 1  # the command's refresh of the old link

    client.session("u1", FileTokenStore(directory)).seed(refresh_token=relinked["refresh_token"])
    assert emu.release_held() == 1
    result = command_result(command)

    stored = json.loads(open(FileTokenStore(directory).path("u1")).read())
    assert emu.refresh_token_state(old["refresh_token"]) == "consumed"
    assert emu.refresh_token_state(relinked["refresh_token"]) == "consumed", \
        "the command's save met the re-link and went on from it, instead of overwriting it"
    assert emu.refresh_token_state(stored["refresh_token"]) == "active"
    same(result["access_token"], stored["access_token"], "the command served the re-linked session")
