// UserSession through the JS API against the token emulator: rotation saved
// before the token is handed out, single flight (1,000 callers, per-call
// handles, forced refreshes), the no-I/O cached path, seed(), tokens(),
// status(). Mirrors tests/session_refresh.rs.
//
// Time is fake (the client's `now`/`sleep` options); the only other stand-in
// is a store wrapper that counts calls and can hold a save at a gate.
// Assertions compare tokens without printing them.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { ConfigError, MemoryStore, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { fakeTime } from '../support/fake-time.mjs';

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';
const YEAR_MS = 365 * 24 * 3600 * 1000;

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

/** A MemoryStore that counts loads and saves and can hold saves at a gate. */
class TestStore {
  inner = new MemoryStore();
  loads = 0;
  saves = 0;
  #gate = null;

  /**
   * From now on each save (of a record `match` accepts) reports its record
   * through `entered` and waits for `release()`.
   */
  gateSaves(match = () => true) {
    const entered = deferred();
    const released = deferred();
    this.#gate = { entered, released, match };
    return { entered: entered.promise, release: () => released.resolve() };
  }

  async load(key) {
    this.loads += 1;
    return this.inner.load(key);
  }

  async save(key, record) {
    this.saves += 1;
    const gate = this.#gate;
    if (gate?.match(JSON.parse(record))) {
      gate.entered.resolve(record);
      await gate.released.promise;
    }
    return this.inner.save(key, record);
  }

  record(key) {
    const text = this.inner.get(key);
    return text === null ? null : JSON.parse(text);
  }
}

/** Token comparisons that never print a token when they fail. */
const same = (a, b, message) => assert.ok(typeof a === 'string' && a === b, message);
const differ = (a, b, message) => assert.ok(typeof a === 'string' && a !== b, message);

/** Lets every queued microtask and pending I/O callback run once. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('UserSession against the emulator', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  function setup(extra = {}) {
    const time = fakeTime();
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      now: time.now,
      sleep: time.sleep,
      ...extra,
    });
    const store = new TestStore();
    return { time, client, store };
  }

  /** A session seeded with a new emulator family but no access token: its first use refreshes. */
  async function seeded(client, store, key = 'u1') {
    const family = await emu.seed();
    const session = client.session(key, store);
    await session.seed({ refreshToken: family.refresh_token });
    return { session, family };
  }

  test('a store gone back to the record this session rotated away from: the spent token is never sent', async () => {
    // A restored backup, a Redis replica promoted without the last write:
    // adopted, the older record made the session send the token it had
    // spent, and the provider revoked the grant.
    const { time, client, store } = setup();
    const { session } = await seeded(client, store);
    const seededText = store.inner.get('u1');
    await session.accessToken();
    const rotated = store.record('u1').refresh_token;
    await store.inner.save('u1', seededText);
    time.advance(3_600_000); // past the access token and the process's memory of the rotation
    const before = await emu.refreshRequests();

    const token = await session.accessToken();
    assert.equal(await emu.refreshRequests(), before + 1, 'one refresh, of the rotated token');
    assert.equal((await emu.counters()).reuse_detected, 0, 'the spent token was not sent');
    assert.equal(await emu.refreshTokenState(rotated), 'consumed');
    const stored = store.record('u1');
    same(stored.access_token, token, 'the renewal is stored');
    assert.equal(await emu.refreshTokenState(stored.refresh_token), 'active');
  });

  test('the rotated record is saved before accessToken() resolves', async () => {
    const { client, store } = setup();
    const { session, family } = await seeded(client, store);
    const gate = store.gateSaves((record) => record.refresh_token !== family.refresh_token);

    let settled = false;
    const pending = session.accessToken();
    pending.then(() => { settled = true; }, () => { settled = true; });

    const saving = JSON.parse(await gate.entered);
    // The server has rotated while the save still holds every caller.
    assert.equal((await emu.counters()).rotations, 1);
    assert.equal(await emu.refreshTokenState(family.refresh_token), 'consumed');
    await turn();
    const raced = await Promise.race([pending.then(() => 'settled', () => 'settled'), turn().then(() => 'pending')]);
    assert.equal(raced, 'pending', 'accessToken() must not settle while save() is pending');
    assert.equal(settled, false);
    same(store.record('u1').refresh_token, family.refresh_token, 'nothing written yet');

    gate.release();
    const token = await pending;
    const stored = store.record('u1');
    differ(stored.refresh_token, family.refresh_token, 'the stored refresh token is the rotated one');
    same(stored.refresh_token, saving.refresh_token, 'the record saved is the record stored');
    same(stored.access_token, token, 'the stored access token is the one handed out');
    assert.equal(await emu.refreshTokenState(stored.refresh_token), 'active');
    assert.equal(await emu.refreshTokenState(family.refresh_token), 'consumed');
  });

  test('1,000 concurrent accessToken() calls at expiry cause exactly one refresh', async () => {
    const { client, store } = setup();
    const { session } = await seeded(client, store);
    // The refresh is held, unanswered, until every caller has asked (each joins in a microtask,
    // before the emulator's answer to waitHeld can arrive).
    await emu.fault({ kind: 'hold', grant: 'refresh_token' });

    const pending = Promise.all(Array.from({ length: 1000 }, () => session.accessToken()));
    assert.equal(await emu.waitHeld(1), 1);
    assert.equal(await emu.releaseHeld(), 1);
    const tokens = await pending;

    assert.equal(await emu.refreshRequests(), 1);
    const counters = await emu.counters();
    assert.equal(counters.max_concurrent_token_requests, 1);
    assert.equal(counters.reuse_detected, 0);
    assert.equal(tokens.length, 1000);
    assert.equal(new Set(tokens).size, 1, 'every caller got the same token');
    same(store.record('u1').access_token, tokens[0], 'the stored access token is the one handed out');
  });

  test('1,000 concurrent callers with a handle each (client.session per call) share one refresh', async () => {
    const { client, store } = setup();
    await seeded(client, store);
    await emu.fault({ kind: 'hold', grant: 'refresh_token' });

    const pending = Promise.all(Array.from({ length: 1000 }, () => client.session('u1', store).accessToken()));
    assert.equal(await emu.waitHeld(1), 1);
    assert.equal(await emu.releaseHeld(), 1);
    const tokens = await pending;

    assert.equal(await emu.refreshRequests(), 1);
    const counters = await emu.counters();
    assert.equal(counters.max_concurrent_token_requests, 1);
    assert.equal(counters.reuse_detected, 0);
    assert.equal(new Set(tokens).size, 1);
    assert.equal(client.sessionCount, 1, 'all handles share one state');
  });

  test('a fresh token is served with no store call and no request until the leeway', async () => {
    const { client, store, time } = setup();
    const { session } = await seeded(client, store);
    const first = await session.accessToken();
    assert.equal(await emu.refreshRequests(), 1);
    const loads = store.loads;
    const saves = store.saves;

    // 900 s token, 60 s leeway: fresh for 839.999 s.
    time.advance(839_000);
    for (let i = 0; i < 1000; i += 1) {
      same(await session.accessToken(), first, 'the cached token');
    }
    const viaHandles = await Promise.all(Array.from({ length: 100 }, () => client.session('u1', store).accessToken()));
    assert.ok(viaHandles.every((t) => t === first));
    assert.equal(store.loads, loads, 'no store reads');
    assert.equal(store.saves, saves, 'no store writes');
    assert.equal(await emu.refreshRequests(), 1);

    time.advance(1_000);
    const second = await session.accessToken();
    differ(second, first, 'a new token at the leeway');
    assert.equal(await emu.refreshRequests(), 2);
    same(store.record('u1').access_token, second, 'the new token is stored');
  });

  test('10 concurrent forced refresh() calls share one request', async () => {
    const { client, store } = setup();
    const { session } = await seeded(client, store);
    const first = await session.accessToken();
    await emu.fault({ kind: 'hold', grant: 'refresh_token' });

    const pending = Promise.all(Array.from({ length: 10 }, () => session.refresh()));
    assert.equal(await emu.waitHeld(1), 1);
    assert.equal(await emu.releaseHeld(), 1);
    const infos = await pending;

    assert.equal(await emu.refreshRequests(), 2, 'one initial refresh and one forced');
    assert.equal((await emu.counters()).max_concurrent_token_requests, 1);
    const tokens = infos.map((i) => i.accessToken);
    assert.equal(new Set(tokens).size, 1);
    differ(tokens[0], first, 'the forced refresh brought a new token');
    assert.equal((await emu.counters()).reuse_detected, 0);
  });

  test('seed() with accessToken and expiresIn is used without a request; bad seeds are ConfigErrors', async () => {
    const { client, store } = setup();
    const family = await emu.seed({ scope: 'openid offline_access' });
    const session = client.session('u1', store);
    await session.seed({
      refreshToken: family.refresh_token,
      accessToken: family.access_token,
      expiresIn: 900,
      scope: family.scope,
    });
    same(await session.accessToken(), family.access_token, 'the seeded access token is used');
    assert.equal(await emu.refreshRequests(), 0);
    same(store.record('u1').refresh_token, family.refresh_token, 'seed saved the record');

    await assert.rejects(session.seed({}), (err) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'config');
      assert.match(err.message, /refreshToken/);
      return true;
    });
    await assert.rejects(session.seed({ refreshToken: '' }), ConfigError);
    await assert.rejects(session.seed({ refreshToken: 'x', expiresIn: -1 }), (err) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /expiresIn/);
      return true;
    });
    // A rejected seed changed nothing.
    same(store.record('u1').refresh_token, family.refresh_token, 'the record is unchanged');
    same(await session.accessToken(), family.access_token, 'the session is unchanged');
  });

  test('tokens() reports expiry from the send time, scope, ID token and the refresh lifetime', async () => {
    const { client, store, time } = setup();
    const { session } = await seeded(client, store);
    const sentAt = time.now();
    const info = await session.tokens();
    assert.deepEqual(Object.keys(info).sort(), ['accessToken', 'expiresAt', 'idToken', 'refreshExpiresAt', 'scope']);
    assert.equal(typeof info.accessToken, 'string');
    assert.ok(info.accessToken.length > 0);
    assert.equal(info.expiresAt, sentAt + 900_000);
    assert.equal(info.refreshExpiresAt, sentAt + YEAR_MS);
    assert.equal(info.scope, 'openid offline_access accounts');
    assert.equal(typeof info.idToken, 'string');
    assert.equal(info.idToken.split('.').length, 3, 'a JWT-shaped ID token');
    same(await session.accessToken(), info.accessToken, 'tokens() and accessToken() agree');
  });

  test('status() reports what is known without sending anything', async () => {
    const { client, store, time } = setup();
    const session = client.session('u1', store);
    assert.deepEqual(await session.status(), {
      hasRecord: false, unpersisted: false, inDoubt: false, revocationPending: false,
    });

    const family = await emu.seed();
    const seededAt = time.now();
    await session.seed({ refreshToken: family.refresh_token });
    assert.deepEqual(await session.status(), {
      hasRecord: true, refreshExpiresAt: seededAt + YEAR_MS, unpersisted: false, inDoubt: false, revocationPending: false,
    });

    time.advance(5_000);
    const sentAt = time.now();
    await session.accessToken();
    assert.deepEqual(await session.status(), {
      hasRecord: true,
      accessExpiresAt: sentAt + 900_000,
      refreshExpiresAt: sentAt + YEAR_MS,
      unpersisted: false,
      inDoubt: false,
      revocationPending: false,
    });
    assert.equal(await emu.refreshRequests(), 1, 'status() itself sent nothing');

    // Another process reads the stored record.
    const other = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, now: time.now });
    const status = await other.session('u1', store).status();
    assert.equal(status.hasRecord, true);
    assert.equal(status.accessExpiresAt, sentAt + 900_000);
    assert.equal(await emu.refreshRequests(), 1);
  });

  test('status() names a lapsed refresh token before any call fails on it', async () => {
    const { client, store, time } = setup();
    const { session } = await seeded(client, store);
    await session.accessToken();
    const { refreshExpiresAt } = await session.status();
    time.advance(refreshExpiresAt - time.now());
    assert.equal((await session.status()).reauthorizationReason, 'refresh_expired', 'the host can prompt a re-link');
    assert.equal(await emu.refreshRequests(), 1, 'status() sent nothing');
    await assert.rejects(session.accessToken(), (err) => err.code === 'reauthorization_required' && err.reason === 'refresh_expired');
    assert.equal(await emu.refreshRequests(), 1);
  });

  test("another process's rotation is picked up from the store without a request", async () => {
    const { client, store, time } = setup();
    const { session: a } = await seeded(client, store);
    const otherClient = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, now: time.now,
    });
    const b = otherClient.session('u1', store);
    assert.equal((await b.status()).hasRecord, true, 'B has read the seeded, token-less record');

    const token = await a.accessToken();
    assert.equal(await emu.refreshRequests(), 1);
    same(await b.accessToken(), token, 'B re-read the store before refreshing');
    assert.equal(await emu.refreshRequests(), 1);
    assert.equal((await emu.counters()).reuse_detected, 0);
  });

  test('two TokenClients in one process on one store send the refresh token once (a client per request)', async () => {
    // Each client keeps its own sessions; without a lease both sent the
    // token, and its second use revoked the whole grant.
    const { client, store, time } = setup();
    const { session: a, family } = await seeded(client, store);
    const twin = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, now: time.now, sleep: time.sleep,
    });
    await emu.fault({ kind: 'hold' });
    const calls = [a.accessToken(), twin.session('u1', store).accessToken()];
    await emu.waitHeld(1);
    assert.equal(await emu.releaseHeld(), 1, 'one request was held');
    const [ta, tb] = await Promise.all(calls);
    same(ta, tb, 'both clients got the one new token');
    assert.equal(await emu.refreshRequests(), 1);
    assert.equal((await emu.counters()).reuse_detected, 0);
    assert.equal(await emu.refreshTokenState(family.refresh_token), 'consumed');
    assert.equal(await emu.refreshTokenState(store.record('u1').refresh_token), 'active');
  });

  test('a spent refresh token replayed into this process is neither sent nor answered with the new tokens', async () => {
    const { client, store, time } = setup();
    const { session: a, family } = await seeded(client, store);
    await a.accessToken();
    const twin = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, now: time.now, sleep: time.sleep,
    });
    const otherStore = new TestStore();
    const b = twin.session('u1', otherStore);
    await b.seed({ refreshToken: family.refresh_token });

    await assert.rejects(b.accessToken(), (e) => e.code === 'conflict');
    assert.equal(await emu.refreshRequests(), 1, 'nothing sent');
    assert.equal((await emu.counters()).reuse_detected, 0);
    same(otherStore.record('u1').refresh_token, family.refresh_token, 'the other store is left as it was');
  });

  test('leewaySeconds is capped at half a token\'s life', async () => {
    const { client, store, time } = setup({ leewaySeconds: 600 });
    const { session } = await seeded(client, store);
    const first = await session.accessToken();
    time.advance(449_000);
    same(await session.accessToken(), first, 'a 900 s token with a 600 s leeway is fresh for 450 s');
    assert.equal(await emu.refreshRequests(), 1);
    time.advance(2_000);
    differ(await session.accessToken(), first, 'and renewed after');
    assert.equal(await emu.refreshRequests(), 2);
  });

  test('idle session states are evicted beyond maxSessions and re-read from the store', async () => {
    const { client, store } = setup({ maxSessions: 10 });
    const tokens = new Map();
    for (let i = 0; i < 30; i += 1) {
      const { session } = await seeded(client, store, `user-${i}`);
      tokens.set(`user-${i}`, await session.accessToken());
      session.free(); // a JS handle keeps its state alive until freed (or garbage-collected)
      assert.ok(client.sessionCount <= 11, `at most maxSessions + a tenth: ${client.sessionCount}`);
    }
    assert.equal(await emu.refreshRequests(), 30);
    // An evicted state comes back from the store with its fresh token: no request.
    const loads = store.loads;
    same(await client.session('user-0', store).accessToken(), tokens.get('user-0'), 'the stored token is served');
    assert.equal(store.loads, loads + 1, 'user-0 had been evicted: its record was read again');
    assert.equal(await emu.refreshRequests(), 30);
  });

  test('a missing expires_in means the configured user-token lifetime (900 s by default)', async () => {
    for (const [extra, lifetime] of [[{}, 900_000], [{ userTokenLifetimeSeconds: 300 }, 300_000]]) {
      await emu.reset();
      const { client, store, time } = setup(extra);
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'body', status: 200, body: '{"access_token":"at-no-expiry","token_type":"Bearer"}' });
      const info = await session.tokens();
      assert.equal(info.accessToken, 'at-no-expiry');
      assert.equal(info.expiresAt, time.now() + lifetime);
    }
  });

  test('expires_in sent as a string or a fraction (Azure AD v1, SAP) is read as whole seconds; a negative one as absent, a huge one as ten years', async () => {
    // The wasm build reads JSON with the host's JSON.parse: its numbers and strings reach the core
    // differently from serde_json's, and must give the same seconds. A negative or huge lifetime
    // ("no expiry" to some providers) is read, not refused: refused, every call would refresh.
    const tenYears = 10 * 366 * 24 * 3600;
    for (const [value, seconds] of [
      ['3599', 3599], [' 3599.9 ', 3599], [1800.9, 1800], [9e2, 900],
      [1e21, tenYears], [2147483647, tenYears], [-1, 900], [-0.5, 900],
    ]) {
      await emu.reset();
      const { client, store, time } = setup();
      const { session, family } = await seeded(client, store);
      await emu.fault({ kind: 'expires_in_as', value, grant: 'refresh_token' });
      const sentAt = time.now();
      const info = await session.tokens();
      assert.equal(info.expiresAt, sentAt + seconds * 1000, `${value}`);
      assert.equal(await emu.refreshTokenState(family.refresh_token), 'consumed');
      assert.equal(await emu.refreshTokenState(store.record('u1').refresh_token), 'active', `${value}`);
      // The token is served again from memory: one refresh in all.
      assert.equal(await session.accessToken(), info.accessToken);
      assert.equal(await emu.refreshRequests(), 1);
    }
  });

  test('seed() during a refresh waits for it, then replaces the record', async () => {
    const { client, store } = setup();
    const { session } = await seeded(client, store);
    const next = await emu.seed();
    // Only the refresh's saves are held: a seed() that did not wait would
    // save its record (and resolve) at once.
    const gate = store.gateSaves((record) => record.refresh_token !== next.refresh_token);
    const pending = session.accessToken();
    await gate.entered;
    const savesBefore = store.saves;
    let seeded2 = false;
    const seeding = session.seed({ refreshToken: next.refresh_token }).then(() => { seeded2 = true; });
    await turn();
    assert.equal(seeded2, false, 'seed() waits for the refresh in flight');
    assert.equal(store.saves, savesBefore, 'seed() saved nothing yet');
    gate.release();
    await pending;
    await seeding;
    same(store.record('u1').refresh_token, next.refresh_token, 'the seeded record is the one stored last');
    assert.equal(store.record('u1').access_token, undefined);
  });

  test('client_secret_basic works against the emulator', async () => {
    const { client, store } = setup({ clientAuth: 'client_secret_basic' });
    const { session } = await seeded(client, store);
    await session.accessToken();
    assert.equal((await emu.counters()).refresh_success, 1);
  });

  test('a server that does not rotate leaves the old refresh token in the record', async () => {
    const { client, store } = setup();
    const { session, family } = await seeded(client, store);
    await emu.fault({
      kind: 'body',
      status: 200,
      body: '{"access_token":"at-without-rotation","token_type":"bearer","expires_in":900}',
    });
    assert.equal(await session.accessToken(), 'at-without-rotation');
    const stored = store.record('u1');
    same(stored.refresh_token, family.refresh_token, 'the old refresh token is kept');
    assert.equal(stored.access_token, 'at-without-rotation');
  });
});
