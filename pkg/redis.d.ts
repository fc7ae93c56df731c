// Type declarations for `freshtoken/redis`: a fleet TokenStore on Redis
// through a node-redis client (npm `redis` v4, v5 or v6, an optional peer
// dependency). The client is typed by the one method the store calls, so
// these declarations need no types from the `redis` package.

import type { TokenStore, VersionedRecord } from './index.js';

/**
 * What the store needs of a node-redis client: `sendCommand` of a client
 * from `createClient()` (connected). Cluster clients and
 * legacy-mode ones (whose `sendCommand` returns no Promise) are not supported.
 */
export interface RedisCommandClient {
  sendCommand(args: string[]): Promise<unknown>;
}

export interface RedisStoreOptions {
  /** Prepended to every key (default `"freshtoken:"`). */
  prefix?: string | undefined;
}

/** Who holds a refresh lease, and for how many more milliseconds. */
export interface LeaseHolder {
  owner: string;
  /** `Infinity` when the key was set without an expiry (not by this store). */
  expiresInMs: number;
}

/**
 * Records in Redis with leases and compare-and-swap saves: several
 * processes can share sessions, and only one at a time refreshes each.
 *
 * Keys: `${prefix}record:${key}` is a hash `{record, version}` (version: an
 * integer as a string, incremented by every save, starting at a random one,
 * so versions are not reused after a DEL; a hash without a record field is
 * no record, one without a version field is version "0"; a key of another
 * type, such as a string or a list, is never read — `load` and
 * `loadVersioned` reject — and is version "0", which a re-link replaces);
 * `${prefix}lease:${key}` is a string holding the lease owner, with a PX
 * expiry.
 */
export class RedisStore implements TokenStore {
  /** Throws a `ConfigError` (its `field` names the parameter or option) for a client that is not node-redis, or a bad option. */
  constructor(client: RedisCommandClient, options?: RedisStoreOptions | null);
  /** The Redis key of the hash holding `key`'s record. */
  recordKey(key: string): string;
  /** The Redis key of `key`'s refresh lease. */
  leaseKey(key: string): string;
  /** Rejects, unread, when the record is over 1 MiB or the key is not a hash. */
  load(key: string): Promise<string | null>;
  /** Saves unconditionally; the version still increments (a key of another type is replaced). */
  save(key: string, record: string): Promise<void>;
  /** `SET NX PX`; renews the TTL when `owner` already holds the lease. */
  acquire(key: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Deletes the lease only if `owner` still holds it. */
  release(key: string, owner: string): Promise<void>;
  /** Rejects, unread, when the record is over 1 MiB or the key is not a hash. */
  loadVersioned(key: string): Promise<VersionedRecord | null>;
  /** The stored version without the record, or null: `seed()` and a code exchange replace a record too large (or unfit) to read; a key of another type is version "0". */
  loadVersion(key: string): Promise<string | null>;
  /** The new version, or null when the stored version is not `expectedVersion` (null: when a record, or a key of another type, exists). */
  saveVersioned(key: string, record: string, expectedVersion: string | null): Promise<string | null>;
  /** Who holds the lease on `key`, or null. */
  leaseHolder(key: string): Promise<LeaseHolder | null>;
}
