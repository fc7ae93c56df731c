// EncryptedStore: any TokenStore with its records encrypted at rest. The
// core (src/encrypted_store.rs, through src/wasm/encrypted_store.rs) checks
// the keys, writes the envelope and reads old, rotated and plain records;
// the host's WebCrypto runs AES-256-GCM. This class only threads each
// record through the core's `seal` on its way into the inner store and
// `open` on its way out, and passes the lease through. It has the fleet
// members exactly when the inner store has them, since the core finds a
// store's lease and compare-and-swap by their presence; and it checks them
// as the core checks a store. Every member checks its arguments as the
// core checks a string argument (src/wasm/convert.rs `string_arg`) before
// the inner store sees them: a ConfigError naming the parameter.

import { StorageError, configError } from './errors.js';
import { hostCalls, member } from './host-calls.js';

/** The core's cap on a string argument, in UTF-16 units (MAX_ARG_CHARS in src/wasm/convert.rs). */
const MAX_ARG_CHARS = 64 * 1024;

/** `value` if it is a string the core takes as an argument; else a ConfigError naming `name`, worded as the core's. */
function text(value, name) {
  if (value === undefined || value === null) throw configError(name, 'is required');
  if (typeof value !== 'string') throw configError(name, 'must be a string');
  if (value.length > MAX_ARG_CHARS) throw configError(name, `is longer than ${MAX_ARG_CHARS} characters`);
  if (!hostCalls.wellFormed(value)) throw configError(name, 'must not contain a lone UTF-16 surrogate');
  return value;
}

/** Whether `inner[name]` is a function; a getter that throws is a StorageError naming it. */
function hasMethod(inner, name) {
  try {
    return typeof member(inner, name) === 'function'; // as the core reads a store (host-calls.js)
  } catch {
    throw new StorageError({ code: 'storage', message: `token storage failed: the inner store's ${name} could not be read (it threw)` });
  }
}

/**
 * Whether `inner` has both methods of a fleet pair. One alone is a
 * ConfigError: read as absent, a fleet store would refresh without its
 * lease (or save without compare-and-swap) beside another process.
 */
function offers(inner, first, second) {
  const found = hasMethod(inner, first);
  if (found !== hasMethod(inner, second)) {
    throw configError('inner', `has only one of ${first}() and ${second}(): a fleet store needs both`);
  }
  return found;
}

/** What the inner store returned, if it is a string: anything else is a StorageError naming `method`. */
function storedText(stored, method) {
  if (typeof stored === 'string') return stored;
  throw new StorageError({ code: 'storage', message: `the inner store's ${method}() must resolve to a string or null` });
}

/**
 * What the inner store's `loadVersioned` resolved to, if it is null or
 * `{ record, version }` with both strings (as the core reads a store); else
 * a StorageError. Read as "nothing stored", a compare-and-swap would be
 * made against an absent record.
 */
function versioned(found) {
  if (found === null || found === undefined) return null;
  if (typeof found === 'object' && typeof found.record === 'string' && typeof found.version === 'string') return found;
  throw new StorageError({ code: 'storage', message: "the inner store's loadVersioned() must resolve to { record, version } (strings) or null" });
}

/** The EncryptedStore class of one wasm-bindgen build. */
export function encryptedStoreClass(wasm) {
  const Core = wasm.EncryptedStoreCore;

  /** Records kept encrypted (AES-256-GCM) in `inner`; see index.d.ts. */
  class EncryptedStore {
    #core;
    #inner;

    constructor(inner, keys) {
      if (inner === null || (typeof inner !== 'object' && typeof inner !== 'function') || !hasMethod(inner, 'load') || !hasMethod(inner, 'save')) {
        throw configError('inner', 'must be a store with load() and save() methods');
      }
      const lease = offers(inner, 'acquire', 'release');
      const versions = offers(inner, 'loadVersioned', 'saveVersioned');
      const core = new Core(keys);
      this.#core = core;
      this.#inner = inner;
      if (lease) {
        // Leases hold no record: they pass through, their arguments checked.
        this.acquire = async (key, owner, ttlMs) => {
          text(key, 'key');
          text(owner, 'owner');
          if (!Number.isSafeInteger(ttlMs) || ttlMs < 0) throw configError('ttlMs', 'must be a whole number of milliseconds, 0 or more');
          return inner.acquire(key, owner, ttlMs);
        };
        this.release = async (key, owner) => inner.release(text(key, 'key'), text(owner, 'owner'));
      }
      if (versions) {
        const versionOnly = hasMethod(inner, 'loadVersion');
        // The stored version, the envelope unopened: what a re-link (seed, a
        // code exchange) compares and swaps against, so that it replaces a
        // record no key given opens (a key removed too early, an altered
        // envelope, a plain record under refusePlaintext).
        this.loadVersion = async (key) => {
          text(key, 'key');
          if (versionOnly) return inner.loadVersion(key);
          return versioned(await inner.loadVersioned(key))?.version ?? null;
        };
        this.loadVersioned = async (key) => {
          const found = versioned(await inner.loadVersioned(text(key, 'key')));
          return found === null ? null : { record: await core.open(key, found.record), version: found.version };
        };
        this.saveVersioned = async (key, record, expectedVersion) => {
          text(key, 'key');
          if (expectedVersion !== null && typeof expectedVersion !== 'string') {
            throw configError('expectedVersion', 'must be a string or null');
          }
          return inner.saveVersioned(key, await core.seal(key, record), expectedVersion);
        };
      }
    }

    /** The store underneath, which holds the envelopes. */
    get inner() {
      return this.#inner;
    }

    /** The record under `key`, decrypted, or null. */
    async load(key) {
      const stored = await this.#inner.load(text(key, 'key'));
      return stored === null || stored === undefined ? null : this.#core.open(key, storedText(stored, 'load'));
    }

    /**
     * Encrypts `record` with the current key and saves it under `key`; what
     * the inner store's `save` resolves to is passed on (a `false`, a write
     * refused, must reach the core).
     */
    async save(key, record) {
      return this.#inner.save(key, await this.#core.seal(key, record));
    }
  }

  return EncryptedStore;
}
