// freshtoken/indexeddb's option checks, in Node (which has neither
// IndexedDB nor navigator.locks). What the store does with real ones — two
// tabs, one refresh, compare-and-swap, migration from localStorage — runs
// in Chromium (browser.tabs.test.mjs).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { IndexedDbStore } from 'freshtoken/indexeddb';

const indexedDB = { open() { throw new Error('not opened in these tests'); } };
const locks = { request: async () => undefined };
const storage = { getItem: () => null, removeItem() {} };

test('without IndexedDB or the Web Locks API the constructor throws: tabs sharing a store need both', () => {
  assert.equal(typeof globalThis.indexedDB, 'undefined', 'this check needs a host without IndexedDB');
  assert.throws(() => new IndexedDbStore(), { name: 'TypeError', message: /^IndexedDbStore: no IndexedDB here/ });
  assert.throws(() => new IndexedDbStore({ indexedDB: {} }), { name: 'TypeError', message: /no IndexedDB here/ });
  assert.throws(() => new IndexedDbStore({ indexedDB }), { name: 'TypeError', message: /^IndexedDbStore: the Web Locks API \(navigator\.locks\) is missing/ });
  assert.throws(() => new IndexedDbStore({ indexedDB, locks: {} }), { name: 'TypeError', message: /Web Locks API/ });
});

test('options are checked: unknown keys, the database name, migrateFrom and its storage', () => {
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, prefix: 'a:' }), { name: 'TypeError', message: /unknown option prefix/ });
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, database: '' }), { name: 'TypeError', message: /database must be a non-empty string/ });
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, database: 7 }), { name: 'TypeError', message: /database must be a non-empty string/ });
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, migrateFrom: true }), { name: 'TypeError', message: /migrateFrom must be a string/ });
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, migrateFrom: 'freshtoken:' }), { name: 'TypeError', message: /migrateFrom needs localStorage/ });
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, migrateFrom: 'a:', storage: { getItem: () => null } }), { name: 'TypeError', message: /migrateFrom needs localStorage/ });
  assert.throws(() => new IndexedDbStore({ indexedDB, locks, storage }), { name: 'TypeError', message: /options\.storage is only read with migrateFrom/ });
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
