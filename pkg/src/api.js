// The package's TokenClient and UserSession: thin JavaScript classes over
// the wasm-bindgen build, with the error classes and the TokenInfo
// prototype connected at load time.
//
// Two things live on this side of the boundary, both for speed and memory
// (bench/run.mjs rows 1, 4 and 7):
//
// - A UserSession is a plain JS object (client, key, store). It owns no wasm
//   handle: each call names its key on the client's wasm object, which
//   attaches the core's state for that call only. A handle dropped after one
//   request is collected like any object — no wasm memory, no
//   FinalizationRegistry entry.
// - The mirror: per key, the cached access token and the instant (on the
//   core's clock) until which the core would serve it. `accessToken()`
//   returns it with no wasm call while the clock reads less; otherwise it
//   asks the core and refills the mirror from the core's cached token. Every
//   other call on the key drops the key's entry first and refills it only
//   after a success. While such a call is in flight nothing fills the key's
//   entry: a read during it gets the core's token of the moment, which the
//   call may be replacing, and must not leave it mirrored after the call
//   ends. Dropping an entry is always safe: the next read asks the core. The mirror is bounded like the core's session map (maxSessions),
//   and a key enters it on its second read through the core (`admit`).

import { abortable } from './abort.js';
import { ConfigError, makeError } from './errors.js';
import { eventDispatch } from './events.js';
import { hostCalls, reading } from './host-calls.js';
import { memoryStoreClass } from './memory-store.js';
import { authorizationRequestPrototype, tokenInfoPrototype } from './token-info.js';

/** The most keys the mirror's doorkeeper remembers (then it starts afresh). */
const SEEN_MAX = 4096;

/** Passed by this module to the UserSession constructor; users cannot. */
const INTERNAL = Symbol('freshtoken.internal');

const notLive = (name) => new ConfigError({
  code: 'config',
  field: 'this',
  message: `invalid configuration \`this\`: not a live ${name} (free() was called, or it is another object)`,
});

/** Whether a mirror entry serves at `now`: from when it was filled until its fresh-until. */
const fresh = (entry, now) => now < entry.until && now >= entry.since;

/**
 * `start()` for a caller with call `options` (`{ signal }`, abort.js; the
 * argument `name`d so in index.d.ts): a bad option rejects with a
 * ConfigError, and an aborted signal with its reason, before anything starts.
 */
function waitable(options, start, name = undefined) {
  try {
    return abortable(options, start, name);
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Whether `value` can hold private fields (`#x in value` throws for anything else). */
const isObject = (value) => (typeof value === 'object' && value !== null) || typeof value === 'function';

/** The latest plausible reading: the end of year 9999 (src/clock.rs LATEST_PLAUSIBLE_MS). */
const LATEST_PLAUSIBLE_MS = 253_402_300_799_999;

/**
 * The clock the core uses, from the `now` option it read: the host's
 * `now()` when it reads a plausible time (a number of ms after 1970 and
 * before year 10000), else Date.now — the rule of src/wasm/js_clock.rs, so
 * the mirror never judges freshness by a reading the core refused.
 */
function clockOf(now) {
  if (typeof now !== 'function') return Date.now;
  return () => {
    try {
      const t = Reflect.apply(now, null, []);
      return typeof t === 'number' && t > 0 && t <= LATEST_PLAUSIBLE_MS ? t : Date.now();
    } catch {
      return Date.now();
    }
  };
}

/**
 * What one TokenClient shares with its sessions: the wasm client, the mirror
 * of cached tokens and the pending `accessToken()` calls, by key. Not
 * exported; a session reaches it through a private field.
 */
class Keys {
  constructor(wasm, now, coreOf) {
    this.wasm = wasm;
    this.coreOf = coreOf;
    this.now = now;
    this.max = Math.max(1, wasm.maxSessions);
    /**
     * key -> { token, until, promise }: `promise` (resolved with `token`) is
     * served while now() < until. A dropped entry gets until = -Infinity, so
     * a handle that kept a reference to it never serves it again.
     */
    this.mirror = new Map();
    /** key -> the Promise of the one `accessToken()` call crossing into the core. */
    this.pending = new Map();
    /** Keys read once through the core, not yet mirrored (see `admit`). */
    this.seen = new Set();
    /**
     * key -> how many calls that may replace its token (seed, refresh,
     * tokenRejected, exchangeCode, …) are in flight: no fill lands meanwhile.
     */
    this.busy = new Map();
    /**
     * store object -> its wasm wrapper (a StoreRef), checked once and shared
     * by the store's handles. A host store's wrapper holds the store through
     * the wasm externref table, a GC root: held here, it would keep its own
     * key alive, and a store made per request would live as long as the
     * client. So that entry is a WeakRef: the handles hold the wrapper; once
     * they are gone, wasm-bindgen's FinalizationRegistry frees it, then the
     * store can go (a refresh in flight holds it until it ends). A
     * MemoryStore's wrapper holds no JavaScript object and is kept as is.
     */
    this.stores = new WeakMap();
  }

  /** Checks `key` and `store` as `client.session()` does; the store's wasm wrapper. */
  open(key, store) {
    const held = this.stores.get(store);
    let ref = held instanceof WeakRef ? held.deref() : held;
    if (ref === undefined) {
      const core = this.coreOf(store);
      if (core === undefined) {
        ref = this.wasm.sessionOpen(key, store);
        this.stores.set(store, new WeakRef(ref));
      } else {
        ref = this.wasm.sessionOpenMemory(key, core);
        this.stores.set(store, ref);
      }
    } else {
      this.wasm.sessionCheck(key, ref);
    }
    return ref;
  }

  /** The core's cached token of `key`, `[token, freshUntilMs]`, or undefined. No I/O. */
  cached(key, ref) {
    try {
      return this.wasm.sessionCached(key, ref);
    } catch {
      return undefined;
    }
  }

  /**
   * Mirrors `key`'s token until `until`, from now: a clock read earlier
   * than that (set back) finds the entry stale and asks the core, whose
   * freshness also has a lower bound (a token issued under a clock that
   * read ahead; src/tokens.rs issue_tolerance_ms).
   */
  fill(key, token, until) {
    const { mirror } = this;
    mirror.delete(key);
    // Oldest filled first out: a key is refilled once per token (every few
    // minutes), so this is close to least recently refreshed.
    if (mirror.size >= this.max) this.forget(mirror.keys().next().value);
    mirror.set(key, { token, since: this.now(), until, promise: Promise.resolve(token) });
  }

  /** Notes that `key` was read once (see `admit`). */
  sighted(key) {
    if (this.seen.size >= SEEN_MAX) this.seen.clear();
    this.seen.add(key);
  }

  /**
   * A read that crossed into the core and got `cached` from it. A key is
   * mirrored on its second such read: a session read once per token (a
   * backend serving many users, each now and then) would only pay the
   * entry's memory — about 180 bytes, as much as the core's whole state —
   * and never gain from it. The doorkeeper holds at most SEEN_MAX keys.
   */
  admit(key, cached) {
    if (this.busy.has(key)) return; // a token a call in flight may be replacing
    if (this.seen.delete(key)) this.fill(key, cached[0], cached[1]);
    else this.sighted(key);
  }

  /** Drops `key`'s entry; a mirrored key stays known as read, so its next token is mirrored at once. */
  forget(key) {
    const entry = this.mirror.get(key);
    if (entry === undefined) return;
    entry.until = -Infinity;
    this.mirror.delete(key);
    this.sighted(key);
  }

  /** Forgets what this side knows of `key` (before any call that may replace its token). */
  drop(key) {
    this.forget(key);
    this.pending.delete(key);
  }

  /** After a success of any other call: mirrors the new token of a key that was mirrored. */
  refill(key, ref) {
    if (!this.seen.has(key)) return;
    const cached = this.cached(key, ref);
    if (cached !== undefined) this.admit(key, cached);
  }

  /** `accessToken()` past the mirror. */
  accessToken(key, ref) {
    // Concurrent callers of one key share the one pending call. The core
    // would give them all the same result anyway (one shared flight, DESIGN
    // point 2); sharing it here saves a wasm crossing, a Rust future and a
    // wasm-bindgen-futures promise per caller — at 10,000 callers at expiry
    // that was most of the time. The core still owns single flight, rotation
    // and errors: this only hands the one call's result to every caller.
    const pending = this.pending.get(key);
    if (pending !== undefined) return pending;
    const entry = this.mirror.get(key);
    if (entry !== undefined && fresh(entry, this.now())) return entry.promise;
    this.forget(key); // stale (or absent)
    // The core may serve it still: another client of the store, a clock moved back.
    const cached = this.cached(key, ref);
    if (cached !== undefined) {
      this.admit(key, cached);
      return Promise.resolve(cached[0]);
    }
    // The clock read above runs the host's `now`, which may have freed the client.
    const { wasm } = this;
    if (wasm === null) return Promise.reject(notLive('UserSession'));
    let started;
    try {
      started = wasm.sessionAccessToken(key, ref);
    } catch (error) {
      // Host code that threw through the wasm (a setter on Object.prototype):
      // a rejection, as every other failure of this call.
      return Promise.reject(error);
    }
    const call = started.then(
      (token) => {
        if (this.pending.get(key) === call) this.pending.delete(key);
        const now = this.cached(key, ref);
        if (now !== undefined && now[0] === token) this.admit(key, now);
        return token;
      },
      (error) => {
        if (this.pending.get(key) === call) this.pending.delete(key);
        throw error;
      },
    );
    this.pending.set(key, call);
    return call;
  }

  /**
   * Marks `key` busy for a call that may replace its token, and drops what
   * this side knows of it; `done(key)` ends the mark.
   */
  begin(key) {
    this.busy.set(key, (this.busy.get(key) ?? 0) + 1);
    this.drop(key);
  }

  /** A call that `begin` marked has settled: once none is left, fills may land again. */
  done(key) {
    const left = (this.busy.get(key) ?? 1) - 1;
    if (left > 0) {
      this.busy.set(key, left);
    } else {
      this.busy.delete(key);
    }
    // Nothing filled or pending from before (or during) the call is served
    // after it: the next read asks the core.
    this.drop(key);
  }

  /**
   * Any other call on `key`: drop its entry, run `start()`, refill after a
   * success. No fill of the key lands while it runs (see `busy`).
   */
  replacing(key, ref, start) {
    this.begin(key);
    let call;
    try {
      call = start();
    } catch (e) {
      this.done(key);
      return Promise.reject(e);
    }
    return call.then(
      (value) => {
        this.done(key);
        this.refill(key, ref);
        return value;
      },
      (error) => {
        this.done(key);
        throw error;
      },
    );
  }
}

/**
 * Registers the error factory and the event dispatch, and returns the
 * classes and functions of one wasm-bindgen build (each build gets classes
 * of its own). `eventChannel`: the diagnostics_channel every event is
 * published on (Node), or undefined.
 */
export function bind(wasm, eventChannel) {
  wasm.setHostCalls(hostCalls);
  wasm.setErrorFactory(makeError);
  wasm.setEventDispatch(
    eventDispatch(eventChannel),
    eventChannel === undefined ? undefined : () => eventChannel.hasSubscribers,
  );
  wasm.setTokenInfoPrototype(tokenInfoPrototype(wasm.redactSecret));
  const authorizationRequest = authorizationRequestPrototype(wasm.redactSecret);
  const Wasm = wasm.TokenClient;
  const { MemoryStore, coreOf } = memoryStoreClass(wasm);
  /**
   * Set by `fromCredentialsJson` and `discover` around `new TokenClient()`:
   * `[wasm client, options.now]`. The mirror's clock is the `now` the core
   * read (host-calls.js `reading`), never read again: a getter, or a change
   * to `options` while discovery runs, cannot give the two different clocks.
   */
  let adopting = null;

  /** One user's tokens; created by `client.session(key, store)`. */
  class UserSession {
    #keys;
    #key;
    #ref;
    /** The key's mirror entry this handle last served (see Keys#mirror), or null. */
    #entry = null;

    constructor(internal, keys, key, ref) {
      if (internal !== INTERNAL) throw new TypeError('a UserSession is created by client.session(key, store)');
      this.#keys = keys;
      this.#key = key;
      this.#ref = ref;
    }

    /** The Keys of a live session, or null (freed, its client freed, or a foreign `this`). */
    static #live(self) {
      if (!isObject(self) || !(#keys in self)) return null;
      const keys = self.#keys;
      return keys !== null && keys.wasm !== null ? keys : null;
    }

    /** The session key. */
    get key() {
      if (UserSession.#live(this) === null) throw notLive('UserSession');
      return this.#key;
    }

    /** A fresh access token: from the mirror, or from the core. `options.signal` ends this caller's wait. */
    accessToken(options) {
      // The read itself is this method without options, as defined here
      // (never a `this` object's own, nor a wrapper put on the prototype).
      if (options !== undefined) return waitable(options, () => Reflect.apply(readToken, this, []));
      let entry;
      try {
        entry = this.#entry;
      } catch {
        return Promise.reject(notLive('UserSession')); // a foreign `this`
      }
      // The hot path: a field, a clock reading, two comparisons, a settled Promise.
      // (An entry is only ever set while #keys is, and free() clears both.)
      if (entry !== null && fresh(entry, this.#keys.now())) return entry.promise;
      const keys = UserSession.#live(this);
      if (keys === null) return Promise.reject(notLive('UserSession'));
      entry = keys.mirror.get(this.#key);
      if (entry !== undefined && fresh(entry, keys.now())) {
        this.#entry = entry;
        return entry.promise;
      }
      this.#entry = null;
      return keys.accessToken(this.#key, this.#ref);
    }

    tokens(options) {
      return UserSession.#replacing(this, options, (wasm, key, ref) => wasm.sessionTokens(key, ref));
    }

    refresh(options) {
      return UserSession.#replacing(this, options, (wasm, key, ref) => wasm.sessionRefresh(key, ref));
    }

    tokenRejected(token, options) {
      return UserSession.#replacing(this, options, (wasm, key, ref) => wasm.sessionTokenRejected(key, ref, token));
    }

    seed(seed, options) {
      return UserSession.#replacing(this, options, (wasm, key, ref) => wasm.sessionSeed(key, ref, seed));
    }

    status(options) {
      return UserSession.#replacing(this, options, (wasm, key, ref) => wasm.sessionStatus(key, ref));
    }

    /**
     * Revokes the session at the server (RFC 7009) and marks it dead
     * (`revoked`). Like every replacing call, no token is mirrored while it
     * runs (a refresh that finished while it waited cannot be served after).
     */
    revoke(options) {
      return UserSession.#replacing(this, options, (wasm, key, ref) => wasm.sessionRevoke(key, ref));
    }

    /** Makes this handle refuse every later call (the session's state stays with its client). */
    free() {
      if (!isObject(this)) throw notLive('UserSession');
      if (!(#keys in this)) return;
      this.#keys = null;
      this.#entry = null;
    }

    /**
     * `call` on a live session's key as a replacing call (static: `self` may
     * be any value); `options.signal` ends only the caller's wait.
     */
    static #replacing(self, options, call) {
      const keys = UserSession.#live(self);
      if (keys === null) return Promise.reject(notLive('UserSession'));
      return waitable(options, () => keys.replacing(self.#key, self.#ref, () => {
        // Reading `options.signal` runs the caller's code, which may have freed the client.
        if (keys.wasm === null) throw notLive('UserSession');
        return call(keys.wasm, self.#key, self.#ref);
      }));
    }
  }

  const readToken = UserSession.prototype.accessToken;

  /** Sessions, client tokens and the code flow for one OAuth client. */
  class TokenClient {
    #keys;

    constructor(options) {
      const [wasm, now] = adopting ?? reading(options, 'now', () => new Wasm(options));
      adopting = null;
      this.#keys = new Keys(wasm, clockOf(now), coreOf);
    }

    /** A client from the provider's credentials JSON (see index.d.ts). */
    static fromCredentialsJson(json, options) {
      adopting = reading(options, 'now', () => Wasm.fromCredentialsJson(json, options));
      return new TokenClient(options);
    }

    /**
     * A client whose endpoints come from `issuer`'s discovery document.
     * `callOptions.signal` ends the wait; a client that arrives after it is
     * freed (whichever of the two comes second frees it).
     */
    static async discover(issuer, options, callOptions) {
      let made;
      let abandoned = false;
      let wasm;
      let now;
      try {
        wasm = await waitable(callOptions, async () => {
          // The core reads the options before the request starts (src/wasm/mod.rs `promise`).
          let pending;
          [pending, now] = reading(options, 'now', () => Wasm.discover(issuer, options));
          made = await pending;
          if (abandoned) made.free();
          return made;
        }, 'callOptions');
      } catch (e) {
        abandoned = true;
        made?.free();
        throw e;
      }
      adopting = [wasm, now];
      return new TokenClient(options);
    }

    /** The live wasm client, or a ConfigError naming `this`. */
    static #wasm(self) {
      const wasm = isObject(self) && #keys in self ? self.#keys.wasm : null;
      if (wasm === null) throw notLive('TokenClient');
      return wasm;
    }

    /** A handle on `key`'s session; throws a ConfigError for a bad key or store. */
    session(key, store) {
      TokenClient.#wasm(this);
      const keys = this.#keys;
      return new UserSession(INTERNAL, keys, key, keys.open(key, store));
    }

    clientToken(scopes, options) {
      try {
        const wasm = TokenClient.#wasm(this);
        return waitable(options, () => wasm.clientToken(scopes));
      } catch (e) {
        return Promise.reject(e);
      }
    }

    invalidateClientToken(scopes) {
      return TokenClient.#wasm(this).invalidateClientToken(scopes, undefined);
    }

    clientTokenRejected(scopes, token) {
      // Not undefined: that would forget whatever is cached.
      return TokenClient.#wasm(this).invalidateClientToken(scopes, token === undefined ? null : token);
    }

    /**
     * Revokes every cached client token at the server and forgets it.
     * `options.signal` ends only the wait: the tokens are forgotten and
     * their revocation sent all the same.
     */
    revokeClientTokens(options) {
      try {
        const wasm = TokenClient.#wasm(this);
        return waitable(options, () => wasm.revokeClientTokens());
      } catch (e) {
        return Promise.reject(e);
      }
    }

    /**
     * Saves every session record this client holds only in memory (a
     * rotation whose save failed), after refreshes running have ended.
     * Await it before `free()`: a record freed unsaved takes its session's
     * newest refresh token with it. Rejects with a StorageError (the
     * records kept, to try again) if the store still refuses one. Seeds and
     * code exchanges running are waited for too.
     */
    saveUnsaved(options) {
      try {
        const wasm = TokenClient.#wasm(this);
        return waitable(options, () => wasm.saveUnsaved());
      } catch (e) {
        return Promise.reject(e);
      }
    }

    /** The discovery document the client was made from, or undefined. */
    get providerMetadata() {
      return TokenClient.#wasm(this).providerMetadata;
    }

    /**
     * The authorize URL with PKCE, state and nonce (async: the host's
     * WebCrypto hashes the verifier), on a prototype that redacts the
     * verifier when it is logged; its fields are plain own properties.
     */
    async authorizationUrl(options) {
      const request = await TokenClient.#wasm(this).authorizationUrl(options);
      return Object.assign(Object.create(authorizationRequest), request);
    }

    /**
     * The code of the redirect back from the server (the URL, or its
     * query), once its state is `expectedState` and its issuer the
     * provider's; throws otherwise (see index.d.ts).
     */
    codeFromRedirect(redirect, expectedState) {
      return TokenClient.#wasm(this).codeFromRedirect(redirect, expectedState);
    }

    /**
     * Exchanges an authorization code; resolves with a session on `key` once
     * its record is saved. `callOptions.signal` ends only the caller's wait:
     * a code sent is exchanged and saved all the same.
     */
    async exchangeCode(options, key, store, callOptions) {
      const wasm = TokenClient.#wasm(this);
      const keys = this.#keys;
      await waitable(callOptions, async () => {
        // (A key that is not a string is refused by the core, naming `key`.)
        const marked = typeof key === 'string';
        if (marked) keys.begin(key);
        try {
          await wasm.exchangeCode(options, key, store);
        } finally {
          if (marked) keys.done(key);
        }
      }, 'callOptions');
      // The record is saved; the client may have been freed meanwhile.
      if (keys.wasm === null) {
        throw new ConfigError({
          code: 'config',
          field: 'this',
          message: 'invalid configuration `this`: not a live TokenClient (free() was called while exchangeCode() ran; '
            + 'the code was redeemed and its session saved: open it with session(key, store) on a live client)',
        });
      }
      const ref = keys.open(key, store);
      keys.refill(key, ref);
      return new UserSession(INTERNAL, keys, key, ref);
    }

    get sessionCount() {
      return TokenClient.#wasm(this).sessionCount;
    }

    get leaseOwner() {
      return TokenClient.#wasm(this).leaseOwner;
    }

    /** Frees the client's wasm memory; it and its sessions then refuse every call. */
    free() {
      if (!isObject(this)) throw notLive('TokenClient');
      if (!(#keys in this)) return;
      const keys = this.#keys;
      if (keys.wasm === null) return;
      const { wasm } = keys;
      keys.wasm = null;
      for (const entry of keys.mirror.values()) entry.until = -Infinity;
      keys.mirror.clear();
      keys.pending.clear();
      keys.seen.clear();
      keys.busy.clear();
      // Released once the calls on the stack have returned: free() may run
      // inside a host callback (a store's `load`, `fetch`, `now`) that a call
      // into this client made, which holds the wasm object borrowed until it
      // returns; freeing it then would throw and leak it.
      // A borrow that host code broke off (it threw through the wasm) is
      // never given back: the memory is then left, not the process ended.
      queueMicrotask(() => {
        try {
          wasm.free();
        } catch {
          // nothing more to do
        }
      });
    }
  }

  return { TokenClient, UserSession, MemoryStore, refreshTokens: wasm.refreshTokens };
}
