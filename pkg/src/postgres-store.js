// freshtoken/postgres: a fleet TokenStore on PostgreSQL, through a `pg` Pool
// (npm `pg`, an optional peer dependency that this module never imports:
// you pass the pool, or a connected pg.Client).
//
// Two tables (names configurable; see PostgresStore.schema()):
//   records (key text primary key, record text not null, version bigint not null)
//   leases  (key text primary key, owner text not null, expires_at timestamptz not null)
// Every operation is one statement: compare-and-swap by `version`, the lease
// by an upsert that only takes over an expired row or renews the owner's
// own. Lease times come from the server's clock (now()), never this host's.
//
// Rows only half there (a table made without NOT NULL, a hand edit) never
// stick a session: a NULL record is no record (a create replaces it), and a
// NULL version reads as version 0 (a re-link swaps against it).

import { configErrorSaying, storeOptions } from './errors.js';
import { firstVersion } from './first-version.js';

const DEFAULT_TABLES = { table: 'freshtoken_records', leaseTable: 'freshtoken_leases' };

/**
 * The most of a record read: well above the largest record freshtoken writes
 * (256 KiB) and an EncryptedStore envelope of one, as in the file stores. A
 * bigger one is left in the table: only its size is sent (DESIGN point 16).
 */
const MAX_RECORD_BYTES = 1024 * 1024;

/** `name` or `schema.name` as a quoted SQL identifier. */
function identifier(option, name) {
  if (typeof name !== 'string' || name === '') throw configErrorSaying(option, `PostgresStore: ${option} must be a non-empty string`);
  const parts = name.split('.');
  if (parts.length > 2 || parts.some((p) => p === '' || p.includes('\0'))) {
    throw configErrorSaying(option, `PostgresStore: ${option} must be "name" or "schema.name"`);
  }
  return parts.map((p) => `"${p.replaceAll('"', '""')}"`).join('.');
}

/** The quoted table names of `options` (null and undefined: the defaults); a ConfigError naming a bad option. */
function tablesOf(options) {
  const { table = DEFAULT_TABLES.table, leaseTable = DEFAULT_TABLES.leaseTable, ...rest } = storeOptions(options, 'PostgresStore');
  const unknown = Object.keys(rest);
  if (unknown.length) throw configErrorSaying(unknown[0], `PostgresStore: unknown option ${unknown[0]}`);
  const t = identifier('table', table);
  const l = identifier('leaseTable', leaseTable);
  if (t === l) throw configErrorSaying('leaseTable', 'PostgresStore: table and leaseTable must differ');
  return { t, l };
}

function ddl({ t, l }) {
  return `CREATE TABLE IF NOT EXISTS ${t} (
  key text PRIMARY KEY,
  record text NOT NULL,
  version bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS ${l} (
  key text PRIMARY KEY,
  owner text NOT NULL,
  expires_at timestamptz NOT NULL
);
`;
}

/**
 * The longest key, in UTF-8 bytes. PostgreSQL indexes a primary key of at
 * most about 2.7 KB: a longer key passes every read (a code exchange's
 * version read included) and fails only at the first write, after the code
 * is spent. Refused before any query instead, as is a NUL (text cannot hold it).
 */
const MAX_KEY_BYTES = 2048;

const encoder = new TextEncoder();

function checkKey(key) {
  if (typeof key !== 'string') throw new TypeError('PostgresStore: the key must be a string');
  if (key.includes('\0')) throw new TypeError('PostgresStore: the key must not contain a NUL character (PostgreSQL text cannot hold one)');
  if (key.length > MAX_KEY_BYTES / 3 && encoder.encode(key).length > MAX_KEY_BYTES) {
    throw new TypeError(`PostgresStore: the key must be at most ${MAX_KEY_BYTES} bytes in UTF-8 (PostgreSQL cannot index a longer one)`);
  }
}

function checkOwner(owner) {
  if (typeof owner !== 'string' || owner === '') throw new TypeError('PostgresStore: the lease owner must be a non-empty string');
}

function checkRecord(record) {
  if (typeof record !== 'string') throw new TypeError('PostgresStore: the record must be a string');
}

/** A TokenStore on PostgreSQL with leases and compare-and-swap saves, for fleets. */
export class PostgresStore {
  #pool;
  #sql;
  #ddl;

  /**
   * The DDL of the two tables (`CREATE TABLE IF NOT EXISTS`), for your own
   * migrations.
   * @param options.table       records table (default "freshtoken_records"; "schema.name" works)
   * @param options.leaseTable  leases table (default "freshtoken_leases")
   */
  static schema(options = {}) {
    return ddl(tablesOf(options));
  }

  /**
   * @param pool a `pg` Pool (or a connected pg.Client)
   * @param options.table, options.leaseTable  as in PostgresStore.schema()
   */
  constructor(pool, options = {}) {
    if (!pool || typeof pool.query !== 'function') {
      throw configErrorSaying('pool', 'PostgresStore: pass a pg Pool (new Pool() from the "pg" package)');
    }
    const names = tablesOf(options);
    const { t, l } = names;
    this.#pool = pool;
    this.#ddl = ddl(names);
    this.#sql = {
      load: `SELECT CASE WHEN octet_length(record) <= ${MAX_RECORD_BYTES} THEN record END AS record,
        octet_length(record) AS bytes, coalesce(version, 0)::text AS version FROM ${t} WHERE key = $1 AND record IS NOT NULL`,
      version: `SELECT coalesce(version, 0)::text AS version FROM ${t} WHERE key = $1 AND record IS NOT NULL`,
      // $3: the first version, used where no version is stored yet.
      save: `INSERT INTO ${t} AS r (key, record, version) VALUES ($1, $2, $3::bigint)
        ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record, version = coalesce(r.version + 1, EXCLUDED.version)`,
      update: `UPDATE ${t} SET record = $2, version = coalesce(version + 1, $4::bigint)
        WHERE key = $1 AND record IS NOT NULL AND coalesce(version, 0) = $3::bigint RETURNING version::text AS version`,
      create: `INSERT INTO ${t} AS r (key, record, version) VALUES ($1, $2, $3::bigint)
        ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record, version = coalesce(r.version + 1, EXCLUDED.version)
        WHERE r.record IS NULL RETURNING version::text AS version`,
      acquire: `INSERT INTO ${l} AS l (key, owner, expires_at)
        VALUES ($1, $2, now() + $3::double precision * interval '1 millisecond')
        ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
        WHERE l.expires_at < now() OR l.owner = EXCLUDED.owner
        RETURNING owner`,
      release: `DELETE FROM ${l} WHERE key = $1 AND owner = $2`,
      holder: `SELECT owner, ceil(extract(epoch FROM (expires_at - now())) * 1000)::float8 AS ms
        FROM ${l} WHERE key = $1 AND expires_at > now()`,
    };
  }

  /**
   * Creates the tables if they do not exist. Safe to run from many processes
   * at once: one transaction under an advisory lock.
   */
  async migrate() {
    // One simple-protocol query: its statements run as one implicit transaction.
    await this.#pool.query(`SELECT pg_advisory_xact_lock(hashtext('freshtoken.migrate'));\n${this.#ddl}`);
  }

  /** The row of `key` ({ record, version }), or null; rejects when the record is over MAX_RECORD_BYTES, unread. */
  async #read(key) {
    checkKey(key);
    const { rows } = await this.#pool.query(this.#sql.load, [key]);
    if (!rows.length) return null;
    if (rows[0].record === null && rows[0].bytes !== null) {
      throw new Error(`PostgresStore: the record of this key is larger than ${MAX_RECORD_BYTES} bytes; it was not read`);
    }
    return rows[0];
  }

  /** The record saved under `key`, or null. */
  async load(key) {
    return (await this.#read(key))?.record ?? null;
  }

  /** Saves `record` under `key` unconditionally (its version still increments). */
  async save(key, record) {
    checkKey(key);
    checkRecord(record);
    await this.#pool.query(this.#sql.save, [key, record, firstVersion()]);
  }

  /** The record and its version, or null. */
  async loadVersioned(key) {
    const row = await this.#read(key);
    return row && { record: row.record, version: row.version };
  }

  /**
   * The version of the record under `key`, or null, without reading the
   * record: what `seed()` and a code exchange compare and swap against, so
   * that a re-link replaces a record too large to be read.
   */
  async loadVersion(key) {
    checkKey(key);
    const { rows } = await this.#pool.query(this.#sql.version, [key]);
    return rows.length ? rows[0].version : null;
  }

  /**
   * Saves only if the stored version is still `expectedVersion` (null: only
   * if nothing is stored). Resolves to the new version, or null on a conflict.
   */
  async saveVersioned(key, record, expectedVersion) {
    checkKey(key);
    checkRecord(record);
    let rows;
    if (expectedVersion === null) {
      ({ rows } = await this.#pool.query(this.#sql.create, [key, record, firstVersion()]));
    } else {
      if (typeof expectedVersion !== 'string') throw new TypeError('PostgresStore: the expected version must be a string or null');
      // Not a version this store could have written: it matches nothing.
      if (!/^[0-9]{1,18}$/.test(expectedVersion)) return null;
      ({ rows } = await this.#pool.query(this.#sql.update, [key, record, expectedVersion, firstVersion()]));
    }
    return rows.length ? rows[0].version : null;
  }

  /** Takes the refresh lease on `key` for `owner` for `ttlMs`; false if another owner holds it. */
  async acquire(key, owner, ttlMs) {
    checkKey(key);
    checkOwner(owner);
    if (typeof ttlMs !== 'number' || !(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new TypeError('PostgresStore: the lease TTL must be a positive number of ms');
    }
    const { rows } = await this.#pool.query(this.#sql.acquire, [key, owner, Math.ceil(ttlMs)]);
    return rows.length === 1;
  }

  /** Gives the lease back, if `owner` still holds it. */
  async release(key, owner) {
    checkKey(key);
    checkOwner(owner);
    await this.#pool.query(this.#sql.release, [key, owner]);
  }

  /** Who holds the lease on `key` and for how many more ms, or null (for operations and tests). */
  async leaseHolder(key) {
    checkKey(key);
    const { rows } = await this.#pool.query(this.#sql.holder, [key]);
    return rows.length ? { owner: rows[0].owner, expiresInMs: Math.max(Number(rows[0].ms), 0) } : null;
  }
}
