// freshtoken/redis: a fleet TokenStore on Redis, through a node-redis client
// (npm `redis`, an optional peer dependency that this module never imports:
// you pass a connected client).
//
// Keys, for a session key K and the prefix P (default "freshtoken:"):
//   P record:K  a hash {record, version}; version is an integer that every
//               save increments (compare-and-swap by a Lua script). A key
//               of another type (a string, a list…, set by hand or by
//               another tool) is never read: it is a record whose version
//               is "0" (NO_VERSION), which a re-link replaces
//   P lease:K   a string holding the lease owner, with a PX expiry
// Every operation is one atomic command or one Lua script: no WATCH, no
// read-modify-write across round trips.

import { createHash } from 'node:crypto';
import { configErrorSaying, storeOptions } from './errors.js';
import { firstVersion } from './first-version.js';

// Takes the lease when SET NX failed: succeeds if this owner already holds it
// (its TTL is renewed) or if it expired in between.
const ACQUIRE = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`;

// Deletes the lease only if `owner` still holds it.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

// The type of KEYS[1] ('string', 'list', a module's type…) when it holds
// another type than the hash this store writes, else false (a hash, or no
// key: TYPE's 'none').
const FOREIGN = `
local function foreign()
  local kind = redis.call('TYPE', KEYS[1])['ok']
  if kind == 'hash' or kind == 'none' then return false end
  return kind
end
`;

// Writes ARGV[1] as the record, with the version after `current` (the
// stored version field): one more when it is an integer, else ARGV[2], the
// random start of a new record, so that a key's versions never restart
// after a DEL (a sign-out) and a stale compare-and-swap never matches the
// next link's record. Returns the new version as stored (a string).
const WRITE = `${FOREIGN}
local function write(current)
  -- A canonical integer (HINCRBY refuses '007') of at most 18 digits
  -- (HINCRBY, on an int64, cannot overflow); else a new start.
  if current and (current == '0' or string.match(current, '^[1-9][0-9]*$')) and #current <= 18 then
    redis.call('HINCRBY', KEYS[1], 'version', 1)
  else
    redis.call('HSET', KEYS[1], 'version', ARGV[2])
  end
  redis.call('HSET', KEYS[1], 'record', ARGV[1])
  return redis.call('HGET', KEYS[1], 'version')
end
`;

// ARGV: record, first version, '1' when a version is expected (else: only
// if there is no record), expected version. A hash without a record field
// is no record, as for LOAD; one without a version field is version '0'
// (NO_VERSION), as loadVersion reports it; so is a key of another type,
// which a save expecting '0' deletes and replaces (a new start).
// Returns the new version, or nil (a conflict).
const SAVE_VERSIONED = `${WRITE}
if foreign() then
  if ARGV[3] ~= '1' or ARGV[4] ~= '0' then return false end
  redis.call('DEL', KEYS[1])
  return write(nil)
end
local current = redis.call('HGET', KEYS[1], 'version')
local present = redis.call('HEXISTS', KEYS[1], 'record') == 1
if ARGV[3] == '1' then
  if not present or (current or '0') ~= ARGV[4] then return false end
elseif present then
  return false
end
return write(current)
`;

// An unconditional save; the version still moves on, so that a
// compare-and-swap against the previous version fails. It replaces a key of
// another type (a new start).
const SAVE = `${WRITE}
if foreign() then redis.call('DEL', KEYS[1]) end
return write(redis.call('HGET', KEYS[1], 'version'))
`;

// The record and its version, unless the record is over ARGV[1] bytes: then
// its size alone, so a huge value never crosses the wire (DESIGN point 16);
// or, when the key holds another type than a hash, the type's name alone
// (a status reply), never its contents.
const LOAD = `${FOREIGN}
local kind = foreign()
if kind then return redis.status_reply(kind) end
local size = redis.call('HSTRLEN', KEYS[1], 'record')
if size > tonumber(ARGV[1]) then return size end
return redis.call('HMGET', KEYS[1], 'record', 'version')
`;

// The version of a stored record without the record: nil when there is no
// record, an empty list when it has no version field or the key holds
// another type than a hash (each read as NO_VERSION), else { version }.
const VERSION = `${FOREIGN}
if foreign() then return {} end
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then return false end
return { redis.call('HGET', KEYS[1], 'version') }
`;

// The lease's owner and remaining ms, read together; nil when nobody holds it.
const HOLDER = `
local owner = redis.call('GET', KEYS[1])
if not owner then return false end
return { owner, redis.call('PTTL', KEYS[1]) }
`;

const sha1 = (text) => createHash('sha1').update(text).digest('hex');
const SCRIPTS = Object.fromEntries(
  Object.entries({ ACQUIRE, RELEASE, SAVE_VERSIONED, SAVE, LOAD, VERSION, HOLDER }).map(([name, body]) => [name, { body, sha: sha1(body) }]),
);

const decoder = new TextDecoder();

/**
 * The version of a record whose hash has no version field (written by hand
 * or by another tool): what a missing field counts as, so that the record
 * loads and a re-link swaps against it instead of failing forever. A key of
 * another type than a hash has it too: it never loads, but a re-link
 * (which reads the version alone) replaces it.
 */
const NO_VERSION = '0';

/**
 * The most of a record read: well above the largest record freshtoken writes
 * (256 KiB) and an EncryptedStore envelope of one, as in the file stores.
 */
const MAX_RECORD_BYTES = 1024 * 1024;

/** A reply as a string (node-redis may hand back Buffers or numbers), or null. */
function text(reply) {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === 'string') return reply;
  if (reply instanceof Uint8Array) return decoder.decode(reply);
  return String(reply);
}

/**
 * The version a save answered: a positive decimal integer, as the scripts
 * write it (a save counts up from 0 at least once).
 * Anything else (a proxy's or another server's "OK", 0, an array) is an
 * error, never a version: read as one, a conflict would pass for a save.
 */
function savedVersion(reply) {
  const version = text(reply);
  if (version === null || /^[1-9][0-9]{0,18}$/.test(version)) return version;
  throw new Error('RedisStore: an unexpected reply to a compare-and-swap save (not a version); it may not have been saved');
}

function checkKey(key) {
  if (typeof key !== 'string') throw new TypeError('RedisStore: the key must be a string');
}

function checkOwner(owner) {
  if (typeof owner !== 'string' || owner === '') throw new TypeError('RedisStore: the lease owner must be a non-empty string');
}

/** A TokenStore on Redis with leases and compare-and-swap saves, for fleets. */
export class RedisStore {
  #client;
  #prefix;

  /**
   * @param client a connected node-redis (v4, v5 or v6) client, from `createClient()`
   * @param options.prefix  prepended to every key (default "freshtoken:")
   */
  constructor(client, options) {
    if (!client || typeof client.sendCommand !== 'function') {
      throw configErrorSaying('client', 'RedisStore: pass a connected node-redis client (createClient() from the "redis" package)');
    }
    const { prefix = 'freshtoken:', ...rest } = storeOptions(options, 'RedisStore');
    const unknown = Object.keys(rest);
    if (unknown.length) throw configErrorSaying(unknown[0], `RedisStore: unknown option ${unknown[0]}`);
    if (typeof prefix !== 'string') throw configErrorSaying('prefix', 'RedisStore: prefix must be a string');
    this.#client = client;
    this.#prefix = prefix;
  }

  /** The Redis key of the hash {record, version} of session `key`. */
  recordKey(key) {
    checkKey(key);
    return `${this.#prefix}record:${key}`;
  }

  /** The Redis key of the refresh lease of session `key`. */
  leaseKey(key) {
    checkKey(key);
    return `${this.#prefix}lease:${key}`;
  }

  /**
   * `sendCommand(args)`, which must return a Promise: in legacy (callback)
   * mode it returns nothing, and that nothing must not pass for an empty
   * reply (a stored record read as absent, a save that wrote nothing).
   * A ConfigError naming `client`: the constructor's argument is at fault,
   * which only the first command can tell.
   */
  #send(args) {
    const reply = this.#client.sendCommand(args);
    if (typeof reply?.then !== 'function') {
      throw configErrorSaying('client', 'RedisStore: the client\'s sendCommand() returned no Promise: pass a node-redis client in its default mode, not client.legacy() or legacyMode');
    }
    return reply;
  }

  /** Runs a script by its SHA1; loads it with EVAL when the server does not know it (yet). */
  async #script(script, keys, args) {
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await this.#send(['EVALSHA', script.sha, ...tail]);
    } catch (err) {
      if (!String(err?.message ?? '').startsWith('NOSCRIPT')) throw err;
      return this.#send(['EVAL', script.body, ...tail]);
    }
  }

  /**
   * `[record, version]` of `key` (each null when absent); rejects, unread,
   * when the record is over MAX_RECORD_BYTES or the key is not a hash.
   */
  async #read(key) {
    const name = this.recordKey(key);
    const reply = await this.#script(SCRIPTS.LOAD, [name], [String(MAX_RECORD_BYTES)]);
    if (Array.isArray(reply)) return reply.map(text);
    const answer = text(reply);
    if (/^[0-9]+$/.test(answer ?? '')) {
      if (Number(answer) > MAX_RECORD_BYTES) throw new Error(`RedisStore: ${name} holds a record larger than ${MAX_RECORD_BYTES} bytes; it was not read`);
    } else if (answer) {
      // A type's name, from TYPE (`string`, `list`, a module's type…), never the key's contents.
      throw new Error(`RedisStore: ${name} holds a Redis ${answer.slice(0, 32)}, not the hash {record, version} this store writes; it was not read (a re-link replaces it)`);
    }
    throw new Error(`RedisStore: an unexpected reply to reading ${name}`);
  }

  /** The record saved under `key`, or null. */
  async load(key) {
    return (await this.#read(key))[0];
  }

  /** Saves `record` under `key` unconditionally (its version still increments). */
  async save(key, record) {
    if (typeof record !== 'string') throw new TypeError('RedisStore: the record must be a string');
    await this.#script(SCRIPTS.SAVE, [this.recordKey(key)], [record, firstVersion()]);
  }

  /** The record and its version, or null. */
  async loadVersioned(key) {
    const [record, version] = await this.#read(key);
    return record === null ? null : { record, version: version ?? NO_VERSION };
  }

  /**
   * The version of the record under `key`, or null, without reading the
   * record: what `seed()` and a code exchange compare and swap against, so
   * that a re-link replaces a record too large to be read, or a key of
   * another type than a hash (version NO_VERSION).
   */
  async loadVersion(key) {
    const reply = await this.#script(SCRIPTS.VERSION, [this.recordKey(key)], []);
    if (reply === null || reply === undefined) return null;
    if (!Array.isArray(reply)) throw new Error(`RedisStore: an unexpected reply to reading the version of ${this.recordKey(key)}`);
    return text(reply[0]) ?? NO_VERSION;
  }

  /**
   * Saves only if the stored version is still `expectedVersion` (null: only
   * if nothing is stored). Resolves to the new version, or null on a conflict.
   */
  async saveVersioned(key, record, expectedVersion) {
    if (typeof record !== 'string') throw new TypeError('RedisStore: the record must be a string');
    if (expectedVersion !== null && typeof expectedVersion !== 'string') {
      throw new TypeError('RedisStore: the expected version must be a string or null');
    }
    const expecting = expectedVersion !== null;
    const reply = await this.#script(
      SCRIPTS.SAVE_VERSIONED,
      [this.recordKey(key)],
      [record, firstVersion(), expecting ? '1' : '0', expecting ? expectedVersion : ''],
    );
    return savedVersion(reply);
  }

  /** Takes the refresh lease on `key` for `owner` for `ttlMs`; false if another owner holds it. */
  async acquire(key, owner, ttlMs) {
    checkOwner(owner);
    if (typeof ttlMs !== 'number' || !(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new TypeError('RedisStore: the lease TTL must be a positive number of ms');
    }
    const lease = this.leaseKey(key);
    const ttl = String(Math.ceil(ttlMs));
    // The common case in one command; the script only when someone holds it.
    if (text(await this.#send(['SET', lease, owner, 'NX', 'PX', ttl])) === 'OK') return true;
    return Number(await this.#script(SCRIPTS.ACQUIRE, [lease], [owner, ttl])) === 1;
  }

  /** Gives the lease back, if `owner` still holds it. */
  async release(key, owner) {
    checkOwner(owner);
    await this.#script(SCRIPTS.RELEASE, [this.leaseKey(key)], [owner]);
  }

  /** Who holds the lease on `key` and for how many more ms, or null (for operations and tests). */
  async leaseHolder(key) {
    const reply = await this.#script(SCRIPTS.HOLDER, [this.leaseKey(key)], []);
    if (!Array.isArray(reply)) return null;
    const ttl = Number(reply[1]);
    // -1: set without an expiry (not by this store): it never lapses by itself.
    return { owner: text(reply[0]), expiresInMs: ttl === -1 ? Infinity : Math.max(ttl, 0) };
  }
}
