// Write ahead, always (issue 11 item 3, DESIGN point 14), through the JS
// API against the token emulator: before a refresh request is sent, the
// record is saved marked in doubt; a store that cannot write that marker
// never lets the core consume the refresh token.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { EncryptedStore, MemoryStore, StorageError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

/** A MemoryStore that logs every saved record and fails saves while `failing`. */
class LoggingStore {
  inner = new MemoryStore();
  saved = [];
  failing = false;
  /** Called with each record before it is written (may await). */
  onSave = async () => {};

  async load(key) {
    return this.inner.load(key);
  }

  async save(key, record) {
    const parsed = JSON.parse(record);
    await this.onSave(parsed);
    if (this.failing) throw new Error('disk full');
    this.saved.push(parsed);
    return this.inner.save(key, record);
  }
}

describe('write ahead', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  async function seeded(store) {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });
    const family = await emu.seed();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token });
    return { session, rt: family.refresh_token };
  }

  test('the record is saved in doubt before the request is sent', async () => {
    const store = new LoggingStore();
    const { session, rt } = await seeded(store);
    const requestsAtSave = [];
    store.onSave = async () => { requestsAtSave.push(await emu.refreshRequests()); };
    store.saved.length = 0;

    await session.accessToken();
    assert.deepEqual(requestsAtSave, [0, 1], 'one save before the request, one after');
    const [marker, rotated] = store.saved;
    assert.ok(marker.in_doubt === true && marker.refresh_token === rt, 'first: the old record, marked in doubt');
    assert.ok(rotated.in_doubt === undefined && rotated.refresh_token !== rt, 'then: the rotated record, not in doubt');
  });

  test('a store that cannot write sends nothing, and the refresh token stays unused', async () => {
    const store = new LoggingStore();
    const { session, rt } = await seeded(store);
    store.failing = true;
    for (const call of [() => session.accessToken(), () => session.refresh(), () => session.tokens()]) {
      await assert.rejects(call(), StorageError);
    }
    assert.equal(await emu.refreshRequests(), 0, 'nothing sent');
    assert.equal(await emu.refreshTokenState(rt), 'active');

    store.failing = false;
    await session.accessToken();
    assert.equal(await emu.refreshRequests(), 1);
    assert.equal(await emu.refreshTokenState(store.saved.at(-1).refresh_token), 'active');
  });

  for (const wrapped of [false, true]) {
    test(`a save that resolves false (a write refused) is a storage error, not a save${wrapped ? ', through EncryptedStore too' : ''}`, async () => {
      // A client's "not written" answer returned as is: taken as saved, the
      // rotated token would be handed out and the store keep the spent one.
      await emu.reset();
      const inner = new MemoryStore();
      let refuse = false;
      const refusing = {
        load: (key) => inner.load(key),
        save: async (key, record) => (refuse ? false : inner.save(key, record)),
      };
      const store = wrapped
        ? new EncryptedStore(refusing, { current: { id: 'k', key: new Uint8Array(32).fill(7) } })
        : refusing;
      const { session, rt } = await seeded(store);
      const storedToken = async () => JSON.parse(await store.load('u1')).refresh_token;
      refuse = true;
      const error = await session.refresh().catch((e) => e);
      assert.ok(error instanceof StorageError, String(error));
      assert.match(error.message, /store\.save resolved false/);
      assert.equal(await emu.refreshRequests(), 0, 'nothing sent');
      assert.equal(await emu.refreshTokenState(rt), 'active');
      assert.equal(await storedToken(), rt);

      refuse = false;
      await session.refresh();
      assert.equal(await emu.refreshRequests(), 1);
      assert.notEqual(await storedToken(), rt, 'the rotation is stored');
    });
  }
});
