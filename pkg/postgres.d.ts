// Type declarations for `freshtoken/postgres`: a fleet TokenStore on
// PostgreSQL through a `pg` Pool (npm `pg` v8, an optional peer dependency).
// The pool is typed by the one method the store calls, so these
// declarations need no @types/pg.

import type { TokenStore, VersionedRecord } from './index.js';

/** One row as `pg` returns it. */
export type PgRow = Record<string, unknown>;

/** What the store needs of a `pg` Pool (or a connected pg.Client). */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: PgRow[] }>;
}

export interface PostgresStoreOptions {
  /** Records table: `"name"` or `"schema.name"`, quoted as given (default `"freshtoken_records"`). */
  table?: string | undefined;
  /** Leases table (default `"freshtoken_leases"`). */
  leaseTable?: string | undefined;
}

/** Who holds a refresh lease, and for how many more milliseconds. */
export interface LeaseHolder {
  owner: string;
  expiresInMs: number;
}

/**
 * Records in PostgreSQL with leases and compare-and-swap saves: several
 * processes can share sessions, and only one at a time refreshes each.
 *
 * Tables: records `(key text primary key, record text not null, version
 * bigint not null)`; leases `(key text primary key, owner text not null,
 * expires_at timestamptz not null)`, with lease times from the server's
 * clock. A new record's version starts at a random integer (then +1 per
 * save), so versions are not reused after a DELETE (a sign-out). A NULL
 * record is no record; a NULL version reads as "0".
 */
export class PostgresStore implements TokenStore {
  /** The DDL of both tables (`CREATE TABLE IF NOT EXISTS …`). */
  static schema(options?: PostgresStoreOptions): string;
  /** Throws a `ConfigError` (its `field` names the parameter or option) for a pool that is not pg's, or a bad option. */
  constructor(pool: PgQueryable, options?: PostgresStoreOptions | null);
  /** Creates the tables if missing; safe from many processes at once. */
  migrate(): Promise<void>;
  load(key: string): Promise<string | null>;
  /** Saves unconditionally; the version still increments. */
  save(key: string, record: string): Promise<void>;
  /** Takes the lease if it is free or expired, or renews `owner`'s own. */
  acquire(key: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Deletes the lease only if `owner` still holds it. */
  release(key: string, owner: string): Promise<void>;
  loadVersioned(key: string): Promise<VersionedRecord | null>;
  /** The stored version without the record, or null: `seed()` and a code exchange replace a record too large (or unfit) to read. */
  loadVersion(key: string): Promise<string | null>;
  /** The new version, or null when the stored version is not `expectedVersion` (null: when a record exists). */
  saveVersioned(key: string, record: string, expectedVersion: string | null): Promise<string | null>;
  /** Who holds the lease on `key`, or null. */
  leaseHolder(key: string): Promise<LeaseHolder | null>;
}
