// The JavaScript-only entry points check their arguments as the core's do
// (DESIGN point 16): authorizedFetch, isUnauthenticated, free() called on a
// primitive `this`, FileStore.recover. Each bad argument is the package's
// ConfigError naming the parameter (they were TypeErrors from deep inside),
// and nothing is sent: the session is seeded against the emulator and its
// counters show no token request, and the host fetch is never called.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { authorizedFetch, ConfigError, FileStore, isUnauthenticated, MemoryStore, TokenClient, UserSession } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const revoked = () => {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
};
const PRIMITIVES = [undefined, null, 42, 'x', Symbol('s'), 10n, true];

/** Asserts a ConfigError whose message names `name`. */
const naming = (name) => (e) => e instanceof ConfigError && e.code === 'config' && e.field === name && e.message.includes(`\`${name}\``);

describe('JavaScript entry points answer bad arguments with ConfigErrors', () => {
  let emu;
  let session;
  let client;
  let dir;
  let fetchCalls = 0;
  const countingFetch = async () => { fetchCalls += 1; return new Response('{}'); };
  const API = 'http://127.0.0.1:9/api';

  before(async () => {
    emu = await startEmulator();
    client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });
    session = client.session('u1', new MemoryStore());
    await session.seed({ refreshToken: (await emu.seed()).refresh_token, accessToken: 'at-seeded', expiresIn: 3600 });
    dir = await mkdtemp(join(tmpdir(), 'freshtoken-entry-'));
  });
  after(async () => {
    await emu?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('authorizedFetch: a session that is not one', async () => {
    for (const bad of [...PRIMITIVES, {}, [], () => {}, revoked(), { accessToken: 'x' }]) {
      await assert.rejects(authorizedFetch(bad, API, undefined, { fetch: countingFetch }), naming('session'), String(typeof bad));
    }
    assert.equal(fetchCalls, 0);
  });

  test('authorizedFetch: options null, a primitive or a revoked Proxy; a fetch that is not a function', async () => {
    for (const bad of [null, 42, 'x', Symbol('s'), 10n, revoked()]) {
      await assert.rejects(authorizedFetch(session, API, undefined, bad), naming('options'), String(typeof bad));
    }
    for (const bad of [null, 42, 'x', {}, revoked()]) {
      await assert.rejects(authorizedFetch(session, API, undefined, { fetch: bad }), naming('options.fetch'));
    }
  });

  test('authorizedFetch: an init that cannot be read', async () => {
    await assert.rejects(authorizedFetch(session, API, revoked(), { fetch: countingFetch }), naming('init'));
    await assert.rejects(authorizedFetch(session, API, { headers: 42 }, { fetch: countingFetch }), naming('init'));
    assert.equal(fetchCalls, 0);
    const answer = await authorizedFetch(session, API, { headers: { 'x-a': '1' } }, { fetch: countingFetch });
    assert.equal(answer.status, 200, 'a good call still works');
    assert.equal(fetchCalls, 1);
  });

  test('authorizedFetch: an input that is not a URL string, a URL or a Request, and nothing is asked of the session first', async () => {
    // A session whose token has expired: asking it for one would refresh (a new banking session).
    fetchCalls = 0;
    const before = await emu.refreshRequests();
    const stale = client.session('stale', new MemoryStore());
    await stale.seed({ refreshToken: (await emu.seed()).refresh_token });
    const used = new Request(API, { method: 'POST', body: 'x' });
    await used.text();
    const inputs = [...PRIMITIVES.filter((x) => typeof x !== 'string'), {}, { href: API }, revoked(), used];
    for (const [i, bad] of inputs.entries()) {
      await assert.rejects(authorizedFetch(stale, bad, undefined, { fetch: countingFetch }), naming('input'), `input #${i}`);
    }
    await assert.rejects(authorizedFetch(stale, API, revoked(), { fetch: countingFetch }), naming('init'));
    assert.equal(fetchCalls, 0);
    assert.equal(await emu.refreshRequests(), before, 'no refresh was sent for a call refused');
    const answer = await authorizedFetch(session, new URL(API), undefined, { fetch: countingFetch });
    assert.equal(answer.status, 200, 'a URL object works');
  });

  test('isUnauthenticated: anything but a Response', async () => {
    for (const bad of [...PRIMITIVES, {}, { status: 401, headers: new Headers() }, revoked()]) {
      await assert.rejects(isUnauthenticated(bad), naming('response'));
    }
    assert.equal(await isUnauthenticated(new Response('', { status: 401 })), true);
    assert.equal(await isUnauthenticated(new Response('{}', { status: 200 })), false);
  });

  test('free() and other methods called on a primitive `this`', async () => {
    for (const bad of PRIMITIVES) {
      assert.throws(() => UserSession.prototype.free.call(bad), naming('this'));
      assert.throws(() => TokenClient.prototype.free.call(bad), naming('this'));
      await assert.rejects(UserSession.prototype.refresh.call(bad), naming('this'));
      assert.throws(() => TokenClient.prototype.session.call(bad, 'k', new MemoryStore()), naming('this'));
    }
    assert.equal(await session.accessToken(), 'at-seeded', 'the real ones still work');
  });

  test('FileStore.recover: olderThanMs that is not a number', async () => {
    const store = new FileStore(dir);
    for (const bad of [Symbol('s'), 10n, revoked(), 'x', null, Number.NaN]) {
      await assert.rejects(store.recover(bad), naming('olderThanMs'));
    }
    assert.deepEqual(await store.recover(0), { completed: 0, removed: 0 });
  });

  test('nothing was sent to the token endpoint', async () => {
    assert.equal(await emu.refreshRequests(), 0);
  });
});
