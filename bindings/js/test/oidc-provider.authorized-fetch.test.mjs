// authorizedFetch() against a real protected resource: oidc-provider's
// userinfo endpoint (`/me`, discovered from its metadata; it needs the
// `openid` scope and answers 401 `invalid_token` for an access token it does
// not accept). Mirrors authorized-fetch.emulator.test.mjs.
//
// Both the token endpoint and userinfo are reached through
// support/fault-proxy.mjs, so every request is counted by path. A token the
// server no longer accepts is made with oidc-provider's own API (the access
// token destroyed) or by seeding a bogus access token with the real refresh
// token and `expiresIn: 900`: the client believes it fresh, the server does not.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';

import {
  MemoryStore, ReauthorizationRequiredError, TokenClient, authorizedFetch,
} from 'freshtoken';
import { startFaultProxy } from '../support/fault-proxy.mjs';
import { startOidcProvider } from '../support/oidc-provider.mjs';

function deferred() {
  let resolve;
  const promise = new Promise((res) => { resolve = res; });
  return { promise, resolve };
}

const differ = (a, b, message) => assert.ok(typeof a === 'string' && typeof b === 'string' && a !== b, message);

describe('authorizedFetch() against oidc-provider\'s userinfo endpoint', () => {
  let op;
  let proxy;
  let userinfoPath;
  before(async () => {
    op = await startOidcProvider();
    const metadata = await (await fetch(`${op.issuer}/.well-known/openid-configuration`)).json();
    userinfoPath = new URL(metadata.userinfo_endpoint).pathname;
    assert.equal(metadata.userinfo_endpoint, op.userinfoEndpoint);
  });
  after(async () => { await op?.close(); });
  beforeEach(async () => { proxy = await startFaultProxy(op.issuer); });
  afterEach(async () => {
    const pending = proxy.pendingFaults();
    await proxy.close();
    assert.equal(pending, 0, 'every queued fault was used');
  });

  const tokenPath = () => new URL(op.tokenEndpoint).pathname;
  const userinfo = () => proxy.url(userinfoPath);
  const count = (path) => proxy.requests()[path] ?? 0;
  const refreshesAtServer = () => op.tokenRequestsByGrant().refresh_token ?? 0;
  /** [path, status] of every request that went through the proxy. */
  const trail = () => proxy.log().map((e) => [e.path, e.upstreamStatus]);

  /**
   * A session seeded from a scripted login: the real access token with
   * `expiresIn: 900` (or `accessToken` instead), and the real refresh token.
   */
  async function loggedIn({ accessToken } = {}) {
    const tokens = await op.obtainTokens();
    const creds = op.clients.confidential;
    const client = new TokenClient({
      tokenEndpoint: proxy.url(tokenPath()), clientId: creds.clientId, clientSecret: creds.clientSecret,
    });
    const store = new MemoryStore();
    const session = client.session('u1', store);
    await session.seed({
      refreshToken: tokens.refresh_token,
      accessToken: accessToken ?? tokens.access_token,
      expiresIn: 900,
      scope: tokens.scope,
    });
    return { client, store, session, tokens, refresh0: refreshesAtServer() };
  }

  /** oidc-provider forgets the access token (as after a revocation or a server-side expiry). */
  async function destroyAccessToken(token) {
    const found = await op.provider.AccessToken.find(token);
    assert.ok(found, 'the access token was live');
    await found.destroy();
  }

  const storedRefreshToken = (store) => JSON.parse(store.get('u1')).refresh_token;

  test('a fresh token: one request, accepted by oidc-provider (the user\'s claims), no refresh', async () => {
    const { session, refresh0 } = await loggedIn();
    const response = await authorizedFetch(session, userinfo());
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { sub: 'test-user' });
    assert.equal(count(userinfoPath), 1);
    assert.equal(count(tokenPath()), 0);
    assert.equal(refreshesAtServer(), refresh0);
  });

  test('an access token oidc-provider destroyed: one 401, exactly one refresh, the retry gets 200 and the sub', async () => {
    const { session, store, tokens, refresh0 } = await loggedIn();
    await destroyAccessToken(tokens.access_token);
    const response = await authorizedFetch(session, userinfo());
    assert.equal(response.status, 200);
    assert.equal((await response.json()).sub, 'test-user');
    assert.deepEqual(trail(), [[userinfoPath, 401], [tokenPath(), 200], [userinfoPath, 200]]);
    assert.equal(refreshesAtServer(), refresh0 + 1);
    const rotated = storedRefreshToken(store);
    differ(rotated, tokens.refresh_token, 'the rotation was stored');
    assert.equal(await op.grantAlive(rotated), true);
  });

  test('a bogus seeded access token with the real refresh token: one 401, one refresh, then 200', async () => {
    const { session, store, tokens, refresh0 } = await loggedIn({ accessToken: 'not-an-access-token-oidc-provider-issued' });
    const response = await authorizedFetch(session, userinfo(), { headers: { accept: 'application/json' } });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).sub, 'test-user');
    assert.deepEqual(trail(), [[userinfoPath, 401], [tokenPath(), 200], [userinfoPath, 200]]);
    assert.equal(refreshesAtServer(), refresh0 + 1);
    assert.equal(await op.grantAlive(storedRefreshToken(store)), true);
    differ(storedRefreshToken(store), tokens.refresh_token, 'rotated');
  });

  test('100 concurrent calls all rejected with 401 cause one refresh', async () => {
    // Once armed, the refresh's save waits until all 100 calls have asked for
    // a refresh, so every one of them asks while the one refresh is in flight.
    const allAsked = deferred();
    let gate = null;
    const inner = new MemoryStore();
    const store = {
      load: (key) => inner.load(key),
      save: async (key, record) => { await gate; return inner.save(key, record); },
    };
    const tokens = await op.obtainTokens();
    const creds = op.clients.confidential;
    const client = new TokenClient({ tokenEndpoint: proxy.url(tokenPath()), clientId: creds.clientId, clientSecret: creds.clientSecret });
    const real = client.session('u1', store);
    await real.seed({ refreshToken: tokens.refresh_token, accessToken: tokens.access_token, expiresIn: 900 });
    await destroyAccessToken(tokens.access_token);
    const refresh0 = refreshesAtServer();
    gate = allAsked.promise;
    let asked = 0;
    const session = {
      accessToken: () => real.accessToken(),
      tokenRejected: (token) => {
        const result = real.tokenRejected(token);
        asked += 1;
        if (asked === 100) allAsked.resolve();
        return result;
      },
    };

    const responses = await Promise.all(Array.from({ length: 100 }, () => authorizedFetch(session, userinfo())));
    const bodies = await Promise.all(responses.map((r) => r.json()));
    assert.equal(asked, 100, 'every call was rejected once and asked for a refresh');
    assert.ok(responses.every((r) => r.status === 200));
    assert.ok(bodies.every((b) => b.sub === 'test-user'), 'every call got the claims');
    assert.equal(refreshesAtServer(), refresh0 + 1);
    assert.equal(count(tokenPath()), 1);
    assert.equal(count(userinfoPath), 200);
    assert.equal(proxy.log().filter((e) => e.path === userinfoPath && e.upstreamStatus === 401).length, 100);
    assert.equal(await op.grantAlive(JSON.parse(inner.get('u1')).refresh_token), true);
  });

  test('a retry that is rejected again is returned as is (no loop)', async () => {
    const { session, tokens, refresh0 } = await loggedIn();
    await destroyAccessToken(tokens.access_token);
    // The one refresh "succeeds" with a token oidc-provider never issued.
    proxy.fault({
      kind: 'body', status: 200, path: tokenPath(),
      body: '{"access_token":"not-a-token-oidc-provider-knows","token_type":"Bearer","expires_in":900}',
    });
    const response = await authorizedFetch(session, userinfo());
    assert.equal(response.status, 401);
    assert.equal((await response.json()).error, 'invalid_token');
    assert.deepEqual(trail(), [[userinfoPath, 401], [tokenPath(), null], [userinfoPath, 401]]);
    assert.equal(refreshesAtServer(), refresh0, 'the canned answer never reached oidc-provider');
    assert.equal(await op.grantAlive(tokens.refresh_token), true);
  });

  // A rejection that arrives after another call already refreshed retries
  // with the new token instead of forcing a second refresh.
  test('a rejection that arrives after another call refreshed does not refresh again', async () => {
    const { session, tokens, refresh0 } = await loggedIn();
    await destroyAccessToken(tokens.access_token);
    const hold = deferred();
    let held = false;
    // Real fetch; only the hand-back of B's first response waits for the test.
    const slowFetch = async (input, init) => {
      const response = await fetch(input, init);
      if (!held) {
        held = true;
        await hold.promise;
      }
      return response;
    };
    const b = authorizedFetch(session, userinfo(), undefined, { fetch: slowFetch });
    const a = await authorizedFetch(session, userinfo());
    assert.equal((await a.json()).sub, 'test-user', 'A got the claims after one refresh');
    assert.equal(refreshesAtServer(), refresh0 + 1);
    hold.resolve();
    const bResponse = await b;
    assert.equal(bResponse.status, 200);
    assert.equal((await bResponse.json()).sub, 'test-user', 'B got the claims');
    assert.equal(refreshesAtServer(), refresh0 + 1, 'B retried with the token A already obtained');
    assert.equal(count(userinfoPath), 4);
  });

  test('a grant revoked at oidc-provider (RFC 7009 revocation of the refresh token): 401, then ReauthorizationRequiredError', async () => {
    const { session, tokens, refresh0 } = await loggedIn();
    const creds = op.clients.confidential;
    const revoked = await fetch(op.provider.urlFor('revocation'), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        token: tokens.refresh_token, token_type_hint: 'refresh_token', client_id: creds.clientId, client_secret: creds.clientSecret,
      }).toString(),
    });
    assert.equal(revoked.status, 200);
    await revoked.arrayBuffer();
    assert.equal(await op.grantAlive(tokens.refresh_token), false, 'oidc-provider revoked the grant');

    const err = await authorizedFetch(session, userinfo()).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof ReauthorizationRequiredError);
    assert.equal(err.reason, 'invalid_grant');
    assert.deepEqual(trail(), [[userinfoPath, 401], [tokenPath(), 400]]);
    assert.equal(refreshesAtServer(), refresh0 + 1);
    assert.equal((await session.status()).reauthorizationReason, 'invalid_grant');
  });
});
