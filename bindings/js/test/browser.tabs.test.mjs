// Tabs of one origin sharing sessions, in a real headless Chromium: to the
// core they are a fleet. freshtoken/indexeddb's IndexedDbStore holds the
// refresh lease as a Web Lock and saves with compare-and-swap in IndexedDB;
// here two tabs meet at expiry, a re-link in one meets a refresh in the
// other, and the store's own rules run on the real IndexedDB. Why not
// localStorage: a tab's copy of it learns of another tab's save later, and
// a test below shows that deterministically.
//
// Concurrency is made certain, not timed: a refresh is held at the emulator
// until the other tab has been refused the lease, and a tab that must do
// nothing meanwhile waits in a synchronous request the static server
// answers only when told to.
//
// Needs what browser.test.mjs needs (Chromium, the built package, the
// emulator). Nothing here prints a token.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { chromiumSkip, openChromium } from '../support/chromium.mjs';
import { startEmulator } from '../support/emulator.mjs';

const PUBLIC_CLIENT = 'public-client';
const SCHEMA = 'freshtoken.record/1';
/** Each test's bound (a describe's timeout bounds all of its tests together). */
const TEST = { timeout: 120_000 };
/** Waiting for a tab's request at the emulator: it first goes through IndexedDB, a Web Lock and a flushed save. */
const HELD = { timeoutMs: 60_000 };

// The suite's own bound only catches a hang outside the tests (Chromium's start).
describe('tabs sharing sessions in headless Chromium', { skip: chromiumSkip, timeout: 30 * 60_000 }, () => {
  let emu;
  let browser;
  let page;
  const pageErrors = [];

  before(async () => {
    emu = await startEmulator();
    browser = await openChromium(pageErrors);
    ({ page } = browser);
    await browser.load(page);
  });

  after(async () => {
    await browser?.close();
    await emu?.stop();
  });

  /** `body` run in another tab of the origin, closed after. */
  const withTab = async (body) => {
    const other = await browser.openTab();
    try {
      return await body(other);
    } finally {
      await other.close();
    }
  };

  /**
   * In `tab`: a client and a session `tab-user` on `store` ('idb':
   * IndexedDbStore on database `name`; 'idb-only': its lease and plain
   * load/save, without versioned saves; 'plain': localStorage items under
   * prefix `name`, without a lease), seeded with `refreshToken` when given.
   * Counts refused acquires in window.__refused.
   */
  const tabSession = (tab, { store, refreshToken, name }) => tab.evaluate(async ({ tokenEndpoint, store, refreshToken, name }) => {
    const { IndexedDbStore } = await import('/lib/indexeddb-store.js');
    let chosen;
    if (store === 'idb') {
      chosen = new IndexedDbStore({ database: name });
      const acquire = chosen.acquire.bind(chosen);
      window.__refused = 0;
      chosen.acquire = async (...args) => {
        const got = await acquire(...args);
        if (!got) window.__refused += 1;
        return got;
      };
    } else if (store === 'idb-only') {
      const full = new IndexedDbStore({ database: name });
      chosen = {
        load: (key) => full.load(key),
        save: (key, record) => full.save(key, record),
        acquire: (...args) => full.acquire(...args),
        release: (...args) => full.release(...args),
      };
    } else {
      chosen = {
        load: async (key) => localStorage.getItem(name + key),
        save: async (key, record) => localStorage.setItem(name + key, record),
      };
    }
    const client = new window.ft.TokenClient({ tokenEndpoint, clientId: 'public-client' });
    window.__tabSession = client.session('tab-user', chosen);
    if (refreshToken) await window.__tabSession.seed({ refreshToken });
  }, { tokenEndpoint: emu.tokenEndpoint, store, refreshToken, name });

  /** Starts accessToken() in `tab`; the outcome waits in window.__tabCall. */
  const startCall = (tab) => tab.evaluate(() => {
    window.__tabCall = window.__tabSession.accessToken().then(
      (token) => ({ token }),
      (e) => ({ error: e?.name, reason: e?.reason }),
    );
  });
  const outcome = (tab) => tab.evaluate(() => window.__tabCall);

  /** The record IndexedDbStore `database` holds for `key`, parsed, read in `tab`. */
  const storedIn = async (tab, database, key = 'tab-user') => JSON.parse(await tab.evaluate(async ([database, key]) => {
    const { IndexedDbStore } = await import('/lib/indexeddb-store.js');
    return new IndexedDbStore({ database }).load(key);
  }, [database, key]));

  /** Both tabs on `store` at expiry: the first tab's refresh is held at the emulator, then `other` calls too. */
  const bothCall = async (other, store, name) => {
    const seeded = await emu.seed({ clientId: PUBLIC_CLIENT });
    const before = await emu.refreshRequests();
    await tabSession(page, { store, refreshToken: seeded.refresh_token, name });
    await tabSession(other, { store, name });
    await emu.fault({ kind: 'hold' });
    await startCall(page);
    await emu.waitHeld(1, HELD);
    await startCall(other);
    return { seeded, before };
  };

  test('two tabs on an IndexedDbStore at expiry: one refresh; the other tab waits on the Web Lock and uses the rotated record', TEST, () => withTab(async (other) => {
    const { seeded, before } = await bothCall(other, 'idb', 'tabs-lease');
    await other.waitForFunction(() => window.__refused > 0, null, { timeout: 30_000 });
    await emu.releaseHeld();
    const [first, second] = [await outcome(page), await outcome(other)];

    assert.equal(await emu.refreshRequests() - before, 1, 'one refresh request for both tabs');
    assert.equal(typeof first.token, 'string', `the first tab got a token (${first.error})`);
    assert.ok(second.token === first.token, `the second tab got the token the first one saved (${second.error})`);
    const record = await storedIn(other, 'tabs-lease');
    assert.ok(record.access_token === first.token, 'IndexedDB holds the rotated record');
    assert.equal(await emu.refreshTokenState(seeded.refresh_token), 'consumed');
    assert.equal(await emu.refreshTokenState(record.refresh_token), 'active', 'the rotated refresh token is alive');
    assert.deepEqual(pageErrors, [], 'no page errors');
  }));

  test('the same two tabs on localStorage without a lease spend the refresh token twice; the refused tab adopts the other\'s record, whose token the server revoked: the user must re-link (why the store holds one)', TEST, () => withTab(async (other) => {
    const { seeded, before } = await bothCall(other, 'plain', 'tabs-plain:');
    const second = await outcome(other); // not held: the emulator rotates for it
    // The first tab's copy of localStorage holds the second tab's record before the first tab is answered
    // (a storage event brings it), so that its read after the refusal is not stale.
    await page.waitForFunction((token) => {
      const text = localStorage.getItem('tabs-plain:tab-user');
      return text !== null && JSON.parse(text).access_token === token;
    }, second.token, { timeout: 30_000 });
    await emu.releaseHeld();
    const first = await outcome(page);

    assert.equal(await emu.refreshRequests() - before, 2, 'each tab sent the same refresh token');
    assert.equal(typeof second.token, 'string', 'the second tab\'s request rotated the token');
    assert.equal(await emu.refreshTokenState(seeded.refresh_token), 'consumed');
    // Refused, the first tab read the store again and adopted the second tab's record, not a dead mark over it.
    assert.ok(first.token === second.token, `the first tab adopted the second tab's record (${first.error})`);
    const stored = JSON.parse(await page.evaluate(() => localStorage.getItem('tabs-plain:tab-user')));
    assert.equal(stored.reauth, undefined, 'no dead mark over the other tab\'s record');
    // The server saw the spent token again and revoked the family: the next refresh ends the session.
    assert.equal(await emu.refreshTokenState(stored.refresh_token), 'revoked');
    const relink = await page.evaluate(() => window.__tabSession.refresh().then(() => null, (e) => e?.name));
    assert.equal(relink, 'ReauthorizationRequiredError');
  }));

  for (const [className, module, options] of [
    ['IndexedDbStore', '/lib/indexeddb-store.js', { database: 'lease-test' }],
    ['LocalStorageStore', '/lib/local-storage-store.js', { prefix: 'lease-test:' }],
  ]) {
    test(`a ${className} lease: refused to another owner, renewed for its own, given back when its tab closes or its TTL lapses`, TEST, () => withTab(async (other) => {
      const lease = (tab, ...args) => tab.evaluate(async ([module, className, options, method, ...rest]) => {
        const Store = (await import(module))[className];
        return new Store(options)[method](...rest);
      }, [module, className, options, ...args]);
      const name = (key) => page.evaluate(async ([module, className, options, key]) => {
        const Store = (await import(module))[className];
        return new Store(options).leaseName(key);
      }, [module, className, options, key]);
      // Resolves once nobody holds the lock (a plain, waiting Web Lock request).
      const freed = async (tab, key) => tab.evaluate((n) => navigator.locks.request(n, () => true), await name(key));

      assert.equal(await lease(page, 'acquire', 'k', 'a', 60_000), true);
      assert.equal(await lease(page, 'acquire', 'k', 'b', 60_000), false, 'another owner in the same tab');
      assert.equal(await lease(other, 'acquire', 'k', 'b', 60_000), false, 'another owner in another tab');
      assert.equal(await lease(page, 'acquire', 'k', 'a', 60_000), true, 'the holder renews');
      await lease(page, 'release', 'k', 'b');
      assert.equal(await lease(other, 'acquire', 'k', 'b', 60_000), false, 'a release by another owner gives nothing back');

      // A closed tab's locks go back at once.
      const third = await browser.openTab();
      assert.equal(await lease(third, 'acquire', 'closing', 'c', 60_000), true);
      assert.equal(await lease(other, 'acquire', 'closing', 'b', 60_000), false);
      await third.close();
      await freed(other, 'closing');
      assert.equal(await lease(other, 'acquire', 'closing', 'b', 60_000), true, 'the closed tab\'s lease is free');

      // A lease lapses after its TTL, like a Redis lease.
      assert.equal(await lease(page, 'acquire', 'ttl', 'a', 50), true);
      await freed(other, 'ttl');
      assert.equal(await lease(other, 'acquire', 'ttl', 'b', 60_000), true, 'the lapsed lease is free');
      await lease(page, 'release', 'k', 'a');
      assert.equal(await lease(other, 'acquire', 'k', 'b', 60_000), true, 'the holder\'s release gives it back');
      await lease(other, 'release', 'closing', 'b');
      await lease(other, 'release', 'ttl', 'b');

      // A release resolves once the lock is free: another owner, in this
      // tab or another, gets it at once.
      const handedOver = await other.evaluate(async ([module, className, options]) => {
        const store = new (await import(module))[className](options);
        await store.release('k', 'b');
        const taken = await store.acquire('handover', 'b', 60_000);
        await store.release('handover', 'b');
        return [taken, await store.acquire('handover', 'c', 60_000)];
      }, [module, className, options]);
      assert.deepEqual(handedOver, [true, true], 'another owner of the same tab, right after the release');
      await lease(other, 'release', 'handover', 'c');
      assert.equal(await lease(page, 'acquire', 'k', 'a', 60_000), true, 'an owner in another tab, after the release');

      // Two acquires of one owner at once: both hold it (the second renews).
      const both = await page.evaluate(async ([module, className, options]) => {
        const store = new (await import(module))[className](options);
        return Promise.all([store.acquire('twice', 'a', 60_000), store.acquire('twice', 'a', 60_000), store.acquire('twice', 'b', 60_000)]);
      }, [module, className, options]);
      assert.deepEqual(both, [true, true, false]);

      // A TTL beyond what a timer can wait (2^31 ms, about 25 days) still
      // holds: it does not lapse at once. The page's 10 ms timer fires
      // after one that overflowed to "now".
      for (const ttl of [2 ** 31, 30 * 24 * 3_600_000]) {
        const key = `long-${ttl}`;
        assert.equal(await lease(page, 'acquire', key, 'a', ttl), true);
        await page.evaluate(() => new Promise((resolve) => { setTimeout(resolve, 10); }));
        assert.equal(await lease(other, 'acquire', key, 'b', 60_000), false, `a ${ttl} ms lease is still held`);
        assert.equal(await lease(page, 'acquire', key, 'b', 60_000), false, `a ${ttl} ms lease is still held in its tab`);
        await lease(page, 'release', key, 'a');
      }
      await lease(page, 'release', 'k', 'a');
      await lease(page, 'release', 'twice', 'a');
      assert.deepEqual(pageErrors, [], 'no page errors');
    }));
  }

  // The user re-links in one tab (a new seed) while the other tab's refresh
  // of the old link is held at the emulator: the versioned saves keep the
  // new link; without them the refreshing tab's save overwrites it.
  const relinkDuringRefresh = (store, name) => withTab(async (other) => {
    const old = await emu.seed({ clientId: PUBLIC_CLIENT });
    const relinked = await emu.seed({ clientId: PUBLIC_CLIENT });
    await tabSession(page, { store, refreshToken: old.refresh_token, name });
    await tabSession(other, { store, name });
    await emu.fault({ kind: 'hold' });
    await startCall(page);
    await emu.waitHeld(1, HELD);
    await other.evaluate((refreshToken) => window.__tabSession.seed({ refreshToken }), relinked.refresh_token);
    await emu.releaseHeld();
    const refreshing = await outcome(page);
    return { old, relinked, refreshing, stored: await storedIn(other, name) };
  });

  test('a re-link in one tab while another refreshes: the refreshing tab\'s save is a conflict, and the new link stays', TEST, async () => {
    const { old, relinked, refreshing, stored } = await relinkDuringRefresh('idb', 'relink-cas');
    assert.ok(stored.refresh_token === relinked.refresh_token, 'the stored record is the new link');
    assert.equal(refreshing.error, 'ConflictError', 'the refreshing tab learns that the record moved on');
    assert.equal(await emu.refreshTokenState(old.refresh_token), 'consumed', 'the old link was refreshed at the server');
    assert.equal(await emu.refreshTokenState(relinked.refresh_token), 'active');
    assert.deepEqual(pageErrors, [], 'no page errors');
  });

  test('the same re-link on a store with the lease but no versioned saves: the refreshing tab overwrites the new link (why the store versions its saves)', TEST, async () => {
    const { relinked, refreshing, stored } = await relinkDuringRefresh('idb-only', 'relink-plain');
    assert.equal(typeof refreshing.token, 'string', 'the refreshing tab saved its rotated record');
    assert.ok(stored.refresh_token !== relinked.refresh_token, 'the new link was overwritten');
  });

  // A tab that takes the lease right after another tab saved and let it go
  // must read that save, or it sends the spent refresh token. Here the
  // reading tab waits in a synchronous request (so it runs no task) while
  // the other tab saves through both stores; the moment it goes on, it
  // reads. IndexedDB answers from the browser's storage backend: the new
  // record. localStorage answers from the tab's own copy, which learns of
  // the other tab's write only in a later task: the old one. Without the
  // wait the same happens now and then (the reason this store exists).
  test('a tab reads what another tab saved once the save resolved: IndexedDbStore does; LocalStorageStore may not (why the tabs\' store is IndexedDB)', TEST, (t) => withTab(async (other) => {
    const saveBoth = (tab, record) => tab.evaluate(async (record) => {
      const { IndexedDbStore } = await import('/lib/indexeddb-store.js');
      const { LocalStorageStore } = await import('/lib/local-storage-store.js');
      await new IndexedDbStore({ database: 'stale-read' }).save('k', record);
      await new LocalStorageStore({ prefix: 'stale-read:' }).save('k', record);
    }, record);
    await saveBoth(page, 'old');
    // The reading tab's stores, built before it waits.
    await other.evaluate(async () => {
      const { IndexedDbStore } = await import('/lib/indexeddb-store.js');
      const { LocalStorageStore } = await import('/lib/local-storage-store.js');
      window.__stores = { idb: new IndexedDbStore({ database: 'stale-read' }), local: new LocalStorageStore({ prefix: 'stale-read:' }) };
      return [await window.__stores.idb.load('k'), await window.__stores.local.load('k')];
    }).then((both) => assert.deepEqual(both, ['old', 'old']));

    const read = other.evaluate(async () => {
      const wait = new XMLHttpRequest();
      wait.open('GET', '/hold', false); // synchronous: no task runs until answered
      wait.send();
      const local = window.__stores.local.load('k');
      const idb = window.__stores.idb.load('k');
      return { local: await local, idb: await idb };
    });
    await browser.site.held();
    // Tabs in one renderer process share its main thread: the saving tab
    // would wait for the blocked one. Chromium gives unrelated tabs their
    // own processes; should it not, there is nothing to show here.
    let sharedThread;
    const saved = saveBoth(page, 'new');
    const savedFirst = await Promise.race([
      saved.then(() => true),
      new Promise((resolve) => { sharedThread = setTimeout(() => resolve(false), 30_000); }),
    ]);
    clearTimeout(sharedThread);
    browser.site.releaseHolds();
    const [result] = await Promise.all([read, saved]);
    if (!savedFirst) {
      t.skip('the two tabs share a renderer process here: one waited for the other');
      return;
    }
    assert.deepEqual(result, { idb: 'new', local: 'old' });
  }));

  describe('IndexedDbStore on the real IndexedDB', () => {
    /** Runs `body(store, raw, failure, arg)` in the page: `store` an IndexedDbStore on database `name`, `raw(key, value)` a put of a value as stored, `failure(promise)` how it rejects. */
    const inPage = (name, body, arg) => page.evaluate(async ([name, body, arg]) => {
      const { IndexedDbStore } = await import('/lib/indexeddb-store.js');
      const store = new IndexedDbStore({ database: name });
      const raw = (key, value) => new Promise((resolve, reject) => {
        const open = indexedDB.open(name);
        open.onupgradeneeded = () => open.result.createObjectStore('records');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const tx = open.result.transaction('records', 'readwrite');
          if (value === undefined) tx.objectStore('records').delete(key);
          else tx.objectStore('records').put(value, key);
          tx.oncomplete = () => { open.result.close(); resolve(); };
          tx.onabort = () => reject(tx.error);
        };
      });
      const failure = async (promise) => promise.then(() => 'resolved', (e) => `${e.name}: ${e.message}`);
      // eslint-disable-next-line no-new-func
      return new Function('store', 'raw', 'failure', 'arg', `return (${body})(store, raw, failure, arg);`)(store, raw, failure, arg);
    }, [name, String(body), arg]);

    test('records round-trip with their version; compare-and-swap saves; a new record starts at a random version; bad arguments reject', TEST, async () => {
      const r = await inPage('idb-rules', async (store, raw, failure) => {
        const out = {};
        out.none = [await store.load('u1'), await store.loadVersioned('u1'), await store.loadVersion('u1')];
        await store.save('u1', 'r1');
        out.v1 = await store.loadVersion('u1');
        out.loaded = await store.loadVersioned('u1');
        out.conflictNull = await store.saveVersioned('u1', 'r2', null);
        out.conflictOld = await store.saveVersioned('u1', 'r2', '7');
        out.afterConflict = await store.load('u1');
        out.v2 = await store.saveVersioned('u1', 'r2', out.v1);
        await store.save('u1', 'r3');
        out.staleAfterSave = await store.saveVersioned('u1', 'r4', out.v2);
        out.first = await store.saveVersioned('u2', 'first', null);
        out.errors = [
          await failure(store.save('u1', 42)),
          await failure(store.saveVersioned('u1', 'r', 3)),
          await failure(store.load(7)),
          await failure(store.acquire('u1', '', 1000)),
          await failure(store.acquire('u1', 'o', 0)),
        ];
        out.untouched = await store.load('u1');
        return out;
      });
      assert.deepEqual(r.none, [null, null, null]);
      assert.match(r.v1, /^[0-9]+$/);
      assert.ok(Number(r.v1) >= 2 ** 32, 'a new record starts at a random version, never 1');
      assert.deepEqual(r.loaded, { record: 'r1', version: r.v1 });
      assert.equal(r.conflictNull, null, 'null expects nothing stored');
      assert.equal(r.conflictOld, null, 'a version that moved on is a conflict');
      assert.equal(r.afterConflict, 'r1', 'a conflict writes nothing');
      assert.equal(r.v2, String(Number(r.v1) + 1));
      assert.equal(r.staleAfterSave, null, 'an unconditional save still moves the version on');
      assert.ok(Number(r.first) >= 2 ** 32);
      assert.match(r.errors[0], /^TypeError: IndexedDbStore: the record must be a string/);
      assert.match(r.errors[1], /^TypeError: IndexedDbStore: the expected version must be a string or null/);
      assert.match(r.errors[2], /^TypeError: IndexedDbStore: the key must be a string/);
      assert.match(r.errors[3], /^TypeError: IndexedDbStore: the lease owner must be a non-empty string/);
      assert.match(r.errors[4], /^TypeError: IndexedDbStore: the lease TTL must be a positive number of ms/);
      assert.equal(r.untouched, 'r3');
    });

    test('a save counts as committed only once flushed to disk (durability "strict"); reads ask for nothing of the kind', TEST, async () => {
      const modes = await inPage('idb-durable', async (store) => {
        const seen = [];
        const original = IDBDatabase.prototype.transaction;
        IDBDatabase.prototype.transaction = function transaction(...args) {
          const tx = original.apply(this, args);
          seen.push([tx.mode, tx.durability]);
          return tx;
        };
        try {
          await store.save('u1', 'r1');
          await store.saveVersioned('u1', 'r2', await store.loadVersion('u1'));
        } finally {
          IDBDatabase.prototype.transaction = original;
        }
        return seen;
      });
      assert.deepEqual(modes, [['readwrite', 'strict'], ['readonly', 'default'], ['readwrite', 'strict']]);
    });

    test('a value this store did not write fails every read, has a version derived from it, and a swap against that replaces it', TEST, async () => {
      const r = await inPage('idb-foreign', async (store, raw, failure) => {
        const out = {};
        for (const [name, value] of Object.entries({ text: 'a token', number: 3, 'version as a number': { version: 3, record: 'r' }, blob: new Blob(['x']) })) {
          await raw('u1', value);
          const version = await store.loadVersion('u1');
          out[name] = { load: await failure(store.load('u1')), version, again: await store.loadVersion('u1') };
        }
        await raw('u1', 'a token');
        const version = await store.loadVersion('u1');
        await raw('u1', 'another token');
        out.movedOn = await store.saveVersioned('u1', 'mine', version);
        out.replaced = await store.saveVersioned('u1', 'mine', await store.loadVersion('u1'));
        out.read = await store.load('u1');
        return out;
      });
      for (const name of ['text', 'number', 'version as a number', 'blob']) {
        assert.match(r[name].load, /^Error: IndexedDbStore: the value under "u1" is no record written by this store$/, name);
        assert.match(r[name].version, /^u[0-9]+\.[0-9a-f]+\.[0-9a-f]+$/, name);
        assert.equal(r[name].again, r[name].version, `${name}: the same value, the same version`);
      }
      assert.ok(!r.text.version.includes('token'), 'the version is no copy of the value');
      assert.equal(r.movedOn, null, 'a value changed since its version was read is a conflict');
      assert.match(r.replaced, /^[0-9]+$/);
      assert.equal(r.read, 'mine');
    });

    test('through a session: seed() replaces a value the store cannot read; a database without its object store is a StorageError, nothing sent', TEST, async () => {
      const family = await emu.seed({ clientId: PUBLIC_CLIENT });
      const before = await emu.refreshRequests();
      const r = await page.evaluate(async ({ tokenEndpoint, refreshToken }) => {
        const { IndexedDbStore } = await import('/lib/indexeddb-store.js');
        const { TokenClient } = window.ft;
        const client = new TokenClient({ tokenEndpoint, clientId: 'public-client' });
        const out = {};
        // Another library's database of that name, without `records`.
        await new Promise((resolve, reject) => {
          const open = indexedDB.open('idb-not-ours', 1);
          open.onupgradeneeded = () => open.result.createObjectStore('other');
          open.onsuccess = () => { open.result.close(); resolve(); };
          open.onerror = () => reject(open.error);
        });
        const notOurs = client.session('u1', new IndexedDbStore({ database: 'idb-not-ours' }));
        out.notOurs = await notOurs.accessToken().then(() => 'resolved', (e) => `${e.name}: ${e.message}`);

        const store = new IndexedDbStore({ database: 'idb-seed' });
        await store.save('u1', 'not a record');
        const session = client.session('u1', store);
        out.blocked = await session.accessToken().then(() => 'resolved', (e) => e.name);
        await session.seed({ refreshToken });
        out.token = typeof await session.accessToken();
        out.stored = JSON.parse(await store.load('u1')).schema;
        client.free();
        return out;
      }, { tokenEndpoint: emu.tokenEndpoint, refreshToken: family.refresh_token });
      assert.match(r.notOurs, /^StorageError: .*IndexedDbStore: reading failed: NotFoundError/);
      assert.equal(r.blocked, 'StorageError', 'a record the core cannot parse is a StorageError');
      assert.equal(r.token, 'string');
      assert.equal(r.stored, SCHEMA);
      assert.equal(await emu.refreshRequests() - before, 1, 'only the seeded session refreshed');
    });

    // A tab still on LocalStorageStore (old app code) refreshes under the
    // lease the two stores share while a tab on IndexedDbStore({migrateFrom})
    // reads the same key: the move waits for the lease, then must move the
    // rotated record. Chromium may hand the lease over before the old tab's
    // last localStorage write reaches the moving tab's copy, which then
    // still holds the write-ahead marker (the spent token, in doubt): moved,
    // the next refresh here sent the spent token (reauthorization_required,
    // lost_rotation), and the rotated record stayed behind in localStorage.
    // That happens now and then (a few runs in a hundred); here it happens
    // every second round for certain: the old tab's storage keeps its
    // rotated record back until the moving tab has read the item, then
    // writes it. The other rounds run as Chromium delivers.
    test('migrateFrom: a tab still on LocalStorageStore refreshes while the move waits for its lease; the move takes the rotated record even when it reaches this tab after the lease, never the spent marker', TEST, () => withTab(async (other) => {
      const ROUNDS = 24;
      await other.evaluate(async (tokenEndpoint) => {
        const { LocalStorageStore } = await import('/lib/local-storage-store.js');
        // localStorage whose writes wait in `pending` (read back by this
        // tab) while window.__late is set, until window.__flush().
        const pending = new Map();
        window.__late = false;
        window.__flush = () => {
          window.__late = false;
          for (const [item, text] of pending) localStorage.setItem(item, text);
          pending.clear();
        };
        const storage = {
          getItem: (item) => (pending.has(item) ? pending.get(item) : localStorage.getItem(item)),
          setItem: (item, text) => (window.__late ? pending.set(item, text) : localStorage.setItem(item, text)),
        };
        window.__oldStore = new LocalStorageStore({ prefix: 'migr:', storage });
        window.__oldClient = new window.ft.TokenClient({ tokenEndpoint, clientId: 'public-client' });
      }, emu.tokenEndpoint);
      await page.evaluate(async () => {
        const { IndexedDbStore } = await import('/lib/indexeddb-store.js');
        // localStorage, counting the move's reads.
        const storage = {
          getItem: (item) => { window.__reads += 1; return localStorage.getItem(item); },
          removeItem: (item) => localStorage.removeItem(item),
        };
        window.__newStore = new IndexedDbStore({ database: 'migr', migrateFrom: 'migr:', storage });
        await window.__newStore.load('opened'); // the database exists: the moves below are quick
      });

      const bad = [];
      for (let round = 0; round < ROUNDS; round += 1) {
        const key = `u${round}`;
        const late = round % 2 === 0;
        const seeded = await emu.seed({ clientId: PUBLIC_CLIENT });
        await other.evaluate(async ({ key, refreshToken }) => {
          window.__old = window.__oldClient.session(key, window.__oldStore);
          await window.__old.seed({ refreshToken });
        }, { key, refreshToken: seeded.refresh_token });
        await emu.fault({ kind: 'hold' });
        await other.evaluate(() => { window.__oldCall = window.__old.accessToken().then((t) => t, (e) => `${e.name}`); });
        await emu.waitHeld(1, HELD); // the old tab holds the lease; its marker is in localStorage
        // The move starts, and waits for the old tab's lease (its Web Lock
        // request is pending) without reading the item.
        const waiting = await page.evaluate(async ({ key, lease }) => {
          window.__reads = 0;
          window.__moving = window.__newStore.load(key);
          while (!(await navigator.locks.query()).pending.some((lock) => lock.name === lease)) {
            await new Promise((resolve) => { setTimeout(resolve, 5); });
          }
          return window.__reads;
        }, { key, lease: `migr:lease:${key}` });
        if (late) await other.evaluate(() => { window.__late = true; });
        await emu.releaseHeld();
        const oldCall = await other.evaluate(() => window.__oldCall);
        if (late) {
          // The old tab saved, resolved and let the lease go; the moving tab
          // reads what it has, and only then does the rotated record come.
          await page.waitForFunction(() => window.__reads > 0, null, { timeout: 30_000 });
          await other.evaluate(() => window.__flush());
        }
        const moved = JSON.parse(await page.evaluate(() => window.__moving));
        const left = await page.evaluate((item) => localStorage.getItem(item), `migr:${key}`);
        const problems = [];
        if (waiting !== 0) problems.push('the move read the item before the old tab\'s lease was free');
        if (typeof oldCall !== 'string' || oldCall.endsWith('Error')) problems.push(`the old tab's refresh failed (${oldCall})`);
        if (moved.refresh_token === seeded.refresh_token) problems.push(`the spent marker moved (in_doubt ${moved.in_doubt})`);
        else if (await emu.refreshTokenState(moved.refresh_token) !== 'active') problems.push('the moved refresh token is not active');
        if (left !== null) problems.push('the localStorage item was left');
        if (problems.length) bad.push(`${key} (${late ? 'rotated record after the lease' : 'as Chromium delivers'}): ${problems.join('; ')}`);
      }
      assert.deepEqual(bad, [], `rounds that went wrong: ${bad.length} of ${ROUNDS}`);
      assert.deepEqual(pageErrors, [], 'no page errors');
    }));

    test('migrateFrom: a record in doubt that no tab writes again moves once it stayed the same a moment; an old one at once; an item that keeps changing is a StorageError through a session, nothing moved', TEST, async () => {
      const r = await page.evaluate(async () => {
        const { IndexedDbStore } = await import('/lib/indexeddb-store.js');
        const record = (fields) => JSON.stringify({ schema: 'freshtoken.record/1', refresh_token: 'rt', ...fields });
        const entry = (version, fields) => JSON.stringify({ version: String(version), record: record(fields) });
        const items = new Map([
          ['set:marker', entry(100, { in_doubt: true, updated_at: Date.now() - 3_600_000 })],
          ['set:old', entry(200, { updated_at: Date.now() - 3_600_000 })],
        ]);
        const reads = new Map();
        let writes = 0;
        const storage = {
          getItem: (item) => {
            reads.set(item, (reads.get(item) ?? 0) + 1);
            // A tab writing a new marker all the time.
            if (item === 'set:busy') return entry(300 + ++writes, { in_doubt: true, updated_at: Date.now() });
            return items.get(item) ?? null;
          },
          removeItem: (item) => items.delete(item),
        };
        const store = new IndexedDbStore({ database: 'mig-settle', migrateFrom: 'set:', storage });
        const plain = new IndexedDbStore({ database: 'mig-settle' });
        const out = {};
        out.marker = JSON.parse(await store.load('marker'));
        out.old = JSON.parse(await store.load('old'));
        const client = new window.ft.TokenClient({ tokenEndpoint: 'https://token.invalid/token', clientId: 'public-client' });
        const started = performance.now();
        out.busy = await client.session('busy', store).accessToken().then(() => 'resolved', (e) => `${e.name}: ${e.message}`);
        out.busyMs = performance.now() - started;
        client.free();
        out.busyStored = await plain.load('busy');
        out.reads = Object.fromEntries(reads);
        out.left = [...items.keys()];
        return out;
      });
      assert.equal(r.marker.in_doubt, true, 'the marker moved: no tab wrote it again');
      assert.ok(r.reads['set:marker'] >= 3, `the marker was read again after a wait (${r.reads['set:marker']} reads)`);
      assert.equal(r.old.refresh_token, 'rt');
      assert.equal(r.reads['set:old'], 2, 'an old record, not in doubt, moves at once: read, then checked before its removal');
      assert.deepEqual(r.left, [], 'both items removed');
      assert.match(r.busy, /^StorageError: .*IndexedDbStore: moving localStorage item "set:busy" failed: it kept changing/);
      assert.ok(r.busyMs < 5_000, `within the default store deadline (${Math.round(r.busyMs)} ms)`);
      assert.equal(r.busyStored, null, 'nothing moved');
      assert.deepEqual(pageErrors, [], 'no page errors');
    });

    test('migrateFrom: a LocalStorageStore record moves on its first read, version kept and item removed; the session goes on without a refresh', TEST, async () => {
      const family = await emu.seed({ clientId: PUBLIC_CLIENT });
      const r = await page.evaluate(async ({ tokenEndpoint, refreshToken }) => {
        const { IndexedDbStore } = await import('/lib/indexeddb-store.js');
        const { LocalStorageStore } = await import('/lib/local-storage-store.js');
        const { TokenClient } = window.ft;
        const out = {};
        const old = new LocalStorageStore({ prefix: 'mig:' });
        const before = new TokenClient({ tokenEndpoint, clientId: 'public-client' });
        await before.session('u1', old).seed({ refreshToken });
        out.token = await before.session('u1', old).accessToken();
        out.version = await old.loadVersion('u1');
        before.free();
        localStorage.setItem('mig:not-an-entry', 'something else');
        await new IndexedDbStore({ database: 'mig' }).save('already', 'kept');
        localStorage.setItem('mig:already', JSON.stringify({ version: '5', record: 'stale' }));

        const store = new IndexedDbStore({ database: 'mig', migrateFrom: 'mig:' });
        const after = new TokenClient({ tokenEndpoint, clientId: 'public-client' });
        out.served = await after.session('u1', store).accessToken();
        out.movedVersion = await new IndexedDbStore({ database: 'mig' }).loadVersion('u1');
        out.itemLeft = localStorage.getItem('mig:u1');
        out.notAnEntry = [await store.load('not-an-entry'), localStorage.getItem('mig:not-an-entry')];
        out.already = await store.load('already');
        after.free();
        return out;
      }, { tokenEndpoint: emu.tokenEndpoint, refreshToken: family.refresh_token });
      assert.ok(r.served === r.token, 'the migrated record\'s access token is served, no refresh');
      assert.equal(r.movedVersion, r.version, 'the entry keeps its version');
      assert.equal(r.itemLeft, null, 'the localStorage item is removed');
      assert.deepEqual(r.notAnEntry, [null, 'something else'], 'an item LocalStorageStore did not write stays where it is');
      assert.equal(r.already, 'kept', 'a record already in IndexedDB wins');
      assert.deepEqual(pageErrors, [], 'no page errors');
    });
  });
});
