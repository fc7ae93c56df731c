// freshtoken/local-storage: a TokenStore on the page's localStorage, for
// browser apps whose tabs share their sessions.
//
// Deprecated: use freshtoken/indexeddb (IndexedDbStore, whose migrateFrom
// option moves these records). localStorage is not kept in step across a
// browser's processes: each renderer reads its own copy, which learns of
// another tab's write in a later task. A tab that takes the lease right
// after another tab's refresh may read the record from before it, and send
// the spent refresh token; a compare-and-swap under the write lock may
// compare against a version that already moved on. The rest of this
// comment says what the store meant to guarantee.
//
// Tabs of one origin share localStorage, so to the core they are processes
// of a fleet: without a lease, two tabs at expiry would both send the same
// single-use refresh token, and the server would revoke the family (the user
// re-links). This store therefore always offers the lease, held through the
// Web Locks API (`navigator.locks`), which the tabs of an origin share too:
// one tab refreshes, the others wait, re-read the record it saved and send
// nothing. A tab that closes or crashes gives its locks back at once; a
// lease also lapses after its TTL, like a Redis lease, so a refresh whose
// promise never settles cannot hold it forever.
//
// It offers versioned saves as well, so that a save whose version moved on
// (a tab re-linked the user while another was refreshing) is a conflict,
// never an overwrite: every write runs under a second, short Web Lock, which
// makes the compare-and-swap atomic across tabs.
//
// Keys: `${prefix}${key}` holds `{"version":"N","record":"…"}` (one item,
// so a write is whole or not at all); the locks are named
// `${prefix}lease:${key}` (the refresh lease) and `${prefix}write:${key}`.
//
// An item this store cannot read (truncated, another library's value, a
// record with a lone surrogate) fails every read, but has a version too
// (`loadVersion`), derived from its text: a re-link (`seed()`, a code
// exchange) swaps against it and replaces the item instead of failing
// forever. A new record's version starts at a random integer, so that a
// tab holding a version from before a sign-out (`removeItem`) never swaps
// over the next link's record.

import { entryOfText, nextVersion, unreadableVersion } from './entry-versions.js';
import { configErrorSaying, storeOptions } from './errors.js';
import { acquireLease, lockManager, lockNamePrefix, releaseLease } from './web-lock-lease.js';

const NAME = 'LocalStorageStore';

/** The page's localStorage, or undefined where reading it throws (a sandboxed frame, storage disabled). */
function pageStorage() {
  try {
    return globalThis.localStorage;
  } catch {
    return undefined;
  }
}

/** The version of the item `text` (null: no item), readable or not. */
function versionOf(text) {
  if (text === null) return null;
  return entryOfText(text)?.version ?? unreadableVersion(text);
}

function checkKey(key) {
  if (typeof key !== 'string') throw new TypeError(`${NAME}: the key must be a string`);
}

function checkRecord(record) {
  if (typeof record !== 'string') throw new TypeError(`${NAME}: the record must be a string`);
}

/** A TokenStore on localStorage whose refresh lease is a Web Lock, with versioned saves. Deprecated: IndexedDbStore (see the top of this file). */
export class LocalStorageStore {
  #storage;
  #locks;
  #prefix;

  /**
   * @param options.storage a Storage (default `globalThis.localStorage`)
   * @param options.locks   a LockManager (default `globalThis.navigator.locks`)
   * @param options.prefix  prepended to every key and lock name (default "freshtoken:")
   */
  constructor(options) {
    const { storage = pageStorage(), locks = globalThis.navigator?.locks, prefix = 'freshtoken:', ...rest } = storeOptions(options, NAME);
    const unknown = Object.keys(rest);
    if (unknown.length) throw configErrorSaying(unknown[0], `${NAME}: unknown option ${unknown[0]}`);
    if (!storage || typeof storage.getItem !== 'function' || typeof storage.setItem !== 'function') {
      throw configErrorSaying('storage', `${NAME}: no localStorage here (pass options.storage, a Storage)`);
    }
    lockManager(locks, NAME);
    if (typeof prefix !== 'string') throw configErrorSaying('prefix', `${NAME}: prefix must be a string`);
    lockNamePrefix(prefix, NAME, 'prefix');
    this.#storage = storage;
    this.#locks = locks;
    this.#prefix = prefix;
  }

  /** The localStorage key holding session `key`'s `{version, record}`. */
  recordKey(key) {
    checkKey(key);
    return `${this.#prefix}${key}`;
  }

  /** The name of the Web Lock that is session `key`'s refresh lease. */
  leaseName(key) {
    checkKey(key);
    return `${this.#prefix}lease:${key}`;
  }

  /** The item of `key` as stored (text), or null. */
  #item(key) {
    return this.#storage.getItem(this.recordKey(key));
  }

  /** The stored `{version, record}` of `key`, or null; rejects on an item this store did not write. */
  #read(key) {
    const text = this.#item(key);
    if (text === null) return null;
    const entry = entryOfText(text);
    if (!entry) throw new Error(`${NAME}: ${this.recordKey(key)} holds no record written by this store`);
    return entry;
  }

  /**
   * Writes `record` as the version after `previous`'s (an entry, or null: a
   * new record, at a random version); returns the new version. One setItem:
   * whole or not at all.
   */
  #write(key, record, previous) {
    const version = nextVersion(previous);
    this.#storage.setItem(this.recordKey(key), JSON.stringify({ version, record }));
    return version;
  }

  /** Runs `body` (synchronous reads and writes) holding `key`'s write lock, which every write of every tab takes. */
  #locked(key, body) {
    checkKey(key);
    return this.#locks.request(`${this.#prefix}write:${key}`, {}, body);
  }

  /** The record saved under `key`, or null. */
  async load(key) {
    return this.#read(key)?.record ?? null;
  }

  /** The record and its version, or null. */
  async loadVersioned(key) {
    const entry = this.#read(key);
    return entry && { record: entry.record, version: entry.version };
  }

  /**
   * Saves `record` under `key` unconditionally (its version still moves on,
   * so a compare-and-swap against the old one fails). A full storage
   * rejects, and the session's caller gets a StorageError.
   */
  async save(key, record) {
    checkRecord(record);
    // An item it cannot read is replaced, as a new record.
    await this.#locked(key, () => this.#write(key, record, entryOfText(this.#item(key))));
  }

  /**
   * Saves only if the stored version is still `expectedVersion` (null: only
   * if nothing is stored). Resolves to the new version, or null on a conflict.
   */
  async saveVersioned(key, record, expectedVersion) {
    checkRecord(record);
    if (expectedVersion !== null && typeof expectedVersion !== 'string') {
      throw new TypeError(`${NAME}: the expected version must be a string or null`);
    }
    return this.#locked(key, () => {
      const text = this.#item(key);
      if (versionOf(text) !== expectedVersion) return null;
      return this.#write(key, record, entryOfText(text));
    });
  }

  /**
   * The version of `key`'s item, or null, without reading the record: also
   * for an item no read accepts (see unreadableVersion), so that `seed()`
   * and a code exchange, which swap against this, replace it.
   */
  async loadVersion(key) {
    return versionOf(this.#item(key));
  }

  /**
   * Takes the refresh lease on `key` for `owner` for `ttlMs`: the Web Lock,
   * if no tab holds it (renewed when `owner` already does); false otherwise.
   */
  async acquire(key, owner, ttlMs) {
    return acquireLease(this.#locks, this.leaseName(key), owner, ttlMs, NAME);
  }

  /** Gives the lease back, if `owner` still holds it. */
  async release(key, owner) {
    return releaseLease(this.leaseName(key), owner, NAME);
  }
}
