"""Test support: the emulator process and its admin API, a fake clock,
stores that count, gate and fail, and token comparisons that never print a
token."""

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import freshtoken

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
YEAR_MS = 365 * 24 * 3600 * 1000



class DictStore(freshtoken.TokenStoreBase):
    """Records in a dict, through plain members (as a blocking driver's
    would be), with none of MemoryTokenStore's checks."""

    def __init__(self):
        self.records = {}

    def load(self, key):
        return self.records.get(key)

    def save(self, key, record):
        self.records[key] = record


# Admin calls go straight to loopback, whatever *_proxy says.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Emulator:
    """freshtoken-emulator as a child process (see tests/emulator/README.md)."""

    def __init__(self, process, ready):
        self.process = process
        self.token_endpoint = ready["token_endpoint"]
        self.admin_endpoint = ready["admin_endpoint"]
        self.port = ready["port"]
        self.issuer = ready.get("issuer")
        self.revocation_endpoint = ready.get("revocation_endpoint")
        self.api_endpoint = ready.get("api_endpoint")

    @classmethod
    def start(cls, *args):
        binary = os.environ.get("FRESHTOKEN_EMULATOR_BIN") or os.path.join(
            REPO, "target", "debug", "freshtoken-emulator")
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"{binary} missing: run `cargo build -p freshtoken-emulator` first")
        process = subprocess.Popen(
            [binary, "--port", "0", "--exit-on-stdin-eof", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        # The ready line (or EOF if it died): readline blocks until one arrives.
        line = process.stdout.readline()
        try:
            ready = json.loads(line)
            assert ready.get("ready") is True
        except Exception:
            process.kill()
            process.wait()
            raise RuntimeError(f"freshtoken-emulator did not start (exit {process.poll()})") from None
        return cls(process, ready)

    def stop(self):
        try:
            self.process.stdin.close()  # --exit-on-stdin-eof
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()

    def _call(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.admin_endpoint + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with _direct.open(req, timeout=timeout) as response:
            return json.loads(response.read())

    def reset(self):
        return self._call("POST", "/reset", {})

    def seed(self, **body):
        return self._call("POST", "/seed", body)

    def counters(self):
        return self._call("GET", "/counters")

    def fault(self, *faults):
        return self._call("POST", "/faults", list(faults))

    def clear_faults(self):
        return self._call("DELETE", "/faults")

    def refresh_token_state(self, refresh_token):
        return self._call("POST", "/refresh-token-state", {"refresh_token": refresh_token})["state"]

    def wait_held(self, count=1):
        """Blocks until `count` token requests are held by `hold` faults (the emulator's
        long-poll; a 504 after 30 s raises); returns how many are held."""
        return self._call("POST", "/held/wait", {"count": count, "timeout_ms": 30_000}, timeout=40)["held"]

    def release_held(self):
        """Lets every held request go on; returns how many there were."""
        return self._call("POST", "/held/release", {})["released"]

    def wait_streams_ended(self, count=1):
        """The `endless` responses, once `count` of them have ended (long-poll, 30 s at most)."""
        return self._call("POST", "/streams/wait", {"count": count, "timeout_ms": 30_000}, timeout=40)

    def discovery(self, mode, **fields):
        """Makes the discovery document answer in `mode` ("normal", "not_found", "wrong_issuer",
        "insecure_token_endpoint", "invalid_json") until changed or reset."""
        return self._call("POST", "/discovery", {"mode": mode, **fields})

    def refresh_requests(self):
        return self.counters()["by_grant"].get("refresh_token", 0)

    def grant_requests(self, grant):
        return self.counters()["by_grant"].get(grant, 0)


class FakeClock(freshtoken.Clock):
    """Time that only moves when the test (or a recorded sleep) moves it."""

    def __init__(self, start_ms=None):
        self.ms = start_ms if start_ms is not None else int(time.time()) * 1000
        self.sleeps = []

    def now_ms(self):
        return self.ms

    async def sleep(self, ms):
        self.sleeps.append(ms)
        self.ms += ms

    def advance(self, ms):
        self.ms += ms


class Signal:
    """An event that works across event loops and threads: the store's side
    runs on freshtoken's loop, the test's side on the test's loop."""

    def __init__(self):
        self._lock = threading.Lock()
        self._set = False
        self._waiters = []

    def set(self):
        with self._lock:
            self._set = True
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def is_set(self):
        return self._set

    async def wait(self):
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._set:
                return
            future = loop.create_future()
            self._waiters.append((loop, future))
        await future

    def wait_blocking(self, timeout=30):
        """From a plain thread: waits (bounded, for safety) until set."""
        done = threading.Event()
        with self._lock:
            if self._set:
                return True
            self._waiters.append((_ThreadWaker(done), None))
        return done.wait(timeout)


class _ThreadWaker:
    def __init__(self, event):
        self.event = event

    def call_soon_threadsafe(self, _callback, _future):
        self.event.set()


def _resolve(future):
    if not future.done():
        future.set_result(None)


class TestStore(freshtoken.MemoryTokenStore):
    """A MemoryTokenStore that counts calls, fails on command, and can hold saves at a gate.

    `fail_saves` and the gate apply to records that are not marked in doubt:
    the core writes the in-doubt marker before every refresh request (write
    ahead), so they hit the rotated record's save, the one after the server
    answered. `fail_marker_saves` fails the next marker saves."""

    __test__ = False  # not a pytest class

    def __init__(self):
        super().__init__()
        self.loads = 0
        self.saves = 0
        self.fail_loads = 0
        self.fail_saves = 0
        self.fail_marker_saves = 0
        self.marker_saves = 0
        self.entered = None
        self.released = None
        self.saving = None

    def gate_saves(self):
        """From now on each save records what it saves, sets `entered`, and waits for `released`
        (Signals: the save runs on freshtoken's loop, the test on its own)."""
        self.entered = Signal()
        self.released = Signal()

    async def load(self, key):
        self.loads += 1
        if self.fail_loads > 0:
            self.fail_loads -= 1
            raise ConnectionError("database unavailable")
        return await super().load(key)

    async def save(self, key, record):
        self.saves += 1
        if _in_doubt(record):
            self.marker_saves += 1
            if self.fail_marker_saves > 0:
                self.fail_marker_saves -= 1
                raise OSError("disk full")
            return await super().save(key, record)
        if self.fail_saves > 0:
            self.fail_saves -= 1
            raise OSError("disk full")
        if self.entered is not None:
            self.saving = record
            self.entered.set()
            await self.released.wait()
        await super().save(key, record)

    def record(self, key):
        text = self.get(key)
        return None if text is None else json.loads(text)


def _in_doubt(record):
    try:
        return json.loads(record).get("in_doubt") is True
    except (ValueError, AttributeError):
        return False  # not a record (a test stores garbage on purpose)


async def held_then_released(emu, *awaitables, held=1):
    """Awaits `awaitables` concurrently while the emulator holds the token
    request(s) they share (queue a `hold` fault first): every caller has been
    started, and has handed its call to freshtoken's loop, before the held
    request is released. Returns their results in order."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    await turn()  # each task's first step: its call is on freshtoken's loop
    assert await asyncio.to_thread(emu.wait_held, held) == held
    assert emu.release_held() == held
    return await asyncio.gather(*tasks)


async def turn(times=1):
    """Lets the event loop run every ready callback `times` times (like JS setImmediate)."""
    loop = asyncio.get_running_loop()
    for _ in range(times):
        done = loop.create_future()
        loop.call_soon(done.set_result, None)
        await done


def turn_freshtoken_loop(times):
    """From another thread: lets freshtoken's loop run every ready callback
    `times` times (the calls handed to it have then started)."""
    asyncio.run_coroutine_threadsafe(turn(times), freshtoken.event_loop()).result(30)


def count_submissions(monkeypatch):
    """A semaphore released once for each call handed to freshtoken's loop
    from now on: acquire it to know a caller (a thread) is in."""
    from freshtoken import _loop

    submitted = threading.Semaphore(0)
    original = _loop._submit

    def counting(loop, coroutine):
        future = original(loop, coroutine)
        submitted.release()
        return future

    monkeypatch.setattr(_loop, "_submit", counting)
    return submitted


def same(a, b, message):
    """Token equality that never prints a token."""
    assert isinstance(a, str) and a == b, message


def differ(a, b, message):
    assert isinstance(a, str) and isinstance(b, str) and a != b, message


# The sockets of closed_port(), kept bound until the process ends.
_closed_ports = []


def closed_port():
    """A loopback port nothing listens on: bound and never listening, so that
    connections to it are refused (Linux) and no other socket can take it
    meanwhile, as one released at once could be."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _closed_ports.append(s)
    return s.getsockname()[1]


_no_redirects = urllib.request.build_opener(
    urllib.request.ProxyHandler({}),
    type("NoRedirects", (urllib.request.HTTPRedirectHandler,), {"redirect_request": lambda *a, **k: None})())


def redirect_of(url):
    """The URL the emulator's authorize endpoint (which approves at once) sends the user back to."""
    try:
        _no_redirects.open(url, timeout=30).close()
        raise AssertionError("the authorize endpoint did not redirect")
    except urllib.error.HTTPError as answer:
        location = answer.headers["location"]
        answer.close()
    return location


def authorization_code(url):
    """The code the emulator's authorize endpoint (which approves at once) redirects with."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(redirect_of(url)).query))["code"]


def make_client(emu, clock=None, **options):
    """A freshtoken.AsyncClient on the emulator with a fake clock."""
    clock = clock or FakeClock()
    options.setdefault("client_secret", CLIENT_SECRET)
    client = freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, clock=clock, **options)
    return client, clock


def make_sync_client(emu, clock=None, **options):
    """A synchronous freshtoken.Client on the emulator with a fake clock."""
    clock = clock or FakeClock()
    options.setdefault("client_secret", CLIENT_SECRET)
    client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, clock=clock, **options)
    return client, clock


def seeded_sync(emu, client, store, key="u1"):
    """seeded() for the synchronous client."""
    family = emu.seed()
    session = client.session(key, store)
    session.seed(refresh_token=family["refresh_token"])
    return session, family


async def seeded(emu, client, store, key="u1"):
    """A session seeded with a new emulator family and no access token: its first use refreshes."""
    family = emu.seed()
    session = client.session(key, store)
    await session.seed(refresh_token=family["refresh_token"])
    return session, family


class LocalServer:
    """A tiny loopback HTTP server in a thread, answering with `handler(request_handler)`."""

    def __init__(self, respond):
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                respond(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/connect/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
