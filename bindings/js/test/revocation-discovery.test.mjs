// Revocation (RFC 7009: session.revoke(), client.revokeClientTokens()) and
// discovery (TokenClient.discover) through the JS API, against the emulator
// and against oidc-provider (revocation on, rotation on). Mirrors
// tests/revocation.rs and tests/discovery.rs.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import {
  InvalidResponseError,
  MemoryStore,
  NetworkError,
  ReauthorizationRequiredError,
  TokenClient,
  TransientError,
} from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { startOidcProvider } from '../support/oidc-provider.mjs';
import { fakeTime } from '../support/fake-time.mjs';

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';

const record = (store, key) => JSON.parse(store.get(key));

describe('revocation against the emulator', () => {
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
    return { time, client, store: new MemoryStore() };
  }

  async function seeded(client, store, key = 'u1') {
    const family = await emu.seed();
    const session = client.session(key, store);
    await session.seed({ refreshToken: family.refresh_token });
    return { session, family };
  }

  test('revoke() revokes both tokens, marks the record dead and later calls fail fast', async () => {
    const { client, store } = setup();
    const { session } = await seeded(client, store);
    await session.accessToken(); // mirrored from now on
    const live = record(store, 'u1').refresh_token;

    await session.revoke();

    const counters = await emu.counters();
    assert.equal(counters.revocation_requests, 2);
    assert.deepEqual(counters.revocation_by_hint, { refresh_token: 1, access_token: 1 });
    assert.equal(await emu.refreshTokenState(live), 'revoked');
    const dead = record(store, 'u1');
    assert.equal(dead.reauth, 'revoked');
    assert.equal(dead.refresh_token, undefined);

    const before = (await emu.counters()).token_requests;
    for (const handle of [session, client.session('u1', store)]) {
      await assert.rejects(handle.accessToken(), (e) => e instanceof ReauthorizationRequiredError && e.reason === 'revoked');
    }
    assert.equal((await emu.counters()).token_requests, before, 'nothing sent');
    assert.equal((await session.status()).reauthorizationReason, 'revoked');
  });

  test('another client on the same store (another process) sees the revocation', async () => {
    const { client, store } = setup();
    const { session } = await seeded(client, store);
    await session.revoke();
    const other = setup().client;
    await assert.rejects(
      other.session('u1', store).accessToken(),
      (e) => e instanceof ReauthorizationRequiredError && e.reason === 'revoked',
    );
  });

  test('revoke() waits for a refresh in flight and revokes the rotated token', async () => {
    const { client, store } = setup();
    // Every record saved, seen through the store's own save (given before
    // the first session opens, so sessions call it).
    const saved = [];
    const save = store.save.bind(store);
    store.save = async (key, text) => {
      saved.push(JSON.parse(text));
      return save(key, text);
    };
    const { session, family } = await seeded(client, store);
    await emu.fault({ kind: 'hold', grant: 'refresh_token' });
    const refreshing = session.accessToken();
    assert.equal(await emu.waitHeld(1), 1);
    const revoking = session.revoke();
    // A smoke check only (a revoke that did not wait would rarely have sent
    // yet): what proves the order is the end state below, the rotated token
    // revoked and the seeded one consumed, not revoked.
    assert.equal((await emu.counters()).revocation_requests, 0, 'held back by the refresh');
    assert.equal(await emu.releaseHeld(), 1);
    await refreshing;
    // Read again while the revocation runs: the refreshed token, or the
    // revocation's outcome once the record is marked dead. (The core offers
    // nothing to mirror while the revocation runs.)
    for (let i = 0; i < 2; i++) {
      await session.accessToken().then(
        (token) => assert.equal(typeof token, 'string'),
        (e) => assert.equal(e.reason, 'revoked'),
      );
    }
    await revoking;
    await assert.rejects(session.accessToken(), (e) => e.reason === 'revoked', 'no mirrored token outlives revoke()');
    const rotated = saved.find((r) => !r.in_doubt && r.refresh_token && r.refresh_token !== family.refresh_token);
    assert.ok(rotated, 'the rotated record was saved before the revocation');
    assert.equal(await emu.refreshTokenState(rotated.refresh_token), 'revoked');
    assert.equal(await emu.refreshTokenState(family.refresh_token), 'consumed');
  });

  test('a refresh by another client that read the store before revoke() marked it dead sends nothing', async () => {
    // Two clients of one process on one plain store. A's read answers only
    // after B's revocation saved the dead mark; A's refresh used to write
    // its older read over that mark and send the token, leaving the session
    // alive after a successful revoke().
    const { client, store } = setup();
    const { session: b, family } = await seeded(client, store);
    let entered;
    const readIn = new Promise((resolve) => { entered = resolve; });
    let release;
    const held = {
      async load(key) {
        const read = store.get(key) ?? null;
        if (release === undefined) {
          await new Promise((resolve) => { release = resolve; entered(); });
        }
        return read;
      },
      save: (key, text) => store.save(key, text),
    };
    const a = setup().client.session('u1', held);
    const refreshing = a.accessToken().then(() => 'token', (e) => e.reason ?? e.code);
    await readIn;
    await emu.fault({ kind: 'hold', grant: 'revocation' });
    const revoking = b.revoke();
    assert.equal(await emu.waitHeld(1), 1);
    assert.equal(record(store, 'u1').reauth, 'revoked', 'marked dead before the server hears of it');
    release();
    assert.equal(await emu.releaseHeld(), 1);
    await revoking;
    assert.equal(await refreshing, 'revoked');
    assert.equal(await emu.refreshRequests(), 0, 'the revoked token was never sent');
    assert.equal(await emu.refreshTokenState(family.refresh_token), 'revoked');
    assert.equal(record(store, 'u1').reauth, 'revoked');
  });

  test('a 503 from the revocation endpoint is retried', async () => {
    const { client, store, time } = setup();
    const { session, family } = await seeded(client, store);
    await emu.fault({ kind: 'status', status: 503, grant: 'revocation' });
    await session.revoke();
    assert.equal((await emu.counters()).revocation_requests, 2);
    assert.equal(time.sleeps.length, 1);
    assert.equal(await emu.refreshTokenState(family.refresh_token), 'revoked');
  });

  test('a revocation that fails for good still kills the session and says the server may hold the token', async () => {
    const { client, store } = setup({ retry: { maxAttempts: 2 } });
    const { session, family } = await seeded(client, store);
    await emu.fault([
      { kind: 'status', status: 503, grant: 'revocation' },
      { kind: 'status', status: 503, grant: 'revocation' },
    ]);
    const err = await session.revoke().then(() => null, (e) => e);
    assert.ok(err instanceof TransientError, String(err));
    assert.equal(err.serverMayHoldToken, true);
    assert.match(err.message, /may still hold/);
    assert.ok(!err.message.includes(family.refresh_token));
    assert.equal(record(store, 'u1').reauth, 'revoked');
    await assert.rejects(session.accessToken(), (e) => e.reason === 'revoked');
    assert.equal((await session.status()).revocationPending, true, 'the server may hold the token');
    await session.revoke();
    assert.equal(await emu.refreshTokenState(family.refresh_token), 'revoked');
    assert.equal((await session.status()).revocationPending, false);
  });

  test('revokeClientTokens() revokes every cached client token and forgets it', async () => {
    const { client } = setup();
    const a = await client.clientToken(['accounts']);
    await client.clientToken(['balances']);
    await client.revokeClientTokens();
    const counters = await emu.counters();
    assert.deepEqual(counters.revocation_by_hint, { access_token: 2 });
    const b = await client.clientToken(['accounts']);
    assert.ok(a !== b, 'a new client token');
  });

  test('revoke() after a lost refresh answer says the server may hold a successor, never a silent success', async () => {
    const { client, store } = setup();
    const { session, family } = await seeded(client, store);
    await emu.fault({ kind: 'drop_after_commit' });
    await assert.rejects(session.accessToken(), (e) => e.code === 'network');
    assert.equal((await session.status()).inDoubt, true);

    const mayHoldSuccessor = (e) => e.code === 'reauthorization_required'
      && e.reason === 'lost_rotation' && e.serverMayHoldToken === true;
    await assert.rejects(session.revoke(), mayHoldSuccessor);
    const lineage = await emu.refreshTokenInfo(family.refresh_token);
    assert.equal(lineage.successor_state, 'active', 'the successor this client never saw is live: the error is true');
    const status = await session.status();
    assert.equal(status.reauthorizationReason, 'revoked');
    assert.equal(status.inDoubt, true);
    await assert.rejects(session.revoke(), mayHoldSuccessor, 'said again');
    assert.equal((await emu.counters()).revocation_requests, 1, 'nothing sent again');
  });

  test('with nowhere to send a revocation, revoke() and revokeClientTokens() are ConfigErrors that change nothing', async () => {
    // A token endpoint no revocation endpoint is derived from (its fetch
    // sends it to the emulator's real path), and none given.
    const alias = emu.tokenEndpoint.replace('/connect/token', '/connect/oauth2-token');
    const { client, store } = setup({
      tokenEndpoint: alias,
      audience: emu.tokenEndpoint,
      fetch: (input, init) => fetch(String(input).replace(alias, emu.tokenEndpoint), init),
    });
    const { session, family } = await seeded(client, store);
    const token = await session.accessToken();
    const names = (e) => e.code === 'config' && e.field === 'revocationEndpoint' && e.serverMayHoldToken !== true;
    await assert.rejects(session.revoke(), names);
    assert.equal(record(store, 'u1').reauth, undefined, 'not marked revoked: the user need not re-link');
    assert.equal((await session.status()).revocationPending, false);
    assert.equal(await session.accessToken(), token, 'still served');
    assert.notEqual(record(store, 'u1').refresh_token, family.refresh_token, 'the rotated token is kept');

    const cached = await client.clientToken(['accounts']);
    await assert.rejects(client.revokeClientTokens(), names);
    assert.equal(await client.clientToken(['accounts']), cached, 'the client token is kept');
    const counters = await emu.counters();
    assert.equal(counters.revocation_requests, 0);
    assert.equal(counters.by_grant.client_credentials, 1);
  });
});

describe('discovery against the emulator', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  const options = () => ({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });

  test('the endpoints come from the document, read once', async () => {
    const client = await TokenClient.discover(emu.discoveryIssuer, options());
    const meta = client.providerMetadata;
    assert.equal(meta.issuer, emu.discoveryIssuer);
    assert.equal(meta.tokenEndpoint, emu.tokenEndpoint);
    assert.equal(meta.revocationEndpoint, emu.revocationEndpoint);
    assert.ok(meta.tokenEndpointAuthMethods.includes('client_secret_post'));
    assert.equal(meta.authorizationResponseIssParameterSupported, true, 'RFC 9207, as published');
    const { url } = await client.authorizationUrl({ redirectUri: 'http://127.0.0.1/cb', scopes: ['openid'] });
    assert.ok(url.startsWith(emu.authorizationEndpoint), 'the published authorization endpoint');

    const family = await emu.seed();
    const store = new MemoryStore();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token });
    await session.accessToken();
    await session.revoke();
    const counters = await emu.counters();
    assert.equal(counters.discovery_requests, 1);
    assert.equal(counters.revocation_by_hint.refresh_token, 1);
  });

  test('missing or bad documents reject with typed errors', async () => {
    for (const [mode, says] of [
      ['not_found', /404/],
      ['wrong_issuer', /issuer/],
      ['insecure_token_endpoint', /https/],
      ['invalid_json', /JSON/],
    ]) {
      await emu.setDiscovery(mode);
      const err = await TokenClient.discover(emu.discoveryIssuer, options()).then(() => null, (e) => e);
      assert.ok(err instanceof InvalidResponseError, `${mode}: ${err}`);
      assert.match(err.message, says, mode);
    }
  });

  test('an unreachable issuer is a NetworkError; options are checked', async () => {
    const err = await TokenClient.discover('http://127.0.0.1:9', options()).then(() => null, (e) => e);
    assert.ok(err instanceof NetworkError, String(err));
    await assert.rejects(
      TokenClient.discover(emu.discoveryIssuer, { ...options(), tokenEndpoint: emu.tokenEndpoint }),
      (e) => e.code === 'config' && /tokenEndpoint/.test(e.message),
    );
  });
});

describe('revocation and discovery against oidc-provider', () => {
  let op;
  before(async () => { op = await startOidcProvider(); });
  after(async () => { await op?.close(); });

  async function discovered() {
    const creds = op.clients.confidential;
    const time = fakeTime();
    const client = await TokenClient.discover(op.issuer, {
      clientId: creds.clientId,
      clientSecret: creds.clientSecret,
      now: time.now,
      sleep: time.sleep,
    });
    return { client, time };
  }

  test('discovery reads oidc-provider\'s endpoints (its authorization endpoint is /auth)', async () => {
    const { client } = await discovered();
    const meta = client.providerMetadata;
    assert.equal(meta.tokenEndpoint, op.tokenEndpoint);
    assert.equal(meta.authorizationEndpoint, op.authorizationEndpoint);
    assert.match(meta.authorizationEndpoint, /\/auth$/);
    assert.equal(typeof meta.revocationEndpoint, 'string');
    assert.equal(meta.authorizationResponseIssParameterSupported, true, 'oidc-provider sends iss (RFC 9207)');
  });

  test('a discovered client refreshes, then revoke() ends the grant at the server', async () => {
    const { client, time } = await discovered();
    const tokens = await op.obtainTokens({ client: 'confidential' });
    const store = new MemoryStore();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: tokens.refresh_token });
    await session.accessToken();
    time.advance(3600 * 1000);
    await session.refresh();
    const rotated = record(store, 'u1').refresh_token;
    assert.equal(await op.grantAlive(rotated), true);

    await session.revoke();
    assert.equal(await op.grantAlive(rotated), false, 'oidc-provider revoked the grant');
    await assert.rejects(session.accessToken(), (e) => e.reason === 'revoked');
    assert.equal(record(store, 'u1').reauth, 'revoked');
  });

  test('revokeClientTokens() at oidc-provider', async () => {
    const { client } = await discovered();
    const token = await client.clientToken(['api']);
    assert.ok(await op.provider.ClientCredentials.find(token), 'oidc-provider holds the token');
    await client.revokeClientTokens();
    assert.equal(await op.provider.ClientCredentials.find(token), undefined, 'and no longer does');
  });
});
