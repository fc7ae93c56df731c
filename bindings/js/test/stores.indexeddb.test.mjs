// freshtoken/indexeddb's option checks and misbehaving hosts, in Node (which has neither
// IndexedDB nor navigator.locks). What the store does with real ones — two
// tabs, one refresh, compare-and-swap, migration from localStorage — runs
// in Chromium (browser.tabs.test.mjs).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { StorageError, TokenClient } from 'freshtoken';
import { IndexedDbStore } from 'freshtoken/indexeddb';
import { configError as config } from '../support/config-error.mjs';
import { startEmulator } from '../support/emulator.mjs';

const indexedDB = { open() { throw new Error('not opened in these tests'); } };
const locks = { request: async () => undefined };
const storage = { getItem: () => null, removeItem() {} };


test('without IndexedDB or the Web Locks API the constructor throws: tabs sharing a store need both', () => {
  assert.equal(typeof globalThis.indexedDB, 'undefined', 'this check needs a host without IndexedDB');
  assert.throws(() => new IndexedDbStore(), config('indexedDB', /^IndexedDbStore: no IndexedDB here/));
  assert.throws(() => new IndexedDbStore({ indexedDB: {} }), config('indexedDB', /no IndexedDB here/));
  assert.throws(() => new IndexedDbStore({ indexedDB }), config('locks', /^IndexedDbStore: the Web Locks API \(navigator\.locks\) is missing \(browsers offer it in secure contexts only: https, or http on localhost\)/));
  assert.throws(() => new IndexedDbStore({ indexedDB, locks: {} }), config('locks', /Web Locks API/));
});

test('options are checked: unknown keys, the database name, migrateFrom and its storage', () => {
  assert.throws(() => new IndexedDbStore(null), config('indexedDB', /no IndexedDB here/), 'null options are the defaults');
  for (const options of ['app', 7, true, () => ({ indexedDB, locks })]) {
    assert.throws(() => new IndexedDbStore(options), config('options', /^IndexedDbStore: options must be an object$/), String(options));
  }
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, prefix: 'a:' }), config('prefix', /unknown option prefix/));
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, database: '' }), config('database', /database must be a non-empty string/));
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, database: 7 }), config('database', /database must be a non-empty string/));
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, migrateFrom: true }), config('migrateFrom', /migrateFrom must be a string/));
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, migrateFrom: 'freshtoken:' }), config('storage', /migrateFrom needs localStorage/));
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, migrateFrom: 'a:', storage: { getItem: () => null } }), config('storage', /migrateFrom needs localStorage/));
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, storage }), config('storage', /options\.storage is only read with migrateFrom/));
  const store = new IndexedDbStore({ indexedDB, locks, migrateFrom: 'a:', storage });
  assert.equal(store.leaseName('u1'), 'freshtoken:lease:u1', 'the default lease name is LocalStorageStore\'s default one');
  assert.equal(new IndexedDbStore({ indexedDB, locks, database: 'app' }).leaseName('u1'), 'app:lease:u1');
  assert.throws(() => store.leaseName(7), { name: 'TypeError', message: /the key must be a string/ });
});

test('an IDBFactory whose open() throws: every call rejects with an Error naming the step, and the next call tries again', async () => {
  let opened = 0;
  const refusing = { open() { opened += 1; throw new DOMException('blocked by policy', 'SecurityError'); } };
  const store = new IndexedDbStore({ indexedDB: refusing, locks });
  await assert.rejects(store.load('u1'), { message: 'IndexedDbStore: opening database "freshtoken" failed: SecurityError (blocked by policy)' });
  await assert.rejects(store.saveVersioned('u1', 'r', null), /opening database/);
  assert.equal(opened, 2, 'a failed open is not cached');
});

test('a database name starting with "-" is refused: Web Lock names cannot start so, and every acquire would fail', () => {
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, database: '-app' }), config('database', /database must not start with "-"/));
});

// The browser may close a connection (site data cleared, storage evicted)
// just as a transaction begins, and Chromium then fires neither `complete`
// nor `abort` for it. That moment cannot be made to happen on cue, so an
// IDBFactory stands in: its transactions never finish unless closed.
test('a connection the browser closes fails the transactions still running on it; the next call opens it again', async () => {
  const connections = [];
  const never = () => ({ get: () => ({}), put() {} });
  const factory = {
    open() {
      const request = {};
      queueMicrotask(() => {
        const db = { objectStoreNames: { contains: () => true }, transaction: () => ({ objectStore: never, abort() {} }), close() {} };
        connections.push(db);
        request.result = db;
        request.onsuccess();
      });
      return request;
    },
  };
  const store = new IndexedDbStore({ indexedDB: factory, locks });
  const running = [store.load('u1'), store.saveVersioned('u1', 'r', null)];
  await new Promise((resolve) => { setImmediate(resolve); });
  assert.equal(connections.length, 1);
  connections[0].onclose();
  const outcomes = await Promise.allSettled(running);
  assert.deepEqual(outcomes.map((o) => o.reason?.message), [
    'IndexedDbStore: reading failed: the browser closed the database (site data cleared, or storage evicted)',
    'IndexedDbStore: saving failed: the browser closed the database (site data cleared, or storage evicted)',
  ]);
  const next = store.load('u1');
  await new Promise((resolve) => { setImmediate(resolve); });
  assert.equal(connections.length, 2, 'the next call opened the database again');
  connections[1].onclose();
  await assert.rejects(next, /the browser closed the database/);
});

// IndexedDB is a host callback too: an IDBFactory that never answers,
// throws a non-Error or answers with the wrong type ends the session's call
// with a StorageError (at the store deadline, or at once), nothing sent.
// (A misbehaving lock manager: the lease module is LocalStorageStore's too,
// and stores.local-storage.test.mjs runs those cases.)
describe('an IndexedDbStore whose IDBFactory misbehaves, through a session', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });

  const misbehaving = {
    'never answers': [() => ({}), /store_timeout_ms|did not answer|timed out/i],
    'throws a string': [() => { throw 'storage is off'; }, /opening database "freshtoken" failed: a thrown string/], // eslint-disable-line no-throw-literal
    'answers with a number': [() => 42, /opening database "freshtoken" failed: TypeError/],
  };
  for (const [name, [open, message]] of Object.entries(misbehaving)) {
    test(`open() ${name}: a StorageError, nothing sent`, async () => {
      const before = await emu.refreshRequests();
      const client = new TokenClient({
        tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret', storeTimeoutMs: 150,
      });
      const session = client.session('u1', new IndexedDbStore({ indexedDB: { open }, locks }));
      await assert.rejects(session.accessToken(), (e) => e instanceof StorageError && message.test(e.message));
      await assert.rejects(session.seed({ refreshToken: 'rt-new' }), StorageError);
      assert.equal(await emu.refreshRequests() - before, 0, 'nothing was sent');
      client.free();
    });
  }
});
