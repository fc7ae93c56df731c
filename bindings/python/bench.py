"""Benchmark: the per-request cached read of the Python binding,
``client.session(key, store).access_token()``, against a plain Python
function returning the same string from a dict, in the same run.

The synchronous client is the headline (it is what most Python backends
call); the asyncio form (``await client.session(key, store).access_token()``
inside a coroutine) is measured beside it. A cached read is served by the
client's mirror: a dict read and a clock read, no FFI call.

Run through scripts/bench-python.sh, which builds the RELEASE library and
assembles the package in bindings/python/build/bench/ (or set
$FRESHTOKEN_PYTHONPATH). Prints one JSON line on stdout:
    {"name":"python cached client.session(key, store).access_token()",
     "ns_per_call":N, "anchor_ns_per_call":P, "ratio":R, "ratio_wall":W,
     "cpu_ns_per_call":C, "anchor_cpu_ns_per_call":D, "async_ns_per_call":A,
     "async_ratio":Q, "async_ratio_to_async_function":F,
     "ffi_call_ns":X, "loop_call_ns":Y}
``ns_per_call`` is the sync per-request read (wall clock, as before);
``ratio`` is the median over alternating rounds of its CPU time over the
plain dict function's (``ratio_wall`` the same on the wall clock); details
go to stderr.
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


# Each returns (wall-clock ns, this thread's CPU ns) per call. The cached
# read does no I/O and waits for nothing, so its CPU time is its cost; the
# CPU figure is steadier than the wall clock on a loaded machine.


def _clocks():
    return time.perf_counter_ns(), time.thread_time_ns()


def _per_call(start, n):
    wall, cpu = _clocks()
    return (wall - start[0]) / n, (cpu - start[1]) / n


def plain_loop(tokens, key, n):
    def plain(k):
        return tokens[k]

    start = _clocks()
    for _ in range(n):
        plain(key)
    return _per_call(start, n)


def sync_loop(client, store, key, n):
    start = _clocks()
    for _ in range(n):
        client.session(key, store).access_token()
    return _per_call(start, n)


async def async_plain_loop(tokens, key, n):
    async def plain(k):
        return tokens[k]

    start = _clocks()
    for _ in range(n):
        await plain(key)
    return _per_call(start, n)


async def async_loop(client, store, key, n):
    start = _clocks()
    for _ in range(n):
        await client.session(key, store).access_token()
    return _per_call(start, n)


def timed(function, *args, n):
    """Wall-clock ns per call of function(*args)."""
    start = time.perf_counter_ns()
    for _ in range(n):
        function(*args)
    return (time.perf_counter_ns() - start) / n


def summary(rounds, name, anchor):
    """Medians of `name` and of its per-round ratio to `anchor` (wall and CPU)."""
    wall = statistics.median(r[name][0] for r in rounds)
    cpu = statistics.median(r[name][1] for r in rounds)
    ratio_wall = statistics.median(r[name][0] / r[anchor][0] for r in rounds)
    ratio_cpu = statistics.median(r[name][1] / r[anchor][1] for r in rounds)
    return wall, cpu, ratio_wall, ratio_cpu


def bench_sync(ready):
    client = freshtoken.Client(ready["token_endpoint"], "test-client", client_secret="test-secret")
    store = freshtoken.MemoryTokenStore()
    client.session(KEY, store).seed(refresh_token=admin(ready, "POST", "/seed", {})["refresh_token"])
    token = client.session(KEY, store).access_token()  # the one refresh
    tokens = {KEY: token}

    plain_loop(tokens, KEY, CALLS)  # warm-up
    sync_loop(client, store, KEY, CALLS)
    rounds = []
    for _ in range(ROUNDS):  # alternating, so both see the same machine load
        rounds.append({"plain": plain_loop(tokens, KEY, CALLS), "sync": sync_loop(client, store, KEY, CALLS)})
    assert client.session(KEY, store).access_token() == token, "the cached token was served throughout"
    assert refreshes(ready) == 1, "the benchmark left the cached path"

    # For context: what crossing the FFI costs, sync (one call) and through
    # freshtoken's loop (a Rust future, the blocking hop the sync client makes).
    session = client.session(KEY, store)
    handle = session._handle()
    ffi_sync = timed(handle.cached_token, n=20_000)
    ffi_loop = timed(_loop.call, handle.access_token, n=2_000)
    return rounds, ffi_sync, ffi_loop


async def bench_async(ready):
    client = freshtoken.AsyncClient(ready["token_endpoint"], "test-client", client_secret="test-secret")
    store = freshtoken.MemoryTokenStore()
    await client.session(KEY, store).seed(refresh_token=admin(ready, "POST", "/seed", {})["refresh_token"])
    token = await client.session(KEY, store).access_token()
    tokens = {KEY: token}
    await async_loop(client, store, KEY, CALLS)  # warm-up
    rounds = []
    for _ in range(ROUNDS):
        rounds.append({"plain": plain_loop(tokens, KEY, CALLS),
                       "async_plain": await async_plain_loop(tokens, KEY, CALLS),
                       "async": await async_loop(client, store, KEY, CALLS)})
    assert await client.session(KEY, store).access_token() == token
    return rounds


def main():
    process, ready = start_emulator()
    try:
        sync_rounds, ffi_sync, ffi_loop = bench_sync(ready)
        async_rounds = asyncio.run(bench_async(ready))
        assert refreshes(ready) == 2, "one refresh per client, nothing more"
    finally:
        process.stdin.close()
        process.wait(timeout=10)

    wall, cpu, ratio_wall, ratio_cpu = summary(sync_rounds, "sync", "plain")
    plain_wall, plain_cpu, _, _ = summary(sync_rounds, "plain", "plain")
    a_wall, a_cpu, a_ratio_wall, a_ratio_cpu = summary(async_rounds, "async", "plain")
    _, _, _, a_ratio_async_cpu = summary(async_rounds, "async", "async_plain")
    ap_cpu = summary(async_rounds, "async_plain", "plain")[1]
    print(f"[bench] sync client.session(key, store).access_token(): {wall:.0f} ns/call wall, {cpu:.0f} ns CPU; "
          f"plain dict function: {plain_wall:.0f} ns wall, {plain_cpu:.0f} ns CPU; "
          f"ratio {ratio_cpu:.2f}x CPU, {ratio_wall:.2f}x wall (medians of {ROUNDS} alternating rounds; target <= 3x)",
          file=sys.stderr)
    print(f"[bench] async await client.session(key, store).access_token(): {a_wall:.0f} ns wall, {a_cpu:.0f} ns CPU; "
          f"{a_ratio_cpu:.2f}x the plain function (CPU; {a_ratio_wall:.2f}x wall), "
          f"{a_ratio_async_cpu:.2f}x an awaited async dict function ({ap_cpu:.0f} ns CPU)", file=sys.stderr)
    print(f"[bench] not cached, for context: one sync FFI call (UserSession.cached_token): {ffi_sync:.0f} ns; "
          f"a blocking call through freshtoken's loop (UserSession.access_token, served from the core's "
          f"memory): {ffi_loop:.0f} ns", file=sys.stderr)
    print(json.dumps({
        "name": "python cached client.session(key, store).access_token()",
        "ns_per_call": round(wall),
        "anchor_ns_per_call": round(plain_wall),
        "ratio": round(ratio_cpu, 2),
        "ratio_wall": round(ratio_wall, 2),
        "cpu_ns_per_call": round(cpu),
        "anchor_cpu_ns_per_call": round(plain_cpu),
        "async_ns_per_call": round(a_wall),
        "async_ratio": round(a_ratio_cpu, 2),
        "async_ratio_to_async_function": round(a_ratio_async_cpu, 2),
        "ffi_call_ns": round(ffi_sync),
        "loop_call_ns": round(ffi_loop),
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
