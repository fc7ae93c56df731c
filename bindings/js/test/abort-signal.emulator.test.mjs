// A caller's AbortSignal (`{ signal }` on the calls that wait, `init.signal`
// for authorizedFetch): the caller stops waiting, the shared work does not.
// A refresh an aborted caller started or joined still rotates and saves for
// every other caller, and a signal already aborted sends nothing: a refresh
// for a request nobody waits for would open a banking session for nothing.
//
// Against the emulator; a request is held in flight by its `hold` fault
// (no sleeps), and the emulator's counters say how many were sent.

import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { after, before, beforeEach, describe, test } from 'node:test';

import { ConfigError, MemoryStore, TokenClient, authorizedFetch } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const CLIENT = { clientId: 'test-client', clientSecret: 'test-secret' };
const REDIRECT = 'https://app.example/callback';
const QUERY = JSON.stringify({ query: '{ viewer { clientId scope } }' });

/** Token comparisons that never print a token when they fail. */
const same = (a, b, message) => assert.ok(typeof a === 'string' && a === b, message);
const differ = (a, b, message) => assert.ok(typeof a === 'string' && typeof b === 'string' && a !== b, message);

/** An AbortError DOMException, as `AbortController#abort()` gives. */
const abortError = { name: 'AbortError' };

/** The refresh token `store` holds for `key`. */
const storedRefreshToken = async (store, key = 'u1') => JSON.parse(await store.load(key)).refresh_token;

/**
 * `signal` behind a Proxy whose `name` throws from its `from`-th read on
 * (its methods bound to the real signal, so that it still works).
 */
function throwingOn(name, signal, from = 1) {
  let reads = 0;
  return new Proxy(signal, {
    get(target, key) {
      if (key === name && (reads += 1) >= from) throw new TypeError(`${name} threw`);
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('AbortSignal: the caller stops waiting, the shared work goes on', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  const newClient = () => new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });

  /** `session.refresh()` with its request held at the emulator, its caller aborted meanwhile; the request stays held. */
  async function refreshAbortedWhileHeld(session) {
    await emu.fault({ kind: 'hold' });
    const controller = new AbortController();
    const aborted = session.refresh({ signal: controller.signal });
    await emu.waitHeld(1);
    controller.abort();
    await assert.rejects(aborted, abortError);
  }

  /** A session seeded with a refresh token only (its first read refreshes); the seeded token. */
  async function unread(store = new MemoryStore()) {
    const client = newClient();
    const session = client.session('u1', store);
    const refreshToken = (await emu.seed()).refresh_token;
    await session.seed({ refreshToken });
    return { client, session, store, refreshToken };
  }

  test('a signal already aborted rejects with its reason and sends nothing, on every call that waits', async () => {
    const { client, session } = await unread();
    const signal = AbortSignal.abort();
    const calls = {
      accessToken: () => session.accessToken({ signal }),
      tokens: () => session.tokens({ signal }),
      refresh: () => session.refresh({ signal }),
      tokenRejected: () => session.tokenRejected('at-rejected', { signal }),
      status: () => session.status({ signal }),
      seed: () => session.seed({ refreshToken: 'rt-other' }, { signal }),
      revoke: () => session.revoke({ signal }),
      clientToken: () => client.clientToken(['accounts'], { signal }),
    };
    for (const [name, call] of Object.entries(calls)) {
      await assert.rejects(call(), (e) => e === signal.reason, `${name}() rejects with the signal's reason`);
    }
    const counters = await emu.counters();
    assert.equal(counters.by_grant?.refresh_token ?? 0, 0, 'no refresh sent');
    assert.equal(counters.by_grant?.client_credentials ?? 0, 0, 'no client token asked for');
    // Nothing was seeded over or revoked: the session refreshes once, now.
    await session.accessToken();
    assert.equal(await emu.refreshRequests(), 1);
  });

  test('a mirrored token is not handed to a caller whose signal is aborted (as fetch would not start)', async () => {
    const { session } = await unread();
    const token = await session.accessToken();
    same(await session.accessToken(), token);
    same(await session.accessToken({ signal: new AbortController().signal }), token, 'a live signal: served');
    await assert.rejects(session.accessToken({ signal: AbortSignal.abort() }), abortError);
  });

  test('an abort during a refresh ends only that wait: the refresh rotates, saves and serves the others', async () => {
    const { session, store, refreshToken } = await unread();
    await emu.fault({ kind: 'hold' });
    const controller = new AbortController();
    const aborted = session.accessToken({ signal: controller.signal });
    const other = session.accessToken();
    await emu.waitHeld(1);
    const reason = new Error('the request was cancelled');
    controller.abort(reason);
    await assert.rejects(aborted, (e) => e === reason, 'rejected with the given reason, while the refresh is held');
    assert.equal(await emu.held(), 1, 'the refresh is still in flight');
    await emu.releaseHeld();
    const token = await other;
    assert.equal(await emu.refreshRequests(), 1);
    differ(await storedRefreshToken(store), refreshToken, 'the rotated refresh token is saved');
    assert.equal(await emu.refreshTokenState(refreshToken), 'consumed');
    same(await session.accessToken(), token, 'served with no new request');
    assert.equal(await emu.refreshRequests(), 1);
  });

  test('a refresh whose only caller aborted still lands: the next call gets its token with no new request', async () => {
    const { session, store, refreshToken } = await unread();
    await refreshAbortedWhileHeld(session);
    await emu.releaseHeld();
    const token = await session.accessToken(); // joins the refresh in flight, or reads what it saved
    assert.equal(await emu.refreshRequests(), 1, 'no second request');
    const status = await session.status();
    assert.equal(status.unpersisted, false);
    assert.equal(status.inDoubt, false);
    const saved = await storedRefreshToken(store);
    differ(saved, refreshToken, 'rotated and saved');
    assert.equal(await emu.refreshTokenState(saved), 'active');
    assert.equal(await emu.refreshTokenState(refreshToken), 'consumed');
    same((await session.tokens()).accessToken, token);
    assert.equal(await emu.refreshRequests(), 1);
  });

  test('a token read during an aborted refresh is not mirrored past that refresh', async () => {
    // The refresh's end, seen through its `saved` event: nothing else waits for it.
    let savedNow;
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint,
      ...CLIENT,
      onEvent: (e) => { if (e.kind === 'saved') savedNow?.(); },
    });
    const session = client.session('u1', new MemoryStore());
    await session.seed({ refreshToken: (await emu.seed()).refresh_token });
    const before = await session.accessToken();
    same(await session.accessToken(), before, 'mirrored');
    await refreshAbortedWhileHeld(session);
    // Two reads while the refresh is held: the second would mirror the
    // token of the moment, were the refresh no longer marked as running.
    same(await session.accessToken(), before);
    same(await session.accessToken(), before);
    const saved = new Promise((resolve) => { savedNow = resolve; });
    await emu.releaseHeld();
    await saved;
    const after = await session.accessToken();
    differ(after, before, 'the refresh replaced the token');
    assert.equal(await emu.refreshRequests(), 2);
    for (let i = 0; i < 3; i += 1) same(await session.accessToken(), after, `read ${i + 1}: the new token`);
  });

  test('a long-lived signal keeps no listener once its calls have settled', async () => {
    const { session } = await unread();
    const { signal } = new AbortController();
    await session.accessToken({ signal });
    const calls = Array.from({ length: 100 }, () => session.accessToken({ signal }));
    calls.push(session.refresh({ signal }));
    assert.equal(getEventListeners(signal, 'abort').length, 1, 'one listener for all its calls (Node warns past ten)');
    await Promise.all(calls);
    await session.tokens({ signal });
    await session.status({ signal });
    assert.equal(getEventListeners(signal, 'abort').length, 0);
  });

  test('options that are not { signal } reject with a ConfigError naming them, sending nothing', async () => {
    const { session } = await unread();
    const cases = [
      [null, 'options'],
      ['signal', 'options'],
      [{ singal: AbortSignal.abort() }, 'options.singal'],
      [{ signal: {} }, 'options.signal'],
      [{ signal: 'abort' }, 'options.signal'],
      [{ get signal() { throw new Error('boom'); } }, 'options'],
    ];
    for (const [options, field] of cases) {
      for (const call of [() => session.accessToken(options), () => session.refresh(options)]) {
        await assert.rejects(call(), (e) => e instanceof ConfigError && e.field === field, `${String(field)}`);
      }
    }
    assert.equal(await emu.refreshRequests(), 0);
    await session.accessToken({ signal: undefined });
    assert.equal(await emu.refreshRequests(), 1, '{ signal: undefined } is no signal');
  });

  test('a signal without `reason` (an older engine, a polyfill) rejects with an AbortError', async () => {
    const { session } = await unread();
    const listeners = [];
    const older = {
      aborted: true,
      addEventListener: (type, listener) => listeners.push(listener),
      removeEventListener: () => {},
    };
    await assert.rejects(session.accessToken({ signal: older }), (e) => e instanceof DOMException && e.name === 'AbortError');
    assert.equal(await emu.refreshRequests(), 0);
  });

  test('abort(null) rejects with null, as fetch does', async () => {
    const { session } = await unread();
    const controller = new AbortController();
    controller.abort(null);
    const fetched = await fetch(emu.apiEndpoint, { signal: controller.signal }).then(() => 'resolved', (e) => e);
    assert.equal(fetched, null, "fetch's own behaviour");
    const waited = await session.accessToken({ signal: controller.signal }).then(() => 'resolved', (e) => e);
    assert.equal(waited, null);
    assert.equal(await emu.refreshRequests(), 0);
  });

  test('a lookalike signal whose listener methods throw still lets the call settle', async () => {
    const { session } = await unread();
    const throwing = {
      aborted: false,
      addEventListener: () => { throw new Error('nope'); },
      removeEventListener: () => { throw new Error('nope'); },
    };
    const token = await session.accessToken({ signal: throwing });
    assert.equal(typeof token, 'string');
    const removing = { ...throwing, addEventListener: () => {} };
    same(await session.tokens({ signal: removing }).then((i) => i.accessToken), token, 'settled');
  });

  test('a signal whose `aborted` throws after its first read: the call uses that read, never a raw error', async () => {
    const { client, session } = await unread();
    const flaky = () => throwingOn('aborted', new AbortController().signal, 2);
    const calls = {
      accessToken: () => session.accessToken({ signal: flaky() }),
      tokens: () => session.tokens({ signal: flaky() }),
      clientToken: () => client.clientToken([], { signal: flaky() }),
      // It checks init.signal, then the session reads it again: a ConfigError.
      authorizedFetch: () => authorizedFetch(session, emu.apiEndpoint, { method: 'POST', body: QUERY, signal: flaky() }),
    };
    for (const [name, call] of Object.entries(calls)) {
      const outcome = await call().then(() => 'resolved', (e) => (e instanceof ConfigError ? 'ConfigError' : `raw ${e}`));
      assert.equal(outcome, name === 'authorizedFetch' ? 'ConfigError' : 'resolved', name);
    }
  });

  test('a signal whose `reason` throws: every call waiting on it gets a ConfigError, nothing is uncaught', async () => {
    // (An exception thrown from an abort listener would be reported as uncaught, failing this test.)
    const { session, refreshToken } = await unread();
    await emu.fault({ kind: 'hold' });
    const controller = new AbortController();
    const signal = throwingOn('reason', controller.signal);
    const waits = [session.accessToken({ signal }), session.accessToken({ signal })];
    await emu.waitHeld(1);
    controller.abort();
    for (const wait of waits) {
      await assert.rejects(wait, (e) => e instanceof ConfigError && e.field === 'options.signal' && /could not be read/.test(e.message));
    }
    await emu.releaseHeld();
    assert.equal(typeof await session.accessToken(), 'string', 'the refresh went on');
    assert.equal(await emu.refreshRequests(), 1);
    assert.equal(await emu.refreshTokenState(refreshToken), 'consumed');
  });

  test('with options, a foreign `this` is a ConfigError naming it, as without', async () => {
    const { session } = await unread();
    const { signal } = new AbortController();
    await assert.rejects(session.accessToken.call({}, { signal }), (e) => e instanceof ConfigError && e.field === 'this');
    const own = { accessToken: () => 'not a token' };
    await assert.rejects(session.accessToken.call(own, { signal }), (e) => e instanceof ConfigError && e.field === 'this');
  });

  test('exchangeCode(): an aborted signal spends no code; an abort during it still saves the record', async () => {
    const client = newClient();
    const store = new MemoryStore();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT });
    const response = await fetch(request.url, { redirect: 'manual' });
    await response.arrayBuffer();
    const code = new URL(response.headers.get('location')).searchParams.get('code');
    const options = { code, codeVerifier: request.codeVerifier, redirectUri: REDIRECT };

    await assert.rejects(client.exchangeCode(options, 'u1', store, { signal: AbortSignal.abort() }), abortError);
    await assert.rejects(
      client.exchangeCode(options, 'u1', store, { singal: AbortSignal.abort() }),
      (e) => e instanceof ConfigError && e.field === 'callOptions.singal',
      'named as the argument it is in, not as the code options',
    );
    assert.equal(await emu.grantRequests('authorization_code'), 0, 'the code was not sent');

    await emu.fault({ kind: 'hold' });
    const controller = new AbortController();
    const exchanging = client.exchangeCode(options, 'u1', store, { signal: controller.signal });
    await emu.waitHeld(1);
    controller.abort();
    await assert.rejects(exchanging, abortError);
    await emu.releaseHeld();
    // The repeat joins the exchange in flight (a code is sent once): its session.
    const session = await client.exchangeCode(options, 'u1', store);
    assert.equal(await emu.grantRequests('authorization_code'), 1);
    assert.ok(typeof (await session.accessToken()) === 'string');
    assert.ok(await store.load('u1'), 'the exchanged record is saved');
    assert.equal(await emu.refreshRequests(), 0);
  });
});

describe('authorizedFetch(): init.signal ends the token waits too', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  /** A seeded session whose first read refreshes, and a fetch that counts its calls. */
  async function setup() {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });
    const session = client.session('u1', new MemoryStore());
    await session.seed({ refreshToken: (await emu.seed()).refresh_token });
    const sent = [];
    const countingFetch = (input, init) => {
      sent.push(input);
      return fetch(input, init);
    };
    return { session, sent, options: { fetch: countingFetch } };
  }

  test('an aborted init.signal asks for no token and sends nothing', async () => {
    const { session, sent, options } = await setup();
    const signal = AbortSignal.abort();
    await assert.rejects(authorizedFetch(session, emu.apiEndpoint, { signal }, options), (e) => e === signal.reason);
    await assert.rejects(authorizedFetch(session, new Request(emu.apiEndpoint, { signal }), undefined, options), abortError);
    assert.equal(await emu.refreshRequests(), 0);
    assert.equal(sent.length, 0);
  });

  test('an abort while the token is refreshed rejects at once; the refresh still lands', async () => {
    const { session, sent, options } = await setup();
    await emu.fault({ kind: 'hold' });
    const controller = new AbortController();
    const fetching = authorizedFetch(session, emu.apiEndpoint, { signal: controller.signal }, options);
    await emu.waitHeld(1);
    controller.abort();
    await assert.rejects(fetching, abortError);
    assert.equal(sent.length, 0, 'the API was not called');
    await emu.releaseHeld();
    const response = await authorizedFetch(session, emu.apiEndpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: QUERY }, options);
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    assert.equal(await emu.refreshRequests(), 1, 'the held refresh served the next call');
  });

  test('init.signal null means no signal, as in fetch: a Request\'s aborted signal is not used', async () => {
    const { session, options } = await setup();
    const request = new Request(emu.apiEndpoint, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: QUERY, signal: AbortSignal.abort(),
    });
    const response = await authorizedFetch(session, request, { signal: null }, options);
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    assert.equal(await emu.refreshRequests(), 1);
  });

  test('an init.signal that is not an AbortSignal is a ConfigError naming it, before a token is asked for', async () => {
    const { session, sent, options } = await setup();
    await assert.rejects(
      authorizedFetch(session, emu.apiEndpoint, { signal: { aborted: 'no' } }, options),
      (e) => e instanceof ConfigError && e.field === 'init.signal',
    );
    assert.equal(await emu.refreshRequests(), 0);
    assert.equal(sent.length, 0);
  });

  test('a signal put in options (not init) is a ConfigError naming it, never a signal silently dropped', async () => {
    const { session, sent, options } = await setup();
    await assert.rejects(
      authorizedFetch(session, emu.apiEndpoint, undefined, { ...options, signal: AbortSignal.abort() }),
      (e) => e instanceof ConfigError && e.field === 'options.signal',
    );
    assert.equal(await emu.refreshRequests(), 0);
    assert.equal(sent.length, 0);
  });
});

describe('AbortSignal on revokeClientTokens() and TokenClient.discover()', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  /** A client with the emulator's revocation endpoint; `revoked` resolves with its first `revoked` event. */
  function revokingClient() {
    let revoked;
    const done = new Promise((resolve) => { revoked = resolve; });
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint,
      revocationEndpoint: emu.revocationEndpoint,
      ...CLIENT,
      onEvent: (event) => { if (event.kind === 'revoked') revoked(event); },
    });
    return { client, revoked: done };
  }

  test('revokeClientTokens(): an aborted signal revokes nothing and keeps the cached token', async () => {
    const { client } = revokingClient();
    const token = await client.clientToken(['accounts']);
    const signal = AbortSignal.abort();
    await assert.rejects(client.revokeClientTokens({ signal }), (e) => e === signal.reason);
    await assert.rejects(client.revokeClientTokens({ signal: 'soon' }), (e) => e instanceof ConfigError && /options\.signal/.test(e.message));
    assert.equal((await emu.counters()).revocation_requests, 0, 'no revocation sent');
    same(await client.clientToken(['accounts']), token, 'the cached token is still served');
    assert.equal(await emu.grantRequests('client_credentials'), 1);
  });

  test('revokeClientTokens(): an abort while the revocation is held ends the wait; the revocation still lands', async () => {
    const { client, revoked } = revokingClient();
    const token = await client.clientToken(['accounts']);
    await emu.fault({ kind: 'hold', grant: 'revocation' });
    const controller = new AbortController();
    const revoking = client.revokeClientTokens({ signal: controller.signal });
    await emu.waitHeld(1);
    controller.abort();
    await assert.rejects(revoking, abortError);
    // Forgotten before it was sent: the next caller gets a new token.
    differ(await client.clientToken(['accounts']), token, 'a new client token after the revocation began');
    await emu.releaseHeld();
    const event = await revoked;
    assert.equal(event.errorCode, undefined, 'the server took the revocation');
    assert.equal((await emu.counters()).revocation_requests, 1);
  });

  test('discover(): an aborted signal sends no request; an abort while it is held ends the wait', async () => {
    const options = { ...CLIENT };
    const signal = AbortSignal.abort();
    await assert.rejects(TokenClient.discover(emu.discoveryIssuer, options, { signal }), (e) => e === signal.reason);
    await assert.rejects(
      TokenClient.discover(emu.discoveryIssuer, options, { timeout: 5 }),
      (e) => e instanceof ConfigError && e.field === 'callOptions.timeout',
      'named as the argument it is in',
    );
    assert.equal((await emu.counters()).discovery_requests, 0, 'no discovery request sent');

    let release;
    const gate = new Promise((resolve) => { release = resolve; });
    let asked;
    const held = new Promise((resolve) => { asked = resolve; });
    let answer;
    const answered = new Promise((resolve) => { answer = resolve; });
    const heldFetch = async (input, init) => {
      asked();
      await gate;
      const response = await fetch(input, init);
      answer();
      return response;
    };
    const controller = new AbortController();
    const discovering = TokenClient.discover(emu.discoveryIssuer, { ...options, fetch: heldFetch }, { signal: controller.signal });
    await held;
    controller.abort();
    await assert.rejects(discovering, abortError);
    release();
    // The wait ended, the request did not: it is answered (and the client
    // it makes freed), and a discovery without a signal works as before.
    await answered;
    assert.equal((await emu.counters()).discovery_requests, 1);
    const client = await TokenClient.discover(emu.discoveryIssuer, options);
    assert.equal(client.providerMetadata.tokenEndpoint, emu.tokenEndpoint);
    assert.equal((await emu.counters()).discovery_requests, 2);
  });
});
