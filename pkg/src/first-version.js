// The first version of a new record in the versioned stores (Redis,
// PostgreSQL, localStorage).

/**
 * A random integer in [2^32, 2^32 + 2^52), as decimal text: never 1, so
 * that a version from before a delete (a sign-out: `DEL`, `DELETE`,
 * `removeItem`) does not match the next link's record; above every version
 * earlier releases counted up from 1; below 2^53 with room for 2^52 saves,
 * so exact as a JS number and within PostgreSQL's bigint.
 */
export function firstVersion() {
  const [high, low] = globalThis.crypto.getRandomValues(new Uint32Array(2));
  return String(2 ** 32 + (high >>> 12) * 2 ** 32 + low);
}
