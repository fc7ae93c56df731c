// A store object made per request (`client.session(key, new SomeStore())`,
// DESIGN point 11) is garbage once its handles are: the client's map of
// checked stores (pkg/src/api.js, Keys#stores) must not keep it alive
// through the wasm externref table while the client lives. A store in use
// is still checked once and shared by its handles.
//
// Collection is observed with a FinalizationRegistry over full GCs
// (support/wasm-memory.mjs), repeated until every store is counted, within
// a bounded number of rounds (three suffice). The refreshes go to the
// emulator.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MemoryStore, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { collectGarbage } from '../support/wasm-memory.mjs';

const USERS = 10;
const REQUESTS = 200;
const MAX_ROUNDS = 10;

/** A store object per request over one shared table of records. */
class RequestStore {
  constructor(records) {
    this.records = records;
  }

  async load(key) {
    return this.records.load(key);
  }

  async save(key, record) {
    await this.records.save(key, record);
  }
}

/**
 * Runs full GCs until `count()` reaches `goal`, at most MAX_ROUNDS times;
 * its last value. Each chain of wasm-bindgen finalizers (a handle's store
 * wrapper, a finished call's closures) takes a round to let the store go.
 */
async function collectedCount(count, goal) {
  for (let round = 0; round < MAX_ROUNDS && count() < goal; round += 1) await collectGarbage();
  return count();
}

describe('stores made per request', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });

  test('are collected while the client lives; a store in use is checked once', async () => {
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret', maxSessions: USERS,
    });
    const records = new MemoryStore();
    let collected = 0;
    const registry = new FinalizationRegistry(() => { collected += 1; });

    // A long-lived store: its members are read when it is first checked.
    let reads = 0;
    const shared = new RequestStore(records);
    Object.defineProperty(shared, 'acquire', { get() { reads += 1; return undefined; } });

    // In a function of its own: nothing of it stays on the test's frame.
    const requests = async () => {
      const handles = [];
      for (let i = 0; i < USERS; i += 1) {
        const family = await emu.seed();
        const store = new RequestStore(records);
        registry.register(store, i);
        await client.session(`user-${i}`, store).seed({ refreshToken: family.refresh_token });
        handles.push(client.session(`user-${i}`, shared));
      }
      for (let i = 0; i < REQUESTS; i += 1) {
        const store = new RequestStore(records);
        registry.register(store, i);
        const session = client.session(`user-${i % USERS}`, store);
        // Refreshes (a flight, a save through this store), then reads.
        await (i < USERS ? session.refresh() : session.accessToken());
        await handles[i % USERS].status();
      }
      return handles.length;
    };
    assert.equal(await requests(), USERS);
    assert.equal(await emu.refreshRequests(), USERS);
    assert.equal(reads, 1, 'the long-lived store was checked once, for all its handles');

    const made = USERS + REQUESTS;
    assert.equal(await collectedCount(() => collected, made), made, 'every per-request store was collected');
    assert.equal(client.sessionCount <= USERS, true);
    // The client still serves the users, through a new store object.
    assert.equal(typeof await client.session('user-0', new RequestStore(records)).accessToken(), 'string');
    client.free();
  });
});
