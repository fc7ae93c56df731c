// The code flow of code-flow.emulator.test.mjs against oidc-provider 9.x:
// authorizationUrl() is driven through oidc-provider's real /auth endpoint
// (login and consent scripted by support/oidc-provider.mjs `authorize()`),
// and exchangeCode() redeems the code with PKCE (which oidc-provider
// requires). The authorization endpoint comes from the discovery document:
// the client's default (the token endpoint with /token replaced by
// /authorize) does not exist on oidc-provider, whose path is /auth.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  ConfigError, MemoryStore, OAuthError, TokenClient, UserSession,
} from 'freshtoken';
import { REDIRECT_URI, startOidcProvider } from '../support/oidc-provider.mjs';

const differ = (a, b, message) => assert.ok(typeof a === 'string' && typeof b === 'string' && a !== b, message);
const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));

describe('code flow against oidc-provider', () => {
  let op;
  let metadata;
  before(async () => {
    op = await startOidcProvider();
    metadata = await (await fetch(`${op.issuer}/.well-known/openid-configuration`)).json();
  });
  after(async () => { await op?.close(); });

  function clientFor(kind = 'confidential') {
    const creds = op.clients[kind];
    return new TokenClient({
      tokenEndpoint: metadata.token_endpoint,
      authorizationEndpoint: metadata.authorization_endpoint,
      clientId: creds.clientId,
      ...(creds.clientSecret ? { clientSecret: creds.clientSecret } : {}),
    });
  }

  test('the default authorization endpoint (/token → /authorize) is not oidc-provider\'s: pass it explicitly', async () => {
    const creds = op.clients.confidential;
    const fallback = new TokenClient({ tokenEndpoint: op.tokenEndpoint, clientId: creds.clientId, clientSecret: creds.clientSecret });
    const { url } = await fallback.authorizationUrl({ redirectUri: REDIRECT_URI });
    assert.equal(new URL(url).pathname, '/authorize');
    const response = await fetch(url, { redirect: 'manual' });
    await response.arrayBuffer();
    assert.equal(response.status, 404);
    assert.equal(new URL(metadata.authorization_endpoint).pathname, '/auth');
  });

  test('authorizationUrl() + exchangeCode(): oidc-provider issues a refresh token; stored, served, rotated', async () => {
    const client = clientFor();
    const store = new MemoryStore();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT_URI, scopes: ['openid', 'api'] });
    const params = await op.authorize(request.url);
    assert.equal(params.get('error'), null);
    assert.equal(params.get('state'), request.state);
    assert.equal(params.get('iss'), op.issuer, 'RFC 9207 issuer identification');

    const before = op.tokenRequestsByGrant();
    const session = await client.exchangeCode(
      { code: params.get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT_URI }, 'u1', store,
    );
    assert.ok(session instanceof UserSession);
    assert.equal(op.tokenRequestsByGrant().authorization_code, (before.authorization_code ?? 0) + 1);
    const record = JSON.parse(store.get('u1'));
    assert.equal(typeof record.refresh_token, 'string');
    assert.equal(await op.grantAlive(record.refresh_token), true);

    const info = await session.tokens();
    assert.deepEqual(info.scope.split(' ').sort(), ['api', 'offline_access', 'openid']);
    assert.equal(claimsOf(info.idToken).nonce, request.nonce, 'the ID token carries our nonce');
    assert.equal(claimsOf(info.idToken).sub, 'test-user');
    assert.ok(record.access_token === info.accessToken, 'the exchanged access token is served');
    assert.equal(op.tokenRequestsByGrant().refresh_token ?? 0, before.refresh_token ?? 0, 'without a refresh');

    const refreshed = await session.refresh();
    differ(refreshed.accessToken, info.accessToken, 'a new access token');
    const rotated = JSON.parse(store.get('u1')).refresh_token;
    differ(rotated, record.refresh_token, 'the rotated refresh token is stored');
    assert.equal(await op.grantAlive(rotated), true);
  });

  // OIDC Core 1.0 §11 requires prompt=consent with offline_access; without
  // it oidc-provider silently drops offline_access and issues no refresh
  // token, and the session would die with no_refresh_token at its first
  // refresh. authorizationUrl() sends prompt=consent by default.
  test('authorizationUrl() as is obtains a refresh token from oidc-provider', async () => {
    const client = clientFor();
    const store = new MemoryStore();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT_URI, scopes: ['openid', 'api'] });
    const query = new URL(request.url).searchParams;
    assert.ok(query.get('scope').split(' ').includes('offline_access'), 'offline_access asked for');
    assert.equal(query.get('prompt'), 'consent');
    const params = await op.authorize(request.url);
    const session = await client.exchangeCode(
      { code: params.get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT_URI }, 'u1', store,
    );
    const record = JSON.parse(store.get('u1'));
    assert.equal(typeof record.refresh_token, 'string', 'a refresh token was issued and stored');
    await session.refresh();
  });

  test('a wrong verifier is oidc-provider\'s invalid_grant (OAuthError) and stores nothing', async () => {
    const client = clientFor();
    const store = new MemoryStore();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT_URI, scopes: ['openid'] });
    const params = await op.authorize(request.url);
    const err = await client.exchangeCode(
      { code: params.get('code'), codeVerifier: 'a-different-verifier-of-sufficient-length-000000', redirectUri: REDIRECT_URI },
      'u1',
      store,
    ).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof OAuthError);
    assert.equal(err.code, 'oauth');
    assert.equal(err.oauthError, 'invalid_grant');
    assert.equal(err.status, 400);
    assert.equal(store.get('u1'), null);
    assert.equal((await client.session('u1', store).status()).hasRecord, false);
  });

  test('a public client uses PKCE without a secret, and refreshes with rotation', async () => {
    const client = clientFor('public');
    const store = new MemoryStore();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT_URI, scopes: ['openid'] });
    const params = await op.authorize(request.url);
    const session = await client.exchangeCode(
      { code: params.get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT_URI }, 'p1', store,
    );
    const first = JSON.parse(store.get('p1')).refresh_token;
    await session.refresh();
    const rotated = JSON.parse(store.get('p1')).refresh_token;
    differ(rotated, first, 'rotated');
    assert.equal(await op.grantAlive(rotated), true);
  });

  // A callback handled twice (a double submit, a reload): oidc-provider
  // refuses a code's second redemption AND revokes what the first one
  // obtained, so the client sends a code once per process.
  test('a code exchanged again for the same key is not sent again: the first session lives', async () => {
    const client = clientFor();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT_URI, scopes: ['openid'] });
    const params = await op.authorize(request.url);
    const code = { code: params.get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT_URI };
    const store = new MemoryStore();
    const before = op.tokenRequestsByGrant().authorization_code ?? 0;
    await client.exchangeCode(code, 'u1', store);
    const rt = JSON.parse(store.get('u1')).refresh_token;
    const again = await client.exchangeCode(code, 'u1', store);
    assert.ok(again instanceof UserSession);
    assert.equal(op.tokenRequestsByGrant().authorization_code, before + 1, 'the code was sent once');
    assert.equal(await op.grantAlive(rt), true);
    await again.refresh();
    assert.equal(await op.grantAlive(JSON.parse(store.get('u1')).refresh_token), true);
  });

  test('two exchanges of one code at once send it once; both get the session', async () => {
    const client = clientFor();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT_URI, scopes: ['openid'] });
    const params = await op.authorize(request.url);
    const code = { code: params.get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT_URI };
    const store = new MemoryStore();
    const before = op.tokenRequestsByGrant().authorization_code ?? 0;
    const sessions = await Promise.all([client.exchangeCode(code, 'u1', store), client.exchangeCode(code, 'u1', store)]);
    assert.ok(sessions.every((s) => s instanceof UserSession));
    assert.equal(op.tokenRequestsByGrant().authorization_code, before + 1);
    assert.equal(await op.grantAlive(JSON.parse(store.get('u1')).refresh_token), true);
    await sessions[1].refresh();
  });

  test('a redeemed code for another key is a ConfigError naming code, refused unsent', async () => {
    const client = clientFor();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT_URI, scopes: ['openid'] });
    const params = await op.authorize(request.url);
    const code = { code: params.get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT_URI };
    const store = new MemoryStore();
    const session = await client.exchangeCode(code, 'u1', store);
    const rt = JSON.parse(store.get('u1')).refresh_token;
    const before = op.tokenRequestsByGrant().authorization_code;

    const other = new MemoryStore();
    const err = await client.exchangeCode(code, 'u2', other).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, /`code`/);
    assert.equal(op.tokenRequestsByGrant().authorization_code, before, 'not sent');
    assert.equal(other.get('u2'), null);
    assert.equal(await op.grantAlive(rt), true);
    await session.refresh();
  });
});
