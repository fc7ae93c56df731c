// The refresh lease of the browser stores (LocalStorageStore,
// IndexedDbStore): a Web Lock (`navigator.locks`), which the tabs of an
// origin share. A tab that closes or crashes gives its locks back at once;
// a lease also lapses after its TTL, like a Redis lease, so a refresh whose
// promise never settles cannot hold it forever.

import { configErrorSaying } from './errors.js';

// The leases this page holds, by lock name: { owner, timer, end }. Shared by
// every store instance, as the locks are: a session handle made with a new
// store may release what another instance acquired.
const HELD = new Map();

// The acquires of this page still waiting for the lock manager's answer, by lock name.
const ASKING = new Map();

/** The longest delay a timer takes: a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** (Re)starts `lease`'s TTL: it ends `ttlMs` from now unless released or renewed first. */
function expireIn(name, lease, ttlMs) {
  clearTimeout(lease.timer);
  const wait = Math.min(ttlMs, MAX_TIMER_MS);
  lease.timer = setTimeout(() => {
    if (ttlMs > wait) expireIn(name, lease, ttlMs - wait);
    else giveBack(name, lease);
  }, wait);
}

/** Ends `lease` on `name` (if it is still the one held): the lock goes back. */
function giveBack(name, lease) {
  if (HELD.get(name) !== lease) return;
  HELD.delete(name);
  clearTimeout(lease.timer);
  lease.end();
}

/** `prefix` when the lock names it starts are valid (Web Lock names cannot start with `-`), else a ConfigError naming `store`'s `option`. */
export function lockNamePrefix(prefix, store, option) {
  if (prefix.startsWith('-')) throw configErrorSaying(option, `${store}: ${option} must not start with "-" (Web Lock names cannot)`);
  return prefix;
}

/** The lock manager in `locks`, or a ConfigError (field `locks`) naming `store`: without the lease two tabs could spend one refresh token, so there is no fallback. */
export function lockManager(locks, store) {
  if (!locks || typeof locks.request !== 'function') {
    throw configErrorSaying('locks', `${store}: the Web Locks API (navigator.locks) is missing (browsers offer it in secure contexts only: https, or http on localhost); tabs sharing a store need it for the refresh lease (pass options.locks, a LockManager)`);
  }
  return locks;
}

/**
 * Takes the lease `name` for `owner` for `ttlMs` through `locks`: the Web
 * Lock, if no tab holds it (renewed when `owner` already does); false
 * otherwise. `store` names the caller in argument errors.
 */
export async function acquireLease(locks, name, owner, ttlMs, store) {
  checkOwner(owner, store);
  if (typeof ttlMs !== 'number' || !(ttlMs > 0) || !Number.isFinite(ttlMs)) {
    throw new TypeError(`${store}: the lease TTL must be a positive number of ms`);
  }
  // An acquire of this page still asking for the lock: its answer decides
  // (a renewal for its owner, a refusal for another), not "not available".
  for (let asking = ASKING.get(name); asking; asking = ASKING.get(name)) {
    await asking.catch(() => undefined);
  }
  const held = HELD.get(name);
  if (held) {
    // Held by this page; the lock itself would only say "not available".
    if (held.owner !== owner) return false;
    expireIn(name, held, ttlMs);
    return true;
  }
  let request;
  const asked = new Promise((resolve, reject) => {
    const taken = (lock) => {
      if (!lock) {
        resolve(false);
        return undefined;
      }
      // The lock is held until this promise settles; `request` settles
      // once it is free again.
      return new Promise((end) => {
        const lease = { owner, end, timer: undefined, freed: request };
        expireIn(name, lease, ttlMs);
        HELD.set(name, lease);
        resolve(true);
      });
    };
    request = locks.request(name, { ifAvailable: true }, taken);
    request.catch(reject);
  });
  ASKING.set(name, asked);
  try {
    return await asked;
  } finally {
    if (ASKING.get(name) === asked) ASKING.delete(name);
  }
}

/**
 * Runs `body` while no other tab holds the lease `name`: at once when this
 * page holds it, else holding the Web Lock itself (waiting for it), so that
 * no tab's refresh saves meanwhile.
 */
export async function whileLeased(locks, name, body) {
  if (HELD.has(name)) return body();
  return locks.request(name, {}, () => body());
}

/** Gives the lease `name` back, if `owner` still holds it; resolves once the lock is free for other tabs and owners. */
export async function releaseLease(name, owner, store) {
  checkOwner(owner, store);
  const held = HELD.get(name);
  if (held && held.owner === owner) {
    giveBack(name, held);
    await held.freed?.catch(() => undefined);
  }
}

function checkOwner(owner, store) {
  if (typeof owner !== 'string' || owner === '') throw new TypeError(`${store}: the lease owner must be a non-empty string`);
}
