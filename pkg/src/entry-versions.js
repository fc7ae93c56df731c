// The `{version, record}` entries of the browser stores (LocalStorageStore,
// IndexedDbStore) and the versions of what they cannot read.

import { firstVersion } from './first-version.js';

/** Whether `version` is one these stores write: a decimal they can add 1 to exactly. */
export function isVersion(version) {
  return typeof version === 'string' && /^[0-9]{1,16}$/.test(version) && Number.isSafeInteger(Number(version) + 1);
}

/** `value` when it is an entry these stores write (`{version, record}`, both text), else null. */
export function asEntry(value) {
  return typeof value?.record === 'string' && isVersion(value?.version) ? value : null;
}

/** The entry the text of a stored item holds (JSON of `{version, record}`), or null: none, not JSON, or not such an entry. */
export function entryOfText(text) {
  if (text === null) return null;
  try {
    return asEntry(JSON.parse(text));
  } catch {
    return null; // not JSON: not an entry
  }
}

/** The version after `previous`'s (an entry, or null: a new record, at a random version). */
export function nextVersion(previous) {
  return previous ? String(Number(previous.version) + 1) : firstVersion();
}

/**
 * The version of a stored value that holds no entry, from `text`, its
 * text: `u` (never a decimal, so no version these stores write), the
 * length and two 32-bit FNV-1a-style hashes of the text. It changes when
 * the text does, so a swap against it still fails when another writer
 * changed it meanwhile. A hash, not the text: the value may hold a token,
 * and versions appear in logs. Not cryptographic: only a writer outside
 * the store changes such a value.
 */
export function unreadableVersion(text) {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < text.length; i += 1) {
    const unit = text.charCodeAt(i);
    a = Math.imul(a ^ unit, 0x01000193);
    b = Math.imul(b ^ unit, 0x5bd1e995);
  }
  return `u${text.length}.${(a >>> 0).toString(16)}.${(b >>> 0).toString(16)}`;
}
