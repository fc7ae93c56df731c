// Host exceptions that pass through wasm (issue 11 item 4): a store that
// throws (synchronously, from a thenable, from a getter), revoked Proxies as
// options or scopes. 100,000 of them, mixed, must neither poison the
// instance (a normal refresh against the emulator works afterwards) nor grow
// its memory, and each surfaces as the right typed error.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ConfigError, MemoryStore, NetworkError, ReauthorizationRequiredError, StorageError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { wasmMemoryBytes } from '../support/wasm-memory.mjs';

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';
const ROUNDS = 100_000;

function revoked(target = {}) {
  const { proxy, revoke } = Proxy.revocable(target, {});
  revoke();
  return proxy;
}

/** A store whose `load` is a getter that works when the session checks it, and throws once called for. */
function storeWithThrowingGetter() {
  let reads = 0;
  return {
    get load() {
      reads += 1;
      if (reads > 1) throw new Error('getter threw');
      return async () => null;
    },
    save: async () => {},
  };
}

describe('host exceptions through wasm', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });

  test(`${ROUNDS.toLocaleString('en')} throwing callbacks, then a normal refresh`, async () => {
    const options = { tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET };
    const client = new TokenClient(options);
    const throwingStore = {
      load() { throw new Error('load threw'); },
      save() { throw new Error('save threw'); },
    };
    const thenableStore = {
      load() { return { then() { throw new Error('then threw'); } }; },
      save: async () => {},
    };
    const rejectingStore = {
      load: () => Promise.reject(revoked()),
      save: async () => {},
    };
    const trapOptions = new Proxy(options, { get(target, name) { if (name === 'clientSecret') throw new Error('trap'); return target[name]; } });

    // One handle each, reused: handles dropped without free() wait for V8's
    // GC to free their wasm side, which would blur the measurement.
    const sessions = [throwingStore, thenableStore, rejectingStore, storeWithThrowingGetter()]
      .map((store, i) => client.session(`k${i}`, store));
    const storage = (session) => assert.rejects(session.accessToken(), StorageError);
    const config = (make) => assert.throws(make, ConfigError);
    const cases = [
      ...sessions.map((session) => () => storage(session)),
      () => config(() => new TokenClient(revoked(options))),
      () => config(() => new TokenClient(trapOptions)),
      () => assert.rejects(client.clientToken(revoked(['a'])), ConfigError),
      () => config(() => client.session('k5', revoked(new MemoryStore()))),
    ];
    // One round first: whatever the first use allocates is not growth.
    for (const run of cases) await run();
    const startBytes = wasmMemoryBytes();
    for (let i = 0; i < ROUNDS; i += 1) await cases[i % cases.length]();
    const grown = wasmMemoryBytes() - startBytes;
    assert.ok(grown <= 128 * 1024, `wasm memory grew by ${grown} bytes over ${ROUNDS} host exceptions`);

    const family = await emu.seed();
    const store = new MemoryStore();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token });
    const token = await session.accessToken();
    assert.ok(typeof token === 'string' && token.length > 0, 'a token after the storm');
    assert.equal(await emu.refreshRequests(), 1);
    const saved = JSON.parse(store.get('u1'));
    assert.equal(await emu.refreshTokenState(saved.refresh_token), 'active', 'the rotated refresh token was saved');
  });

  // The answer of an options.fetch is the host's object too: a getter of it
  // that throws must end the request as a typed error, not escape through
  // wasm (it crashed the process and left the flight pending for good).
  for (const member of ['status', 'headers', 'body']) {
    test(`a Response whose ${member} getter throws: a NetworkError, the flight ends, nothing escapes`, async () => {
      const escaped = [];
      const onEscape = (e) => escaped.push(e);
      process.on('uncaughtException', onEscape);
      process.on('unhandledRejection', onEscape);
      try {
        const broken = async (...args) => {
          const response = await fetch(...args);
          return new Proxy(response, {
            get(target, name) {
              if (name === member) throw new Error(`${member} getter threw`);
              const value = Reflect.get(target, name, target);
              return typeof value === 'function' ? value.bind(target) : value;
            },
          });
        };
        const client = new TokenClient({
          tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET,
          fetch: broken, retry: { maxAttempts: 1 },
        });
        const family = await emu.seed();
        const store = new MemoryStore();
        await client.session('u1', store).seed({ refreshToken: family.refresh_token });
        const failure = await client.session('u1', store).accessToken().then(() => null, (e) => e);
        assert.ok(failure instanceof NetworkError, String(failure));
        assert.match(failure.message, new RegExp(`${member} getter threw`));
        assert.equal((await client.session('u1', store).status()).inDoubt, true, 'the server may have rotated');
        // Not wedged: the next call, with a working fetch, settles (the
        // server did rotate, so the token it consumed reads lost_rotation).
        const healthy = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
        const again = await healthy.session('u1', store).accessToken().then(() => null, (e) => e);
        assert.ok(again instanceof ReauthorizationRequiredError, String(again));
        assert.equal(again.reason, 'lost_rotation');
        await new Promise((resolve) => { setImmediate(resolve); });
        assert.deepEqual(escaped, [], 'nothing escaped to the process');
      } finally {
        process.off('uncaughtException', onEscape);
        process.off('unhandledRejection', onEscape);
      }
    });
  }

  test('an answer that is not a Response says so', async () => {
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET,
      fetch: async () => ({ status: 200, headers: new Headers() }), retry: { maxAttempts: 1 },
    });
    const store = new MemoryStore();
    await client.session('u1', store).seed({ refreshToken: 'refresh-token-0001' });
    const failure = await client.session('u1', store).accessToken().then(() => null, (e) => e);
    assert.ok(failure instanceof NetworkError, String(failure));
    assert.match(failure.message, /not a Response \(no body stream and no arrayBuffer\(\)\)/);
  });
});

describe('a host whose performance clock throws', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });

  for (const [name, property] of [
    ['a performance getter that throws', { get() { throw 'no performance here'; } }],
    ['a performance.now() that throws a non-Error', { value: { now() { throw 42; } } }],
    ['a performance that is not an object', { value: 7 }],
  ]) {
    test(`${name}: refreshes still work (durations on the wall clock alone)`, async () => {
      const saved = Object.getOwnPropertyDescriptor(globalThis, 'performance');
      const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
      try {
        const family = await emu.seed();
        const session = client.session('u1', new MemoryStore());
        await session.seed({ refreshToken: family.refresh_token });
        const before = await emu.refreshRequests();
        Object.defineProperty(globalThis, 'performance', { configurable: true, ...property });
        const token = await session.accessToken();
        assert.equal(typeof token, 'string');
        assert.equal(await emu.refreshRequests(), before + 1);
      } finally {
        Object.defineProperty(globalThis, 'performance', saved);
        client.free();
      }
    });
  }
});
