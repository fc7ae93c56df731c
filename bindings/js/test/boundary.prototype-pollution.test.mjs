// Members inherited from Object.prototype are not read (DESIGN point 16;
// pkg/src/host-calls.js `member`). Another bug in an app may have set
// `Object.prototype.fetch` or `.accessToken`: a client's options and a
// seed must not pick them up, or an inherited `fetch` receives the client
// secret and the refresh token, and a seed serves an access token nobody
// gave it. Members of a class's own prototype (getters, methods) are the
// caller's and are read. Each test removes its pollution in `finally`.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { MemoryStore, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';

/** Sets `members` on Object.prototype, as a polluting assignment does; returns the undo. */
function pollute(members) {
  Object.assign(Object.prototype, members); // eslint-disable-line no-extend-native
  return () => {
    for (const name of Object.keys(members)) delete Object.prototype[name];
  };
}

describe('prototype pollution', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  test('an inherited Object.prototype.fetch is not the client\'s fetch: it never sees a secret', async () => {
    const bodies = [];
    const undo = pollute({
      fetch(url, init) {
        bodies.push(String(init?.body ?? ''));
        return globalThis.fetch(url, init);
      },
    });
    try {
      const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
      const store = new MemoryStore();
      const family = await emu.seed();
      await client.session('u1', store).seed({ refreshToken: family.refresh_token });
      assert.equal(typeof await client.session('u1', store).accessToken(), 'string');
      assert.equal(await emu.refreshRequests(), 1, 'refreshed through the global fetch');
      assert.deepEqual(bodies, [], 'the inherited fetch was never called');
    } finally {
      undo();
    }
  });

  test('seed({ refreshToken }) does not adopt an inherited accessToken or expiresIn', async () => {
    const undo = pollute({ accessToken: 'inherited-token', expiresIn: 3600 });
    try {
      const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
      const session = client.session('u1', new MemoryStore());
      const family = await emu.seed();
      await session.seed({ refreshToken: family.refresh_token });
      const token = await session.accessToken();
      assert.notEqual(token, 'inherited-token');
      assert.equal(await emu.refreshRequests(), 1, 'the seed had no access token: the first read refreshed');
    } finally {
      undo();
    }
  });

  test('getters and methods of a class\'s own prototype are still read', async () => {
    let fetches = 0;
    class Options {
      get tokenEndpoint() { return emu.tokenEndpoint; }

      get clientId() { return CLIENT_ID; }

      get clientSecret() { return CLIENT_SECRET; }

      fetch(url, init) {
        fetches += 1;
        return globalThis.fetch(url, init);
      }
    }
    const family = await emu.seed();
    class Seed {
      get refreshToken() { return family.refresh_token; }
    }
    const client = new TokenClient(new Options());
    const session = client.session('u1', new MemoryStore());
    await session.seed(new Seed());
    assert.equal(typeof await session.accessToken(), 'string');
    assert.equal(fetches, 1, 'the class\'s fetch sent the refresh');
    assert.equal(await emu.refreshRequests(), 1);
  });

  // A setter on Object.prototype runs host code inside the wasm (serde-
  // wasm-bindgen assigns a record's members, web-sys a fetch init's). Host
  // code that calls back or throws there must not wedge what outlives it.
  test('a setter that calls the MemoryStore back while it writes a record\'s text finds it unlocked', async () => {
    const store = new MemoryStore();
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
    const family = await emu.seed();
    await client.session('u1', store).seed({ refreshToken: family.refresh_token });
    let reentered;
    Object.defineProperty(Object.prototype, 'refresh_token', { // eslint-disable-line no-extend-native
      configurable: true,
      set(value) {
        if (reentered === undefined) {
          reentered = null;
          reentered = store.get('u1'); // before: the store's lock, held: a trap
        }
        Object.defineProperty(this, 'refresh_token', { value, writable: true, enumerable: true, configurable: true });
      },
    });
    try {
      const text = store.get('u1');
      assert.equal(JSON.parse(text).refresh_token, family.refresh_token);
      assert.equal(reentered, text, 'the re-entrant read answered');
    } finally {
      delete Object.prototype.refresh_token;
    }
    assert.equal(typeof await client.session('u1', store).accessToken(), 'string', 'the store still serves');
  });

  test('a throwing setter of Object.prototype fails a refresh as a typed error, and the next one goes on', async () => {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
    const session = client.session('u1', new MemoryStore());
    const family = await emu.seed();
    await session.seed({ refreshToken: family.refresh_token });
    Object.defineProperty(Object.prototype, 'redirect', { // eslint-disable-line no-extend-native
      configurable: true,
      set() { throw new Error('a polluting setter threw'); },
    });
    let first;
    try {
      // The fetch init has no prototype: the setter runs in fetch's own
      // code (Node's), outside the wasm. Before, it ran inside the wasm:
      // accessToken() threw, and the key's flight was wedged for good.
      first = session.accessToken();
    } finally {
      delete Object.prototype.redirect;
    }
    await assert.rejects(first, (err) => err.code === 'network' && /a polluting setter threw/.test(err.message));
    assert.equal(typeof await session.accessToken(), 'string', 'the next call refreshed');
  });

  test('host code that throws through the wasm: accessToken() rejects, and free() does not end the process', async () => {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
    const session = client.session('u1', new MemoryStore());
    const family = await emu.seed();
    await session.seed({ refreshToken: family.refresh_token });
    // The core's clock reads Date.now (no `now` option) through an import
    // that does not catch: a replaced one that throws unwinds the wasm.
    const realNow = Date.now;
    Date.now = () => { throw new Error('a replaced Date.now threw'); };
    let call;
    try {
      call = session.accessToken(); // before: threw synchronously
    } finally {
      Date.now = realNow;
    }
    await assert.rejects(call, /a replaced Date.now threw/);
    // The wasm call the exception broke off never gives its borrow back:
    // before, free()'s deferred release threw it as an uncaught exception
    // (which ends a Node process, and fails this test).
    client.free();
    await new Promise((resolve) => { setImmediate(resolve); });
    const other = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
    const fresh = await emu.seed();
    const store = new MemoryStore();
    await other.session('u2', store).seed({ refreshToken: fresh.refresh_token });
    assert.equal(typeof await other.session('u2', store).accessToken(), 'string', 'the instance still serves');
  });
});
