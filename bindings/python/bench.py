"""Benchmark: the cached `await session.access_token()` path of the Python
binding, i.e. freshtoken.Session's sync fast path (one `cached_access_token()`
FFI call, no Rust future, nothing scheduled on the event loop).

Run through scripts/bench-python.sh, which builds the RELEASE library and
assembles the package in bindings/python/build/bench/ (or set
$FRESHTOKEN_PYTHONPATH). Prints one JSON line on stdout:
    {"name":"python cached access_token()","ns_per_call":N}
(median of several rounds of 50,000 calls after a warm-up); details go to
stderr.
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.environ.get("FRESHTOKEN_PYTHONPATH") or os.path.join(HERE, "build", "bench"))

import freshtoken  # noqa: E402

CALLS = 50_000
ROUNDS = 7


def start_emulator():
    binary = os.environ.get("FRESHTOKEN_EMULATOR_BIN") or os.path.join(REPO, "target", "debug", "freshtoken-emulator")
    process = subprocess.Popen([binary, "--port", "0", "--exit-on-stdin-eof"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return process, json.loads(process.stdout.readline())


def admin(ready, method, path, body=None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(ready["admin_endpoint"] + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with opener.open(req, timeout=10) as response:
        return json.loads(response.read())


async def per_call_ns(call, n):
    start = time.perf_counter_ns()
    for _ in range(n):
        await call()
    return (time.perf_counter_ns() - start) / n


async def main(ready):
    client = freshtoken.Client(ready["token_endpoint"], "test-client", client_secret="test-secret")
    session = client.session("bench-user", freshtoken.MemoryTokenStore())
    await session.seed(refresh_token=admin(ready, "POST", "/seed", {})["refresh_token"])
    token = await session.access_token()  # the one refresh

    call = session.access_token
    await per_call_ns(call, CALLS)  # warm-up
    rounds = [await per_call_ns(call, CALLS) for _ in range(ROUNDS)]
    assert await call() == token, "the cached token was served throughout"
    refreshes = admin(ready, "GET", "/counters")["by_grant"].get("refresh_token", 0)
    assert refreshes == 1, f"{refreshes} refreshes: the benchmark left the cached path"

    # For context only: the generated coroutine (a Rust future polled on
    # freshtoken's loop, awaited from this one), which the cached path skips.
    slow = await per_call_ns(lambda: freshtoken._loop.run(session.inner.access_token), 2_000)
    print(f"[bench] rounds (ns/call): {', '.join(f'{r:.0f}' for r in rounds)}; "
          f"generated async UserSession.access_token(): {slow:.0f} ns/call", file=sys.stderr)
    return statistics.median(rounds)


if __name__ == "__main__":
    process, ready = start_emulator()
    try:
        median = asyncio.run(main(ready))
    finally:
        process.stdin.close()
        process.wait(timeout=10)
    print(json.dumps({"name": "python cached access_token()", "ns_per_call": round(median)}, separators=(",", ":")))
