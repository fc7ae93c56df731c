"""Benchmark: the per-request cached read of the Python binding,
``client.session(key, store).access_token()``, against a plain Python
function returning the same string from a dict, in the same run.

The synchronous client is the headline (it is what most Python backends
call); the asyncio form (``await client.session(key, store).access_token()``
inside a coroutine) is measured beside it. A cached read is served by the
client's mirror: a dict read and a clock read, no FFI call.

Run through scripts/bench-python.sh, which builds the RELEASE library and
assembles the package in bindings/python/build/bench/ (or set
$FRESHTOKEN_PYTHONPATH). Prints one JSON line on stdout, e.g.
    {"name":"python cached client.session(key, store).access_token()",
     "ns_per_call":N, "anchor_ns_per_call":P, "ratio":R,
     "async_ns_per_call":A, "async_ratio":Q, "async_anchor_ns_per_call":B, ...}
(``ns_per_call`` is the sync per-request read; ``ratio`` = it / the plain
dict function; medians of interleaved rounds after a warm-up); details go
to stderr.
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
from freshtoken import _loop  # noqa: E402

CALLS = 200_000
ROUNDS = 9
KEY = "bench-user"


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


def refreshes(ready):
    return admin(ready, "GET", "/counters")["by_grant"].get("refresh_token", 0)


# -- the loops: the same shape, locals only, no lambda around the measured call


def plain_loop(tokens, key, n):
    def plain(k):
        return tokens[k]

    start = time.perf_counter_ns()
    for _ in range(n):
        plain(key)
    return (time.perf_counter_ns() - start) / n


def sync_loop(client, store, key, n):
    start = time.perf_counter_ns()
    for _ in range(n):
        client.session(key, store).access_token()
    return (time.perf_counter_ns() - start) / n


async def async_plain_loop(tokens, key, n):
    async def plain(k):
        return tokens[k]

    start = time.perf_counter_ns()
    for _ in range(n):
        await plain(key)
    return (time.perf_counter_ns() - start) / n


async def async_loop(client, store, key, n):
    start = time.perf_counter_ns()
    for _ in range(n):
        await client.session(key, store).access_token()
    return (time.perf_counter_ns() - start) / n


def timed(function, *args, n):
    start = time.perf_counter_ns()
    for _ in range(n):
        function(*args)
    return (time.perf_counter_ns() - start) / n


def interleaved(pairs):
    """Runs (name, thunk) pairs round by round, alternating; medians per name."""
    results = {name: [] for name, _ in pairs}
    for _ in range(ROUNDS):
        for name, thunk in pairs:
            results[name].append(thunk())
    return {name: statistics.median(values) for name, values in results.items()}, results


def bench_sync(ready):
    client = freshtoken.Client(ready["token_endpoint"], "test-client", client_secret="test-secret")
    store = freshtoken.MemoryTokenStore()
    client.session(KEY, store).seed(refresh_token=admin(ready, "POST", "/seed", {})["refresh_token"])
    token = client.session(KEY, store).access_token()  # the one refresh
    tokens = {KEY: token}

    plain_loop(tokens, KEY, CALLS)  # warm-up
    sync_loop(client, store, KEY, CALLS)
    medians, rounds = interleaved([
        ("plain", lambda: plain_loop(tokens, KEY, CALLS)),
        ("sync", lambda: sync_loop(client, store, KEY, CALLS)),
    ])
    assert client.session(KEY, store).access_token() == token, "the cached token was served throughout"
    assert refreshes(ready) == 1, "the benchmark left the cached path"

    # For context: what crossing the FFI costs, sync (one call) and through
    # freshtoken's loop (a Rust future, the blocking hop the sync client makes).
    session = client.session(KEY, store)
    handle = session._handle()
    ffi_sync = timed(handle.cached_token, n=20_000)
    ffi_loop = timed(_loop.call, handle.access_token, n=2_000)
    return client, store, token, medians, rounds, ffi_sync, ffi_loop


async def bench_async(ready):
    client = freshtoken.AsyncClient(ready["token_endpoint"], "test-client", client_secret="test-secret")
    store = freshtoken.MemoryTokenStore()
    await client.session(KEY, store).seed(refresh_token=admin(ready, "POST", "/seed", {})["refresh_token"])
    token = await client.session(KEY, store).access_token()
    tokens = {KEY: token}
    await async_loop(client, store, KEY, CALLS)  # warm-up
    results = {"plain": [], "async_plain": [], "async": []}
    for _ in range(ROUNDS):
        results["plain"].append(plain_loop(tokens, KEY, CALLS))
        results["async_plain"].append(await async_plain_loop(tokens, KEY, CALLS))
        results["async"].append(await async_loop(client, store, KEY, CALLS))
    assert await client.session(KEY, store).access_token() == token
    return {name: statistics.median(values) for name, values in results.items()}


def main():
    process, ready = start_emulator()
    try:
        _, _, _, sync, rounds, ffi_sync, ffi_loop = bench_sync(ready)
        aio = asyncio.run(bench_async(ready))
        assert refreshes(ready) == 2, "one refresh per client, nothing more"
    finally:
        process.stdin.close()
        process.wait(timeout=10)

    ratio = sync["sync"] / sync["plain"]
    per_round = [s / p for s, p in zip(rounds["sync"], rounds["plain"])]
    print(f"[bench] sync client.session(key, store).access_token(): {sync['sync']:.0f} ns/call; "
          f"plain dict function: {sync['plain']:.0f} ns/call; ratio {ratio:.2f}x "
          f"(per round: {', '.join(f'{r:.2f}' for r in per_round)}; target <= 3x)", file=sys.stderr)
    print(f"[bench] async await client.session(key, store).access_token(): {aio['async']:.0f} ns/call; "
          f"ratio {aio['async'] / aio['plain']:.2f}x the plain function, "
          f"{aio['async'] / aio['async_plain']:.2f}x an awaited async dict function "
          f"({aio['async_plain']:.0f} ns/call)", file=sys.stderr)
    print(f"[bench] not cached, for context: one sync FFI call (UserSession.cached_token): {ffi_sync:.0f} ns; "
          f"a blocking call through freshtoken's loop (UserSession.access_token, served from the core's "
          f"memory): {ffi_loop:.0f} ns", file=sys.stderr)
    print(json.dumps({
        "name": "python cached client.session(key, store).access_token()",
        "ns_per_call": round(sync["sync"]),
        "anchor_ns_per_call": round(sync["plain"]),
        "ratio": round(ratio, 2),
        "async_ns_per_call": round(aio["async"]),
        "async_ratio": round(aio["async"] / aio["plain"], 2),
        "async_anchor_ns_per_call": round(aio["async_plain"]),
        "ffi_call_ns": round(ffi_sync),
        "loop_call_ns": round(ffi_loop),
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
