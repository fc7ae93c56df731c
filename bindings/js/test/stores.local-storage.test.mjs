// freshtoken/local-storage's argument checks, in Node (which has neither
// localStorage nor navigator.locks). What the store does with real ones —
// two tabs, one refresh, the Web Lock as lease — runs in Chromium
// (browser.test.mjs).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { LocalStorageStore } from 'freshtoken/local-storage';

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

test('options are checked: unknown keys and a prefix that is no string', () => {
  const locks = { request: async () => undefined };
  assert.throws(() => new LocalStorageStore({ storage: storage(), locks, lock: locks }), { name: 'TypeError', message: /unknown option lock/ });
  assert.throws(() => new LocalStorageStore({ storage: storage(), locks, prefix: 7 }), { name: 'TypeError', message: /prefix must be a string/ });
  const store = new LocalStorageStore({ storage: storage(), locks, prefix: 'app:' });
  assert.equal(store.recordKey('u1'), 'app:u1');
  assert.equal(store.leaseName('u1'), 'app:lease:u1');
});

test('records round-trip through the storage; bad arguments reject before anything is written', async () => {
  const backing = storage();
  const store = new LocalStorageStore({ storage: backing, locks: { request: async () => undefined } });
  assert.equal(await store.load('u1'), null);
  await store.save('u1', '{"schema":"freshtoken.record/1"}');
  assert.equal(backing.getItem('freshtoken:u1'), '{"schema":"freshtoken.record/1"}');
  assert.equal(await store.load('u1'), '{"schema":"freshtoken.record/1"}');
  await assert.rejects(store.save('u1', 42), { name: 'TypeError', message: /record must be a string/ });
  await assert.rejects(store.load(7), { name: 'TypeError', message: /key must be a string/ });
  await assert.rejects(store.acquire('u1', '', 1000), { message: /owner must be a non-empty string/ });
  await assert.rejects(store.acquire('u1', 'o', 0), { message: /TTL must be a positive number/ });
  await assert.rejects(store.acquire('u1', 'o', Infinity), { message: /TTL must be a positive number/ });
  assert.equal(backing.getItem('freshtoken:u1'), '{"schema":"freshtoken.record/1"}', 'the record is untouched');
});
