// UserSession when things go wrong, through the JS API against the token
// emulator: failing stores, rejected / lost / lapsed refresh tokens, retries
// and their limits, transport failures, bad answers, and secrets kept out of
// every error. Mirrors tests/session_failures.rs.
//
// Time is fake (the client's `now`/`sleep`: backoff is recorded, not waited
// for); stores fail on command. Tokens and secrets are never printed.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { inspect } from 'node:util';
import { after, before, beforeEach, describe, test } from 'node:test';

import {
  ConfigError,
  FreshTokenError,
  InvalidClientError,
  InvalidResponseError,
  MemoryStore,
  NetworkError,
  OAuthError,
  ReauthorizationRequiredError,
  StorageError,
  TimeoutError,
  TokenClient,
  TransientError,
  refreshTokens,
} from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { fakeTime } from '../support/fake-time.mjs';

const FULL_DAYS = { Mon: 'Monday', Tue: 'Tuesday', Wed: 'Wednesday', Thu: 'Thursday', Fri: 'Friday', Sat: 'Saturday', Sun: 'Sunday' };

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';

/**
 * A MemoryStore whose next loads/saves fail on command (Infinity: all of
 * them); with `failOnly` set, only saves of records it matches count.
 */
class FailingStore {
  inner = new MemoryStore();
  failSaves = 0;
  /** (record object) => whether a save of it may fail; null: any save. */
  failOnly = null;
  failLoads = 0;
  loads = 0;
  saves = 0;

  async load(key) {
    this.loads += 1;
    if (this.failLoads > 0) {
      this.failLoads -= 1;
      throw new Error('database unavailable');
    }
    return this.inner.load(key);
  }

  async save(key, record) {
    this.saves += 1;
    if (this.failSaves > 0 && (this.failOnly === null || this.failOnly(JSON.parse(record)))) {
      this.failSaves -= 1;
      throw new Error('disk full');
    }
    return this.inner.save(key, record);
  }

  record(key) {
    const text = this.inner.get(key);
    return text === null ? null : JSON.parse(text);
  }
}

const same = (a, b, message) => assert.ok(typeof a === 'string' && a === b, message);
const differ = (a, b, message) => assert.ok(typeof a === 'string' && a !== b, message);

/** `promise` rejects with an instance of `Class`; resolves with the error. */
async function rejection(promise, Class) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof Class, `expected ${Class.name}, got ${err?.name}: ${err?.message}`);
    assert.ok(err instanceof FreshTokenError);
    assert.ok(err instanceof Error);
    return err;
  }
  assert.fail(`expected a ${Class.name} rejection, but it resolved`);
}

/** A loopback port nothing listens on. */
async function closedPort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('session failures against the emulator', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  function setup(extra = {}) {
    const time = fakeTime();
    const options = {
      tokenEndpoint: emu.tokenEndpoint,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      now: time.now,
      sleep: time.sleep,
      ...extra,
    };
    return { time, options, client: new TokenClient(options), store: new FailingStore() };
  }

  async function seeded(client, store, key = 'u1') {
    const family = await emu.seed();
    const session = client.session(key, store);
    await session.seed({ refreshToken: family.refresh_token });
    return { session, rt: family.refresh_token };
  }

  describe('stores', () => {
    test('saveUnsaved() saves a rotation the store refused, with no handle left, before free()', async () => {
      const { client, store } = setup();
      const { session, rt: oldRt } = await seeded(client, store);
      const { rt: otherRt } = await seeded(client, store, 'u2');
      store.failSaves = 2; // the rotated record's save, and saveUnsaved()'s first try
      store.failOnly = (record) => record.refresh_token !== oldRt && record.refresh_token !== otherRt;
      await rejection(session.accessToken(), StorageError);
      session.free(); // no handle of u1 is left: the client itself holds the record

      const err = await rejection(client.saveUnsaved(), StorageError);
      assert.match(err.message, /1 session record\(s\) held only in this process could not be saved; the last: .*disk full/);
      assert.ok(!err.message.includes(oldRt), 'no token in the message');
      same(store.record('u1').refresh_token, oldRt, 'still refused: the record is kept in memory');

      const saves = store.saves;
      await client.saveUnsaved();
      assert.equal(store.saves, saves + 1, 'only the unsaved record is written');
      const saved = store.record('u1').refresh_token;
      differ(saved, oldRt, 'the rotated refresh token is stored');
      assert.equal(await emu.refreshTokenState(saved), 'active');
      same(store.record('u2').refresh_token, otherRt, 'the other session is untouched');
      client.free();

      // A new client (a restart) serves the saved rotation without a refresh.
      const { options } = setup();
      await new TokenClient(options).session('u1', store).accessToken();
      assert.equal(await emu.refreshRequests(), 1, 'no refresh token was sent twice');
      assert.equal((await emu.counters()).reuse_detected, 0);
      await assert.rejects(client.saveUnsaved(), ConfigError, 'a freed client refuses');
    });

    test('a rejected save is a StorageError, loses nothing, and is retried before anything else', async () => {
      const { client, store } = setup();
      const { session, rt: oldRt } = await seeded(client, store);
      store.failSaves = 2; // the rotated record's save, and status()'s retry of it
      store.failOnly = (record) => record.refresh_token !== oldRt;

      const err = await rejection(session.accessToken(), StorageError);
      assert.equal(err.code, 'storage');
      assert.match(err.message, /disk full/);
      assert.equal(await emu.refreshRequests(), 1);
      assert.equal((await emu.counters()).rotations, 1, 'the emulator rotated once');
      same(store.record('u1').refresh_token, oldRt, 'the store still holds the old record');
      assert.equal((await session.status()).unpersisted, true);
      same(store.record('u1').refresh_token, oldRt, 'status() tried to save, and failed');

      // The store works again: status() saves the renewed record first, as every call does.
      assert.equal((await session.status()).unpersisted, false);
      differ(store.record('u1').refresh_token, oldRt, 'status() saved the rotated refresh token');

      const token = await session.accessToken();
      assert.equal(await emu.refreshRequests(), 1, 'the consumed refresh token is not sent again');
      const stored = store.record('u1');
      same(stored.access_token, token, 'the kept record was saved');
      differ(stored.refresh_token, oldRt, 'the kept record holds the rotated refresh token');
      assert.equal(await emu.refreshTokenState(stored.refresh_token), 'active');
      assert.equal(await emu.refreshTokenState(oldRt), 'consumed');
      assert.equal((await emu.counters()).reuse_detected, 0);
      assert.equal((await session.status()).unpersisted, false);
    });

    test('a store that keeps failing keeps failing with storage and never resends, refresh() included', async () => {
      const { client, store } = setup();
      const { session, rt } = await seeded(client, store);
      // The rotated record's saves fail (whatever was written before sending worked).
      store.failSaves = Infinity;
      store.failOnly = (record) => record.refresh_token !== rt;
      for (let i = 0; i < 3; i += 1) {
        assert.equal((await rejection(session.accessToken(), StorageError)).code, 'storage');
      }
      assert.equal((await rejection(session.refresh(), StorageError)).code, 'storage');
      assert.equal((await rejection(session.tokens(), StorageError)).code, 'storage');
      assert.equal(await emu.refreshRequests(), 1);

      store.failSaves = 0;
      const token = await session.accessToken();
      same(store.record('u1').access_token, token, 'saved once the store heals');
      assert.equal(await emu.refreshRequests(), 1);
      assert.equal((await emu.counters()).reuse_detected, 0);
    });

    test('a rejected load is a StorageError and sends nothing', async () => {
      const { client, store, options } = setup();
      await seeded(client, store);
      // A second client (another process) has never read the store.
      const session = new TokenClient(options).session('u1', store);
      store.failLoads = 1;
      const err = await rejection(session.accessToken(), StorageError);
      assert.equal(err.code, 'storage');
      assert.match(err.message, /database unavailable/);
      assert.equal(await emu.refreshRequests(), 0);

      await session.accessToken();
      assert.equal(await emu.refreshRequests(), 1);
    });

    test('an unreadable stored record is a StorageError that does not quote it, and sends nothing', async () => {
      const { client, store } = setup();
      await store.inner.save('garbled', 'not json rt-SENTINEL');
      await store.inner.save('future', '{"schema":"freshtoken.record/99","refresh_token":"rt-SENTINEL"}');
      for (const key of ['garbled', 'future']) {
        const err = await rejection(client.session(key, store).accessToken(), StorageError);
        assert.match(err.message, /stored record/);
        assert.ok(!err.message.includes('SENTINEL'), 'the record is not quoted');
        assert.equal((await rejection(client.session(key, store).status(), StorageError)).code, 'storage');
      }
      assert.equal((await emu.counters()).token_requests, 0);
    });
  });

  describe('refresh tokens the server will not take', () => {
    test('a session with no record is no_refresh_token, with no request', async () => {
      const { client, store } = setup();
      const session = client.session('nobody', store);
      const err = await rejection(session.accessToken(), ReauthorizationRequiredError);
      assert.equal(err.reason, 'no_refresh_token');
      assert.equal((await rejection(session.refresh(), ReauthorizationRequiredError)).reason, 'no_refresh_token');
      assert.equal((await session.status()).hasRecord, false);
      assert.equal((await emu.counters()).token_requests, 0);
    });

    test('invalid_grant requires reauthorization and is remembered by this and other clients', async () => {
      const { client, store, options } = setup();
      const session = client.session('u1', store);
      await session.seed({ refreshToken: 'rt-that-the-server-never-issued' });

      const err = await rejection(session.accessToken(), ReauthorizationRequiredError);
      assert.equal(err.code, 'reauthorization_required');
      assert.equal(err.reason, 'invalid_grant');
      assert.equal(err.oauthError, 'invalid_grant');
      assert.equal(await emu.refreshRequests(), 1);

      assert.equal((await rejection(session.accessToken(), ReauthorizationRequiredError)).reason, 'invalid_grant');
      assert.equal((await rejection(session.refresh(), ReauthorizationRequiredError)).reason, 'invalid_grant');
      assert.equal(store.record('u1').reauth, 'invalid_grant', 'the reason is stored');
      const elsewhere = new TokenClient(options).session('u1', store);
      assert.equal((await rejection(elsewhere.accessToken(), ReauthorizationRequiredError)).reason, 'invalid_grant');
      assert.equal((await elsewhere.status()).reauthorizationReason, 'invalid_grant');
      assert.equal(await emu.refreshRequests(), 1, 'a dead refresh token is never sent again');

      // Only a new seed revives the session.
      const family = await emu.seed();
      await session.seed({ refreshToken: family.refresh_token });
      await session.accessToken();
      assert.equal(await emu.refreshRequests(), 2);
      assert.equal((await session.status()).reauthorizationReason, undefined);
    });

    test('a connection dropped after the server rotated is a NetworkError, then lost_rotation', async () => {
      const { client, store } = setup();
      const { session, rt } = await seeded(client, store);
      await emu.fault({ kind: 'drop_after_commit' });

      const err = await rejection(session.accessToken(), NetworkError);
      assert.equal(err.code, 'network');
      assert.equal(await emu.refreshTokenState(rt), 'consumed', 'the server rotated');
      assert.equal(await emu.refreshRequests(), 1, 'a possibly-sent request is not retried');
      assert.equal((await session.status()).inDoubt, true);
      assert.equal(store.record('u1').in_doubt, true, 'the doubt is persisted');

      const lost = await rejection(session.accessToken(), ReauthorizationRequiredError);
      assert.equal(lost.reason, 'lost_rotation');
      assert.equal(await emu.refreshRequests(), 2);
      assert.equal(store.record('u1').reauth, 'lost_rotation');
      assert.equal((await session.status()).reauthorizationReason, 'lost_rotation');
    });

    test('a refresh token past its sliding lifetime is refresh_expired with no request', async () => {
      const { client, store, time } = setup();
      const { session } = await seeded(client, store);
      await session.accessToken();
      const { refreshExpiresAt } = await session.tokens();
      time.set(refreshExpiresAt);

      const err = await rejection(session.accessToken(), ReauthorizationRequiredError);
      assert.equal(err.reason, 'refresh_expired');
      assert.equal(await emu.refreshRequests(), 1, 'no request for a lapsed refresh token');
      // Judged on this process's clock, so not stored as dead: a clock
      // corrected later (or another process's) still uses the token.
      assert.equal(store.record('u1').reauth ?? null, null);
    });

    test('the sliding lifetime restarts at every refresh', async () => {
      const { client, store, time } = setup();
      const { session } = await seeded(client, store);
      const year = 365 * 24 * 3600 * 1000;
      for (let i = 0; i < 3; i += 1) {
        const sentAt = time.now();
        const info = await session.refresh();
        assert.equal(info.refreshExpiresAt, sentAt + year);
        time.advance(year - 1);
      }
      assert.equal(await emu.refreshRequests(), 3);
    });

    test('a wrong client secret is InvalidClientError and does not kill the session', async () => {
      const { client, store } = setup({ clientSecret: 'wrong-secret' });
      const { session, rt } = await seeded(client, store);
      const err = await rejection(session.accessToken(), InvalidClientError);
      assert.equal(err.code, 'invalid_client');
      assert.equal(err.status, 401);
      assert.equal(store.record('u1').reauth, undefined, 'a client problem does not kill the user session');
      assert.equal(await emu.refreshTokenState(rt), 'active');
    });
  });

  describe('retries', () => {
    test('a 503 is retried once after a recorded backoff', async () => {
      const { client, store, time } = setup();
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'status', status: 503 });
      await session.accessToken();
      assert.equal(await emu.refreshRequests(), 2);
      assert.equal(time.sleeps.length, 1);
      assert.ok(time.sleeps[0] >= 125 && time.sleeps[0] <= 250, `backoff ${time.sleeps[0]} ms`);
    });

    test('a 429 with Retry-After: 2 waits exactly 2000 ms', async () => {
      const { client, store, time } = setup();
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'rate_limit', retry_after: '2' });
      await session.accessToken();
      assert.equal(await emu.refreshRequests(), 2);
      assert.deepEqual(time.sleeps, [2000]);
    });

    test('a 429 with an HTTP-date Retry-After waits until that date on the client clock', async () => {
      const { client, store, time } = setup();
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'rate_limit', retry_after: new Date(time.now() + 7000).toUTCString() });
      await session.accessToken();
      assert.equal(await emu.refreshRequests(), 2);
      assert.deepEqual(time.sleeps, [7000]);
    });

    test('a Retry-After of none of the HTTP-date forms is ignored, as natively: the normal backoff runs', async () => {
      // Date.parse alone reads these (about 70 years ahead, or 0): the native build's httpdate does not.
      // Nor a date that does not exist, or falls on another weekday than it names (httpdate checks both).
      for (const retryAfter of [
        '2099-01-01', 'Dec 2099', '1.5', '-5', 'Sun, 06 Nov 2099 08:49:37',
        'Mon, 01 Jan 2030 00:00:00 GMT', 'Tue, 31 Feb 2030 00:00:00 GMT', 'Tue, 01 Jan 2030 24:00:00 GMT',
      ]) {
        await emu.reset();
        const { client, store, time } = setup();
        const { session } = await seeded(client, store);
        await emu.fault({ kind: 'rate_limit', retry_after: retryAfter });
        await session.accessToken();
        assert.equal(await emu.refreshRequests(), 2, retryAfter);
        assert.equal(time.sleeps.length, 1, retryAfter);
        assert.ok(time.sleeps[0] >= 125 && time.sleeps[0] <= 250, `${retryAfter}: backoff ${time.sleeps[0]} ms`);
      }
      // Each of RFC 9110's three forms is read.
      for (const form of [
        (d) => d.toUTCString(),
        (d) => d.toUTCString().replace(/^(\w+), (\d\d) (\w+) \d\d(\d\d)/, (_, w, day, m, yy) => `${FULL_DAYS[w]}, ${day}-${m}-${yy}`),
        (d) => d.toUTCString().replace(/^(\w+), (\d\d) (\w+) (\d{4}) (\S+) GMT$/, (_, w, day, m, y, t) => `${w} ${m} ${day.replace(/^0/, ' ')} ${t} ${y}`),
      ]) {
        await emu.reset();
        const { client, store, time } = setup();
        const { session } = await seeded(client, store);
        // rfc850's two-digit year reads as 19xx or 20xx: a date of 2026 + 7 s is in the 2000s either way.
        const date = form(new Date(Math.ceil(time.now() / 1000) * 1000 + 7000));
        await emu.fault({ kind: 'rate_limit', retry_after: date });
        await session.accessToken();
        assert.equal(await emu.refreshRequests(), 2, date);
        assert.equal(time.sleeps.length, 1, date);
        assert.ok(time.sleeps[0] > 6000 && time.sleeps[0] <= 7000, `${date}: waited ${time.sleeps[0]} ms`);
      }
    });

    test('a Retry-After beyond the budget gives up at once with TransientError, and is kept (at most 10 min)', async () => {
      const { client, store, time } = setup();
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'rate_limit', retry_after: '3600' });
      const err = await rejection(session.accessToken(), TransientError);
      assert.equal(err.code, 'transient');
      assert.equal(err.status, 429);
      assert.equal(err.retryAfterMs, 3_600_000);
      assert.equal(await emu.refreshRequests(), 1);
      assert.deepEqual(time.sleeps, []);
      // A call meanwhile sends nothing: it fails as that one did, with the wait left.
      time.advance(1_000);
      const again = await rejection(session.accessToken(), TransientError);
      assert.equal(again.status, 429);
      assert.equal(again.retryAfterMs, 599_000);
      assert.equal(await emu.refreshRequests(), 1);
      time.advance(599_000);
      await session.accessToken();
      assert.equal(await emu.refreshRequests(), 2, 'once it passed, the next call starts a new attempt');
    });

    test('persistent 5xx stops after maxAttempts with TransientError', async () => {
      const { client, store, time } = setup();
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'status', status: 502, count: 10 });
      const err = await rejection(session.accessToken(), TransientError);
      assert.equal(err.status, 502);
      assert.equal(await emu.refreshRequests(), 4);
      assert.equal(time.sleeps.length, 3);
      // Capped exponential backoff with equal jitter: [125,250], [250,500], [500,1000].
      time.sleeps.forEach((ms, i) => {
        const cap = 250 * 2 ** i;
        assert.ok(ms >= cap / 2 && ms <= cap, `sleep ${i + 1}: ${ms} ms`);
      });
      await emu.clearFaults();
    });

    test('no retry starts beyond budgetMs (fake time), however many attempts are allowed', async () => {
      const { client, store, time } = setup({ retry: { maxAttempts: 20, initialBackoffMs: 1000, maxBackoffMs: 1000, budgetMs: 3500 } });
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'status', status: 503, count: 20 });
      const err = await rejection(session.accessToken(), TransientError);
      assert.equal(err.status, 503);
      const total = time.sleeps.reduce((a, b) => a + b, 0);
      assert.ok(total <= 3500, `slept ${total} ms within a 3500 ms budget`);
      assert.ok(time.sleeps.length >= 3, `backoffs of 500..1000 ms: at least 3 fit (${time.sleeps.length})`);
      assert.equal(await emu.refreshRequests(), time.sleeps.length + 1);
      await emu.clearFaults();
    });

    test('a 400 invalid_request is an OAuthError and is not retried', async () => {
      const { client, store, time } = setup();
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'body', status: 400, body: '{"error":"invalid_request","error_description":"bad"}' });
      const err = await rejection(session.accessToken(), OAuthError);
      assert.equal(err.code, 'oauth');
      assert.equal(err.oauthError, 'invalid_request');
      assert.equal(err.description, 'bad');
      assert.equal(err.status, 400);
      assert.equal(await emu.refreshRequests(), 1);
      assert.deepEqual(time.sleeps, []);
    });

    test('a 401 invalid_client is an InvalidClientError and is not retried', async () => {
      const { client, store, time } = setup();
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'body', status: 401, body: '{"error":"invalid_client"}' });
      const err = await rejection(session.accessToken(), InvalidClientError);
      assert.equal(err.code, 'invalid_client');
      assert.equal(err.status, 401);
      assert.equal(await emu.refreshRequests(), 1);
      assert.deepEqual(time.sleeps, []);
    });

    test('20 concurrent callers share one failed attempt, and the next call starts afresh', async () => {
      const { client, store } = setup();
      const { session } = await seeded(client, store);
      // Held until every caller has asked, then answered with the error.
      await emu.fault([{ kind: 'hold' }, { kind: 'body', status: 400, body: '{"error":"invalid_scope"}' }]);
      const pending = Promise.allSettled(Array.from({ length: 20 }, () => session.accessToken()));
      assert.equal(await emu.waitHeld(1), 1);
      assert.equal(await emu.releaseHeld(), 1);
      const results = await pending;
      assert.equal(results.length, 20);
      assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof OAuthError
        && r.reason.oauthError === 'invalid_scope'));
      assert.equal(await emu.refreshRequests(), 1, 'all callers got the one result');
      await session.accessToken();
      assert.equal(await emu.refreshRequests(), 2);
    });
  });

  describe('transport and answers', () => {
    test('a timeout is a TimeoutError and leaves the token in doubt', async () => {
      // 1 s: for the request to reach the emulator, which holds it past the timeout.
      const { client, store } = setup({ timeoutMs: 1_000 });
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'hold' });
      const timedOut = rejection(session.accessToken(), TimeoutError);
      await emu.waitHeld(1);
      const err = await timedOut;
      assert.equal(err.code, 'timeout');
      assert.equal(await emu.refreshRequests(), 1, 'a request that may have been processed is not retried');
      assert.equal((await session.status()).inDoubt, true);
      assert.equal(await emu.releaseHeld(), 1);
    });

    test('a refused connection is retried, then reported as NetworkError, not in doubt', async () => {
      const port = await closedPort();
      const time = fakeTime();
      const client = new TokenClient({
        tokenEndpoint: `http://127.0.0.1:${port}/connect/token`,
        clientId: CLIENT_ID,
        clientSecret: 's',
        retry: { maxAttempts: 3 },
        now: time.now,
        sleep: time.sleep,
      });
      const session = client.session('u1', new MemoryStore());
      await session.seed({ refreshToken: 'rt' });
      const err = await rejection(session.accessToken(), NetworkError);
      assert.equal(err.code, 'network');
      assert.equal(time.sleeps.length, 2, 'retried twice');
      assert.equal((await session.status()).inDoubt, false, 'it never left: no doubt');
    });

    test('malformed JSON is an InvalidResponseError; the token is in doubt until the next success', async () => {
      const { client, store } = setup();
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'malformed_json' });
      const err = await rejection(session.accessToken(), InvalidResponseError);
      assert.equal(err.code, 'invalid_response');
      assert.equal(err.status, 200);
      assert.equal((await session.status()).inDoubt, true);
      // The emulator did not process it, so the refresh token still works.
      await session.accessToken();
      assert.equal((await session.status()).inDoubt, false);
      assert.equal(await emu.refreshRequests(), 2);
    });

    test('an oversize body is an InvalidResponseError naming the cap', async () => {
      const { client, store } = setup();
      const { session } = await seeded(client, store);
      await emu.fault({ kind: 'oversize', bytes: 100_000 });
      const err = await rejection(session.accessToken(), InvalidResponseError);
      assert.equal(err.code, 'invalid_response');
      assert.match(err.message, /65536/);
      assert.equal(await emu.refreshRequests(), 1);
    });
  });
});

describe('secrets never appear in errors', () => {
  const SECRET = 'secret-SENTINEL-a b+c/=&%:0123';
  const RT = 'rt-SENTINEL-a b+c/=&%-0123456789';
  let emu;
  before(async () => {
    emu = await startEmulator({ extraArgs: ['--client', `sentinel-client:${SECRET}`] });
  });
  after(async () => { await emu?.stop(); });

  function assertClean(err, what) {
    assert.ok(err instanceof FreshTokenError, `${what}: a FreshTokenError (${err?.name})`);
    const shown = [err.message, err.stack, String(err), JSON.stringify(err), inspect(err, { depth: 5 })];
    for (const text of shown) {
      assert.equal(typeof text, 'string');
      // Never assert.equal on the text itself: a failure would print it.
      assert.ok(!text.includes('SENTINEL'), `${what} (${err.code}): an error text holds a secret`);
    }
    return err;
  }

  async function errorOf(promise, what) {
    try {
      await promise;
    } catch (err) {
      return assertClean(err, what);
    }
    return assert.fail(`${what}: expected a rejection`);
  }

  function client(extra = {}) {
    const time = fakeTime();
    return new TokenClient({
      tokenEndpoint: emu.tokenEndpoint,
      clientId: 'sentinel-client',
      clientSecret: SECRET,
      now: time.now,
      sleep: time.sleep,
      ...extra,
    });
  }

  async function failingRefresh(fault, extra = {}) {
    await emu.clearFaults();
    if (fault) await emu.fault(fault);
    const session = client(extra).session('u', new MemoryStore());
    await session.seed({ refreshToken: RT });
    return session.accessToken();
  }

  test('in every kind of error a refresh can end with', async () => {
    const echo = `refresh_token ${RT} for client secret ${SECRET}`;
    const cases = [
      ['invalid_grant', null, ReauthorizationRequiredError],
      ['invalid_grant echoing both', { kind: 'body', status: 400, body: JSON.stringify({ error: 'invalid_grant', error_description: echo }) }, ReauthorizationRequiredError],
      ['invalid_request echoing both', { kind: 'body', status: 400, body: JSON.stringify({ error: 'invalid_request', error_description: echo }) }, OAuthError],
      ['invalid_client echoing both', { kind: 'body', status: 401, body: JSON.stringify({ error: 'invalid_client', error_description: echo }) }, InvalidClientError],
      ['429 beyond the budget', { kind: 'rate_limit', retry_after: '3600' }, TransientError],
      ['persistent 503', { kind: 'status', status: 503, count: 4 }, TransientError],
      ['html 502', { kind: 'html', status: 502, count: 4 }, TransientError],
      ['malformed JSON', { kind: 'malformed_json' }, InvalidResponseError],
      ['oversize', { kind: 'oversize', bytes: 100_000 }, InvalidResponseError],
      ['success body without access_token', { kind: 'body', status: 200, body: JSON.stringify({ token_type: 'Bearer', note: echo }) }, InvalidResponseError],
      ['dropped before an answer', { kind: 'drop_before' }, NetworkError],
      ['dropped after commit', { kind: 'drop_after_commit' }, NetworkError],
    ];
    for (const [what, fault, Class] of cases) {
      const err = await errorOf(failingRefresh(fault), what);
      assert.ok(err instanceof Class, `${what}: expected ${Class.name}, got ${err.name}`);
    }
    const timeout = await errorOf(failingRefresh({ kind: 'delay', ms: 2000 }, { timeoutMs: 100 }), 'timeout');
    assert.ok(timeout instanceof TimeoutError);
  });

  test('with a wrong secret, a failing store, refreshTokens(), the code exchange and bad options', async () => {
    await emu.clearFaults();
    const wrong = client({ clientSecret: `wrong-${SECRET}` }).session('w', new MemoryStore());
    await wrong.seed({ refreshToken: RT });
    assert.equal((await errorOf(wrong.accessToken(), 'wrong secret')).code, 'invalid_client');

    const failing = { load: async () => null, save: async () => { throw new Error('disk full'); } };
    const err = await errorOf(client().session('s', failing).seed({ refreshToken: RT }), 'failing store');
    assert.ok(err instanceof StorageError);

    // The sentinel client itself works (so the errors above are about the tokens, not the setup).
    const family = await emu.seed({ clientId: 'sentinel-client' });
    const good = client().session('ok', new MemoryStore());
    await good.seed({ refreshToken: family.refresh_token });
    assert.equal(typeof (await good.accessToken()), 'string');

    const dead = await errorOf(refreshTokens({
      tokenEndpoint: emu.tokenEndpoint, clientId: 'sentinel-client', clientSecret: SECRET, refreshToken: RT,
    }), 'refreshTokens');
    assert.ok(dead instanceof ReauthorizationRequiredError);

    const exchange = await errorOf(client().exchangeCode(
      { code: `code-${RT}`, codeVerifier: `verifier-SENTINEL-${'x'.repeat(40)}`, redirectUri: 'https://app.example/cb' },
      'c',
      new MemoryStore(),
    ), 'exchangeCode');
    assert.ok(exchange instanceof OAuthError);

    const config = [
      () => new TokenClient({ tokenEndpoint: 'http://user:pw-SENTINEL@bank.example/token', clientId: 'c', clientSecret: SECRET }),
      () => new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'c', clientSecret: SECRET, clientAuth: 'SENTINEL' }),
      () => new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'c', clientSecret: SECRET, timeoutMs: -1 }),
    ];
    for (const [i, make] of config.entries()) {
      let thrown;
      try { make(); } catch (e) { thrown = e; }
      assert.ok(thrown instanceof ConfigError, `bad option ${i}`);
      assertClean(thrown, `bad option ${i}`);
    }
  });

  // DESIGN point 10 says tokens and secrets never appear in error messages.
  // The core scrubs the raw values from a server's error_description, but not
  // their form- or percent-encoded forms, which is how a server that echoes
  // the request (body or query) shows them.
  test('a server echoing the form-encoded request in error_description', async () => {
    const form = new URLSearchParams({ refresh_token: RT, client_secret: SECRET }).toString();
    for (const description of [`cannot parse ${form}`, `bad token ${encodeURIComponent(RT)}`]) {
      const fault = { kind: 'body', status: 400, body: JSON.stringify({ error: 'invalid_request', error_description: description }) };
      const err = await errorOf(failingRefresh(fault), 'encoded echo');
      assert.ok(err instanceof OAuthError);
    }
  });
});
