// A rotation whose save failed under a fleet lease (DESIGN points 4 and 9),
// through the JS API against the token emulator: the rotated refresh token
// is only in this process's memory, so the core keeps its lease and saves
// the record again in the background (on the JavaScript event loop), then
// releases the lease, without waiting for another call of this process.
// Without it, the lease lapses and the next process to get the user's
// request reads the in-doubt record and sends the spent token.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { MemoryStore, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

/**
 * A fleet's store (a lease on the real clock) whose next `failures` saves
 * of a settled (not in-doubt) record fail. `landed` and `released` resolve
 * at the next settled save once `watching`, and at the next release.
 */
class FailingLeaseStore extends MemoryStore {
  failures = 0;
  acquires = 0;
  /** Set once seeded: only later settled saves resolve `landed`. */
  watching = false;
  #leases = new Map();
  #landed = resolvers();
  #released = resolvers();

  get landed() { return this.#landed.promise; }
  get released() { return this.#released.promise; }

  async save(key, record) {
    const settled = !JSON.parse(record).in_doubt;
    if (settled && this.failures > 0) {
      this.failures -= 1;
      throw new Error('database unavailable');
    }
    await super.save(key, record);
    if (settled && this.watching) this.#landed.resolve();
  }

  async acquire(key, owner, ttlMs) {
    this.acquires += 1;
    const held = this.#leases.get(key);
    if (held && held.owner !== owner && held.until > Date.now()) return false;
    this.#leases.set(key, { owner, until: Date.now() + ttlMs });
    return true;
  }

  async release(key, owner) {
    if (this.#leases.get(key)?.owner === owner) this.#leases.delete(key);
    this.#released.resolve();
  }
}

function resolvers() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

describe('a rotation whose save failed under the lease', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  test('is saved in the background, and then its lease released', { timeout: 30_000 }, async () => {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });
    const store = new FailingLeaseStore();
    const family = await emu.seed();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token });
    store.watching = true;

    store.failures = 1;
    await assert.rejects(session.accessToken(), { code: 'storage' });
    assert.equal(await emu.refreshRequests(), 1);

    // No other call: the record lands, then the lease is given back.
    await store.landed;
    await store.released;
    const stored = JSON.parse(store.get('u1'));
    assert.equal(stored.in_doubt, undefined, 'the settled record, not the write-ahead marker');
    assert.notEqual(stored.refresh_token, family.refresh_token, 'the rotated refresh token');
    assert.ok(store.acquires >= 2, 'renewed before the background save');
    assert.equal(await store.acquire('u1', 'another-process', 30_000), true, 'the lease is free');

    assert.equal((await session.status()).unpersisted, false);
    await session.accessToken();
    assert.equal(await emu.refreshRequests(), 1, 'nothing sent again');
  });
});
