// Type declarations for `freshtoken/indexeddb`: a TokenStore on the
// origin's IndexedDB whose refresh lease is a Web Lock, so that the tabs of
// an origin share sessions without two of them spending one refresh token.
// IndexedDB, lock manager and storage are typed by the members the store
// uses, so these declarations need no DOM types.

import type { TokenStore, VersionedRecord } from './index.js';
import type { LockManagerLike } from './local-storage.js';

/** What the store needs of an `IDBFactory` (`indexedDB`). */
export interface IdbFactoryLike {
  open(name: string): unknown;
}

/** What a migration needs of a `Storage` (`localStorage`). */
export interface MigratedStorageLike {
  getItem(key: string): string | null;
  removeItem(key: string): void;
}

export interface IndexedDbStoreOptions {
  /** The database's name (default `"freshtoken"`; not starting with `-`); the lease locks are `${database}:lease:${key}`. */
  database?: string | undefined;
  /** Default `globalThis.indexedDB`; without one the constructor throws. */
  indexedDB?: IdbFactoryLike | undefined;
  /** Default `globalThis.navigator.locks` (secure contexts only: https, or http on localhost); without one the constructor throws (tabs need the lease). */
  locks?: LockManagerLike | undefined;
  /** The prefix of a `LocalStorageStore` (its default: `"freshtoken:"`) whose records move here, each on its first read (an entry another tab may have just written moves once this tab's copy of it is current: up to a quarter of a second later; one that keeps changing for 2 s fails that read). */
  migrateFrom?: string | undefined;
  /** The Storage that `LocalStorageStore` used (default `globalThis.localStorage`); only with `migrateFrom`. */
  storage?: MigratedStorageLike | undefined;
}

/**
 * Records in IndexedDB, shared by the origin's tabs, with the refresh lease
 * held as a Web Lock: one tab refreshes, the others wait and use what it
 * saved, which every tab reads as soon as the save has resolved. A tab that
 * closes gives its locks back; a lease also lapses after its TTL. Saves are
 * versioned (compare-and-swap in one readwrite transaction), so a save
 * whose version moved on is a conflict, never an overwrite.
 *
 * Layout: object store `records` of database `database`, keyed by the
 * session key, values `{version, record}`. A new record's version starts at
 * a random integer, so versions are not reused after a delete (a sign-out).
 */
export class IndexedDbStore implements TokenStore {
  /** Throws a `ConfigError` (its `field` names the option) when there is no IndexedDB or no Web Locks API, or on a bad option. */
  constructor(options?: IndexedDbStoreOptions);
  /** The name of the Web Lock that is `key`'s refresh lease. */
  leaseName(key: string): string;
  /** Rejects on a value this store did not write. */
  load(key: string): Promise<string | null>;
  /** Saves unconditionally (the version still moves on); resolves once committed; rejects when IndexedDB refuses the write (quota). */
  save(key: string, record: string): Promise<void>;
  /** Rejects on a value this store did not write. */
  loadVersioned(key: string): Promise<VersionedRecord | null>;
  /** The stored version without the record, or null; for a value no read accepts, one derived from it: `seed()` and a code exchange replace it. */
  loadVersion(key: string): Promise<string | null>;
  /** The new version once committed, or null when the stored version is not `expectedVersion` (null: when a record exists). */
  saveVersioned(key: string, record: string, expectedVersion: string | null): Promise<string | null>;
  /** The Web Lock if no tab holds it (renewed when `owner` already does); false otherwise. */
  acquire(key: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Gives the lock back, if `owner` still holds it. */
  release(key: string, owner: string): Promise<void>;
}
