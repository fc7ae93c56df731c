"""The wheel maturin builds: pip installs it into a fresh venv, and the
installed package (not the source tree) runs the README's synchronous quick
start, then the asyncio one, against the emulator.

scripts/test-python.sh builds the wheel and passes its path in
$FRESHTOKEN_WHEEL; without it this test is skipped.
"""

import json
import os
import subprocess
import sys

import pytest

SMOKE = r"""
import asyncio, json, sys, tempfile
import freshtoken

endpoint, refresh_token = sys.argv[1], sys.argv[2]

# The README's synchronous quick start.
client = freshtoken.Client(endpoint, "test-client", client_secret="test-secret")
store = freshtoken.FileTokenStore(tempfile.mkdtemp())
recovered = store.recover_sync()                                         # at startup
client.session("user-42", store).seed(refresh_token=refresh_token)   # once
token = client.session("user-42", store).access_token()                # per request
cached = all(client.session("user-42", store).access_token() == token for _ in range(100))
try:
    client.session("nobody", store).access_token()
    code = None
except freshtoken.ReauthorizationRequired as err:
    code = (err.code, err.reason)

# The asyncio one, on the same store: the saved record, no new refresh.
async def main():
    aclient = freshtoken.AsyncClient(endpoint, "test-client", client_secret="test-secret")
    return await aclient.session("user-42", store).access_token()

print(json.dumps({"file": freshtoken.__file__, "cached": cached, "code": code,
                  "recovered": recovered == freshtoken.RecoverResult(completed=0, removed=0),
                  "stored": json.loads(open(store.path("user-42")).read())["access_token"] == token,
                  "async_same": asyncio.run(main()) == token,
                  # maturin generated this module: its string converter is replaced too.
                  "str_encode": freshtoken._ffi.freshtoken._UniffiFfiConverterString.lower
                                is freshtoken._strings._lower}))
"""


def test_the_installed_wheel_runs_a_session(emu, tmp_path):
    wheel = os.environ.get("FRESHTOKEN_WHEEL")
    if not wheel:
        pytest.skip("FRESHTOKEN_WHEEL not set (scripts/test-python.sh builds the wheel)")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-index", "--no-deps", wheel], check=True)

    family = emu.seed()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FRESHTOKEN_PYTHONPATH")}
    result = subprocess.run([python, "-c", SMOKE, emu.token_endpoint, family["refresh_token"]],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["file"].startswith(str(venv)), "imported from the installed wheel"
    assert report["cached"] and report["stored"] and report["async_same"] and report["str_encode"]
    assert report["recovered"]
    assert report["code"] == ["reauthorization_required", "no_refresh_token"]
    assert emu.refresh_requests() == 1
