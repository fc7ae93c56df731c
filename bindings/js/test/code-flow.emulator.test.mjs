// The authorization-code flow with PKCE through the JS API against the
// emulator: authorizationUrl() → GET it without following redirects (the
// emulator approves at once) → exchangeCode() stores the first record and
// returns a session that refreshes. Mirrors tests/code_flow.rs.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import { after, before, beforeEach, describe, test } from 'node:test';

import { ConfigError, MemoryStore, OAuthError, TokenClient, UserSession } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { approve, REDIRECT } from '../support/authorize.mjs';

describe('code flow against the emulator', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  const confidential = () => new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });

  test('codeFromRedirect() checks state and issuer (RFC 9207) before the code is redeemed', async () => {
    const client = await TokenClient.discover(emu.discoveryIssuer, { clientId: 'test-client', clientSecret: 'test-secret' });
    const request = await client.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid', 'accounts'] });
    const response = await fetch(request.url, { redirect: 'manual' });
    await response.arrayBuffer();
    const redirect = response.headers.get('location');
    const iss = encodeURIComponent(emu.discoveryIssuer);
    assert.ok(redirect.includes(`iss=${iss}`), redirect);
    for (const [forged, says] of [
      [redirect.replace(iss, encodeURIComponent('https://evil.example')), 'RFC 9207'],
      [redirect.replace(`&iss=${iss}`, ''), 'no issuer'],
      [redirect.replace(request.state, 'another-state'), 'state'],
    ]) {
      assert.throws(() => client.codeFromRedirect(forged, request.state),
        (e) => e.code === 'invalid_response' && e.message.includes(says) && !e.message.includes('another-state'), says);
    }
    const denied = `${REDIRECT}?error=access_denied&state=s-1&iss=${iss}`;
    assert.throws(() => client.codeFromRedirect(denied, 's-1'), (e) => e instanceof OAuthError && e.oauthError === 'access_denied');
    assert.throws(() => client.codeFromRedirect(undefined, 's-1'), (e) => e instanceof ConfigError && e.field === 'redirect');
    assert.throws(() => client.codeFromRedirect(denied, ''), (e) => e instanceof ConfigError && e.field === 'expectedState');
    assert.equal(await emu.grantRequests('authorization_code'), 0, 'nothing sent');

    const code = client.codeFromRedirect(redirect, request.state);
    const session = await client.exchangeCode({ code, codeVerifier: request.codeVerifier, redirectUri: REDIRECT }, 'u1', new MemoryStore());
    assert.ok(await session.accessToken());
    assert.equal(await emu.grantRequests('authorization_code'), 1);
  });

  test('authorizationUrl() carries an S256 challenge, state, nonce and offline_access', async () => {
    const client = confidential();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid', 'accounts'] });
    assert.deepEqual(Object.keys(request).sort(), ['codeVerifier', 'nonce', 'state', 'url']);
    const url = new URL(request.url);
    assert.equal(`${url.origin}${url.pathname}`, emu.authorizationEndpoint, 'the default: /token → /authorize');
    const q = url.searchParams;
    assert.equal(q.get('response_type'), 'code');
    assert.equal(q.get('client_id'), 'test-client');
    assert.equal(q.get('redirect_uri'), REDIRECT);
    assert.deepEqual(q.get('scope').split(' ').sort(), ['accounts', 'offline_access', 'openid']);
    assert.equal(q.get('code_challenge_method'), 'S256');
    assert.ok(/^[A-Za-z0-9\-._~]{43,128}$/.test(request.codeVerifier), 'an RFC 7636 verifier (43-128 unreserved characters)');
    assert.equal(q.get('code_challenge'), createHash('sha256').update(request.codeVerifier).digest('base64url'));
    assert.equal(q.get('state'), request.state);
    assert.equal(q.get('nonce'), request.nonce);
    assert.ok(request.state.length >= 16 && request.nonce.length >= 16, 'unguessable state and nonce');
    assert.equal(q.has('client_secret'), false, 'no secret in a URL');

    const again = await client.authorizationUrl({ redirectUri: REDIRECT });
    assert.notEqual(again.state, request.state);
    assert.ok(again.codeVerifier !== request.codeVerifier, 'a new verifier each time');
    assert.equal(new URL(again.url).searchParams.get('scope').split(' ').includes('offline_access'), true);

    const given = await client.authorizationUrl({ redirectUri: REDIRECT, state: 'my-state', nonce: 'my-nonce', scopes: ['offline_access'] });
    assert.equal(given.state, 'my-state');
    assert.equal(new URL(given.url).searchParams.get('nonce'), 'my-nonce');
    assert.equal(new URL(given.url).searchParams.get('scope'), 'offline_access', 'not added twice');

    await assert.rejects(client.authorizationUrl({}), (err) => err instanceof ConfigError && /redirectUri/.test(err.message));
  });

  test('authorizationUrl() redacts codeVerifier when logged; its fields stay plain properties', async () => {
    // The PKCE verifier is a secret until the exchange, as the core's Debug
    // and the native bindings' repr treat it: console.log of the request
    // (util.inspect), String() and a template literal show it redacted.
    const client = confidential();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid'] });
    const verifier = request.codeVerifier;
    assert.ok(/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier), 'read as a property, whole');
    const shown = [inspect(request), inspect([request], { depth: 4 }), inspect({ request }), String(request), `${request}`];
    for (const text of shown) {
      assert.ok(!text.includes(verifier), `no verifier in ${text}`);
      assert.ok(!text.includes(verifier.slice(0, 8)), `no long prefix of it in ${text}`);
    }
    assert.match(inspect(request), /^AuthorizationRequest \{ url: ".*", codeVerifier: .*\d+ chars.*, state: ".*", nonce: ".*" \}$/);
    assert.ok(inspect(request).includes(request.state) && inspect(request).includes(request.url), 'the rest shown as is');
    // Kept across the redirect the usual ways (a server-side session
    // serialises it as JSON, or a spread copies it), the verifier survives.
    assert.deepEqual(Object.keys(request).sort(), ['codeVerifier', 'nonce', 'state', 'url']);
    assert.equal({ ...request }.codeVerifier, verifier);
    const kept = JSON.parse(JSON.stringify(request));
    assert.deepEqual(kept, { ...request });
    const params = await approve(request.url);
    assert.equal(params.get('state'), kept.state);
    const session = await client.exchangeCode(
      { code: params.get('code'), codeVerifier: kept.codeVerifier, redirectUri: REDIRECT }, 'u1', new MemoryStore(),
    );
    assert.equal(typeof await session.accessToken(), 'string');
  });

  test('exchangeCode() refuses an option it does not know, naming it, and sends nothing', async () => {
    // As authorizationUrl(): a member the exchange would ignore (`state`,
    // which the caller must compare itself, a misspelt `code_verifier`, a
    // spread authorization request) is a ConfigError, never dropped silently.
    const client = confidential();
    const store = new MemoryStore();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid'] });
    const params = await approve(request.url);
    const code = params.get('code');
    const refused = [
      [{ code, codeVerifier: request.codeVerifier, redirectUri: REDIRECT, state: params.get('state') }, 'state'],
      [{ code, code_verifier: request.codeVerifier, redirectUri: REDIRECT }, 'code_verifier'],
      [{ code, codeVerifier: request.codeVerifier, redirect_uri: REDIRECT, redirectUri: REDIRECT }, 'redirect_uri'],
      [{ ...request, code, redirectUri: REDIRECT }, 'url'],
    ];
    for (const [options, field] of refused) {
      const err = await client.exchangeCode(options, 'u1', store).then(() => assert.fail(`resolved with ${field}`), (e) => e);
      assert.ok(err instanceof ConfigError, `${field}: ${err}`);
      assert.equal(err.field, field);
      assert.match(err.message, new RegExp(`\`${field}\`: is not a known option`));
    }
    assert.equal((await emu.counters()).token_requests, 0, 'nothing sent');
    assert.equal(store.get('u1'), null);
    // Every documented option, and only those, redeems the same code.
    const session = await client.exchangeCode({ code, codeVerifier: request.codeVerifier, redirectUri: REDIRECT }, 'u1', store);
    assert.equal(typeof await session.accessToken(), 'string');
    assert.equal(await emu.grantRequests('authorization_code'), 1);
  });

  test('exchangeCode() stores the first record and returns a session that refreshes', async () => {
    const client = confidential();
    const store = new MemoryStore();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid', 'accounts'] });
    const params = await approve(request.url);
    assert.equal(params.get('state'), request.state);

    const session = await client.exchangeCode(
      { code: params.get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT }, 'u1', store,
    );
    assert.ok(session instanceof UserSession);
    assert.equal(session.key, 'u1');
    const record = JSON.parse(store.get('u1'));
    assert.equal(typeof record.refresh_token, 'string');
    assert.equal(await emu.refreshTokenState(record.refresh_token), 'active');
    const counters = await emu.counters();
    assert.equal(counters.codes_issued, 1);
    assert.equal(counters.code_exchanges, 1);

    const info = await session.tokens();
    assert.ok(info.scope.split(' ').includes('offline_access'));
    const idClaims = JSON.parse(Buffer.from(info.idToken.split('.')[1], 'base64url').toString('utf8'));
    assert.equal(idClaims.nonce, request.nonce, 'the ID token carries our nonce');
    assert.ok(record.access_token === info.accessToken, 'the stored access token is served');
    assert.equal(await emu.refreshRequests(), 0, 'the exchanged access token is used without a refresh');

    const refreshed = await session.refresh();
    assert.ok(refreshed.accessToken !== info.accessToken);
    assert.equal(await emu.refreshTokenState(record.refresh_token), 'consumed');
    const rotated = JSON.parse(store.get('u1')).refresh_token;
    assert.ok(rotated !== record.refresh_token, 'the rotated refresh token is stored');
    assert.equal(await emu.refreshTokenState(rotated), 'active');
  });

  test('a wrong verifier is OAuthError invalid_grant and stores nothing', async () => {
    const client = confidential();
    const store = new MemoryStore();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid'] });
    const params = await approve(request.url);
    const err = await client.exchangeCode(
      { code: params.get('code'), codeVerifier: 'a-different-verifier-of-sufficient-length-000000', redirectUri: REDIRECT },
      'u1',
      store,
    ).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof OAuthError);
    assert.equal(err.code, 'oauth');
    assert.equal(err.oauthError, 'invalid_grant');
    assert.equal(store.get('u1'), null);
    assert.equal((await client.session('u1', store).status()).hasRecord, false);
  });

  test('a public client uses PKCE without a secret', async () => {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'public-client' });
    const store = new MemoryStore();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid'] });
    const params = await approve(request.url);
    const session = await client.exchangeCode(
      { code: params.get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT }, 'p1', store,
    );
    await session.refresh();
    assert.equal((await emu.counters()).refresh_success, 1);
  });

  test('exchangeCode() with missing fields or a bad store is a ConfigError', async () => {
    const client = confidential();
    await assert.rejects(client.exchangeCode({ code: 'c', redirectUri: REDIRECT }, 'u1', new MemoryStore()),
      (err) => err instanceof ConfigError && /codeVerifier/.test(err.message));
    await assert.rejects(client.exchangeCode({ code: 'c', codeVerifier: 'v', redirectUri: REDIRECT }, 'u1', {}),
      (err) => err instanceof ConfigError && /store/.test(err.message));
    assert.equal((await emu.counters()).token_requests, 0);
  });

  test('a redirect URI with a fragment or without a scheme is a ConfigError naming redirectUri, and the code is not spent', async () => {
    // RFC 6749 §3.1.2: an absolute URI without a fragment. The server compares
    // the exchange's redirect URI with the authorize request's, and a code
    // refused for it is gone: checked before anything is sent.
    const client = confidential();
    const named = (err) => err instanceof ConfigError && /redirectUri/.test(err.message);
    for (const redirectUri of [`${REDIRECT}#done`, '/callback', 'callback', `${REDIRECT}\n`, 'https://app.example/call back']) {
      await assert.rejects(client.authorizationUrl({ redirectUri }), named, redirectUri);
    }
    const store = new MemoryStore();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid'] });
    const params = await approve(request.url);
    const code = { code: params.get('code'), codeVerifier: request.codeVerifier };
    await assert.rejects(client.exchangeCode({ ...code, redirectUri: `${REDIRECT}#` }, 'u1', store), named);
    assert.equal((await emu.counters()).token_requests, 0, 'nothing sent');
    await client.exchangeCode({ ...code, redirectUri: REDIRECT }, 'u1', store);
    assert.equal(JSON.parse(store.get('u1')).refresh_token.length > 0, true, 'the same code still redeems');
  });

  test('a code whose answer was lost, or that met a 5xx, is never sent again: the repeat gets the same error', async () => {
    // The server may have redeemed it; sent again, it would revoke what the
    // first request issued (a repeat used to send it).
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret', timeoutMs: 300,
    });
    const store = new MemoryStore();
    for (const fault of [{ kind: 'hold', grant: 'authorization_code' }, { kind: 'status', status: 502, grant: 'authorization_code' }]) {
      await emu.reset();
      const request = await client.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid'] });
      const code = { code: (await approve(request.url)).get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT };
      await emu.fault(fault);
      const first = await client.exchangeCode(code, 'u1', store).catch((e) => e);
      assert.ok(first instanceof Error, fault.kind);
      const repeat = await client.exchangeCode(code, 'u1', store).catch((e) => e);
      assert.equal(repeat.code, first.code, fault.kind);
      assert.equal(await emu.grantRequests('authorization_code'), 1, `${fault.kind}: sent once`);
      await emu.releaseHeld();
    }
  });

  test('a failed save after the exchange keeps the record in memory: a repeat, a session call or saveUnsaved() saves it', async () => {
    // What exchangeCode()'s docs promise a StorageError means: the tokens
    // were issued, the user need not authorize again, the code is sent once.
    const events = [];
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret',
      onEvent: (event) => events.push(event.errorCode ? `${event.kind}:${event.errorCode}` : event.kind),
    });
    const ways = {
      repeat: (code, store) => client.exchangeCode(code, 'u1', store).then((session) => session.accessToken()),
      sessionCall: (code, store) => client.session('u1', store).accessToken(),
      saveUnsaved: () => client.saveUnsaved(),
    };
    for (const [way, save] of Object.entries(ways)) {
      await emu.reset();
      const inner = new MemoryStore();
      let failures = 1;
      const store = {
        load: (key) => inner.load(key),
        save: async (key, record) => {
          if (failures > 0) { failures -= 1; throw new Error('disk full'); }
          return inner.save(key, record);
        },
      };
      const request = await client.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid'] });
      const code = { code: (await approve(request.url)).get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT };
      await assert.rejects(client.exchangeCode(code, 'u1', store), (e) => e.code === 'storage', way);
      assert.equal(inner.get('u1'), null, way);
      await save(code, store);
      const saved = JSON.parse(inner.get('u1'));
      assert.ok(saved.refresh_token, `${way}: saved`);
      assert.equal(await emu.refreshTokenState(saved.refresh_token), 'active', `${way}: the issued tokens, alive`);
      assert.equal(await emu.grantRequests('authorization_code'), 1, `${way}: the code sent once`);
      assert.equal(await emu.refreshRequests(), 0, `${way}: nothing refreshed`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(events.splice(0), ['save_failed:storage', 'saved'], `${way}: the events of a re-link`);
    }
  });
});
