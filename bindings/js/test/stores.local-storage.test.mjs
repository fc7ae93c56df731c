// freshtoken/local-storage's argument checks and a misbehaving lock
// manager, in Node (which has neither localStorage nor navigator.locks). What the store does with real ones —
// two tabs, one refresh, the Web Lock as lease — runs in Chromium
// (browser.test.mjs).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { StorageError, TokenClient } from 'freshtoken';
import { LocalStorageStore } from 'freshtoken/local-storage';
import { startEmulator } from '../support/emulator.mjs';

/** A Storage's two methods over a Map (Node has no localStorage). */
const storage = () => {
  const items = new Map();
  return { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => { items.set(k, String(v)); } };
};

test('without localStorage or the Web Locks API the constructor throws: tabs sharing a store need the lease', () => {
  assert.equal(typeof globalThis.localStorage, 'undefined', 'this check needs a host without localStorage');
  assert.throws(() => new LocalStorageStore(), { name: 'TypeError', message: /no localStorage here/ });
  assert.throws(() => new LocalStorageStore({ storage: storage() }), { name: 'TypeError', message: /Web Locks API \(navigator\.locks\)/ });
  assert.throws(() => new LocalStorageStore({ storage: storage(), locks: {} }), { name: 'TypeError', message: /Web Locks API/ });
  assert.throws(() => new LocalStorageStore({ storage: { getItem() {} }, locks: { request() {} } }), { message: /no localStorage here/ });
});

test('a localStorage that throws when read (a sandboxed frame, storage disabled) is "no localStorage here", not its SecurityError', () => {
  Object.defineProperty(globalThis, 'localStorage', {
    configurable: true,
    get() { throw new DOMException('access denied', 'SecurityError'); },
  });
  try {
    assert.throws(() => new LocalStorageStore({ locks: { request: async () => undefined } }), { name: 'TypeError', message: /no localStorage here/ });
  } finally {
    delete globalThis.localStorage;
  }
});

test('options are checked: unknown keys and a prefix that is no string', () => {
  const locks = { request: async () => undefined };
  assert.throws(() => new LocalStorageStore({ storage: storage(), locks, lock: locks }), { name: 'TypeError', message: /unknown option lock/ });
  assert.throws(() => new LocalStorageStore({ storage: storage(), locks, prefix: 7 }), { name: 'TypeError', message: /prefix must be a string/ });
  const store = new LocalStorageStore({ storage: storage(), locks, prefix: 'app:' });
  assert.equal(store.recordKey('u1'), 'app:u1');
  assert.equal(store.leaseName('u1'), 'app:lease:u1');
});

/** A LockManager's `request` that runs the callback at once (one caller at a time here; real locks run in Chromium). */
const locks = { request: async (name, options, callback) => (callback ?? options)({ name }) };

test('records round-trip through one item with their version; compare-and-swap saves; bad arguments reject before anything is written', async () => {
  const backing = storage();
  const store = new LocalStorageStore({ storage: backing, locks });
  assert.equal(await store.load('u1'), null);
  assert.equal(await store.loadVersioned('u1'), null);
  await store.save('u1', '{"schema":"freshtoken.record/1"}');
  assert.deepEqual(JSON.parse(backing.getItem('freshtoken:u1')), { version: '1', record: '{"schema":"freshtoken.record/1"}' });
  assert.equal(await store.load('u1'), '{"schema":"freshtoken.record/1"}');
  assert.deepEqual(await store.loadVersioned('u1'), { version: '1', record: '{"schema":"freshtoken.record/1"}' });

  assert.equal(await store.saveVersioned('u1', 'r2', null), null, 'null expects nothing stored');
  assert.equal(await store.saveVersioned('u1', 'r2', '7'), null, 'a version that moved on is a conflict');
  assert.equal(await store.load('u1'), '{"schema":"freshtoken.record/1"}', 'a conflict writes nothing');
  assert.equal(await store.saveVersioned('u1', 'r2', '1'), '2');
  assert.equal(await store.saveVersioned('u2', 'first', null), '1', 'null: only if nothing is stored');
  await store.save('u1', 'r3');
  assert.equal(await store.saveVersioned('u1', 'r4', '2'), null, 'an unconditional save still moves the version on');

  await assert.rejects(store.save('u1', 42), { name: 'TypeError', message: /record must be a string/ });
  await assert.rejects(store.saveVersioned('u1', 'r', 3), { name: 'TypeError', message: /expected version must be a string or null/ });
  await assert.rejects(store.load(7), { name: 'TypeError', message: /key must be a string/ });
  await assert.rejects(store.acquire('u1', '', 1000), { message: /owner must be a non-empty string/ });
  await assert.rejects(store.acquire('u1', 'o', 0), { message: /TTL must be a positive number/ });
  await assert.rejects(store.acquire('u1', 'o', Infinity), { message: /TTL must be a positive number/ });
  assert.equal(await store.load('u1'), 'r3', 'the record is untouched');
});

test('an item this store did not write is refused on read, and replaced by an unconditional save', async () => {
  const backing = storage();
  const store = new LocalStorageStore({ storage: backing, locks });
  for (const foreign of ['{"schema":"freshtoken.record/1"}', 'not json', '{"version":1,"record":"r"}']) {
    backing.setItem('freshtoken:u1', foreign);
    await assert.rejects(store.load('u1'), { message: /freshtoken:u1 holds no record written by this store/ });
    await assert.rejects(store.saveVersioned('u1', 'r', null), { message: /holds no record written by this store/ });
    assert.equal(backing.getItem('freshtoken:u1'), foreign, 'a refused compare-and-swap writes nothing');
  }
  await store.save('u1', 'mine');
  assert.deepEqual(await store.loadVersioned('u1'), { version: '1', record: 'mine' });
});

test('a storage that refuses the write (full) rejects the save and keeps the stored record', async () => {
  const backing = storage();
  const store = new LocalStorageStore({ storage: backing, locks });
  await store.save('u1', 'kept');
  const full = { getItem: backing.getItem, setItem: () => { throw new DOMException('quota', 'QuotaExceededError'); } };
  const refusing = new LocalStorageStore({ storage: full, locks });
  await assert.rejects(refusing.save('u1', 'lost'), { name: 'QuotaExceededError' });
  await assert.rejects(refusing.saveVersioned('u1', 'lost', '1'), { name: 'QuotaExceededError' });
  assert.deepEqual(await store.loadVersioned('u1'), { version: '1', record: 'kept' });
});

// The lock manager is a host callback too: one that never answers, throws a
// non-Error or answers with the wrong type ends the session's call with a
// StorageError at the store deadline (or at once), and nothing is sent.
describe('a LocalStorageStore whose lock manager misbehaves, through a session', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });

  const misbehaving = {
    'never answers': () => new Promise(() => {}),
    'throws a string': () => { throw 'locks are off'; }, // eslint-disable-line no-throw-literal
    'answers with no promise': () => 42,
  };
  for (const [name, request] of Object.entries(misbehaving)) {
    test(`request() ${name}: a StorageError, no refresh sent, the record untouched`, async () => {
      const backing = storage();
      const family = await emu.seed();
      await new LocalStorageStore({ storage: backing, locks }).save('u1', JSON.stringify({
        schema: 'freshtoken.record/1', refresh_token: family.refresh_token, updated_at: 1,
      }));
      const before = await emu.refreshRequests();
      const stored = backing.getItem('freshtoken:u1');
      const client = new TokenClient({
        tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret', storeTimeoutMs: 150,
      });
      const session = client.session('u1', new LocalStorageStore({ storage: backing, locks: { request } }));
      await assert.rejects(session.accessToken(), StorageError);
      await assert.rejects(session.seed({ refreshToken: 'rt-new' }), StorageError, 'a save takes the write lock too');
      assert.equal(await emu.refreshRequests() - before, 0, 'nothing was sent');
      assert.equal(backing.getItem('freshtoken:u1'), stored, 'the record is untouched');
      client.free();
    });
  }
});
