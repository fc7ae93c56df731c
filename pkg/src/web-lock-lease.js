// The refresh lease of the browser stores (LocalStorageStore,
// IndexedDbStore): a Web Lock (`navigator.locks`), which the tabs of an
// origin share. A tab that closes or crashes gives its locks back at once;
// a lease also lapses after its TTL, like a Redis lease, so a refresh whose
// promise never settles cannot hold it forever.

// The leases this page holds, by lock name: { owner, timer, end }. Shared by
// every store instance, as the locks are: a session handle made with a new
// store may release what another instance acquired.
const HELD = new Map();

/** (Re)starts `lease`'s TTL: it ends `ttlMs` from now unless released or renewed first. */
function expireIn(name, lease, ttlMs) {
  clearTimeout(lease.timer);
  lease.timer = setTimeout(() => giveBack(name, lease), ttlMs);
}

/** Ends `lease` on `name` (if it is still the one held): the lock goes back. */
function giveBack(name, lease) {
  if (HELD.get(name) !== lease) return;
  HELD.delete(name);
  clearTimeout(lease.timer);
  lease.end();
}

/** The lock manager in `locks`, or a TypeError naming `store`: without the lease two tabs could spend one refresh token, so there is no fallback. */
export function lockManager(locks, store) {
  if (!locks || typeof locks.request !== 'function') {
    throw new TypeError(`${store}: the Web Locks API (navigator.locks) is missing; tabs sharing a store need it for the refresh lease (pass options.locks, a LockManager)`);
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
  const held = HELD.get(name);
  if (held) {
    // Held by this page; the lock itself would only say "not available".
    if (held.owner !== owner) return false;
    expireIn(name, held, ttlMs);
    return true;
  }
  return new Promise((resolve, reject) => {
    const taken = (lock) => {
      if (!lock) {
        resolve(false);
        return undefined;
      }
      // The lock is held until this promise settles.
      return new Promise((end) => {
        const lease = { owner, end, timer: undefined };
        expireIn(name, lease, ttlMs);
        HELD.set(name, lease);
        resolve(true);
      });
    };
    locks.request(name, { ifAvailable: true }, taken).catch(reject);
  });
}

/** Gives the lease `name` back, if `owner` still holds it. */
export async function releaseLease(name, owner, store) {
  checkOwner(owner, store);
  const held = HELD.get(name);
  if (held && held.owner === owner) giveBack(name, held);
}

function checkOwner(owner, store) {
  if (typeof owner !== 'string' || owner === '') throw new TypeError(`${store}: the lease owner must be a non-empty string`);
}
