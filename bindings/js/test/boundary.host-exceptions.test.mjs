// Host exceptions that pass through wasm (issue 11 item 4): a store that
// throws (synchronously, from a thenable, from a getter), revoked Proxies as
// options or scopes. 100,000 of them, mixed, must neither poison the
// instance (a normal refresh against the emulator works afterwards) nor grow
// its memory, and each surfaces as the right typed error.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ConfigError, MemoryStore, StorageError, TokenClient } from 'freshtoken';
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
});
