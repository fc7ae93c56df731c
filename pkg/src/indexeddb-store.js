// freshtoken/indexeddb: a TokenStore on the origin's IndexedDB, for browser
// apps whose tabs share their sessions.
//
// Tabs of one origin are processes of a fleet to the core: without a lease,
// two tabs at expiry would both send the same single-use refresh token, and
// the server would revoke the family (the user re-links). So this store
// always offers the lease, a Web Lock the tabs share (web-lock-lease.js):
// one tab refreshes, the others wait, re-read the record it saved and send
// nothing.
//
// That re-read must see the save. IndexedDB's guarantees it: its
// transactions run in the browser's storage backend, and one started after
// another committed sees what that one wrote, whichever tab or process
// wrote it. A save resolves only once its transaction has committed, so the
// lease is given back after the rotated record is there for every tab.
// (localStorage gives no such guarantee: each renderer process reads its
// own copy, which learns of other tabs' writes later; see
// LocalStorageStore.)
//
// Saves are versioned: a compare-and-swap is one readwrite transaction (the
// backend runs those on one object store one at a time), so a save whose
// version moved on (a tab re-linked the user while another was refreshing)
// is a conflict, never an overwrite.
//
// Layout: database `options.database` (default "freshtoken"), object store
// `records`, key = the session key, value `{version, record}` (both text).
// The lease is the Web Lock `${database}:lease:${key}`: with the defaults,
// the name LocalStorageStore's default prefix gives it, so tabs still on
// that store and tabs on this one never refresh a key at once.
//
// A value this store cannot read (another library's, written into this
// database) fails every read, but has a version (`loadVersion`), derived
// from its JSON text, so a re-link (`seed()`, a code exchange) replaces it.
// A new record's version starts at a random integer, so a tab holding a
// version from before the record was deleted (a sign-out) never swaps over
// the next link's record.
//
// `options.migrateFrom`: the prefix of a LocalStorageStore whose records
// move here. A key with no record here, whose item there is that store's
// entry, gets that entry (its version kept) on its first read, under the
// key's lease (no tab on either store refreshes meanwhile); the item is
// then removed, unless a tab changed it meanwhile. A record another tab may
// have just written moves only once this tab's copy of the item is known
// current (see SETTLE_MS).

import { asEntry, entryOfText, nextVersion, unreadableVersion } from './entry-versions.js';
import { configErrorSaying, storeOptions } from './errors.js';
import { acquireLease, lockManager, lockNamePrefix, releaseLease, whileLeased } from './web-lock-lease.js';

const NAME = 'IndexedDbStore';
const RECORDS = 'records';

// Per open connection: how to fail each of its transactions still running.
const ENDERS = new WeakMap();

// Moving a localStorage record (migrateFrom). A tab's localStorage is its
// renderer's own copy, which learns of another tab's write in a later task,
// and Chromium may hand a Web Lock over before that task: right after a tab
// still on LocalStorageStore refreshed and let the lease go, this tab may
// read the item as it was before, the write-ahead marker whose refresh
// token was just spent. Moved here, that token would be sent again (the
// server revokes the grant). So a record another tab may have just written
// (in doubt, written in the last RECENT_MS, or unreadable here: encrypted)
// moves only once this tab's copy is known current: a later value of the
// item reached it (a `storage` event wakes the wait) that is no write-ahead
// marker (a marker's refresh answer is still to come), or the item stayed
// the same for SETTLE_MS (another tab's write reaches this one within
// milliseconds). If it keeps changing for SETTLE_LIMIT_MS (less than the
// core's default store deadline, 5 s), the read fails (a storage error;
// the core reads again later) and nothing moves.
const SETTLE_MS = 250;
const SETTLE_LIMIT_MS = 2_000;
const RECENT_MS = 60_000;
/** The schema of the core's records (src/store.rs), whose in_doubt and updated_at the move reads. */
const RECORD_SCHEMA = 'freshtoken.record/1';

/** The page's localStorage, or undefined where reading it throws (a sandboxed frame, storage disabled). */
function pageStorage() {
  try {
    return globalThis.localStorage;
  } catch {
    return undefined;
  }
}

/** A monotonic clock (ms) for the move's waits. */
function elapsedNow() {
  return globalThis.performance?.now?.() ?? Date.now();
}

/**
 * Whether the record of LocalStorageStore's `entry` is a refresh's
 * write-ahead marker (its `in_doubt`): true or false, or undefined when the
 * record cannot be read here (an EncryptedStore envelope, another schema).
 * With its `updated_at` (Unix ms, 0 when absent).
 */
function recordMarks(entry) {
  let record;
  try {
    record = JSON.parse(entry.record);
  } catch {
    return undefined;
  }
  if (record?.schema !== RECORD_SCHEMA) return undefined;
  return { inDoubt: record.in_doubt === true, updatedAt: Number.isFinite(record.updated_at) ? record.updated_at : 0 };
}

/** Whether another tab may have written `entry` just now, and written again since (see SETTLE_MS). */
function mayBeMidWrite(entry) {
  const marks = recordMarks(entry);
  return !marks || marks.inDoubt || Math.abs(Date.now() - marks.updatedAt) < RECENT_MS;
}

/**
 * Resolves at the next `storage` event naming `item` (or a `clear()`), or
 * after `ms`. Without `addEventListener` (no window) only after `ms`.
 */
function storageEventOr(item, ms) {
  return new Promise((resolve) => {
    const target = typeof globalThis.addEventListener === 'function' ? globalThis : undefined;
    let timer;
    const done = () => {
      clearTimeout(timer);
      target?.removeEventListener('storage', onStorage);
      resolve();
    };
    const onStorage = (event) => {
      if (event?.key === item || event?.key === null) done();
    };
    target?.addEventListener('storage', onStorage);
    timer = setTimeout(done, ms);
  });
}

/** An Error for a failed IndexedDB step: what was done and the DOMException's name and message (no values). */
function failed(what, cause) {
  const detail = cause ? `: ${cause.name ?? `a thrown ${typeof cause}`}${cause.message ? ` (${cause.message})` : ''}` : '';
  return new Error(`${NAME}: ${what} failed${detail}`, { cause });
}

/** The version of a stored value (undefined: none), readable or not. */
function versionOf(value) {
  if (value === undefined) return null;
  const entry = asEntry(value);
  if (entry) return entry.version;
  let text;
  try {
    text = JSON.stringify(value);
  } catch { /* a value JSON cannot write (a cycle, a BigInt) */ }
  return unreadableVersion(typeof text === 'string' ? text : `[${typeof value}]`);
}

/** The `{version, record}` of a stored value, or null; throws on a value this store did not write. */
function readEntry(key, value) {
  if (value === undefined) return null;
  const entry = asEntry(value);
  if (!entry) throw new Error(`${NAME}: the value under ${JSON.stringify(key)} is no record written by this store`);
  return entry;
}

function checkKey(key) {
  if (typeof key !== 'string') throw new TypeError(`${NAME}: the key must be a string`);
}

function checkRecord(record) {
  if (typeof record !== 'string') throw new TypeError(`${NAME}: the record must be a string`);
}

/** A TokenStore on IndexedDB whose refresh lease is a Web Lock, with versioned saves: tabs share sessions safely. */
export class IndexedDbStore {
  #factory;
  #locks;
  #database;
  #migrateFrom;
  #storage;
  /** The open connection (a promise), until it closes. */
  #connection;

  /**
   * @param options.database    the IndexedDB database's name (default "freshtoken"); also names the lease locks
   * @param options.indexedDB   an IDBFactory (default `globalThis.indexedDB`)
   * @param options.locks       a LockManager (default `globalThis.navigator.locks`)
   * @param options.migrateFrom the prefix of a LocalStorageStore whose records move here on first read
   * @param options.storage     the Storage that LocalStorageStore used (default `globalThis.localStorage`; with migrateFrom)
   */
  constructor(options) {
    let {
      database = 'freshtoken',
      indexedDB = globalThis.indexedDB,
      locks = globalThis.navigator?.locks,
      migrateFrom,
      storage,
      ...rest
    } = storeOptions(options, NAME);
    const unknown = Object.keys(rest);
    if (unknown.length) throw configErrorSaying(unknown[0], `${NAME}: unknown option ${unknown[0]}`);
    if (!indexedDB || typeof indexedDB.open !== 'function') {
      throw configErrorSaying('indexedDB', `${NAME}: no IndexedDB here (pass options.indexedDB, an IDBFactory)`);
    }
    lockManager(locks, NAME);
    if (typeof database !== 'string' || database === '') throw configErrorSaying('database', `${NAME}: database must be a non-empty string`);
    lockNamePrefix(database, NAME, 'database');
    if (migrateFrom !== undefined) {
      if (typeof migrateFrom !== 'string') throw configErrorSaying('migrateFrom', `${NAME}: migrateFrom must be a string (a LocalStorageStore prefix)`);
      storage ??= pageStorage();
      if (!storage || typeof storage.getItem !== 'function' || typeof storage.removeItem !== 'function') {
        throw configErrorSaying('storage', `${NAME}: migrateFrom needs localStorage (pass options.storage, a Storage)`);
      }
    } else if (storage !== undefined) {
      throw configErrorSaying('storage', `${NAME}: options.storage is only read with migrateFrom`);
    }
    this.#factory = indexedDB;
    this.#locks = locks;
    this.#database = database;
    this.#migrateFrom = migrateFrom;
    this.#storage = storage;
  }

  /** The name of the Web Lock that is session `key`'s refresh lease. */
  leaseName(key) {
    checkKey(key);
    return `${this.#database}:lease:${key}`;
  }

  /** The connection, opened (and the object store created) on first use and again after it closed. */
  #open() {
    if (this.#connection) return this.#connection;
    const opening = new Promise((resolve, reject) => {
      const request = this.#factory.open(this.#database);
      request.onupgradeneeded = () => {
        const db = request.result;
        if (!db.objectStoreNames.contains(RECORDS)) db.createObjectStore(RECORDS);
      };
      request.onsuccess = () => {
        const db = request.result;
        // Another tab upgrading the database, or the browser closing it
        // (cleared site data): the next call opens it again.
        db.onversionchange = () => { db.close(); forget(); };
        // Closed by the browser: a transaction begun just then may never
        // complete nor abort, so every one still open fails now.
        const enders = new Set();
        ENDERS.set(db, enders);
        db.onclose = () => {
          forget();
          for (const end of enders) end();
          enders.clear();
        };
        resolve(db);
      };
      request.onerror = () => reject(request.error);
    }).catch((e) => {
      forget();
      throw failed(`opening database ${JSON.stringify(this.#database)}`, e);
    });
    const forget = () => {
      if (this.#connection === opening) this.#connection = undefined;
    };
    this.#connection = opening;
    return opening;
  }

  /**
   * Runs `body(records, done)` in one transaction on the records object
   * store; resolves to what `done` was given once the transaction has
   * committed (a readwrite one's writes are then seen by every tab), and
   * rejects if it aborts. `what` names the step in errors.
   */
  async #transaction(mode, what, body) {
    const opened = this.#open();
    const db = await opened;
    return new Promise((resolve, reject) => {
      let result;
      let tx;
      const enders = ENDERS.get(db);
      const end = () => reject(new Error(`${NAME}: ${what} failed: the browser closed the database (site data cleared, or storage evicted)`));
      enders?.add(end);
      const settle = (finish) => () => {
        enders?.delete(end);
        finish();
      };
      try {
        // A rotated refresh token lost to a power cut after its save
        // resolved costs a re-link: writes are flushed to disk before they
        // count as committed (browsers without the option ignore it).
        tx = db.transaction(RECORDS, mode, mode === 'readwrite' ? { durability: 'strict' } : undefined);
        tx.oncomplete = settle(() => resolve(result));
        tx.onabort = settle(() => reject(failed(what, tx.error)));
        body(tx.objectStore(RECORDS), (value) => { result = value; });
      } catch (e) {
        // A closed connection, a missing object store (a full quota
        // aborts the transaction instead).
        enders?.delete(end);
        if (e?.name === 'InvalidStateError' && this.#connection === opened) this.#connection = undefined;
        try { tx?.abort(); } catch { /* already over */ }
        reject(failed(what, e));
      }
    });
  }

  /** The value stored under `key` (undefined: none), moved from localStorage first when migrating. */
  async #get(key) {
    checkKey(key);
    const value = await this.#transaction('readonly', 'reading', (records, done) => {
      const got = records.get(key);
      got.onsuccess = () => done(got.result);
    });
    return value === undefined && this.#migrateFrom !== undefined ? this.#migrate(key) : value;
  }

  /**
   * Moves `key`'s LocalStorageStore entry here if none is stored yet; what
   * is stored then. Under the key's lease, which tabs still on that store
   * share: a refresh there saving its rotated record while the entry moves
   * would leave the spent one here for good, and the next refresh here send
   * it (the server revokes the grant). For the same reason the entry moves
   * only once this tab has seen that refresh's last write (`#settled`).
   */
  #migrate(key) {
    return whileLeased(this.#locks, this.leaseName(key), () => this.#move(key));
  }

  /** The move of `#migrate`, under the lease. */
  async #move(key) {
    const item = `${this.#migrateFrom}${key}`;
    let text = this.#storage.getItem(item);
    let entry = entryOfText(text);
    if (!entry) return undefined; // none, or not that store's entry: left where it is
    if (mayBeMidWrite(entry)) {
      text = await this.#settled(item, text);
      entry = entryOfText(text);
      if (!entry) return undefined; // removed meanwhile (a sign-out): nothing to move
    }
    const moved = { version: entry.version, record: entry.record };
    const stored = await this.#transaction('readwrite', 'moving a localStorage record', (records, done) => {
      const got = records.get(key);
      got.onsuccess = () => {
        if (got.result !== undefined) {
          done(got.result); // another tab moved it (or saved a record) first
          return;
        }
        records.put(moved, key);
        done(moved);
      };
    });
    // `text` is the settled copy: a write since then (a re-link in an old
    // tab) stays.
    if (this.#storage.getItem(item) === text) this.#storage.removeItem(item);
    return stored;
  }

  /**
   * The text of `item`, first read as `text`, once this tab's copy of it is
   * known current (see SETTLE_MS); rejects when it keeps changing.
   */
  async #settled(item, text) {
    const start = elapsedNow();
    let current = text;
    let quietSince = start;
    for (;;) {
      const wait = Math.min(quietSince + SETTLE_MS, start + SETTLE_LIMIT_MS) - elapsedNow();
      if (wait > 0) await storageEventOr(item, wait);
      const again = this.#storage.getItem(item);
      const now = elapsedNow();
      if (again !== current) {
        current = again;
        quietSince = now;
        // Written after the first read: the lease's last holder's final
        // write, unless it is a write-ahead marker (or unreadable here).
        const entry = entryOfText(current);
        if (!entry || recordMarks(entry)?.inDoubt === false) return current;
      } else if (now - quietSince >= SETTLE_MS) {
        return current;
      }
      if (now - start >= SETTLE_LIMIT_MS) {
        throw new Error(`${NAME}: moving localStorage item ${JSON.stringify(item)} failed: it kept changing for ${SETTLE_LIMIT_MS} ms (a tab still on LocalStorageStore writing it); nothing moved, a later read tries again`);
      }
    }
  }

  /** The record saved under `key`, or null; rejects on a value this store did not write. */
  async load(key) {
    return readEntry(key, await this.#get(key))?.record ?? null;
  }

  /** The record and its version, or null; rejects on a value this store did not write. */
  async loadVersioned(key) {
    const entry = readEntry(key, await this.#get(key));
    return entry && { record: entry.record, version: entry.version };
  }

  /**
   * The version of `key`'s value, or null, without reading the record: also
   * for a value no read accepts, so that `seed()` and a code exchange, which
   * swap against this, replace it.
   */
  async loadVersion(key) {
    return versionOf(await this.#get(key));
  }

  /**
   * Saves `record` under `key` unconditionally (its version still moves on,
   * so a compare-and-swap against the old one fails). Resolves once it is
   * committed; a full quota rejects, and the session's caller gets a
   * StorageError.
   */
  async save(key, record) {
    checkKey(key);
    checkRecord(record);
    await this.#swap(key, record, undefined);
  }

  /**
   * Saves only if the stored version is still `expectedVersion` (null: only
   * if nothing is stored). Resolves to the new version once it is
   * committed, or null on a conflict.
   */
  async saveVersioned(key, record, expectedVersion) {
    checkKey(key);
    checkRecord(record);
    if (expectedVersion !== null && typeof expectedVersion !== 'string') {
      throw new TypeError(`${NAME}: the expected version must be a string or null`);
    }
    return this.#swap(key, record, expectedVersion);
  }

  /** One readwrite transaction: reads `key`'s value and, unless its version is not `expected` (undefined: any), writes `record` at the next version. */
  async #swap(key, record, expected) {
    if (this.#migrateFrom !== undefined) await this.#get(key); // a swap is against the moved entry's version
    return this.#transaction('readwrite', 'saving', (records, done) => {
      const got = records.get(key);
      got.onsuccess = () => {
        if (expected !== undefined && versionOf(got.result) !== expected) {
          done(null);
          return;
        }
        const version = nextVersion(asEntry(got.result));
        records.put({ version, record }, key);
        done(version);
      };
    });
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
