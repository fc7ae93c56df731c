// Client-credentials tokens through the JS API against the emulator: cached
// per sorted scope set, single flight, re-requested when stale (fake time),
// invalidated on demand, audience = token endpoint, never a refresh token.
// Mirrors tests/client_tokens.rs.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { ConfigError, OAuthError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { fakeTime } from '../support/fake-time.mjs';

const same = (a, b, message) => assert.ok(typeof a === 'string' && a === b, message);
const differ = (a, b, message) => assert.ok(typeof a === 'string' && typeof b === 'string' && a !== b, message);

describe('clientToken() against the emulator', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  function setup(extra = {}) {
    const time = fakeTime();
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint,
      clientId: 'test-client',
      clientSecret: 'test-secret',
      now: time.now,
      sleep: time.sleep,
      ...extra,
    });
    return { time, client };
  }

  const ccRequests = () => emu.grantRequests('client_credentials');

  test('cached per sorted scope set (order and duplicates ignored), renewed after expiry', async () => {
    const { client, time } = setup();
    const a = await client.clientToken(['accounts', 'balances']);
    same(await client.clientToken(['balances', 'accounts', 'balances']), a, 'same scope set, same token');
    assert.equal(await ccRequests(), 1);

    const other = await client.clientToken(['transactions']);
    differ(other, a, 'another scope set has its own token');
    assert.equal(await ccRequests(), 2);
    const counters = await emu.counters();
    assert.equal(counters.last_audience, emu.tokenEndpoint, 'audience defaults to the token endpoint');
    assert.equal(counters.client_credentials_issued, 2);

    // 3600 s tokens, 60 s leeway.
    time.advance(3_539_000);
    same(await client.clientToken(['accounts', 'balances']), a, 'still fresh');
    assert.equal(await ccRequests(), 2);
    time.advance(1_000);
    const renewed = await client.clientToken(['accounts', 'balances']);
    differ(renewed, a, 'stale: a new token');
    assert.equal(await ccRequests(), 3);
    assert.equal(await emu.refreshRequests(), 0, 'renewed with client_credentials, never refresh_token');
  });

  test('concurrent callers share one request', async () => {
    const { client } = setup();
    // Held until every caller has asked.
    await emu.fault({ kind: 'hold', grant: 'client_credentials' });
    const pending = Promise.all(Array.from({ length: 50 }, (_, i) => (
      client.clientToken(i % 2 ? ['accounts', 'balances'] : ['balances', 'accounts'])
    )));
    assert.equal(await emu.waitHeld(1), 1);
    assert.equal(await emu.releaseHeld(), 1);
    const tokens = await pending;
    assert.equal(tokens.length, 50);
    assert.equal(new Set(tokens).size, 1);
    assert.equal(await ccRequests(), 1);
    assert.equal((await emu.counters()).max_concurrent_token_requests, 1);
  });

  test('invalidateClientToken forces a new token for that scope set only', async () => {
    const { client, time } = setup();
    const a = await client.clientToken(['accounts']);
    const b = await client.clientToken(['balances']);
    client.invalidateClientToken(['accounts', 'accounts']);
    await emu.fault({ kind: 'status', status: 500 });
    const a2 = await client.clientToken(['accounts']);
    differ(a2, a, 'invalidated: a new token');
    assert.equal(time.sleeps.length, 1, 'the 500 was retried after a backoff');
    assert.equal(await ccRequests(), 4);
    same(await client.clientToken(['balances']), b, 'the other scope set is untouched');
    assert.equal(await ccRequests(), 4);
    assert.throws(() => client.invalidateClientToken('accounts'), ConfigError);
  });

  test('clientTokenRejected forgets a rejected token once, not the replacement another worker fetched', async () => {
    // Many workers share one client token; the API revokes it and each worker that saw it rejected says so.
    const events = [];
    const { client } = setup({ onEvent: (e) => events.push(e) });
    const first = await client.clientToken(['accounts']);
    client.clientTokenRejected(['accounts'], first);
    const second = await client.clientToken(['accounts']);
    differ(second, first, 'a new one after the first report');
    for (let i = 0; i < 5; i += 1) {
      client.clientTokenRejected(['accounts'], first);
      same(await client.clientToken(['accounts']), second, 'later reports of the old token keep the new one');
    }
    assert.equal(await ccRequests(), 2);
    assert.throws(() => client.clientTokenRejected(['accounts']), ConfigError, 'a token is required');
    assert.throws(() => client.clientTokenRejected(['accounts'], 7), ConfigError);
    same(await client.clientToken(['accounts']), second);
    // The forgotten token still lived: it is revoked with the rest.
    await client.revokeClientTokens();
    await Promise.resolve();
    assert.equal((await emu.counters()).tokens_revoked, 2);
  });

  test('a failed client-token request emits client_token_failed', async () => {
    const events = [];
    const { client } = setup({ onEvent: (e) => events.push(e) });
    await emu.fault({ kind: 'body', status: 401, body: '{"error":"invalid_client"}' });
    await assert.rejects(client.clientToken(['payments', 'accounts']), { code: 'invalid_client' });
    await Promise.resolve(); // events arrive after the current turn
    const failed = events.filter((e) => e.kind === 'client_token_failed');
    assert.equal(failed.length, 1);
    assert.equal(failed[0].scope, 'accounts payments');
    assert.equal(failed[0].errorCode, 'invalid_client');
    assert.equal(failed[0].attempts, 1);
    assert.equal(failed[0].key, undefined);
  });

  test('errors are typed: an OAuth error answer and a scope with a space', async () => {
    const { client } = setup();
    await emu.fault({ kind: 'body', status: 400, body: '{"error":"invalid_scope","error_description":"no such scope"}' });
    const err = await client.clientToken(['x']).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof OAuthError);
    assert.equal(err.code, 'oauth');
    assert.equal(err.oauthError, 'invalid_scope');
    assert.equal(err.description, 'no such scope');
    await assert.rejects(client.clientToken(['two words']), ConfigError);
    await assert.rejects(client.clientToken('accounts'), ConfigError);
    // A failure is not cached.
    assert.equal(typeof (await client.clientToken(['x'])), 'string');
  });

  test('a refresh token in a client-credentials answer is not kept or used', async () => {
    const { client, time } = setup();
    await emu.fault({
      kind: 'body',
      status: 200,
      body: '{"access_token":"cc-token","token_type":"Bearer","expires_in":3600,"refresh_token":"must-not-be-kept"}',
    });
    assert.equal(await client.clientToken(['a']), 'cc-token');
    time.advance(3_600_000);
    const next = await client.clientToken(['a']);
    differ(next, 'cc-token', 'a new token after expiry');
    assert.equal(await emu.refreshRequests(), 0, 'the stray refresh token was never sent');
    assert.equal(await ccRequests(), 2);
  });

  test('an explicit audience is sent as given', async () => {
    const { client } = setup({ audience: 'https://api.example/' });
    // The emulator only accepts the token endpoint as audience.
    await assert.rejects(client.clientToken(['a']), (err) => err instanceof OAuthError && err.oauthError === 'invalid_request');
    assert.equal((await emu.counters()).last_audience, 'https://api.example/');
  });

  test('a public client is refused client_credentials (unauthorized_client)', async () => {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'public-client' });
    const err = await client.clientToken(['accounts']).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof OAuthError);
    assert.equal(err.oauthError, 'unauthorized_client');
  });
});
