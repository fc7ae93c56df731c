// freshtoken/local-storage: a TokenStore on the page's localStorage, for
// browser apps whose tabs share their sessions.
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
// Keys: `${prefix}${key}` holds the record; the lock is named
// `${prefix}lease:${key}`.

const NAME = 'LocalStorageStore';

// The leases this page holds, by lock name: { owner, timer, end }. Shared by
// every instance, as the locks are: a session handle made with a new store
// may release what another instance acquired.
const HELD = new Map();

/** Ends `lease` on `name` (if it is still the one held): the lock goes back. */
function giveBack(name, lease) {
  if (HELD.get(name) !== lease) return;
  HELD.delete(name);
  clearTimeout(lease.timer);
  lease.end();
}

function checkKey(key) {
  if (typeof key !== 'string') throw new TypeError(`${NAME}: the key must be a string`);
}

function checkOwner(owner) {
  if (typeof owner !== 'string' || owner === '') throw new TypeError(`${NAME}: the lease owner must be a non-empty string`);
}

/** A TokenStore on localStorage whose refresh lease is a Web Lock: tabs share sessions safely. */
export class LocalStorageStore {
  #storage;
  #locks;
  #prefix;

  /**
   * @param options.storage a Storage (default `globalThis.localStorage`)
   * @param options.locks   a LockManager (default `globalThis.navigator.locks`)
   * @param options.prefix  prepended to every key and lock name (default "freshtoken:")
   */
  constructor({ storage = globalThis.localStorage, locks = globalThis.navigator?.locks, prefix = 'freshtoken:', ...rest } = {}) {
    const unknown = Object.keys(rest);
    if (unknown.length) throw new TypeError(`${NAME}: unknown option ${unknown[0]}`);
    if (!storage || typeof storage.getItem !== 'function' || typeof storage.setItem !== 'function') {
      throw new TypeError(`${NAME}: no localStorage here (pass options.storage, a Storage)`);
    }
    // Without the lease two tabs could spend one refresh token: no fallback.
    if (!locks || typeof locks.request !== 'function') {
      throw new TypeError(`${NAME}: the Web Locks API (navigator.locks) is missing; tabs sharing a store need it for the refresh lease (pass options.locks, a LockManager)`);
    }
    if (typeof prefix !== 'string') throw new TypeError(`${NAME}: prefix must be a string`);
    this.#storage = storage;
    this.#locks = locks;
    this.#prefix = prefix;
  }

  /** The localStorage key holding session `key`'s record. */
  recordKey(key) {
    checkKey(key);
    return `${this.#prefix}${key}`;
  }

  /** The name of the Web Lock that is session `key`'s refresh lease. */
  leaseName(key) {
    checkKey(key);
    return `${this.#prefix}lease:${key}`;
  }

  /** The record saved under `key`, or null. */
  async load(key) {
    return this.#storage.getItem(this.recordKey(key));
  }

  /** Saves `record` under `key` (a full storage rejects, and the session's caller gets a StorageError). */
  async save(key, record) {
    if (typeof record !== 'string') throw new TypeError(`${NAME}: the record must be a string`);
    this.#storage.setItem(this.recordKey(key), record);
  }

  /**
   * Takes the refresh lease on `key` for `owner` for `ttlMs`: the Web Lock,
   * if no tab holds it (renewed when `owner` already does); false otherwise.
   */
  async acquire(key, owner, ttlMs) {
    checkOwner(owner);
    if (typeof ttlMs !== 'number' || !(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new TypeError(`${NAME}: the lease TTL must be a positive number of ms`);
    }
    const name = this.leaseName(key);
    const held = HELD.get(name);
    if (held) {
      // Held by this page; the lock itself would only say "not available".
      if (held.owner !== owner) return false;
      clearTimeout(held.timer);
      held.timer = setTimeout(() => giveBack(name, held), ttlMs);
      return true;
    }
    return new Promise((resolve, reject) => {
      const taken = (lock) => {
        if (!lock) {
          resolve(false);
          return undefined;
        }
        // The lock is held until this promise settles.
        return new Promise((end) => {
          const lease = { owner, end, timer: undefined };
          lease.timer = setTimeout(() => giveBack(name, lease), ttlMs);
          HELD.set(name, lease);
          resolve(true);
        });
      };
      this.#locks.request(name, { ifAvailable: true }, taken).catch(reject);
    });
  }

  /** Gives the lease back, if `owner` still holds it. */
  async release(key, owner) {
    checkOwner(owner);
    const name = this.leaseName(key);
    const held = HELD.get(name);
    if (held && held.owner === owner) giveBack(name, held);
  }
}
