// Type declarations for `freshtoken/local-storage`: a TokenStore on the
// page's localStorage whose refresh lease is a Web Lock, so that the tabs of
// an origin share sessions without two of them spending one refresh token.
// Storage and lock manager are typed by the methods the store calls, so
// these declarations need no DOM types.

import type { TokenStore, VersionedRecord } from './index.js';

/** What the store needs of a `Storage` (`localStorage`, `sessionStorage`). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** What the store needs of a `LockManager` (`navigator.locks`). */
export interface LockManagerLike {
  request(name: string, options: { ifAvailable?: boolean }, callback: (lock: unknown) => unknown): Promise<unknown>;
}

export interface LocalStorageStoreOptions {
  /** Default `globalThis.localStorage`. */
  storage?: StorageLike | undefined;
  /** Default `globalThis.navigator.locks`; without one the constructor throws (tabs need the lease). */
  locks?: LockManagerLike | undefined;
  /** Prepended to every key and lock name (default `"freshtoken:"`). */
  prefix?: string | undefined;
}

/**
 * @deprecated Use `IndexedDbStore` (`freshtoken/indexeddb`), and its
 * `migrateFrom` option to move these records. A tab's copy of
 * localStorage learns of another tab's write later, so a tab taking the
 * lease right after another tab's refresh may read the spent refresh
 * token, and a compare-and-swap may compare against an old version.
 *
 * Records in localStorage, shared by the origin's tabs, with the refresh
 * lease held as a Web Lock: one tab refreshes, the others wait and use what
 * it saved. A tab that closes gives its locks back; a lease also lapses
 * after its TTL. Saves are versioned (compare-and-swap under a second Web
 * Lock), so a save whose version moved on is a conflict, never an overwrite.
 *
 * Keys: `${prefix}${key}` holds `{"version":"N","record":"…"}`; the locks are
 * `${prefix}lease:${key}` and `${prefix}write:${key}`. A new record's
 * version starts at a random integer, so versions are not reused after
 * the item is removed (a sign-out).
 */
export class LocalStorageStore implements TokenStore {
  /** Throws a `ConfigError` (its `field` names the option) when there is no storage or no Web Locks API, or on a bad option. */
  constructor(options?: LocalStorageStoreOptions);
  /** The localStorage key holding `key`'s `{version, record}`. */
  recordKey(key: string): string;
  /** The name of the Web Lock that is `key`'s refresh lease. */
  leaseName(key: string): string;
  load(key: string): Promise<string | null>;
  /** Saves unconditionally (the version still moves on); rejects when the storage refuses the write (full, or disabled). */
  save(key: string, record: string): Promise<void>;
  /** Rejects on an item this store did not write (truncated, another library's value). */
  loadVersioned(key: string): Promise<VersionedRecord | null>;
  /** The stored version without the record, or null; for an item no read accepts, one derived from its text: `seed()` and a code exchange replace it. */
  loadVersion(key: string): Promise<string | null>;
  /** The new version, or null when the stored version is not `expectedVersion` (null: when a record exists). */
  saveVersioned(key: string, record: string, expectedVersion: string | null): Promise<string | null>;
  /** The Web Lock if no tab holds it (renewed when `owner` already does); false otherwise. */
  acquire(key: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Gives the lock back, if `owner` still holds it. */
  release(key: string, owner: string): Promise<void>;
}
