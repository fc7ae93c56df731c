// The failure scenarios of failures.emulator.test.mjs, against a real,
// independent server: npm oidc-provider 9.x with refresh-token rotation ON,
// where presenting a consumed refresh token again answers invalid_grant AND
// revokes the whole grant. Faults oidc-provider cannot produce itself (a 503,
// a 429, a connection dropped after the server rotated, a slow answer, a
// canned body) come from support/fault-proxy.mjs in front of it: the client's
// token endpoint is the proxy's `/token`.
//
// Every test asserts the typed error, the requests that reached the proxy and
// the server (`tokenRequests()`), and what became of the grant (`grantAlive`).
// The client's clock and sleep are fake; oidc-provider keeps real time. The
// only real waits are the client's own 200 ms timeout and the proxy's delay
// fault, which tests await through `proxy.settled()`, never by sleeping.
// Tokens and secrets are never printed.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';

import { createServer } from 'node:net';

import {
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
} from 'freshtoken';
import { startFaultProxy } from '../support/fault-proxy.mjs';
import { startOidcProvider } from '../support/oidc-provider.mjs';
import { fakeTime } from '../support/fake-time.mjs';

/** A MemoryStore with the stored record readable as an object, whose next loads/saves fail on command. */
class RecordStore extends MemoryStore {
  failSaves = 0;
  /** (record object) => whether a save of it may fail; null: any save. */
  failOnly = null;
  failLoads = 0;

  async load(key) {
    if (this.failLoads > 0) {
      this.failLoads -= 1;
      throw new Error('database unavailable');
    }
    return super.load(key);
  }

  async save(key, record) {
    if (this.failSaves > 0 && (this.failOnly === null || this.failOnly(JSON.parse(record)))) {
      this.failSaves -= 1;
      throw new Error('disk full');
    }
    return super.save(key, record);
  }

  record(key) {
    const text = this.get(key);
    return text === null ? null : JSON.parse(text);
  }

  refreshToken(key) { return this.record(key)?.refresh_token; }
}

const same = (a, b, message) => assert.ok(typeof a === 'string' && a === b, message);
const differ = (a, b, message) => assert.ok(typeof a === 'string' && typeof b === 'string' && a !== b, message);

/** `promise` rejects with an instance of `Class`; resolves with the error. */
async function rejection(promise, Class) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof Class, `expected ${Class.name}, got ${err?.name} (${err?.code})`);
    assert.ok(err instanceof FreshTokenError);
    return err;
  }
  return assert.fail(`expected a ${Class.name} rejection, but it resolved`);
}

/** A loopback port nothing listens on. */
async function closedPort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('session failures against oidc-provider (through the fault proxy)', () => {
  let op;
  let proxy;
  before(async () => { op = await startOidcProvider(); });
  after(async () => { await op?.close(); });
  beforeEach(async () => { proxy = await startFaultProxy(op.issuer); });
  afterEach(async () => {
    const pending = proxy.pendingFaults();
    await proxy.close();
    assert.equal(pending, 0, 'every queued fault was used');
  });

  const tokenPath = () => new URL(op.tokenEndpoint).pathname; // '/token'
  const proxied = () => proxy.requests()[tokenPath()] ?? 0;
  const refreshesAtServer = () => op.tokenRequestsByGrant().refresh_token ?? 0;

  /** Whether oidc-provider has marked `rt` consumed (it rotated it), without sending it. */
  async function consumed(rt) {
    const found = await op.provider.RefreshToken.find(rt, { ignoreExpiration: true });
    return Boolean(found?.consumed);
  }

  function setup(extra = {}, kind = 'confidential') {
    const time = fakeTime();
    const creds = op.clients[kind];
    const options = {
      tokenEndpoint: proxy.url(tokenPath()),
      clientId: creds.clientId,
      ...(creds.clientSecret ? { clientSecret: creds.clientSecret } : {}),
      now: time.now,
      sleep: time.sleep,
      ...extra,
    };
    return { time, options, client: new TokenClient(options), store: new RecordStore() };
  }

  /**
   * A session seeded with a scripted login's refresh token only (so its first
   * accessToken() refreshes), plus counters taken after the login.
   */
  async function seeded(extra = {}, kind = 'confidential') {
    const ctx = setup(extra, kind);
    const tokens = await op.obtainTokens({ client: kind });
    assert.equal(typeof tokens.refresh_token, 'string', 'the login issued a refresh token');
    const session = ctx.client.session('u1', ctx.store);
    await session.seed({ refreshToken: tokens.refresh_token });
    return {
      ...ctx, session, tokens, rt: tokens.refresh_token, server0: op.tokenRequests(), refresh0: refreshesAtServer(),
    };
  }

  test('the proxy alone is transparent: a refresh through it rotates and keeps the grant alive', async () => {
    const { session, store, rt, server0 } = await seeded();
    const token = await session.accessToken();
    assert.equal(typeof token, 'string');
    assert.equal(proxied(), 1);
    assert.equal(op.tokenRequests(), server0 + 1);
    assert.deepEqual(proxy.log().map(({ path, fault, upstreamStatus }) => [path, fault, upstreamStatus]), [[tokenPath(), null, 200]]);
    differ(store.refreshToken('u1'), rt, 'rotated and stored');
    assert.equal(await consumed(rt), true);
    assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    assert.equal((await session.status()).inDoubt, false);
  });

  describe('stores', () => {
    test('a store that keeps failing keeps failing with storage and never resends the consumed token; the grant lives', async () => {
      const { session, store, rt, server0 } = await seeded();
      // The rotated record's saves fail (whatever was written before sending worked).
      store.failSaves = Infinity;
      store.failOnly = (record) => record.refresh_token !== rt;
      for (let i = 0; i < 3; i += 1) {
        const err = await rejection(session.accessToken(), StorageError);
        assert.equal(err.code, 'storage');
        assert.match(err.message, /disk full/);
      }
      assert.equal((await rejection(session.refresh(), StorageError)).code, 'storage');
      assert.equal((await rejection(session.tokens(), StorageError)).code, 'storage');
      assert.equal(op.tokenRequests(), server0 + 1, 'one refresh, never resent');
      assert.equal(await consumed(rt), true, 'oidc-provider rotated once');
      assert.equal((await session.status()).unpersisted, true);
      same(store.refreshToken('u1'), rt, 'the store still holds the consumed token');

      store.failSaves = 0;
      const token = await session.accessToken();
      same(store.record('u1').access_token, token, 'saved once the store heals');
      differ(store.refreshToken('u1'), rt, 'with the rotated refresh token');
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true, 'no reuse reached oidc-provider');
    });

    test('a rejected load is a StorageError and sends nothing', async () => {
      const { session, store, options, server0, rt } = await seeded();
      // A second client (another process) has never read the store.
      const other = new TokenClient(options).session('u1', store);
      store.failLoads = 1;
      const err = await rejection(other.accessToken(), StorageError);
      assert.match(err.message, /database unavailable/);
      assert.equal(proxied(), 0);
      assert.equal(op.tokenRequests(), server0);
      await other.accessToken();
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.equal(await consumed(rt), true);
      // The first client re-reads the rotated record before refreshing.
      await session.accessToken();
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    });
  });

  describe('refresh tokens the server will not take', () => {
    test('a session with no record is no_refresh_token, with no request', async () => {
      const { client, store } = setup();
      const server0 = op.tokenRequests();
      const session = client.session('nobody', store);
      assert.equal((await rejection(session.accessToken(), ReauthorizationRequiredError)).reason, 'no_refresh_token');
      assert.equal((await rejection(session.refresh(), ReauthorizationRequiredError)).reason, 'no_refresh_token');
      assert.equal((await session.status()).hasRecord, false);
      assert.equal(proxied(), 0);
      assert.equal(op.tokenRequests(), server0);
    });

    test('oidc-provider\'s invalid_grant is remembered by this and other clients; only a new seed revives the session', async () => {
      const { client, store, options } = setup();
      const session = client.session('u1', store);
      await session.seed({ refreshToken: 'not-a-refresh-token-oidc-provider-issued' });
      const server0 = op.tokenRequests();

      const err = await rejection(session.accessToken(), ReauthorizationRequiredError);
      assert.equal(err.code, 'reauthorization_required');
      assert.equal(err.reason, 'invalid_grant');
      assert.equal(err.oauthError, 'invalid_grant');
      assert.equal(op.tokenRequests(), server0 + 1);

      assert.equal((await rejection(session.accessToken(), ReauthorizationRequiredError)).reason, 'invalid_grant');
      assert.equal((await rejection(session.refresh(), ReauthorizationRequiredError)).reason, 'invalid_grant');
      assert.equal(store.record('u1').reauth, 'invalid_grant', 'the reason is stored');
      const elsewhere = new TokenClient(options).session('u1', store);
      assert.equal((await rejection(elsewhere.accessToken(), ReauthorizationRequiredError)).reason, 'invalid_grant');
      assert.equal(op.tokenRequests(), server0 + 1, 'a dead refresh token is never sent again');
      assert.equal(proxied(), 1);

      const tokens = await op.obtainTokens();
      await session.seed({ refreshToken: tokens.refresh_token });
      await session.accessToken();
      assert.equal(op.tokenRequests(), server0 + 2 + 1, 'the login\'s code exchange, then one refresh');
      assert.equal((await session.status()).reauthorizationReason, undefined);
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    });

    // The real-world cost behind reason `lost_rotation`: with reuse detection,
    // the retry that discovers the lost answer also makes the server revoke
    // the grant, so the user must log in again.
    test('a connection dropped after oidc-provider rotated: NetworkError, in doubt, then lost_rotation and a dead grant', async () => {
      const { session, store, rt, server0 } = await seeded();
      proxy.fault({ kind: 'drop_after_forward', path: tokenPath() });

      const err = await rejection(session.accessToken(), NetworkError);
      assert.equal(err.code, 'network');
      assert.equal(proxied(), 1, 'a possibly-processed request is not retried');
      assert.equal(op.tokenRequests(), server0 + 1, 'the request reached oidc-provider');
      assert.equal(proxy.log()[0].upstreamStatus, 200, 'oidc-provider answered with new tokens, which were lost');
      assert.equal(await consumed(rt), true, 'oidc-provider rotated the refresh token');
      assert.equal(await op.grantAlive(rt), true, 'the grant is still alive at this point');
      const status = await session.status();
      assert.equal(status.inDoubt, true);
      assert.equal(status.reauthorizationReason, undefined);
      assert.equal(store.record('u1').in_doubt, true, 'the doubt is persisted');
      same(store.refreshToken('u1'), rt, 'the store still holds the (now consumed) refresh token');

      const lost = await rejection(session.accessToken(), ReauthorizationRequiredError);
      assert.equal(lost.code, 'reauthorization_required');
      assert.equal(lost.reason, 'lost_rotation');
      assert.equal(lost.oauthError, 'invalid_grant');
      assert.equal(proxied(), 2);
      assert.equal(op.tokenRequests(), server0 + 2, 'the in-doubt refresh token was sent once more');
      assert.equal(store.record('u1').reauth, 'lost_rotation');
      assert.equal((await session.status()).reauthorizationReason, 'lost_rotation');
      assert.equal(await op.grantAlive(rt), false, 'oidc-provider saw a consumed token reused and revoked the grant');

      // Dead is remembered: nothing more is sent.
      assert.equal((await rejection(session.refresh(), ReauthorizationRequiredError)).reason, 'lost_rotation');
      assert.equal(proxied(), 2);
    });

    test('a connection dropped before forwarding: NetworkError, in doubt, then the same token works and the grant lives', async () => {
      const { session, store, rt, server0 } = await seeded();
      proxy.fault({ kind: 'drop_before', path: tokenPath() });

      const err = await rejection(session.accessToken(), NetworkError);
      assert.equal(err.code, 'network');
      assert.equal(proxied(), 1, 'not retried: the client cannot tell the request never reached the server');
      assert.equal(op.tokenRequests(), server0, 'oidc-provider never saw it');
      assert.equal((await session.status()).inDoubt, true);
      assert.equal(await consumed(rt), false);

      await session.accessToken();
      assert.equal(proxied(), 2);
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.equal((await session.status()).inDoubt, false, 'a success ends the doubt');
      differ(store.refreshToken('u1'), rt, 'rotated');
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    });

    test('a refresh token past its sliding lifetime is refresh_expired with no request to the proxy or the server', async () => {
      const { session, store, time } = await seeded();
      await session.accessToken();
      const { refreshExpiresAt } = await session.tokens();
      assert.equal(typeof refreshExpiresAt, 'number');
      const live = store.refreshToken('u1');
      const proxied0 = proxied();
      const server1 = op.tokenRequests();
      time.set(refreshExpiresAt);

      const err = await rejection(session.accessToken(), ReauthorizationRequiredError);
      assert.equal(err.reason, 'refresh_expired');
      assert.equal(proxied(), proxied0, 'nothing reached the proxy');
      assert.equal(op.tokenRequests(), server1, 'nothing reached oidc-provider');
      assert.equal(store.record('u1').reauth ?? null, null, 'judged on this clock: not stored as dead');
      assert.equal((await session.status()).reauthorizationReason, 'refresh_expired');
      assert.equal(await op.grantAlive(live), true, 'the server-side grant is untouched (its clock is real)');
    });

    test('the sliding lifetime restarts at every refresh (oidc-provider rotates each time)', async () => {
      const { session, time, store, server0 } = await seeded();
      const year = 365 * 24 * 3600 * 1000;
      for (let i = 0; i < 3; i += 1) {
        const sentAt = time.now();
        const info = await session.refresh();
        assert.equal(info.refreshExpiresAt, sentAt + year);
        time.advance(year - 1);
      }
      assert.equal(op.tokenRequests(), server0 + 3);
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    });

    test('oidc-provider\'s own invalid_client (wrong secret) is InvalidClientError and does not kill the session or the grant', async () => {
      const { session, store, rt, server0, options } = await seeded({ clientSecret: 'wrong-secret' });
      const err = await rejection(session.accessToken(), InvalidClientError);
      assert.equal(err.code, 'invalid_client');
      assert.equal(err.status, 401);
      assert.equal(err.oauthError, 'invalid_client');
      assert.equal(proxied(), 1, 'not retried');
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.equal(store.record('u1').reauth, undefined, 'a client problem does not kill the user session');
      assert.equal(await consumed(rt), false, 'oidc-provider did not consume the refresh token');
      assert.equal(await op.grantAlive(rt), true);

      // The same stored record works with the right secret.
      const fixed = new TokenClient({ ...options, clientSecret: op.clients.confidential.clientSecret });
      await fixed.session('u1', store).accessToken();
      assert.equal(op.tokenRequests(), server0 + 2);
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    });
  });

  describe('retries', () => {
    test('a 503 is retried once after one recorded backoff, then oidc-provider rotates; the grant lives', async () => {
      const { session, store, time, rt, server0 } = await seeded();
      proxy.fault({ kind: 'status', status: 503, path: tokenPath() });
      await session.accessToken();
      assert.equal(proxied(), 2, 'the 503 and the retry');
      assert.equal(op.tokenRequests(), server0 + 1, 'only the retry reached oidc-provider');
      assert.equal(time.sleeps.length, 1);
      assert.ok(time.sleeps[0] >= 125 && time.sleeps[0] <= 250, `backoff ${time.sleeps[0]} ms`);
      differ(store.refreshToken('u1'), rt, 'rotated');
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    });

    test('a 429 with Retry-After: 2 waits exactly 2000 ms, then oidc-provider rotates; the grant lives', async () => {
      const { session, store, time, rt, server0 } = await seeded();
      proxy.fault({ kind: 'rate_limit', retryAfter: '2', path: tokenPath() });
      await session.accessToken();
      assert.equal(proxied(), 2);
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.deepEqual(time.sleeps, [2000]);
      differ(store.refreshToken('u1'), rt, 'rotated');
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    });

    test('a 429 with an HTTP-date Retry-After waits until that date on the client clock', async () => {
      const { session, time, server0 } = await seeded();
      proxy.fault({ kind: 'rate_limit', retryAfter: new Date(time.now() + 7000).toUTCString(), path: tokenPath() });
      await session.accessToken();
      assert.equal(proxied(), 2);
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.deepEqual(time.sleeps, [7000]);
    });

    test('no retry starts beyond budgetMs (fake time), however many attempts are allowed', async () => {
      const { session, time, rt, server0 } = await seeded({
        retry: { maxAttempts: 20, initialBackoffMs: 1000, maxBackoffMs: 1000, budgetMs: 3500 },
      });
      proxy.fault({ kind: 'status', status: 503, path: tokenPath(), count: 20 });
      const err = await rejection(session.accessToken(), TransientError);
      assert.equal(err.status, 503);
      const total = time.sleeps.reduce((a, b) => a + b, 0);
      assert.ok(total <= 3500, `slept ${total} ms within a 3500 ms budget`);
      assert.ok(time.sleeps.length >= 3, `backoffs of 500..1000 ms: at least 3 fit (${time.sleeps.length})`);
      assert.equal(proxied(), time.sleeps.length + 1);
      assert.equal(op.tokenRequests(), server0);
      assert.equal(await consumed(rt), false);
      proxy.clearFaults();
    });

    test('a Retry-After beyond the budget gives up at once with TransientError; the next call works', async () => {
      const { session, time, rt, server0 } = await seeded();
      proxy.fault({ kind: 'rate_limit', retryAfter: '3600', path: tokenPath() });
      const err = await rejection(session.accessToken(), TransientError);
      assert.equal(err.code, 'transient');
      assert.equal(err.status, 429);
      assert.equal(err.retryAfterMs, 3_600_000);
      assert.equal(proxied(), 1);
      assert.deepEqual(time.sleeps, []);
      assert.equal(op.tokenRequests(), server0);
      assert.equal((await session.status()).inDoubt, false, 'a 429 was not processed: no doubt');
      // The wait is kept (at most 10 min): a call meanwhile sends nothing.
      await rejection(session.accessToken(), TransientError);
      assert.equal(proxied(), 1);
      time.advance(600_000);
      await session.accessToken();
      assert.equal(op.tokenRequests(), server0 + 1, 'once it passed, the next call starts a new attempt');
      assert.equal(await consumed(rt), true);
    });

    test('persistent 502 stops after maxAttempts with TransientError; the refresh token is untouched', async () => {
      const { session, time, rt, server0 } = await seeded();
      proxy.fault({ kind: 'status', status: 502, path: tokenPath(), count: 4 });
      const err = await rejection(session.accessToken(), TransientError);
      assert.equal(err.status, 502);
      assert.equal(proxied(), 4);
      assert.equal(op.tokenRequests(), server0);
      assert.equal(time.sleeps.length, 3);
      time.sleeps.forEach((ms, i) => {
        const cap = 250 * 2 ** i;
        assert.ok(ms >= cap / 2 && ms <= cap, `sleep ${i + 1}: ${ms} ms`);
      });
      assert.equal(await consumed(rt), false);
      await session.accessToken();
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.equal(await op.grantAlive(rt), true);
    });

    test('a 400 invalid_request is an OAuthError, not retried; the refresh token still works', async () => {
      const { session, time, server0, store } = await seeded();
      proxy.fault({ kind: 'body', status: 400, body: '{"error":"invalid_request","error_description":"bad"}', path: tokenPath() });
      const err = await rejection(session.accessToken(), OAuthError);
      assert.equal(err.code, 'oauth');
      assert.equal(err.oauthError, 'invalid_request');
      assert.equal(err.description, 'bad');
      assert.equal(err.status, 400);
      assert.equal(proxied(), 1);
      assert.deepEqual(time.sleeps, []);
      await session.accessToken();
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    });

    test('20 concurrent callers share one failed attempt, and the next call starts afresh at oidc-provider', async () => {
      const { session, server0, store } = await seeded();
      proxy.fault({ kind: 'body', status: 400, body: '{"error":"invalid_scope"}', path: tokenPath() });
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => session.accessToken()));
      assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof OAuthError
        && r.reason.oauthError === 'invalid_scope'));
      assert.equal(proxied(), 1, 'all callers got the one result');
      const tokens = await Promise.all(Array.from({ length: 20 }, () => session.accessToken()));
      assert.equal(new Set(tokens).size, 1);
      assert.equal(proxied(), 2);
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    });
  });

  describe('transport and answers', () => {
    // The request timed out at the client but the proxy still delivered it
    // later; oidc-provider rotated a token nobody received. The next call
    // sends the in-doubt token, oidc-provider sees a reuse and revokes the
    // grant: lost_rotation, exactly as with a dropped connection.
    test('a timeout whose request oidc-provider processed later: TimeoutError, in doubt, then lost_rotation and a dead grant', async () => {
      // The proxy holds the first request past the timeout, whatever it is: 3 s lets the
      // same session's next calls get their real answers on a loaded machine.
      const { session, store, rt, server0 } = await seeded({ timeoutMs: 3_000 });
      proxy.fault({ kind: 'hold', path: tokenPath() });

      const timedOut = rejection(session.accessToken(), TimeoutError);
      await proxy.waitHeld(1);
      const err = await timedOut;
      assert.equal(err.code, 'timeout');
      assert.equal(proxied(), 1, 'a request that may be processed is not retried');
      assert.equal((await session.status()).inDoubt, true);
      assert.equal(store.record('u1').in_doubt, true);

      assert.equal(proxy.releaseHeld(), 1);
      await proxy.settled(); // the held request reached oidc-provider
      assert.equal(op.tokenRequests(), server0 + 1);
      const [late] = proxy.log();
      assert.equal(late.upstreamStatus, 200, 'oidc-provider answered the late request with new tokens');
      assert.equal(late.clientGone, true, 'nobody was listening');
      assert.equal(await consumed(rt), true, 'oidc-provider rotated the refresh token');

      const lost = await rejection(session.accessToken(), ReauthorizationRequiredError);
      assert.equal(lost.reason, 'lost_rotation');
      assert.equal(proxied(), 2);
      assert.equal(op.tokenRequests(), server0 + 2);
      assert.equal(await op.grantAlive(rt), false, 'the reuse revoked the grant');
    });

    // The other order: the next call overtakes the late original. It succeeds
    // (the server rotates for it), then the late original arrives carrying
    // the now-consumed token, and oidc-provider revokes the grant — including
    // the refresh token the client has just stored. The client cannot see
    // this happen; its next refresh reads plain invalid_grant.
    test('a timeout overtaken by the next call: it succeeds, then the late original revokes the grant (reads invalid_grant)', async () => {
      const { session, store, rt, server0, time, tokens } = await seeded({ timeoutMs: 3_000 }); // as above
      proxy.fault({ kind: 'hold', path: tokenPath() });

      const timedOut = rejection(session.accessToken(), TimeoutError);
      await proxy.waitHeld(1);
      await timedOut;
      assert.equal((await session.status()).inDoubt, true);
      const token = await session.accessToken(); // while the original is still held by the proxy
      assert.equal(typeof token, 'string');
      assert.equal(op.tokenRequests(), server0 + 1, 'the retry reached oidc-provider first');
      assert.equal((await session.status()).inDoubt, false, 'the client believes all is well');
      const stored = store.refreshToken('u1');
      differ(stored, rt, 'rotated and stored');
      assert.equal(await op.grantAlive(stored), true);

      assert.equal(proxy.releaseHeld(), 1);
      await proxy.settled(); // the late original reaches oidc-provider
      assert.equal(op.tokenRequests(), server0 + 2);
      const late = proxy.log()[0];
      assert.equal(late.upstreamStatus, 400, 'oidc-provider refused the reused token');
      assert.equal(await op.grantAlive(stored), false, 'and revoked the grant, the freshly stored token included');

      time.advance(tokens.expires_in * 1000);
      const dead = await rejection(session.accessToken(), ReauthorizationRequiredError);
      assert.equal(dead.reason, 'invalid_grant', 'indistinguishable from a revocation to the client');
      assert.equal(op.tokenRequests(), server0 + 3);
    });

    test('a refused connection is retried, then reported as NetworkError, not in doubt; the token still works', async () => {
      const port = await closedPort();
      const { session, time, store, rt, server0, options } = await seeded({
        tokenEndpoint: `http://127.0.0.1:${port}${tokenPath()}`, retry: { maxAttempts: 3 },
      });
      const err = await rejection(session.accessToken(), NetworkError);
      assert.equal(err.code, 'network');
      assert.equal(time.sleeps.length, 2, 'retried twice');
      assert.equal((await session.status()).inDoubt, false, 'it never left: no doubt');
      assert.equal(op.tokenRequests(), server0);

      const healed = new TokenClient({ ...options, tokenEndpoint: proxy.url(tokenPath()) }).session('u1', store);
      await healed.accessToken();
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.equal(await consumed(rt), true);
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    });

    test('malformed JSON is an InvalidResponseError; in doubt until the next success (oidc-provider never saw it)', async () => {
      const { session, store, server0 } = await seeded();
      proxy.fault({ kind: 'body', status: 200, body: '{"access_token": "x", ', path: tokenPath() });
      const err = await rejection(session.accessToken(), InvalidResponseError);
      assert.equal(err.code, 'invalid_response');
      assert.equal(err.status, 200);
      assert.equal((await session.status()).inDoubt, true);
      assert.equal(op.tokenRequests(), server0);
      await session.accessToken();
      assert.equal((await session.status()).inDoubt, false);
      assert.equal(proxied(), 2);
      assert.equal(op.tokenRequests(), server0 + 1);
      assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
    });

    test('an oversize body is an InvalidResponseError naming the cap', async () => {
      const { session, server0 } = await seeded();
      proxy.fault({ kind: 'body', status: 200, body: `{"pad":"${'x'.repeat(100_000)}"}`, path: tokenPath() });
      const err = await rejection(session.accessToken(), InvalidResponseError);
      assert.equal(err.code, 'invalid_response');
      assert.match(err.message, /65536/);
      assert.equal(proxied(), 1);
      assert.equal(op.tokenRequests(), server0);
    });
  });
});
