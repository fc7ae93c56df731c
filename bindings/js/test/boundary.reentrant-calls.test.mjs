// Host callbacks that run inside a call into the package. A call's work
// starts before the call returns (src/wasm/mod.rs `promise`), so a store's
// `load` and `fetch` run within `accessToken()` itself, while the call
// holds the wasm client. A callback that calls back into the package there
// (another session call, `client.free()`) must get what it would get
// anywhere else, and every call must settle.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { ConfigError, FreshTokenError, MemoryStore, ReauthorizationRequiredError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { collectGarbage, wasmMemoryBytes } from '../support/wasm-memory.mjs';

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';

describe('host callbacks that call back into the package', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  const newClient = (extra = {}) => new TokenClient({
    tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, ...extra,
  });

  test('the refresh request leaves within the first accessToken() call, before the other callers join', async () => {
    // 10,000 callers at expiry (bench/run.mjs row 2): the one request must not
    // wait for the callers' synchronous code to end.
    let sent = 0;
    const client = newClient({ fetch: (url, init) => { sent += 1; return fetch(url, init); } });
    const store = new MemoryStore();
    const family = await emu.seed();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token });

    const first = session.accessToken();
    assert.equal(sent, 1, 'the request was sent before accessToken() returned');
    const rest = Array.from({ length: 999 }, () => session.accessToken());
    assert.equal(sent, 1);
    const tokens = await Promise.all([first, ...rest]);

    assert.equal(new Set(tokens).size, 1, 'every caller got the same token');
    assert.equal(await emu.refreshRequests(), 1);
    assert.equal(JSON.parse(store.get('u1')).access_token === tokens[0], true, 'the handed-out token is stored');
    client.free();
  });

  test("a store's load that calls accessToken() on its own key joins the same refresh", async () => {
    const client = newClient();
    const inner = new MemoryStore();
    const family = await emu.seed();
    await client.session('u1', inner).seed({ refreshToken: family.refresh_token });
    let nested = null;
    const store = {
      load(key) {
        nested ??= client.session(key, store).accessToken();
        return inner.load(key);
      },
      save: (key, record, expected) => inner.save(key, record, expected),
    };

    const outer = await client.session('u1', store).accessToken();
    assert.equal(await nested, outer, 'both calls got the one refresh');
    assert.equal(await emu.refreshRequests(), 1);
    client.free();
  });

  test("client.free() inside a store's load does not throw; the call settles and the client is freed", async () => {
    let thrown = null;
    const run = async () => {
      const client = newClient();
      const store = {
        load() {
          try {
            client.free();
          } catch (e) {
            thrown ??= e;
          }
          return null;
        },
        save: async () => {},
      };
      await assert.rejects(client.session('u1', store).accessToken(), ReauthorizationRequiredError);
      assert.throws(() => client.sessionCount, ConfigError, 'the client is freed');
    };
    await run();
    assert.equal(thrown, null, 'free() threw inside load');

    // Each client freed this way releases its wasm memory (a free that threw
    // left it allocated for good).
    for (let i = 0; i < 200; i++) await run();
    await collectGarbage();
    const base = wasmMemoryBytes();
    for (let i = 0; i < 5_000; i++) await run();
    await collectGarbage();
    assert.equal(thrown, null);
    assert.ok(wasmMemoryBytes() - base < 1024 * 1024, `wasm memory grew by ${wasmMemoryBytes() - base} bytes over 5,000 clients`);
  });

  test('load, save, fetch and now calling any session or client method: every call settles, nothing traps', { timeout: 60_000 }, async () => {
    const ops = {
      accessToken: (client, store) => client.session('u1', store).accessToken(),
      status: (client, store) => client.session('u1', store).status(),
      refresh: (client, store) => client.session('u1', store).refresh(),
      seed: (client, store) => client.session('u1', store).seed({ refreshToken: 'another' }),
      revoke: (client, store) => client.session('u1', store).revoke(),
      clientToken: (client) => client.clientToken(['accounts']),
    };
    for (const where of ['load', 'save', 'fetch', 'now']) {
      for (const [name, op] of Object.entries(ops)) {
        const inner = new MemoryStore();
        let client;
        let armed = false;
        let nested = null;
        const fire = () => {
          if (!armed) return;
          armed = false;
          nested = op(client, store);
        };
        const store = {
          load: (key) => { if (where === 'load') fire(); return inner.load(key); },
          save: (key, record) => { if (where === 'save') fire(); return inner.save(key, record); },
        };
        client = newClient({
          fetch: (url, init) => { if (where === 'fetch') fire(); return fetch(url, init); },
          now: () => { if (where === 'now') fire(); return Date.now(); },
        });
        const family = await emu.seed();
        await client.session('u1', store).seed({ refreshToken: family.refresh_token });
        armed = true;
        const outer = await client.session('u1', store).accessToken().then(() => null, (e) => e);
        const label = `${name}() inside ${where}`;
        assert.ok(nested !== null, `${label}: the callback ran`);
        const result = await nested.then(() => null, (e) => e);
        // Only the core's own verdicts: a seed or revoke that won the race may leave the outer call nothing to refresh with.
        for (const e of [outer, result]) assert.ok(e === null || e instanceof FreshTokenError, `${label}: ${e}`);
        client.free();
      }
    }
    const family = await emu.seed();
    const store = new MemoryStore();
    const client = newClient();
    await client.session('after', store).seed({ refreshToken: family.refresh_token });
    assert.equal(typeof await client.session('after', store).accessToken(), 'string', 'the instance works afterwards');
    client.free();
  });

  test("client.free() inside the host clock's read, at any read of accessToken() or inside a signal's getter: a ConfigError, never a TypeError", async () => {
    for (const warm of [false, true]) {
      for (let at = 1; at <= 4; at += 1) {
        const family = await emu.seed();
        const store = new MemoryStore();
        let armed = false;
        let reads = 0;
        let client;
        client = newClient({
          now: () => {
            if (armed && (reads += 1) === at) client.free();
            return Date.now();
          },
        });
        const session = client.session('u1', store);
        await session.seed({ refreshToken: family.refresh_token });
        if (warm) { await session.accessToken(); await session.accessToken(); } // mirrored
        armed = true;
        let outcome;
        try {
          outcome = await session.accessToken().then((token) => token, (e) => e);
        } catch (e) {
          assert.fail(`warm ${warm}, read ${at}: accessToken() threw synchronously: ${e}`);
        }
        const label = `warm ${warm}, free() at clock read ${at} of ${reads}`;
        assert.ok(typeof outcome === 'string' || outcome instanceof ConfigError, `${label}: ${outcome}`);
      }
    }
    // A signal whose getter frees the client, on a replacing call.
    const client = newClient();
    const session = client.session('u2', new MemoryStore());
    const options = { get signal() { client.free(); return undefined; } };
    const error = await session.status(options).then(() => null, (e) => e);
    assert.ok(error instanceof ConfigError, String(error));
  });

  test('client.free() while exchangeCode() waits for the server: a ConfigError, and the record is saved', async () => {
    const REDIRECT = 'https://app.example/callback';
    let client;
    client = newClient({
      fetch: async (url, init) => {
        const answer = await fetch(url, init);
        if (String(url) === emu.tokenEndpoint) client.free();
        return answer;
      },
    });
    const request = await client.authorizationUrl({ redirectUri: REDIRECT });
    const redirect = await fetch(request.url, { redirect: 'manual' });
    await redirect.arrayBuffer();
    const code = new URL(redirect.headers.get('location')).searchParams.get('code');
    const store = new MemoryStore();
    const error = await client.exchangeCode({ code, codeVerifier: request.codeVerifier, redirectUri: REDIRECT }, 'u1', store)
      .then(() => null, (e) => e);
    assert.ok(error instanceof ConfigError, String(error));
    assert.match(error.message, /not a live TokenClient.*session saved/);
    const record = JSON.parse(store.get('u1'));
    assert.equal(await emu.refreshTokenState(record.refresh_token), 'active', 'the issued tokens are saved');
  });

  test('client.free() inside fetch: the request in flight still completes and its rotation is saved', async () => {
    const store = new MemoryStore();
    const family = await emu.seed();
    let client;
    let freedInside = false;
    client = newClient({
      fetch: (url, init) => {
        client.free();
        freedInside = true;
        return fetch(url, init);
      },
    });
    await client.session('u1', store).seed({ refreshToken: family.refresh_token });

    const token = await client.session('u1', store).accessToken();
    assert.equal(freedInside, true);
    const record = JSON.parse(store.get('u1'));
    assert.ok(record.access_token === token, 'the token handed out is the one stored');
    assert.ok(record.refresh_token !== family.refresh_token, 'the rotated refresh token is stored');
    assert.equal(await emu.refreshTokenState(record.refresh_token), 'active');
  });
});
