// A small fault-injecting reverse proxy (node:http on 127.0.0.1, a free port)
// for putting faults in front of a real server that cannot produce them
// itself, such as oidc-provider: a 503, a 429 with Retry-After, a connection
// dropped after the server has processed (and, for a refresh, rotated) the
// request, a connection dropped before forwarding, a slow answer, or any
// canned body.
//
// Every request is read in full, then either answered by the next matching
// fault or forwarded unchanged (method, path and query, headers, body) to the
// target, whose answer (status, headers, body) is streamed back.
//
// Faults form a FIFO queue. A fault applies to the next request whose path
// matches its `path` (a pathname such as '/token'; no `path`: any request),
// `count` times (default 1):
//
//   { kind: 'status', status: 503 }            answer `status` (JSON error body), not forwarded
//   { kind: 'rate_limit', retryAfter: '2' }    429 with Retry-After, not forwarded
//   { kind: 'drop_after_forward' }             forward, read the server's full answer, then
//                                              destroy the client socket without writing anything
//   { kind: 'drop_before' }                    destroy the client socket, not forwarded
//   { kind: 'delay', ms }                      wait `ms`, then forward (even if the client gave up)
//   { kind: 'hold' }                           wait for releaseHeld(), then forward (even if the
//                                              client gave up); waitHeld(n) waits until n are held
//                                              (rejecting after its timeoutMs, default 30 s)
//   { kind: 'body', status, body, contentType } answer as given (default 200, application/json),
//                                              not forwarded
//
// No timers except the `delay` fault's own and `waitHeld`'s limit. `settled()` resolves once every
// request received so far has been fully handled (forwarded and answered, or
// dropped): tests wait on it instead of sleeping.
//
// Nothing here prints or records a request or answer body (they carry tokens).

import { Agent, createServer, request as httpRequest } from 'node:http';

const KINDS = new Set(['status', 'rate_limit', 'drop_after_forward', 'drop_before', 'delay', 'hold', 'body']);

// Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded; content-length is
// kept (the body is forwarded byte for byte).
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authorization', 'proxy-authenticate',
]);

function validate(fault) {
  if (!fault || typeof fault !== 'object' || !KINDS.has(fault.kind)) {
    throw new TypeError(`fault-proxy: unknown fault ${JSON.stringify(fault?.kind)}`);
  }
  if (fault.path !== undefined && (typeof fault.path !== 'string' || !fault.path.startsWith('/'))) {
    throw new TypeError('fault-proxy: fault.path must be a pathname starting with "/"');
  }
  if (fault.count !== undefined && !(Number.isInteger(fault.count) && fault.count >= 1)) {
    throw new TypeError('fault-proxy: fault.count must be a positive integer');
  }
  if (fault.kind === 'status' && !Number.isInteger(fault.status)) {
    throw new TypeError('fault-proxy: a status fault needs an integer status');
  }
  if (fault.kind === 'delay' && !(Number.isFinite(fault.ms) && fault.ms >= 0)) {
    throw new TypeError('fault-proxy: a delay fault needs ms >= 0');
  }
  if (fault.kind === 'body' && typeof fault.body !== 'string') {
    throw new TypeError('fault-proxy: a body fault needs a string body');
  }
}

function forwardedHeaders(headers, targetHost) {
  const out = {};
  for (const [name, value] of Object.entries(headers)) {
    if (HOP_BY_HOP.has(name)) continue;
    out[name] = value;
  }
  out.host = targetHost;
  return out;
}

/**
 * Starts the proxy in front of `targetOrigin` (e.g. 'http://127.0.0.1:4000').
 *
 * @returns {Promise<{
 *   origin: string,
 *   url: (path: string) => string,
 *   fault: (f: object) => void,
 *   clearFaults: () => void,
 *   pendingFaults: () => number,
 *   requests: () => Record<string, number>,
 *   log: () => Array<{ method: string, path: string, fault: string | null, upstreamStatus: number | null, clientGone: boolean }>,
 *     // upstreamStatus: the target's answer status, null when not forwarded (or unanswered);
 *     // clientGone: the client's connection closed before it got a complete answer
 *   settled: () => Promise<void>,
 *   waitHeld: (count?: number, options?: { timeoutMs?: number }) => Promise<void>,
 *   releaseHeld: () => number,
 *   close: () => Promise<void>,
 * }>}
 */
export async function startFaultProxy(targetOrigin) {
  const target = new URL(targetOrigin);
  if (target.protocol !== 'http:') throw new TypeError('fault-proxy: the target must be http://');
  const agent = new Agent({ keepAlive: true });
  const queue = []; // { ...fault, remaining }
  const counts = {}; // pathname -> requests received
  const entries = []; // what happened to each request (no bodies)
  const timers = new Map(); // delay timer -> its resolve (close() ends the wait early)
  let held = []; // the resolves of the requests a hold fault keeps
  let heldWaiters = []; // { count, resolve, reject } of waitHeld()
  const upstreams = new Set();
  let inFlight = 0;
  let waiters = [];
  let closed = false;

  const done = () => {
    inFlight -= 1;
    if (inFlight === 0) {
      const ready = waiters;
      waiters = [];
      for (const resolve of ready) resolve();
    }
  };

  /** The next queued fault for `path`, consumed (FIFO among those that match). */
  function takeFault(path) {
    const index = queue.findIndex((f) => f.path === undefined || f.path === path);
    if (index < 0) return null;
    const fault = queue[index];
    fault.remaining -= 1;
    if (fault.remaining <= 0) queue.splice(index, 1);
    return fault;
  }

  /** Sends the buffered request to the target; resolves { status, headers, body } or rejects. */
  function forward(req, body) {
    return new Promise((resolve, reject) => {
      const upstream = httpRequest({
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: forwardedHeaders(req.headers, target.host),
        agent,
      }, (answer) => {
        const chunks = [];
        answer.on('data', (c) => chunks.push(c));
        answer.on('end', () => {
          upstreams.delete(upstream);
          resolve({ status: answer.statusCode, headers: answer.headers, body: Buffer.concat(chunks) });
        });
        answer.on('error', (err) => { upstreams.delete(upstream); reject(err); });
      });
      upstreams.add(upstream);
      upstream.on('error', (err) => { upstreams.delete(upstream); reject(err); });
      upstream.end(body);
    });
  }

  /** Forwards and streams the answer back as it arrives. */
  function forwardStreaming(req, res, body, entry) {
    return new Promise((resolve) => {
      const upstream = httpRequest({
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: forwardedHeaders(req.headers, target.host),
        agent,
      }, (answer) => {
        entry.upstreamStatus = answer.statusCode;
        const headers = {};
        for (const [name, value] of Object.entries(answer.headers)) {
          if (!HOP_BY_HOP.has(name)) headers[name] = value;
        }
        if (res.destroyed) {
          // The client gave up (e.g. its timeout): read the answer and drop it.
          entry.clientGone = true;
          answer.resume();
        } else {
          res.writeHead(answer.statusCode, headers);
          answer.pipe(res);
          // A client leaving mid-answer: keep reading so that 'end' still comes.
          res.on('close', () => {
            if (res.writableFinished) return;
            entry.clientGone = true;
            answer.unpipe(res);
            answer.resume();
          });
        }
        answer.on('end', () => { upstreams.delete(upstream); resolve(); });
        answer.on('error', () => { upstreams.delete(upstream); res.destroy(); resolve(); });
        answer.on('aborted', () => { upstreams.delete(upstream); res.destroy(); resolve(); });
      });
      upstreams.add(upstream);
      upstream.on('error', () => {
        upstreams.delete(upstream);
        entry.upstreamStatus = null;
        if (!res.headersSent && !res.destroyed) {
          res.writeHead(502, { 'content-type': 'application/json' });
          res.end('{"error":"bad_gateway"}');
        } else {
          res.destroy();
        }
        resolve();
      });
      upstream.end(body);
    });
  }

  async function handle(req, res, body) {
    const path = new URL(req.url, 'http://proxy.invalid').pathname;
    const fault = takeFault(path);
    const entry = { method: req.method, path, fault: fault?.kind ?? null, upstreamStatus: null, clientGone: false };
    entries.push(entry);
    res.on('error', () => {}); // writing to a client that is gone
    res.on('close', () => { if (!res.writableFinished) entry.clientGone = true; });

    switch (fault?.kind) {
      case 'status':
        res.writeHead(fault.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'temporarily_unavailable', error_description: `fault-proxy: HTTP ${fault.status}` }));
        return;
      case 'rate_limit':
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(fault.retryAfter ?? '1') });
        res.end('{"error":"slow_down"}');
        return;
      case 'body':
        res.writeHead(fault.status ?? 200, { 'content-type': fault.contentType ?? 'application/json' });
        res.end(fault.body);
        return;
      case 'drop_before':
        entry.clientGone = true;
        req.socket.destroy();
        return;
      case 'drop_after_forward': {
        try {
          const answer = await forward(req, body);
          entry.upstreamStatus = answer.status;
        } catch {
          entry.upstreamStatus = null;
        }
        entry.clientGone = true;
        req.socket.destroy();
        return;
      }
      case 'delay':
      case 'hold':
        await new Promise((resolve) => {
          if (fault.kind === 'hold') {
            held.push(resolve);
            for (const w of heldWaiters.filter((w) => held.length >= w.count)) w.resolve();
            return;
          }
          const timer = setTimeout(() => { timers.delete(timer); resolve(); }, fault.ms);
          timers.set(timer, resolve);
        });
        if (closed) {
          req.socket.destroy();
          return;
        }
        await forwardStreaming(req, res, body, entry);
        return;
      default:
        await forwardStreaming(req, res, body, entry);
    }
  }

  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://proxy.invalid').pathname;
    counts[path] = (counts[path] ?? 0) + 1;
    inFlight += 1;
    const chunks = [];
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      done();
    };
    req.on('data', (c) => chunks.push(c));
    req.on('error', () => {}); // a client that vanished mid-body
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch(() => { res.destroy(); }).finally(finish);
    });
    // A request whose body never completes is handled by nobody: count it settled.
    req.on('close', () => { if (!req.complete) finish(); });
  });
  server.keepAliveTimeout = 1000;
  server.on('clientError', (_err, socket) => socket.destroy());

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const origin = `http://127.0.0.1:${server.address().port}`;

  return {
    origin,
    /** The proxy's URL for `path` (e.g. url('/token')). */
    url: (path) => new URL(path, origin).href,
    /** Queues a fault (FIFO). */
    fault(f) {
      validate(f);
      queue.push({ ...f, remaining: f.count ?? 1 });
    },
    clearFaults() { queue.length = 0; },
    /** Faults still queued (counting `count` repetitions). */
    pendingFaults: () => queue.reduce((n, f) => n + f.remaining, 0),
    /** Requests received, by pathname (faulted ones included). */
    requests: () => ({ ...counts }),
    /** What happened to each request, in order of handling (no bodies, no headers). */
    log: () => entries.map((e) => ({ ...e })),
    /** Resolves once `count` requests are held by hold faults; rejects after `timeoutMs`, or on close(). */
    waitHeld(count = 1, { timeoutMs = 30_000 } = {}) {
      if (held.length >= count) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const waiter = { count };
        const settle = (done) => (value) => {
          clearTimeout(timer);
          heldWaiters = heldWaiters.filter((w) => w !== waiter);
          done(value);
        };
        waiter.resolve = settle(resolve);
        waiter.reject = settle(reject);
        const timer = setTimeout(() => waiter.reject(new Error(`fault-proxy: ${held.length} of ${count} requests held after ${timeoutMs} ms`)), timeoutMs);
        heldWaiters.push(waiter);
      });
    },
    /** Lets every held request go on to the target; returns how many there were. */
    releaseHeld() {
      const released = held;
      held = [];
      for (const resolve of released) resolve();
      return released.length;
    },
    /** Resolves once every request received so far has been fully handled. */
    settled: () => (inFlight === 0 ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve))),
    close() {
      closed = true;
      for (const [timer, resolve] of timers) {
        clearTimeout(timer);
        resolve();
      }
      timers.clear();
      for (const resolve of held) resolve();
      held = [];
      for (const waiter of [...heldWaiters]) waiter.reject(new Error('fault-proxy: closed'));
      for (const upstream of upstreams) upstream.destroy();
      upstreams.clear();
      agent.destroy();
      return new Promise((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
        for (const resolve of waiters) resolve();
        waiters = [];
      });
    },
  };
}
