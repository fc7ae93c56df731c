// Interoperability with an independent server: npm oidc-provider 9.x with
// refresh-token rotation ON, where presenting a consumed refresh token again
// revokes the whole grant. `grantAlive(rt)` therefore proves that no refresh
// token was ever sent twice. Logins are scripted by support/oidc-provider.mjs.
//
// The client's clock is fake (oidc-provider keeps real time): moving it past
// the access token's expiry makes the client refresh while the server still
// happily accepts the refresh token.
//
// The same server, by theme (faults come from support/fault-proxy.mjs):
// oidc-provider.failures (errors, retries, lost answers, timeouts, stores),
// .client-tokens, .authorized-fetch (userinfo), .drop-in (refreshTokens),
// .code-flow (authorizationUrl/exchangeCode) and .secrets.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  MemoryStore,
  ReauthorizationRequiredError,
  StorageError,
  TokenClient,
  refreshTokens,
} from 'freshtoken';
import { startOidcProvider } from '../support/oidc-provider.mjs';
import { fakeTime } from '../support/fake-time.mjs';

/** A MemoryStore whose next saves (of records `failOnly` matches, if set) fail on command. */
class FlakyStore {
  inner = new MemoryStore();
  failSaves = 0;
  failOnly = null;
  async load(key) { return this.inner.load(key); }
  async save(key, record) {
    if (this.failSaves > 0 && (this.failOnly === null || this.failOnly(JSON.parse(record)))) {
      this.failSaves -= 1;
      throw new Error('disk full');
    }
    return this.inner.save(key, record);
  }
  refreshToken(key) { return JSON.parse(this.inner.get(key)).refresh_token; }
}

const same = (a, b, message) => assert.ok(typeof a === 'string' && a === b, message);
const differ = (a, b, message) => assert.ok(typeof a === 'string' && typeof b === 'string' && a !== b, message);

describe('against oidc-provider (rotation on, reuse revokes the grant)', () => {
  let op;
  before(async () => { op = await startOidcProvider(); });
  after(async () => { await op?.close(); });

  function clientFor(kind, extra = {}) {
    const time = fakeTime();
    const creds = op.clients[kind];
    const client = new TokenClient({
      tokenEndpoint: op.tokenEndpoint,
      clientId: creds.clientId,
      ...(creds.clientSecret ? { clientSecret: creds.clientSecret } : {}),
      ...(kind === 'basic' ? { clientAuth: 'client_secret_basic' } : {}),
      now: time.now,
      sleep: time.sleep,
      ...extra,
    });
    return { client, time };
  }

  /** A session seeded from a scripted login's token response. */
  async function loggedIn(kind = 'confidential', store = new FlakyStore(), key = 'u1') {
    const tokens = await op.obtainTokens({ client: kind });
    assert.equal(typeof tokens.refresh_token, 'string', 'the login issued a refresh token');
    const { client, time } = clientFor(kind);
    const session = client.session(key, store);
    await session.seed({
      refreshToken: tokens.refresh_token,
      accessToken: tokens.access_token,
      expiresIn: tokens.expires_in,
      scope: tokens.scope,
      idToken: tokens.id_token,
    });
    return { client, time, session, store, tokens };
  }

  test('a seeded session serves the login token, then refreshes with rotation and persists it', async () => {
    const { session, store, time, tokens } = await loggedIn();
    const before = op.tokenRequests();
    same(await session.accessToken(), tokens.access_token, 'the seeded access token is served');
    assert.equal(op.tokenRequests(), before, 'no request for a fresh token');

    time.advance(tokens.expires_in * 1000);
    const fresh = await session.accessToken();
    differ(fresh, tokens.access_token, 'a refreshed access token');
    assert.equal(op.tokenRequests(), before + 1);
    const rotated = store.refreshToken('u1');
    differ(rotated, tokens.refresh_token, 'oidc-provider rotated the refresh token and it is stored');
    assert.equal(await op.grantAlive(rotated), true);
    const info = await session.tokens();
    assert.ok(info.scope.split(' ').includes('offline_access'));
    assert.equal(typeof info.idToken, 'string');
  });

  test('1,000 concurrent accessToken() calls at expiry: one request, the grant stays alive', async () => {
    const { session, store, time, tokens } = await loggedIn();
    time.advance(tokens.expires_in * 1000);
    const before = op.tokenRequests();
    const results = await Promise.all(Array.from({ length: 1000 }, () => session.accessToken()));
    assert.equal(op.tokenRequests(), before + 1, 'exactly one refresh request');
    assert.equal(new Set(results).size, 1);
    assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
  });

  test('several forced refresh cycles keep the grant alive', async () => {
    const { session, store, tokens } = await loggedIn();
    const before = op.tokenRequests();
    const seen = new Set([tokens.refresh_token]);
    for (let i = 0; i < 5; i += 1) {
      const infos = await Promise.all([session.refresh(), session.refresh(), session.refresh()]);
      assert.equal(new Set(infos.map((x) => x.accessToken)).size, 1);
      const rt = store.refreshToken('u1');
      assert.ok(!seen.has(rt), `cycle ${i + 1}: a new refresh token is stored`);
      seen.add(rt);
      assert.equal(await op.grantAlive(rt), true, `cycle ${i + 1}: the grant is alive`);
    }
    assert.equal(op.tokenRequests(), before + 5);
  });

  test('a rejected save loses nothing: the kept record is saved, the next refresh works, the grant lives', async () => {
    const { session, store, time, tokens } = await loggedIn();
    time.advance(tokens.expires_in * 1000);
    store.failSaves = 1;
    store.failOnly = (record) => record.refresh_token !== tokens.refresh_token;
    const before = op.tokenRequests();
    const err = await session.accessToken().then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof StorageError);
    assert.equal(err.code, 'storage');
    assert.equal(op.tokenRequests(), before + 1);
    same(store.refreshToken('u1'), tokens.refresh_token, 'the store still holds the consumed one');

    const token = await session.accessToken();
    assert.equal(op.tokenRequests(), before + 1, 'recovery saves the kept record and sends nothing');
    const kept = store.refreshToken('u1');
    differ(kept, tokens.refresh_token, 'the kept record holds the rotated refresh token');
    same(JSON.parse(store.inner.get('u1')).access_token, token, 'and the token handed out');

    time.advance(tokens.expires_in * 1000);
    await session.accessToken();
    assert.equal(op.tokenRequests(), before + 2);
    // Had the consumed token been sent again, oidc-provider would have revoked the grant.
    assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
  });

  test("another process's rotation is picked up from the store without a request; the grant stays alive", async () => {
    const { session: a, store, time, tokens } = await loggedIn();
    const creds = op.clients.confidential;
    const other = new TokenClient({
      tokenEndpoint: op.tokenEndpoint, clientId: creds.clientId, clientSecret: creds.clientSecret, now: time.now, sleep: time.sleep,
    });
    const b = other.session('u1', store);
    same(await b.accessToken(), tokens.access_token, 'B has read the seeded record');

    time.advance(tokens.expires_in * 1000);
    const before = op.tokenRequests();
    const token = await a.accessToken();
    assert.equal(op.tokenRequests(), before + 1);
    same(await b.accessToken(), token, 'B re-read the store before refreshing');
    assert.equal(op.tokenRequests(), before + 1, 'B sent nothing (had it sent the consumed token, the grant would be dead)');
    assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
  });

  test('tokens() reports expiry from the send time, oidc-provider\'s scope and ID token, and the refresh lifetime', async () => {
    const { session, time } = await loggedIn();
    const sentAt = time.now();
    const info = await session.refresh();
    assert.deepEqual(Object.keys(info).sort(), ['accessToken', 'expiresAt', 'idToken', 'refreshExpiresAt', 'scope']);
    assert.equal(info.expiresAt, sentAt + 900_000, 'oidc-provider\'s expires_in: 900');
    assert.equal(info.refreshExpiresAt, sentAt + 365 * 24 * 3600 * 1000);
    assert.deepEqual(info.scope.split(' ').sort(), ['api', 'offline_access', 'openid']);
    const claims = JSON.parse(Buffer.from(info.idToken.split('.')[1], 'base64url').toString('utf8'));
    assert.equal(claims.sub, 'test-user');
    assert.equal(claims.iss, op.issuer);
    same(await session.accessToken(), info.accessToken, 'tokens() and accessToken() agree');
  });

  test('control: a consumed refresh token sent again revokes the grant (what grantAlive catches)', async () => {
    const { session, store, tokens } = await loggedIn();
    await session.refresh();
    const live = store.refreshToken('u1');
    assert.equal(await op.grantAlive(live), true);
    const creds = op.clients.confidential;
    const err = await refreshTokens({
      tokenEndpoint: op.tokenEndpoint, clientId: creds.clientId, clientSecret: creds.clientSecret, refreshToken: tokens.refresh_token,
    }).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof ReauthorizationRequiredError);
    assert.equal(await op.grantAlive(live), false, 'reuse revoked the whole grant');
    const dead = await session.refresh().then(() => assert.fail('resolved'), (e) => e);
    assert.ok(dead instanceof ReauthorizationRequiredError);
    assert.equal(dead.reason, 'invalid_grant');
  });

  test('a bogus refresh token is ReauthorizationRequiredError invalid_grant', async () => {
    const { client } = clientFor('confidential');
    const session = client.session('bogus', new MemoryStore());
    await session.seed({ refreshToken: 'not-a-refresh-token-oidc-provider-issued' });
    const err = await session.accessToken().then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof ReauthorizationRequiredError);
    assert.equal(err.reason, 'invalid_grant');
    assert.equal((await session.status()).reauthorizationReason, 'invalid_grant');
  });

  test('a client_secret_basic client (secret with + / = & % :) refreshes', async () => {
    const { session, store, tokens } = await loggedIn('basic');
    const info = await session.refresh();
    differ(info.accessToken, tokens.access_token, 'a new access token');
    assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
  });

  test('a public client refreshes without a secret', async () => {
    const { session, store, tokens } = await loggedIn('public');
    await session.refresh();
    differ(store.refreshToken('u1'), tokens.refresh_token, 'rotated');
    assert.equal(await op.grantAlive(store.refreshToken('u1')), true);
  });

  test('clientToken() with client_credentials: audience = token endpoint, cached', async () => {
    const { client } = clientFor('confidential');
    const count = () => op.tokenRequestsByGrant().client_credentials ?? 0;
    const before = count();
    const token = await client.clientToken(['api:read']);
    assert.equal(typeof token, 'string');
    assert.equal(count(), before + 1);
    assert.equal(op.lastAudience(), op.tokenEndpoint);
    same(await client.clientToken(['api:read', 'api:read']), token, 'cached');
    assert.equal(count(), before + 1);
    const both = await client.clientToken(['api:write', 'api:read']);
    differ(both, token, 'another scope set');
    assert.equal(count(), before + 2);
  });
});
