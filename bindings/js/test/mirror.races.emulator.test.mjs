// The mirror (pkg/src/api.js) against calls that replace a key's token:
// an `accessToken()` made while refresh(), tokenRejected(), seed() or
// exchangeCode() on the same key is in flight gets the core's token of that
// moment, and used to mirror it; the call's end then refilled nothing, so
// later reads kept serving the superseded token (a rejected one, or after a
// re-link the previous account's) until it expired. Now no fill lands while
// such a call runs, and once it settles no read returns the old token.
//
// Against the emulator; the replacing call is held in flight by the
// emulator's `hold` fault (refresh, tokenRejected, exchangeCode) or by a
// store whose save waits for the test (seed): no sleeps.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { MemoryStore, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const CLIENT = { clientId: 'test-client', clientSecret: 'test-secret' };
const REDIRECT = 'https://app.example/callback';

/** Token comparisons that never print a token when they fail. */
const same = (a, b, message) => assert.ok(typeof a === 'string' && a === b, message);
const differ = (a, b, message) => assert.ok(typeof a === 'string' && typeof b === 'string' && a !== b, message);

/** A store over a MemoryStore whose saves wait, while `gate` is set, until the test opens it. */
function gatedStore() {
  const inner = new MemoryStore();
  const gate = { closed: null, saving: null };
  return {
    gate,
    /** Makes the next saves wait; resolves `saving` when one starts. */
    close() {
      let open;
      let started;
      gate.saving = new Promise((resolve) => { started = resolve; });
      gate.closed = { wait: new Promise((resolve) => { open = resolve; }), open, started };
    },
    open() {
      const { closed } = gate;
      gate.closed = null;
      closed.open();
    },
    store: {
      load: (key) => inner.load(key),
      async save(key, record) {
        const { closed } = gate;
        if (closed !== null) {
          closed.started();
          await closed.wait;
        }
        return inner.save(key, record);
      },
    },
  };
}

describe('the mirror never outlives a replacing call', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  /** A session on `store` with a fresh token, read three times (so mirrored); its token. */
  async function mirrored(store = new MemoryStore()) {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });
    const session = client.session('u1', store);
    await session.seed({ refreshToken: (await emu.seed()).refresh_token });
    const token = await session.accessToken();
    same(await session.accessToken(), token, 'served again');
    same(await session.accessToken(), token, 'served from the mirror');
    return { client, session, token };
  }

  /**
   * Starts `call` with its request held, reads at once (before the call's
   * first await) and while it is held, then releases it; the call's result.
   */
  async function readsDuring(session, call) {
    await emu.fault({ kind: 'hold' });
    const pending = call();
    const during = [session.accessToken()];
    await emu.waitHeld(1);
    during.push(session.accessToken());
    await emu.releaseHeld();
    const result = await pending;
    await Promise.allSettled(during);
    return { result };
  }

  for (const method of ['refresh', 'tokenRejected']) {
    test(`${method}() in flight, accessToken() during it: afterwards only the new token`, async () => {
      const { session, token } = await mirrored();
      const { result } = await readsDuring(session, () => (method === 'refresh' ? session.refresh() : session.tokenRejected(token)));
      differ(result.accessToken, token, 'the call replaced the token');
      for (let i = 0; i < 3; i += 1) same(await session.accessToken(), result.accessToken, `read ${i + 1} after it: the new token`);
      same((await session.tokens()).accessToken, result.accessToken, 'the core agrees');
      assert.equal(await emu.refreshRequests(), 2);
    });
  }

  test('seed() of another account in flight, accessToken() during it: afterwards only the new token', async () => {
    const gated = gatedStore();
    const { session, token } = await mirrored(gated.store);
    const refreshToken = (await emu.seed()).refresh_token;
    gated.close();
    const seeding = session.seed({ refreshToken, accessToken: 'at-account-B', expiresIn: 3600 });
    // Reads at once and while its save waits (their answers may wait for
    // the seed: not awaited yet).
    const during = [session.accessToken()];
    await gated.gate.saving;
    during.push(session.accessToken());
    gated.open();
    await seeding;
    await Promise.allSettled(during);
    for (let i = 0; i < 3; i += 1) same(await session.accessToken(), 'at-account-B', `read ${i + 1} after seed()`);
    differ(token, 'at-account-B');
  });

  test('exchangeCode() on the key in flight, accessToken() during it: afterwards only the new token', async () => {
    const store = new MemoryStore();
    const { client, session, token } = await mirrored(store);
    const request = await client.authorizationUrl({ redirectUri: REDIRECT });
    const response = await fetch(request.url, { redirect: 'manual' });
    await response.arrayBuffer();
    const code = new URL(response.headers.get('location')).searchParams.get('code');
    const { result: relinked } = await readsDuring(session, () => client.exchangeCode({ code, codeVerifier: request.codeVerifier, redirectUri: REDIRECT }, 'u1', store));
    // (From the store: tokens() would itself drop and refill the mirror.)
    const fresh = JSON.parse(store.get('u1')).access_token;
    differ(fresh, token, 'the exchange brought a new token');
    for (let i = 0; i < 3; i += 1) {
      same(await session.accessToken(), fresh, `the old handle, read ${i + 1}`);
      same(await relinked.accessToken(), fresh, `the new handle, read ${i + 1}`);
    }
  });

  test('a failed tokenRejected() that kills the session: the rejected token is not served', async () => {
    const { session, token } = await mirrored();
    await emu.fault([{ kind: 'hold' }, { kind: 'body', status: 400, body: '{"error":"invalid_grant"}' }]);
    const pending = session.tokenRejected(token).then(() => null, (e) => e);
    await emu.waitHeld(1);
    // A read during the refresh is not handed the rejected token: it joins.
    const during = session.accessToken().then((t) => (t === token ? 'the rejected token' : 'another token'), (e) => e.code);
    await emu.releaseHeld();
    const failure = await pending;
    assert.equal(failure?.code, 'reauthorization_required', String(failure));
    assert.equal(await during, 'reauthorization_required');
    const after = await session.accessToken().then((t) => (t === token ? 'the rejected token' : 'another token'), (e) => e.code);
    assert.equal(after, 'reauthorization_required');
  });
});
