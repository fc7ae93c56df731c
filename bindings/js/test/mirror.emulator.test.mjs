// The package's mirror of cached tokens (pkg/src/api.js): per key, the token
// and the instant until which the core would serve it, kept on the JS side so
// that a cached `accessToken()` makes no wasm call. Against the emulator, on
// a fake clock; wasm calls are counted by wrapping the wasm class's methods
// (support/wasm-calls.mjs). A key is mirrored from its second read through
// the core on.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';

import { MemoryStore, ReauthorizationRequiredError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { countWasmCalls } from '../support/wasm-calls.mjs';

const CLIENT = { clientId: 'test-client', clientSecret: 'test-secret' };
/** A 900 s token with the default 60 s leeway is served for 840 s. */
const FRESH_MS = 840_000;

/** Token comparisons that never print a token when they fail. */
const same = (a, b, message) => assert.ok(typeof a === 'string' && a === b, message);
const differ = (a, b, message) => assert.ok(typeof a === 'string' && typeof b === 'string' && a !== b, message);

describe('the mirror of cached tokens', () => {
  let emu;
  let calls;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => {
    await emu.reset();
    calls = countWasmCalls();
  });
  afterEach(() => calls.stop());

  /** A client on a fake clock, a store, and a session seeded with a fresh 900 s token, read twice (so mirrored). */
  async function mirrored(extra = {}, key = 'u1') {
    const time = { ms: Math.floor(Date.now() / 1000) * 1000 };
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT, now: () => time.ms, ...extra });
    const store = new MemoryStore();
    const family = await emu.seed();
    const session = client.session(key, store);
    await session.seed({ refreshToken: family.refresh_token, accessToken: 'at-seeded', expiresIn: 900 });
    same(await session.accessToken(), 'at-seeded', 'the seeded token (first read: through the core)');
    same(await session.accessToken(), 'at-seeded', 'the seeded token (second read: mirrored)');
    calls.count();
    return { time, client, store, session, family };
  }

  test('a mirrored token is served with no wasm call and no request', async () => {
    const { session } = await mirrored();
    for (let i = 0; i < 1000; i += 1) same(await session.accessToken(), 'at-seeded', `read ${i}`);
    assert.equal(calls.count(), 0, 'no wasm call for 1,000 cached reads');
    assert.equal(await emu.refreshRequests(), 0);
  });

  test('a clock set back asks the core: within the skew tolerance it serves, an hour back it renews', async () => {
    const { time, session } = await mirrored();
    const seededAt = time.ms;
    // Four minutes back (ordinary skew): the core still serves the token.
    time.ms = seededAt - 240_000;
    same(await session.accessToken(), 'at-seeded', 'served within the tolerance');
    assert.ok(calls.count() >= 1, 'the mirror asked the core: its entry was filled later than now');
    assert.equal(await emu.refreshRequests(), 0);
    // An hour back: the token was issued under a clock that read ahead, and
    // may be expired at the server; the mirror does not serve it either.
    time.ms = seededAt - 3_600_000;
    const renewed = await session.accessToken();
    differ(renewed, 'at-seeded', 'renewed');
    assert.equal(await emu.refreshRequests(), 1);
  });

  test('a key read once goes through the core; its second read mirrors it', async () => {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });
    const store = new MemoryStore();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: 'rt', accessToken: 'at-once', expiresIn: 900 });
    calls.count();
    same(await session.accessToken(), 'at-once');
    assert.ok(calls.count() >= 1, 'the first read asks the core');
    same(await session.accessToken(), 'at-once');
    assert.ok(calls.count() >= 1, 'so does the second');
    same(await session.accessToken(), 'at-once');
    assert.equal(calls.count(), 0, 'the third is served from the mirror');
  });

  test('the entry ends at the fresh-until instant on the client\'s clock', async () => {
    const { time, session } = await mirrored();
    const seededAt = time.ms;
    time.ms = seededAt + FRESH_MS - 1;
    same(await session.accessToken(), 'at-seeded', 'fresh 1 ms before the end');
    assert.equal(calls.count(), 0, 'still from the mirror');
    time.ms = seededAt + FRESH_MS;
    const renewed = await session.accessToken();
    differ(renewed, 'at-seeded', 'renewed at the fresh-until instant');
    assert.ok(calls.count() >= 1, 'the core was asked');
    assert.equal(await emu.refreshRequests(), 1);
  });

  for (const [name, replace] of [
    ['tokenRejected', (s) => s.tokenRejected('at-seeded').then((info) => info.accessToken)],
    ['refresh', (s) => s.refresh().then((info) => info.accessToken)],
    ['seed', (s, family) => s.seed({ refreshToken: family.refresh_token, accessToken: 'at-reseeded', expiresIn: 900 }).then(() => 'at-reseeded')],
  ]) {
    test(`after ${name}() the new token is served, from the mirror`, async () => {
      const { session, family } = await mirrored();
      const fresh = await replace(session, family);
      differ(fresh, 'at-seeded', `${name}() replaced the token`);
      calls.count();
      same(await session.accessToken(), fresh, 'the new token is served');
      assert.equal(calls.count(), 0, 'from the mirror');
    });
  }

  test('two handles of one key share the entry', async () => {
    const { client, store } = await mirrored();
    const other = client.session('u1', store);
    calls.count();
    same(await other.accessToken(), 'at-seeded');
    assert.equal(calls.count(), 0, 'a new handle reads the key\'s entry');
  });

  test('a refresh through another handle of the same client is seen at once', async () => {
    const { client, store, session } = await mirrored();
    const info = await client.session('u1', store).refresh();
    differ(info.accessToken, 'at-seeded');
    calls.count();
    same(await session.accessToken(), info.accessToken, 'the first handle serves the refreshed token');
    assert.equal(calls.count(), 0, 'from the mirror');
    assert.equal(await emu.refreshRequests(), 1);
  });

  test('a refresh that fails drops the entry: the next read answers as the core does', async () => {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });
    const session = client.session('u1', new MemoryStore());
    await session.seed({ refreshToken: 'rt-the-server-never-issued', accessToken: 'at-seeded', expiresIn: 900 });
    same(await session.accessToken(), 'at-seeded');
    same(await session.accessToken(), 'at-seeded');
    await assert.rejects(session.refresh(), ReauthorizationRequiredError);
    await assert.rejects(session.accessToken(), ReauthorizationRequiredError, 'the mirrored token is not served after the session died');
  });

  test('maxSessions bounds the mirror', async () => {
    const time = { ms: Math.floor(Date.now() / 1000) * 1000 };
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT, now: () => time.ms, maxSessions: 10 });
    const store = new MemoryStore();
    const keys = Array.from({ length: 30 }, (_, i) => `user-${i}`);
    for (const key of keys) {
      const session = client.session(key, store);
      await session.seed({ refreshToken: `rt-${key}`, accessToken: `at-${key}`, expiresIn: 900 });
      await session.accessToken();
      await session.accessToken();
    }
    calls.count();
    for (const key of keys.slice(20)) same(await client.session(key, store).accessToken(), `at-${key}`);
    assert.equal(calls.count() - 10, 0, 'the last 10 keys are mirrored (session() checks its key: one call each)');
    for (const key of keys.slice(0, 10)) {
      same(await client.session(key, store).accessToken(), `at-${key}`);
      assert.ok(calls.count() >= 2, `${key} was dropped from the mirror: its read asks the core`);
    }
  });

  test('10,000 concurrent callers at expiry: one call into the core, one POST, one token', async () => {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });
    const store = new MemoryStore();
    const family = await emu.seed();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token });
    calls.count();
    const tokens = await Promise.all(Array.from({ length: 10_000 }, () => session.accessToken()));
    assert.ok(tokens.every((t) => t === tokens[0]), 'every caller got the same token');
    assert.equal(calls.byName().sessionAccessToken, 1, 'one asynchronous call into the core');
    assert.equal(await emu.refreshRequests(), 1);
    const again = await session.accessToken();
    same(again, tokens[0], 'and it is served afterwards');
  });

  /**
   * On `client` (whose clock reads `time.ms`): a fresh 900 s token, mirrored;
   * then two hours pass on that clock. The read must not be served the old
   * token from the mirror: the core calls it expired and renews it.
   */
  async function expiresOnTheClientsClock(client, time) {
    const family = await emu.seed();
    const session = client.session('u1', new MemoryStore());
    await session.seed({ refreshToken: family.refresh_token, accessToken: 'at-seeded', expiresIn: 900 });
    for (let i = 0; i < 3; i += 1) same(await session.accessToken(), 'at-seeded', `read ${i}`);
    time.ms += 2 * 3_600_000;
    differ(await session.accessToken(), 'at-seeded', 'two hours on by the client\'s clock: renewed, not served from the mirror');
    assert.equal(await emu.refreshRequests(), 1);
  }

  for (const [name, fields, make] of [
    ['new TokenClient()', () => ({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT }), (options) => new TokenClient(options)],
    ['TokenClient.fromCredentialsJson()', () => ({}), (options) => TokenClient.fromCredentialsJson(
      JSON.stringify({ ...CLIENT, tokenEndpoint: emu.tokenEndpoint, slidingRefreshTokenLifetime: 86_400 }),
      options,
    )],
    ['TokenClient.discover()', () => CLIENT, (options) => TokenClient.discover(emu.discoveryIssuer, options)],
  ]) {
    test(`${name}: options.now is read once, and the mirror keeps the clock the core got`, async () => {
      const time = { ms: Date.now() };
      let reads = 0;
      // A getter that gives the clock on its first read only.
      const options = { ...fields(), get now() { reads += 1; return reads === 1 ? () => time.ms : undefined; } };
      const client = await make(options);
      assert.equal(reads, 1, 'options.now read once');
      await expiresOnTheClientsClock(client, time);
      client.free();
    });
  }

  test('TokenClient.discover(): options.now deleted while discovery runs still is the mirror\'s clock', async () => {
    const time = { ms: Date.now() };
    const options = { ...CLIENT, now: () => time.ms };
    const discovering = TokenClient.discover(emu.discoveryIssuer, options);
    delete options.now; // the discovery request has not been answered yet
    const client = await discovering;
    await expiresOnTheClientsClock(client, time);
    client.free();
  });

  test('a clock reading that is not a plausible time is replaced by Date.now, in the mirror as in the core', async () => {
    // Seeded and mirrored 2,000 s ago on the fake clock: stale by real time.
    const time = { ms: Date.now() - 2_000_000 };
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT, now: () => time.ms });
    const store = new MemoryStore();
    const family = await emu.seed();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token, accessToken: 'at-seeded', expiresIn: 900 });
    same(await session.accessToken(), 'at-seeded', 'first read');
    same(await session.accessToken(), 'at-seeded', 'second read: mirrored');

    // A negative reading must not keep the mirrored token fresh forever.
    time.ms = -1;
    differ(await session.accessToken(), 'at-seeded', 'stale by Date.now: refreshed');
    assert.equal(await emu.refreshRequests(), 1);

    // Nanoseconds by mistake: the core reads Date.now, so instants stay real.
    time.ms = Date.now() * 1e6;
    const before = Date.now();
    await session.seed({ refreshToken: 'rt-later', accessToken: 'at-later', expiresIn: 900 });
    const { accessExpiresAt: accessExpiresAtMs, refreshExpiresAt: refreshExpiresAtMs } = await session.status();
    assert.ok(accessExpiresAtMs >= before + 900_000 && accessExpiresAtMs <= Date.now() + 900_000, `${accessExpiresAtMs} vs ${before}`);
    assert.ok(refreshExpiresAtMs < Date.now() + 400 * 86_400_000, String(refreshExpiresAtMs));
  });
});
