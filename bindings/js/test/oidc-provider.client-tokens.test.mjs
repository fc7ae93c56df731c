// The client-credentials scenarios of client-tokens.emulator.test.mjs against
// oidc-provider 9.x (client_credentials enabled for the confidential clients,
// scopes `api:read api:write`, 3600 s tokens), through support/fault-proxy.mjs
// where a fault or a slow answer is needed. Counts come from both sides:
// the proxy's requests by path and oidc-provider's `tokenRequestsByGrant()`.
//
// The client sends `audience` = its configured token endpoint (here the
// proxy's URL); oidc-provider drops parameters it does not know for a grant,
// so it is recorded (`lastAudience()`) but has no effect.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';

import { ConfigError, OAuthError, TokenClient } from 'freshtoken';
import { startFaultProxy } from '../support/fault-proxy.mjs';
import { startOidcProvider } from '../support/oidc-provider.mjs';
import { fakeTime } from '../support/fake-time.mjs';

const same = (a, b, message) => assert.ok(typeof a === 'string' && a === b, message);
const differ = (a, b, message) => assert.ok(typeof a === 'string' && typeof b === 'string' && a !== b, message);

describe('clientToken() against oidc-provider (through the fault proxy)', () => {
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

  const tokenPath = () => new URL(op.tokenEndpoint).pathname;
  const proxied = () => proxy.requests()[tokenPath()] ?? 0;
  const ccAtServer = () => op.tokenRequestsByGrant().client_credentials ?? 0;
  const refreshesAtServer = () => op.tokenRequestsByGrant().refresh_token ?? 0;

  function setup(extra = {}, kind = 'confidential') {
    const time = fakeTime();
    const creds = op.clients[kind];
    const client = new TokenClient({
      tokenEndpoint: proxy.url(tokenPath()),
      clientId: creds.clientId,
      ...(creds.clientSecret ? { clientSecret: creds.clientSecret } : {}),
      ...(kind === 'basic' ? { clientAuth: 'client_secret_basic' } : {}),
      now: time.now,
      sleep: time.sleep,
      ...extra,
    });
    return { time, client };
  }

  /** What oidc-provider knows of an issued client-credentials token (never sent anywhere). */
  const issued = (token) => op.provider.ClientCredentials.find(token);

  test('cached per sorted scope set (order and duplicates ignored), re-requested after 3600 - 60 s', async () => {
    const { client, time } = setup();
    const cc0 = ccAtServer();
    const refresh0 = refreshesAtServer();

    const a = await client.clientToken(['api:write', 'api:read']);
    assert.equal((await issued(a))?.scope, 'api:read api:write', 'a real oidc-provider token for both scopes');
    same(await client.clientToken(['api:read', 'api:write', 'api:read']), a, 'same scope set, same token');
    assert.equal(ccAtServer(), cc0 + 1);
    assert.equal(op.lastAudience(), proxy.url(tokenPath()), 'audience = the configured token endpoint (ignored by oidc-provider)');

    const other = await client.clientToken(['api:read']);
    differ(other, a, 'another scope set has its own token');
    assert.equal((await issued(other))?.scope, 'api:read');
    assert.equal(ccAtServer(), cc0 + 2);

    // oidc-provider issues 3600 s tokens; the client refreshes 60 s early.
    time.advance(3_539_000);
    same(await client.clientToken(['api:read', 'api:write']), a, 'still fresh');
    assert.equal(ccAtServer(), cc0 + 2);
    time.advance(1_000);
    const renewed = await client.clientToken(['api:write', 'api:read']);
    differ(renewed, a, 'stale: a new token');
    assert.equal((await issued(renewed))?.scope, 'api:read api:write');
    assert.equal(ccAtServer(), cc0 + 3);
    assert.equal(proxied(), 3);
    assert.equal(refreshesAtServer(), refresh0, 'renewed with client_credentials, never refresh_token');
  });

  test('concurrent callers share one request (held by the proxy until all are in)', async () => {
    const { client } = setup();
    const cc0 = ccAtServer();
    proxy.fault({ kind: 'hold', path: tokenPath() });
    const calls = Array.from({ length: 50 }, (_, i) => (
      client.clientToken(i % 2 ? ['api:read', 'api:write'] : ['api:write', 'api:read'])
    ));
    await proxy.waitHeld(1);
    assert.equal(proxy.releaseHeld(), 1);
    const tokens = await Promise.all(calls);
    assert.equal(new Set(tokens).size, 1);
    assert.equal(proxied(), 1);
    assert.equal(ccAtServer(), cc0 + 1);
    assert.deepEqual(proxy.log().map((e) => [e.fault, e.upstreamStatus]), [['hold', 200]]);
  });

  test('invalidateClientToken forces a new token for that scope set only (a 500 on the way is retried)', async () => {
    const { client, time } = setup();
    const cc0 = ccAtServer();
    const a = await client.clientToken(['api:read']);
    const b = await client.clientToken(['api:write']);
    client.invalidateClientToken(['api:read', 'api:read']);
    proxy.fault({ kind: 'status', status: 500, path: tokenPath() });
    const a2 = await client.clientToken(['api:read']);
    differ(a2, a, 'invalidated: a new token');
    assert.equal(time.sleeps.length, 1, 'the 500 was retried after a backoff');
    assert.equal(proxied(), 4);
    assert.equal(ccAtServer(), cc0 + 3, 'the 500 never reached oidc-provider');
    same(await client.clientToken(['api:write']), b, 'the other scope set is untouched');
    assert.equal(proxied(), 4);
    assert.throws(() => client.invalidateClientToken('api:read'), ConfigError);
  });

  test('errors are typed: an OAuth error answer and a scope with a space; a failure is not cached', async () => {
    const { client } = setup();
    proxy.fault({ kind: 'body', status: 400, body: '{"error":"invalid_scope","error_description":"no such scope"}', path: tokenPath() });
    const err = await client.clientToken(['api:read']).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof OAuthError);
    assert.equal(err.code, 'oauth');
    assert.equal(err.oauthError, 'invalid_scope');
    assert.equal(err.description, 'no such scope');
    await assert.rejects(client.clientToken(['two words']), ConfigError);
    await assert.rejects(client.clientToken('api:read'), ConfigError);
    const cc0 = ccAtServer();
    assert.equal(typeof (await client.clientToken(['api:read'])), 'string');
    assert.equal(ccAtServer(), cc0 + 1, 'the next call asked oidc-provider');
  });

  // Unlike the emulator, oidc-provider answers an unknown client-credentials
  // scope with a token that carries no scope at all (no error, no `scope` in
  // the answer). The client cannot tell and caches it under the asked set.
  test('oidc-provider silently drops an unknown scope: the token has none, and it is cached', async () => {
    const { client } = setup();
    const cc0 = ccAtServer();
    const token = await client.clientToken(['not-a-registered-scope']);
    const found = await issued(token);
    assert.ok(found, 'a real token');
    assert.ok(!found.scope, 'carrying no scope');
    same(await client.clientToken(['not-a-registered-scope']), token, 'cached');
    assert.equal(ccAtServer(), cc0 + 1);
  });

  test('a refresh token in a client-credentials answer is not kept or used', async () => {
    const { client, time } = setup();
    const refresh0 = refreshesAtServer();
    proxy.fault({
      kind: 'body',
      status: 200,
      path: tokenPath(),
      body: '{"access_token":"cc-token","token_type":"Bearer","expires_in":3600,"refresh_token":"must-not-be-kept"}',
    });
    assert.equal(await client.clientToken(['api:read']), 'cc-token');
    time.advance(3_600_000);
    const next = await client.clientToken(['api:read']);
    differ(next, 'cc-token', 'a new token after expiry');
    assert.ok(await issued(next), 'from oidc-provider');
    assert.equal(refreshesAtServer(), refresh0, 'the stray refresh token was never sent');
    assert.equal(proxied(), 2);
  });

  test('an explicit audience is sent as given (oidc-provider ignores it and issues the token)', async () => {
    const { client } = setup({ audience: 'https://api.example/' });
    const token = await client.clientToken(['api:read']);
    assert.equal((await issued(token))?.scope, 'api:read');
    assert.equal(op.lastAudience(), 'https://api.example/');
  });

  test('a client_secret_basic client (secret with + / = & % :) gets a client token', async () => {
    const { client } = setup({}, 'basic');
    const token = await client.clientToken(['api:read']);
    const found = await issued(token);
    assert.equal(found?.clientId, op.clients.basic.clientId);
    assert.equal(found?.scope, 'api:read');
  });

  // The emulator answers unauthorized_client; oidc-provider answers
  // invalid_request ("requested grant type is not allowed for this client").
  test('a public client is refused client_credentials by oidc-provider (OAuthError invalid_request)', async () => {
    const { client } = setup({}, 'public');
    const cc0 = ccAtServer();
    const err = await client.clientToken(['api:read']).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof OAuthError);
    assert.equal(err.code, 'oauth');
    assert.equal(err.oauthError, 'invalid_request');
    assert.equal(err.status, 400);
    assert.match(err.description, /grant type is not allowed/);
    assert.equal(ccAtServer(), cc0 + 1);
  });
});
