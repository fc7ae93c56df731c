"""The wheel maturin builds: pip installs it into a fresh venv, and the
installed package (not the source tree) runs a session against the emulator.

scripts/test-python.sh builds the wheel and passes its path in
$FRESHTOKEN_WHEEL; without it this test is skipped.
"""

import json
import os
import subprocess
import sys

import pytest

SMOKE = r"""
import asyncio, json, sys
import freshtoken

endpoint, refresh_token = sys.argv[1], sys.argv[2]

async def main():
    client = freshtoken.Client(endpoint, "test-client", client_secret="test-secret")
    store = freshtoken.MemoryTokenStore()
    session = client.session("u1", store)
    await session.seed(refresh_token=refresh_token)
    token = await session.access_token()
    cached = session.cached_access_token() == token and await session.access_token() == token
    try:
        await client.session("nobody", store).access_token()
        code = None
    except freshtoken.FreshTokenError as err:
        code = freshtoken.error_code(err)
    return {"file": freshtoken.__file__, "cached": cached, "stored": json.loads(store.get("u1"))["access_token"] == token,
            "code": code}

print(json.dumps(asyncio.run(main())))
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
    assert report["cached"] and report["stored"]
    assert report["code"] == "reauthorization_required"
    assert emu.refresh_requests() == 1
