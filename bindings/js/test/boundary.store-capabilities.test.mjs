// A store's fleet members (`acquire`/`release`, `loadVersioned`/
// `saveVersioned`) are read once, when a session opens. Before, half a pair
// or a member whose getter threw read as "no lease" / "no versions": a fleet
// store with a typo in `release` refreshed without its lease, beside other
// processes refreshing the same single-use token, and one of them lost the
// rotation. Now half a pair is a ConfigError and a throwing member a
// StorageError, both before anything is sent; the next call asks again.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { ConfigError, EncryptedStore, StorageError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const CLIENT_SECRET = 'test-secret'; // the emulator's

/**
 * An in-memory store with every fleet member; `drop` removes some, `throwing`
 * makes the first read of one throw. `stats.acquired` counts leases taken.
 */
function fleetStore({ drop = [], throwing = null } = {}) {
  const records = new Map();
  const leases = new Map();
  const stats = { acquired: 0 };
  const store = {
    stats,
    async load(key) { return records.get(key)?.[0] ?? null; },
    async save(key, record) { records.set(key, [record, String(records.size + 1)]); },
    async acquire(key, owner) {
      if (leases.has(key) && leases.get(key) !== owner) return false;
      leases.set(key, owner);
      stats.acquired += 1;
      return true;
    },
    async release(key, owner) { if (leases.get(key) === owner) leases.delete(key); },
    async loadVersioned(key) {
      const found = records.get(key);
      return found ? { record: found[0], version: found[1] } : null;
    },
    async saveVersioned(key, record, expected) {
      if ((records.get(key)?.[1] ?? null) !== expected) return null;
      const version = String(Number(expected ?? 0) + 1);
      records.set(key, [record, version]);
      return version;
    },
  };
  for (const name of drop) delete store[name];
  if (throwing) {
    const method = store[throwing];
    let calls = 0;
    Object.defineProperty(store, throwing, {
      get() {
        calls += 1;
        // Only the first read fails: the next session() asks again.
        if (calls === 1) throw new Error(`replica down, secret ${CLIENT_SECRET}`);
        return method;
      },
    });
  }
  return store;
}

describe('store capabilities', () => {
  let emu;
  let client;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => {
    await emu.reset();
    client?.free();
    client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: CLIENT_SECRET });
  });

  for (const [drop, named] of [
    [['release'], /acquire\(\) and release\(\)/],
    [['acquire'], /acquire\(\) and release\(\)/],
    [['saveVersioned'], /loadVersioned\(\) and saveVersioned\(\)/],
    [['loadVersioned'], /loadVersioned\(\) and saveVersioned\(\)/],
  ]) {
    test(`a store without ${drop[0]}() but with its pair is a ConfigError, and nothing is sent`, async () => {
      const store = fleetStore({ drop });
      assert.throws(() => client.session('u1', store), (e) => e instanceof ConfigError && e.field === 'store' && named.test(e.message));
      await assert.rejects(
        client.exchangeCode({ code: 'c', codeVerifier: 'v'.repeat(43), redirectUri: 'https://app.example/cb' }, 'u1', store),
        (e) => e instanceof ConfigError && e.field === 'store' && named.test(e.message),
      );
      const counters = await emu.counters();
      assert.equal(counters.token_requests ?? 0, 0, 'no token request');
    });
  }

  test('an EncryptedStore checks its inner store the same way', async () => {
    const keys = { current: { id: 'k1', key: new Uint8Array(32).fill(7) } };
    assert.throws(() => new EncryptedStore(fleetStore({ drop: ['release'] }), keys),
      (e) => e instanceof ConfigError && e.field === 'inner' && /acquire\(\) and release\(\)/.test(e.message));
    assert.throws(() => new EncryptedStore(fleetStore({ drop: ['loadVersioned'] }), keys),
      (e) => e instanceof ConfigError && e.field === 'inner' && /loadVersioned\(\) and saveVersioned\(\)/.test(e.message));
    assert.throws(() => new EncryptedStore(fleetStore({ throwing: 'release' }), keys),
      (e) => e instanceof StorageError && /inner store's release could not be read/.test(e.message));

    // Whole pairs pass through, and the session over it takes the lease.
    const family = await emu.seed();
    const inner = fleetStore();
    const encrypted = new EncryptedStore(inner, keys);
    assert.ok(['acquire', 'release', 'loadVersioned', 'saveVersioned'].every((m) => typeof encrypted[m] === 'function'));
    const session = client.session('u1', encrypted);
    await session.seed({ refreshToken: family.refresh_token });
    assert.equal(typeof (await session.accessToken()), 'string');
    assert.equal(inner.stats.acquired, 1);
  });

  test('neither member of a pair is a store without it, as before', async () => {
    const family = await emu.seed();
    const store = fleetStore({ drop: ['acquire', 'release', 'loadVersioned', 'saveVersioned'] });
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token });
    assert.equal(typeof (await session.accessToken()), 'string');
    assert.equal(await emu.refreshRequests(), 1);
  });

  for (const throwing of ['acquire', 'release', 'loadVersioned', 'saveVersioned']) {
    test(`a ${throwing} that throws when read is a StorageError without the secret; the next session() works with the lease`, async () => {
      const family = await emu.seed();
      const store = fleetStore({ throwing });
      assert.throws(() => client.session('u1', store), (e) => {
        assert.ok(e instanceof StorageError, `${e?.name}: ${e?.message}`);
        assert.match(e.message, new RegExp(`store\\.${throwing} failed: .*replica down`));
        assert.ok(!e.message.includes(CLIENT_SECRET), e.message);
        return true;
      });
      assert.equal(await emu.refreshRequests(), 0);

      const session = client.session('u1', store);
      await session.seed({ refreshToken: family.refresh_token });
      assert.equal(typeof (await session.accessToken()), 'string');
      assert.equal(await emu.refreshRequests(), 1);
      assert.equal(store.stats.acquired, 1, 'the refresh took the lease');
    });
  }
});
