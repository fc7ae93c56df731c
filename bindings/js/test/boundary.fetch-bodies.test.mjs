// What a host's `fetch` hands back is the host's: body chunks that are
// detached, Proxies or subclasses whose `length` throws or lies, an
// `arrayBuffer()` result that is detached or a Proxy, a `fetch` that throws
// after it sent the request. None may throw out of wasm or trap (that left
// the call unsettled, the rotated refresh token lost and, repeated, the
// instance wedged). Each request really reaches the emulator over loopback
// (the server rotates), then the wrapper answers with the odd body:
//
// - an answer that cannot be read fails that request with a NetworkError,
//   the refresh token is in doubt and is not sent again by that call;
// - a genuine Uint8Array whose own getters throw or lie is read by its real
//   bytes (the engine's accessors), so the refresh succeeds;
// - the instance stays healthy: a normal refresh on another key works.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createServer } from 'node:net';

import nodeFetch from 'node-fetch';

import { InvalidResponseError, MemoryStore, NetworkError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { wasmMemoryBytes } from '../support/wasm-memory.mjs';

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';
/** Each test ends well within this; before the fix, the calls never settled. */
const TIMEOUT = { timeout: 30_000 };

const detach = (buffer) => { structuredClone(buffer, { transfer: [buffer] }); };
const streamOf = (...chunks) => new ReadableStream({
  start(controller) {
    for (const chunk of chunks) controller.enqueue(chunk);
    controller.close();
  },
});
class ThrowingLength extends Uint8Array {
  get length() { throw new Error('length getter threw'); }
}
class LyingLength extends Uint8Array {
  get length() { return 1e9; }
}

/** Answers whose body cannot be read: (the real answer's bytes) -> the host's answer. */
const unreadable = {
  'a detached chunk': (bytes) => {
    const chunk = new Uint8Array(bytes);
    const body = streamOf(chunk); // queued, then its buffer detached under it
    detach(chunk.buffer);
    return { body };
  },
  'a Proxy of a Uint8Array as chunk': (bytes) => ({ body: streamOf(new Proxy(new Uint8Array(bytes), {})) }),
  'a chunk that is not bytes': () => ({ body: streamOf('{"access_token":"x"}') }),
  'a detached arrayBuffer() result': (bytes) => ({
    body: null,
    arrayBuffer: async () => {
      const copy = new Uint8Array(bytes).buffer;
      detach(copy);
      return copy;
    },
  }),
  'a Proxy of an ArrayBuffer from arrayBuffer()': (bytes) => ({
    body: null, arrayBuffer: async () => new Proxy(new Uint8Array(bytes).buffer, {}),
  }),
  'an arrayBuffer() that throws': () => ({ body: null, arrayBuffer() { throw new Error('arrayBuffer threw'); } }),
};

/** Answers with a genuine Uint8Array chunk whose own getters misbehave: read by its real bytes. */
const readable = {
  'a subclass chunk whose length throws': (bytes) => ({ body: streamOf(new ThrowingLength(bytes)) }),
  'a subclass chunk whose length says 1e9': (bytes) => ({ body: streamOf(new LyingLength(bytes)) }),
};

/**
 * A `fetch` that sends each request to the emulator for real and answers
 * with `make(bytes)`'s body instead of the real one (status and headers
 * kept). `sent` counts the requests that went out.
 */
function oddFetch(make) {
  const seen = { sent: 0 };
  const fetch = async (url, init) => {
    seen.sent += 1;
    const real = await globalThis.fetch(url, init);
    const bytes = new Uint8Array(await real.arrayBuffer());
    return { status: real.status, headers: real.headers, ...make(bytes) };
  };
  return { fetch, seen };
}

/** Collects what reaches the process as an uncaught exception or unhandled rejection during `run`. */
async function nothingEscapes(run) {
  const escaped = [];
  const onEscape = (e) => escaped.push(e);
  process.on('uncaughtException', onEscape);
  process.on('unhandledRejection', onEscape);
  try {
    await run();
    await new Promise((resolve) => { setImmediate(resolve); });
  } finally {
    process.off('uncaughtException', onEscape);
    process.off('unhandledRejection', onEscape);
  }
  assert.deepEqual(escaped.map(String), [], 'nothing escaped to the process');
}

describe('odd answers from a host fetch', () => {
  let emu;
  let options;
  before(async () => {
    emu = await startEmulator();
    options = { tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET };
  });
  after(async () => { await emu?.stop(); });

  /** A normal refresh on a new key of `client` (its fetch set back to the real one by the caller). */
  async function healthyRefresh(client) {
    const family = await emu.seed();
    const store = new MemoryStore();
    const session = client.session(`healthy-${family.refresh_token.slice(-8)}`, store);
    await session.seed({ refreshToken: family.refresh_token });
    const token = await session.accessToken();
    assert.ok(typeof token === 'string' && token.length > 0, 'a token afterwards');
    const saved = JSON.parse(store.get(session.key));
    assert.equal(await emu.refreshTokenState(saved.refresh_token), 'active', 'the rotated refresh token was saved');
  }

  for (const [label, make] of Object.entries(unreadable)) {
    test(`${label}: a NetworkError, the refresh token in doubt and not resent, the instance healthy`, TIMEOUT, async () => {
      await emu.reset();
      const { fetch, seen } = oddFetch(make);
      let useOdd = true;
      const client = new TokenClient({ ...options, fetch: (...args) => (useOdd ? fetch(...args) : globalThis.fetch(...args)) });
      const family = await emu.seed();
      const store = new MemoryStore();
      const session = client.session('u1', store);
      await session.seed({ refreshToken: family.refresh_token });
      await nothingEscapes(async () => {
        const failure = await session.accessToken().then(() => null, (e) => e);
        assert.ok(failure instanceof NetworkError, String(failure));
        assert.equal(seen.sent, 1, 'sent once: an answer arrived, so it is not retried');
        assert.equal(await emu.refreshRequests(), 1);
        assert.equal(await emu.refreshTokenState(family.refresh_token), 'consumed', 'the server rotated');
        assert.equal((await session.status()).inDoubt, true, 'the refresh token is in doubt');
        // The key is not stuck: its next call settles (lost_rotation, since the server rotated).
        useOdd = false;
        await assert.rejects(session.accessToken(), (e) => e.reason === 'lost_rotation');
        await healthyRefresh(client);
      });
    });
  }

  for (const [label, make] of Object.entries(readable)) {
    test(`${label}: read by its real bytes, the refresh succeeds`, TIMEOUT, async () => {
      await emu.reset();
      const { fetch } = oddFetch(make);
      const client = new TokenClient({ ...options, fetch });
      const family = await emu.seed();
      const store = new MemoryStore();
      const session = client.session('u1', store);
      await session.seed({ refreshToken: family.refresh_token });
      await nothingEscapes(async () => {
        const token = await session.accessToken();
        assert.ok(typeof token === 'string' && token.length > 0);
        const saved = JSON.parse(store.get('u1'));
        assert.equal(await emu.refreshTokenState(saved.refresh_token), 'active', 'the rotated refresh token was saved');
      });
    });
  }

  test('many unreadable answers at once, healthy refreshes around them: none wedges the instance', TIMEOUT, async () => {
    await emu.reset();
    const client = new TokenClient(options);
    const oddClient = new TokenClient({ ...options, fetch: oddFetch(unreadable['a detached chunk']).fetch, retry: { maxAttempts: 1 } });
    const sessions = [];
    for (let i = 0; i < 20; i += 1) {
      const family = await emu.seed();
      const session = client.session(`good-${i}`, new MemoryStore());
      await session.seed({ refreshToken: family.refresh_token });
      const odd = oddClient.session(`odd-${i}`, new MemoryStore());
      await odd.seed({ refreshToken: (await emu.seed()).refresh_token });
      sessions.push([session, odd]);
    }
    await nothingEscapes(async () => {
      const results = await Promise.all(sessions.flatMap(([good, odd]) => [
        good.accessToken().then(() => 'ok', (e) => `good failed: ${e}`),
        odd.accessToken().then(() => 'odd succeeded', (e) => (e instanceof NetworkError ? 'ok' : `odd: ${e}`)),
      ]));
      assert.deepEqual(results.filter((r) => r !== 'ok'), []);
      await healthyRefresh(client);
    });
  });

  test('one chunk of 16 MiB: only the cap is copied in, then invalid_response', TIMEOUT, async () => {
    await emu.reset();
    const { fetch } = oddFetch(() => ({ body: streamOf(new Uint8Array(16 * 1024 * 1024).fill(0x20)) }));
    const client = new TokenClient({ ...options, fetch, retry: { maxAttempts: 1 } });
    const session = client.session('u1', new MemoryStore());
    await session.seed({ refreshToken: (await emu.seed()).refresh_token });
    const startBytes = wasmMemoryBytes();
    await assert.rejects(session.accessToken(), InvalidResponseError);
    const grown = wasmMemoryBytes() - startBytes;
    assert.ok(grown < 1024 * 1024, `wasm memory grew by ${grown} bytes`);
  });

  // DESIGN point 5: a `fetch` that throws instead of returning a Promise
  // may have sent the request first (a wrapper whose instrumentation fails
  // after calling the real fetch). It used to be "not sent" and retried at
  // once with the refresh token the server had just consumed.
  test('a fetch that sends, then throws synchronously: in doubt, never resent', TIMEOUT, async () => {
    await emu.reset();
    const sent = [];
    const client = new TokenClient({
      ...options,
      fetch: (url, init) => {
        // Without the signal: the request leaves even though the core aborts it.
        const real = globalThis.fetch(url, { ...init, signal: undefined });
        sent.push(real.then((r) => r.arrayBuffer(), () => null));
        if (sent.length === 1) throw new Error('metrics hook threw');
        return real;
      },
    });
    const family = await emu.seed();
    const session = client.session('u1', new MemoryStore());
    await session.seed({ refreshToken: family.refresh_token });
    const failure = await session.accessToken().then(() => null, (e) => e);
    await Promise.all(sent); // every request that left has reached the emulator
    assert.ok(failure instanceof NetworkError, String(failure));
    assert.match(failure.message, /metrics hook threw/);
    assert.equal(sent.length, 1, 'the consumed refresh token was not sent again');
    assert.equal(await emu.refreshRequests(), 1);
    assert.equal((await session.status()).inDoubt, true);
  });

  test('a fetch that rejects with a not-sent cause is still retried', TIMEOUT, async () => {
    await emu.reset();
    let calls = 0;
    const client = new TokenClient({
      ...options,
      fetch: async (url, init) => {
        calls += 1;
        if (calls === 1) throw new TypeError('fetch failed', { cause: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) });
        return globalThis.fetch(url, init);
      },
    });
    const session = client.session('u1', new MemoryStore());
    await session.seed({ refreshToken: (await emu.seed()).refresh_token });
    assert.ok((await session.accessToken()).length > 0);
    assert.equal(calls, 2);
    assert.equal(await emu.refreshRequests(), 1);
  });

  test("node-fetch's refused connection (its code on the error itself, no cause) is retried too", TIMEOUT, async () => {
    await emu.reset();
    // A loopback port nobody listens on: bound, then let go.
    const port = await new Promise((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port: bound } = server.address();
        server.close(() => resolve(bound));
      });
    });
    let calls = 0;
    const client = new TokenClient({
      ...options,
      fetch: async (url, init) => {
        calls += 1;
        // The real node-fetch, refused: a FetchError whose code is its own member.
        if (calls === 1) return nodeFetch(`http://127.0.0.1:${port}/connect/token`, init);
        return globalThis.fetch(url, init);
      },
    });
    const session = client.session('u1', new MemoryStore());
    await session.seed({ refreshToken: (await emu.seed()).refresh_token });
    assert.ok((await session.accessToken()).length > 0);
    assert.equal(calls, 2, 'retried: the request never left');
    assert.equal(await emu.refreshRequests(), 1);
    assert.equal((await session.status()).inDoubt, false);
  });
});
