// DESIGN point 10 against a real server: no token or client secret appears in
// any error, whatever oidc-provider (or a fault proxy in front of it) answers.
// The sentinels are the real ones: the clients' secrets (with + / = & % :),
// every access, refresh and ID token a scripted login or a refresh handed out
// in this file, each also form-, percent- and (for Basic) base64-encoded.
// Mirrors the "secrets never appear in errors" suite of
// failures.emulator.test.mjs. Nothing is ever printed: a failing check names
// the case and the error code, never the text.

import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';

import {
  FreshTokenError,
  InvalidClientError,
  InvalidResponseError,
  MemoryStore,
  NetworkError,
  OAuthError,
  ReauthorizationRequiredError,
  TimeoutError,
  TokenClient,
  TransientError,
  authorizedFetch,
  refreshTokens,
} from 'freshtoken';
import { startFaultProxy } from '../support/fault-proxy.mjs';
import { basicAuthorization, startOidcProvider } from '../support/oidc-provider.mjs';
import { fakeTime } from '../support/fake-time.mjs';

describe('secrets never appear in errors (oidc-provider, through the fault proxy)', () => {
  let op;
  let proxy;
  const sentinels = new Set();

  /** A value and the ways a server or a message could show it. */
  function remember(value) {
    if (typeof value !== 'string' || value.length < 8) return;
    sentinels.add(value);
    sentinels.add(encodeURIComponent(value));
    sentinels.add(new URLSearchParams({ v: value }).toString().slice(2));
  }

  before(async () => {
    op = await startOidcProvider();
    for (const kind of ['confidential', 'basic']) {
      const { clientId, clientSecret } = op.clients[kind];
      remember(clientSecret);
      remember(`wrong-${clientSecret}`);
      sentinels.add(basicAuthorization(clientId, clientSecret).slice('Basic '.length));
      sentinels.add(basicAuthorization(clientId, `wrong-${clientSecret}`).slice('Basic '.length));
    }
  });
  after(async () => { await op?.close(); });
  beforeEach(async () => { proxy = await startFaultProxy(op.issuer); });
  afterEach(async () => {
    await proxy.settled();
    const pending = proxy.pendingFaults();
    await proxy.close();
    assert.equal(pending, 0, 'every queued fault was used');
  });

  const tokenPath = () => new URL(op.tokenEndpoint).pathname;

  async function login(kind = 'confidential') {
    const tokens = await op.obtainTokens({ client: kind });
    remember(tokens.access_token);
    remember(tokens.refresh_token);
    remember(tokens.id_token);
    return tokens;
  }

  function assertClean(err, what) {
    assert.ok(err instanceof FreshTokenError, `${what}: a FreshTokenError (${err?.name})`);
    const shown = [err.message, err.stack, String(err), JSON.stringify(err), inspect(err, { depth: 5 }), err.description ?? ''];
    for (const text of shown) {
      assert.equal(typeof text, 'string');
      for (const secret of sentinels) {
        // Never assert.equal on the text itself: a failure would print it.
        assert.ok(!text.includes(secret), `${what} (${err.code}): an error text holds a token or secret`);
      }
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

  function client({ kind = 'confidential', ...extra } = {}) {
    const time = fakeTime();
    const creds = op.clients[kind];
    return new TokenClient({
      tokenEndpoint: proxy.url(tokenPath()),
      clientId: creds.clientId,
      clientSecret: creds.clientSecret,
      ...(kind === 'basic' ? { clientAuth: 'client_secret_basic' } : {}),
      now: time.now,
      sleep: time.sleep,
      ...extra,
    });
  }

  /**
   * A session seeded with a fresh login's refresh token, the proxy armed with
   * `fault` (or `fault(tokens)`, for one that quotes the tokens), then one
   * accessToken() under it.
   */
  async function failingRefresh(fault, extra = {}) {
    const tokens = await login(extra.kind);
    const armed = typeof fault === 'function' ? fault(tokens) : fault;
    if (armed) proxy.fault({ path: tokenPath(), ...armed });
    const session = client(extra).session('u', new MemoryStore());
    await session.seed({ refreshToken: tokens.refresh_token });
    return { session, tokens, attempt: session.accessToken() };
  }

  test('in every kind of error a refresh can end with', async () => {
    // Echoes of the real refresh token and secret, as a careless server could send them.
    const echoing = (status, fields) => (tokens) => {
      const secret = op.clients.confidential.clientSecret;
      const form = new URLSearchParams({ refresh_token: tokens.refresh_token, client_secret: secret }).toString();
      const echo = `refresh_token ${tokens.refresh_token} client secret ${secret} form ${form} pct ${encodeURIComponent(secret)}`;
      return { kind: 'body', status, body: JSON.stringify({ ...fields, error_description: echo, note: echo }) };
    };
    const cases = [
      ['invalid_grant echoing both', echoing(400, { error: 'invalid_grant' }), ReauthorizationRequiredError],
      ['invalid_request echoing both', echoing(400, { error: 'invalid_request' }), OAuthError],
      ['invalid_client echoing both', echoing(401, { error: 'invalid_client' }), InvalidClientError],
      ['success body without access_token echoing both', echoing(200, { token_type: 'Bearer' }), InvalidResponseError],
      ['429 beyond the budget', { kind: 'rate_limit', retryAfter: '3600' }, TransientError],
      ['persistent 503', { kind: 'status', status: 503, count: 4 }, TransientError],
      ['malformed JSON', { kind: 'body', status: 200, body: '{"access_token":' }, InvalidResponseError],
      ['oversize', { kind: 'body', status: 200, body: `{"pad":"${'x'.repeat(100_000)}"}` }, InvalidResponseError],
      ['dropped before forwarding', { kind: 'drop_before' }, NetworkError],
      ['dropped after oidc-provider rotated', { kind: 'drop_after_forward' }, NetworkError],
    ];
    for (const [what, fault, Class] of cases) {
      const { attempt } = await failingRefresh(fault);
      const err = await errorOf(attempt, what);
      assert.ok(err instanceof Class, `${what}: expected ${Class.name}, got ${err.name}`);
    }
  });

  test('in oidc-provider\'s own refusals: reuse, lost rotation, wrong secrets, a revoked grant', async () => {
    // A consumed refresh token: oidc-provider's real invalid_grant (and a revoked grant).
    const reused = await login();
    const rotated = await refreshTokens({
      tokenEndpoint: op.tokenEndpoint, ...op.clients.confidential, refreshToken: reused.refresh_token,
    });
    remember(rotated.access_token);
    remember(rotated.refresh_token);
    const session = client().session('reuse', new MemoryStore());
    await session.seed({ refreshToken: reused.refresh_token });
    const dead = await errorOf(session.accessToken(), 'reused refresh token');
    assert.ok(dead instanceof ReauthorizationRequiredError);
    assert.equal(await op.grantAlive(rotated.refresh_token), false);

    // A lost rotation, then the retry that reads lost_rotation.
    const lost = await failingRefresh({ kind: 'drop_after_forward' });
    assert.ok((await errorOf(lost.attempt, 'lost answer')) instanceof NetworkError);
    const reason = await errorOf(lost.session.accessToken(), 'lost_rotation');
    assert.equal(reason.reason, 'lost_rotation');

    // Wrong secrets, posted and Basic: oidc-provider's invalid_client.
    for (const kind of ['confidential', 'basic']) {
      const wrong = await failingRefresh(null, { kind, clientSecret: `wrong-${op.clients[kind].clientSecret}` });
      assert.ok((await errorOf(wrong.attempt, `${kind} wrong secret`)) instanceof InvalidClientError);
      const cc = client({ kind, clientSecret: `wrong-${op.clients[kind].clientSecret}` });
      assert.ok((await errorOf(cc.clientToken(['api:read']), `${kind} clientToken wrong secret`)) instanceof InvalidClientError);
    }

    // refreshTokens() with the consumed token, and with the server echoing it.
    assert.ok((await errorOf(refreshTokens({
      tokenEndpoint: op.tokenEndpoint, ...op.clients.confidential, refreshToken: reused.refresh_token,
    }), 'refreshTokens reuse')) instanceof ReauthorizationRequiredError);
    proxy.fault({
      path: tokenPath(),
      kind: 'body',
      status: 400,
      body: JSON.stringify({ error: 'invalid_grant', error_description: `unknown ${reused.refresh_token} for ${op.clients.confidential.clientSecret}` }),
    });
    assert.ok((await errorOf(refreshTokens({
      tokenEndpoint: proxy.url(tokenPath()), ...op.clients.confidential, refreshToken: reused.refresh_token,
    }), 'refreshTokens echo')) instanceof ReauthorizationRequiredError);

    // authorizedFetch() whose refresh meets a revoked grant.
    const revoked = await login();
    const rSession = client().session('revoked', new MemoryStore());
    await rSession.seed({ refreshToken: revoked.refresh_token, accessToken: 'not-an-access-token', expiresIn: 900 });
    const { clientId, clientSecret } = op.clients.confidential;
    const revocation = await fetch(op.provider.urlFor('revocation'), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: revoked.refresh_token, token_type_hint: 'refresh_token', client_id: clientId, client_secret: clientSecret }).toString(),
    });
    assert.equal(revocation.status, 200);
    await revocation.arrayBuffer();
    assert.equal(await op.grantAlive(revoked.refresh_token), false);
    const userinfo = proxy.url(new URL(op.userinfoEndpoint).pathname);
    assert.ok((await errorOf(authorizedFetch(rSession, userinfo), 'authorizedFetch, revoked grant')) instanceof ReauthorizationRequiredError);
  });

  test('in a timeout (the late request is processed by oidc-provider after the client gave up)', async () => {
    const { attempt } = await failingRefresh({ kind: 'delay', ms: 1000 }, { timeoutMs: 100 });
    assert.ok((await errorOf(attempt, 'timeout')) instanceof TimeoutError);
    await proxy.settled();
  });
});
