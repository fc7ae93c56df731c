// freshtoken/local-storage's argument checks and a misbehaving lock
// manager, in Node (which has neither localStorage nor navigator.locks). What the store does with real ones —
// two tabs, one refresh, the Web Lock as lease — runs in Chromium
// (browser.tabs.test.mjs).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { StorageError, TokenClient } from 'freshtoken';
import { LocalStorageStore } from 'freshtoken/local-storage';
import { configError as config } from '../support/config-error.mjs';
import { startEmulator } from '../support/emulator.mjs';

/** A Storage's methods over a Map (Node has no localStorage). */
const storage = () => {
  const items = new Map();
  return { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => { items.set(k, String(v)); }, removeItem: (k) => { items.delete(k); } };
};

/** A version a new record starts at: a decimal in [2^32, 2^32 + 2^52), exact as a JS number. */
function assertFreshVersion(version) {
  assert.match(version, /^[0-9]+$/);
  assert.ok(Number(version) >= 2 ** 32 && Number(version) < 2 ** 32 + 2 ** 52, `${version} is a random start`);
}
const next = (version) => String(Number(version) + 1);


test('without localStorage or the Web Locks API the constructor throws: tabs sharing a store need the lease', () => {
  assert.equal(typeof globalThis.localStorage, 'undefined', 'this check needs a host without localStorage');
  assert.throws(() => new LocalStorageStore(), config('storage', /no localStorage here/));
  assert.throws(() => new LocalStorageStore({ storage: storage() }), config('locks', /Web Locks API \(navigator\.locks\)/));
  assert.throws(() => new LocalStorageStore({ storage: storage(), locks: {} }), config('locks', /Web Locks API/));
  assert.throws(() => new LocalStorageStore({ storage: { getItem() {} }, locks: { request() {} } }), config('storage', /no localStorage here/));
});

test('a localStorage that throws when read (a sandboxed frame, storage disabled) is "no localStorage here", not its SecurityError', () => {
  Object.defineProperty(globalThis, 'localStorage', {
    configurable: true,
    get() { throw new DOMException('access denied', 'SecurityError'); },
  });
  try {
    assert.throws(() => new LocalStorageStore({ locks: { request: async () => undefined } }), config('storage', /no localStorage here/));
  } finally {
    delete globalThis.localStorage;
  }
});

test('options are checked: unknown keys and a prefix that is no string', () => {
  const locks = { request: async () => undefined };
  assert.throws(() => new LocalStorageStore(null), config('storage', /no localStorage here/), 'null options are the defaults');
  for (const options of ['app:', 7, true]) {
    assert.throws(() => new LocalStorageStore(options), config('options', /^LocalStorageStore: options must be an object$/), String(options));
  }
  assert.throws(() => new LocalStorageStore({ storage: storage(), locks, lock: locks }), config('lock', /unknown option lock/));
  assert.throws(() => new LocalStorageStore({ storage: storage(), locks, prefix: 7 }), config('prefix', /prefix must be a string/));
  assert.throws(() => new LocalStorageStore({ storage: storage(), locks, prefix: '-app:' }), config('prefix', /prefix must not start with "-" \(Web Lock names cannot\)/));
  const store = new LocalStorageStore({ storage: storage(), locks, prefix: 'app:' });
  assert.equal(store.recordKey('u1'), 'app:u1');
  assert.equal(store.leaseName('u1'), 'app:lease:u1');
});

/** A LockManager's `request` that runs the callback at once (one caller at a time here; real locks run in Chromium). */
const locks = { request: async (name, options, callback) => callback({ name }) };

test('records round-trip through one item with their version; compare-and-swap saves; bad arguments reject before anything is written', async () => {
  const backing = storage();
  const store = new LocalStorageStore({ storage: backing, locks });
  assert.equal(await store.load('u1'), null);
  assert.equal(await store.loadVersioned('u1'), null);
  await store.save('u1', '{"schema":"freshtoken.record/1"}');
  const { version: v1 } = JSON.parse(backing.getItem('freshtoken:u1'));
  assertFreshVersion(v1);
  assert.deepEqual(JSON.parse(backing.getItem('freshtoken:u1')), { version: v1, record: '{"schema":"freshtoken.record/1"}' });
  assert.equal(await store.load('u1'), '{"schema":"freshtoken.record/1"}');
  assert.deepEqual(await store.loadVersioned('u1'), { version: v1, record: '{"schema":"freshtoken.record/1"}' });
  assert.equal(await store.loadVersion('u1'), v1);

  assert.equal(await store.saveVersioned('u1', 'r2', null), null, 'null expects nothing stored');
  assert.equal(await store.saveVersioned('u1', 'r2', '7'), null, 'a version that moved on is a conflict');
  assert.equal(await store.load('u1'), '{"schema":"freshtoken.record/1"}', 'a conflict writes nothing');
  const v2 = await store.saveVersioned('u1', 'r2', v1);
  assert.equal(v2, next(v1));
  assertFreshVersion(await store.saveVersioned('u2', 'first', null));
  await store.save('u1', 'r3');
  assert.equal(await store.saveVersioned('u1', 'r4', v2), null, 'an unconditional save still moves the version on');

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
  for (const foreign of ['{"schema":"freshtoken.record/1"}', 'not json', '{"version":1,"record":"r"}', '{"version":"x1","record":"r"}']) {
    backing.setItem('freshtoken:u1', foreign);
    await assert.rejects(store.load('u1'), { message: /freshtoken:u1 holds no record written by this store/ });
    await assert.rejects(store.loadVersioned('u1'), { message: /holds no record written by this store/ });
    assert.equal(await store.saveVersioned('u1', 'r', null), null, 'something is stored: a conflict');
    assert.equal(backing.getItem('freshtoken:u1'), foreign, 'a refused compare-and-swap writes nothing');
  }
  await store.save('u1', 'mine');
  const { version } = await store.loadVersioned('u1');
  assertFreshVersion(version);
  assert.equal(await store.load('u1'), 'mine');
});

// What a re-link swaps against: the version alone, which an item no read
// accepts has too (derived from its text), so seed() and exchangeCode()
// replace it instead of failing with a StorageError forever.
test('loadVersion: null, the entry\'s version, or one derived from an item it cannot read, which saveVersioned accepts', async () => {
  const backing = storage();
  const store = new LocalStorageStore({ storage: backing, locks });
  assert.equal(await store.loadVersion('u1'), null);
  backing.setItem('freshtoken:u1', '{"version":"3","record":"{\\"sch');
  const derived = await store.loadVersion('u1');
  assert.match(derived, /^u[0-9]+\.[0-9a-f]+\.[0-9a-f]+$/, 'never a decimal: no version this store writes');
  assert.equal(await store.loadVersion('u1'), derived, 'the same text, the same version');
  assert.equal(await store.saveVersioned('u1', 'r', '3'), null, 'not the version inside the unreadable text');
  backing.setItem('freshtoken:u1', '{"version":"3","record":"{\\"sci');
  const changed = await store.loadVersion('u1');
  assert.notEqual(changed, derived, 'another text, another version');
  assert.equal(await store.saveVersioned('u1', 'r', derived), null, 'a swap against the old text fails');
  const saved = await store.saveVersioned('u1', 'relinked', changed);
  assertFreshVersion(saved);
  assert.deepEqual(await store.loadVersioned('u1'), { version: saved, record: 'relinked' });
  assert.equal(await store.loadVersion('u1'), saved);
  await assert.rejects(store.loadVersion(7), { name: 'TypeError', message: /key must be a string/ });
});

test('versions are not reused after removeItem (a sign-out); items from earlier releases count on', async () => {
  const backing = storage();
  const store = new LocalStorageStore({ storage: backing, locks });
  const first = await store.saveVersioned('u1', 'link A', null);
  const stale = await store.saveVersioned('u1', 'link A, rotated', first);
  backing.removeItem('freshtoken:u1');
  const created = await store.saveVersioned('u1', 'link B', null);
  assertFreshVersion(created);
  assert.equal(await store.saveVersioned('u1', 'stale write', stale), null, 'the old link\'s version');
  assert.equal(await store.saveVersioned('u1', 'stale write', first), null);
  assert.equal(await store.load('u1'), 'link B');
  backing.removeItem('freshtoken:u1');
  await store.save('u1', 'link C');
  assert.ok(![first, stale, created].includes(await store.loadVersion('u1')), 'an unconditional save starts afresh too');

  backing.setItem('freshtoken:u2', JSON.stringify({ version: '3', record: 'old' }));
  assert.deepEqual(await store.loadVersioned('u2'), { version: '3', record: 'old' });
  assert.equal(await store.saveVersioned('u2', 'next', '3'), '4');
  await store.save('u2', 'after');
  assert.equal(await store.loadVersion('u2'), '5');
});

test('a storage that refuses the write (full) rejects the save and keeps the stored record', async () => {
  const backing = storage();
  const store = new LocalStorageStore({ storage: backing, locks });
  await store.save('u1', 'kept');
  const full = { getItem: backing.getItem, setItem: () => { throw new DOMException('quota', 'QuotaExceededError'); } };
  const refusing = new LocalStorageStore({ storage: full, locks });
  await assert.rejects(refusing.save('u1', 'lost'), { name: 'QuotaExceededError' });
  const { version } = await store.loadVersioned('u1');
  await assert.rejects(refusing.saveVersioned('u1', 'lost', version), { name: 'QuotaExceededError' });
  assert.deepEqual(await store.loadVersioned('u1'), { version, record: 'kept' });
});

// Through sessions: an item the store cannot read fails every call with a
// StorageError, but never a re-link, which swaps against its loadVersion.
describe('a re-link replaces an item LocalStorageStore cannot read', () => {
  const REDIRECT = 'https://app.example/callback';
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });

  const unreadable = {
    truncated: '{"version":"3","record":"{\\"schema\\":',
    'another library\'s value': '{"schema":"freshtoken.record/1","refresh_token":"rt-foreign","updated_at":1}',
    empty: '',
    'a lone surrogate': '\ud800',
    // This store's entry (its version counts on), but the core refuses the
    // record: converted, its refresh token would be sent changed.
    'a record with a lone surrogate': JSON.stringify({ version: '3', record: '{"schema":"freshtoken.record/1","refresh_token":"rt-\ud800","updated_at":1}' }),
  };

  /** A client, a store on `backing` holding `item` under u1, and a check that the session on it fails. */
  async function blocked(item) {
    const backing = storage();
    backing.setItem('freshtoken:u1', item);
    const store = new LocalStorageStore({ storage: backing, locks });
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });
    await assert.rejects(client.session('u1', store).accessToken(), StorageError);
    return { backing, store, client };
  }

  /** The new link is stored (as this store's entry, its refresh token live) and serves tokens; its record. */
  async function relinked({ backing, store, client }, expected) {
    const { version, record } = JSON.parse(backing.getItem('freshtoken:u1'));
    if (expected) assert.equal(version, expected);
    else assertFreshVersion(version);
    const stored = JSON.parse(record);
    assert.equal(await emu.refreshTokenState(stored.refresh_token), 'active');
    assert.equal(typeof await client.session('u1', store).accessToken(), 'string');
    client.free();
    return stored;
  }

  for (const [name, item] of Object.entries(unreadable)) {
    const expected = name === 'a record with a lone surrogate' ? '4' : undefined; // else a new record's
    test(`${name}: seed() replaces it`, async () => {
      const blocking = await blocked(item);
      const family = await emu.seed();
      await blocking.client.session('u1', blocking.store).seed({ refreshToken: family.refresh_token });
      const stored = await relinked(blocking, expected);
      assert.ok(stored.refresh_token === family.refresh_token, 'the seeded refresh token is stored');
    });

    test(`${name}: exchangeCode() replaces it`, async () => {
      const blocking = await blocked(item);
      const request = await blocking.client.authorizationUrl({ redirectUri: REDIRECT });
      const response = await fetch(request.url, { redirect: 'manual' });
      await response.arrayBuffer();
      const code = new URL(response.headers.get('location')).searchParams.get('code');
      const before = await emu.refreshRequests();
      const session = await blocking.client.exchangeCode({ code, codeVerifier: request.codeVerifier, redirectUri: REDIRECT }, 'u1', blocking.store);
      const { accessToken } = await session.tokens();
      assert.equal(await emu.refreshRequests(), before, 'the exchanged tokens are used as they are');
      const stored = await relinked(blocking, expected);
      assert.ok(stored.access_token === accessToken, 'the exchanged record is stored');
    });
  }
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
