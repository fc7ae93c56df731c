// The wasm core's calls into code the host controls (getters, Proxy traps,
// iterators, a store's or fetch's methods). Each catches here, in
// JavaScript: an exception unwinding through wasm would leak its stack, and
// one caught by wasm-bindgen's glue leaks a slot of its externref table.

/** What `attempt` returns when `op` threw; the error waits in `takeError()`. */
const threw = Symbol('threw');
let error;

/** `op(a, b, c)`, or `threw` if it throws. */
function attempt(op, a, b, c) {
  try {
    return op(a, b, c);
  } catch (e) {
    error = e;
    return threw;
  }
}

/** The error of the last `attempt` that threw. */
function takeError() {
  const e = error;
  error = undefined;
  return e;
}

// The engine's own accessors of typed arrays and buffers, taken once: a
// host's object may be a Proxy, a subclass whose getters throw or lie, or
// a view of a detached buffer, and its own `length` is never asked.
const TypedArray = Object.getPrototypeOf(Uint8Array.prototype);
const getter = (proto, name) => Object.getOwnPropertyDescriptor(proto, name).get;
const typedName = getter(TypedArray, Symbol.toStringTag);
const viewBuffer = getter(TypedArray, 'buffer');
const viewOffset = getter(TypedArray, 'byteOffset');
const viewLength = getter(TypedArray, 'length');
const bufferLength = getter(ArrayBuffer.prototype, 'byteLength');
const setBytes = TypedArray.set;
const { apply } = Reflect;
const Bytes = Uint8Array;

/**
 * A copy, in a new Uint8Array, of the first `limit` bytes (or fewer) of
 * `value`: a Uint8Array, or with `buffer` true an ArrayBuffer; null if it is
 * not one. Only engine accessors read it; a detached one throws.
 */
function bytes(value, limit, buffer) {
  let view;
  if (buffer) {
    const length = apply(bufferLength, value, []); // throws unless a real ArrayBuffer
    view = new Bytes(value, 0, Math.min(length, limit));
  } else {
    if (apply(typedName, value, []) !== 'Uint8Array') return null;
    const length = Math.min(apply(viewLength, value, []), limit);
    view = new Bytes(apply(viewBuffer, value, []), apply(viewOffset, value, []), length);
  }
  const copy = new Bytes(view.byteLength);
  apply(setBytes, copy, [view]);
  return copy;
}

// Prototypes every object of a kind inherits from: a member only they
// define is not the caller's (prototype pollution: `Object.prototype.fetch
// = …` elsewhere in the app must not become a client's `fetch`, nor an
// inherited `accessToken` a seed's). A class's own prototype (its methods
// and getters) is the caller's, as is what a Proxy's `get` trap answers.
const shared = new Set([Object.prototype, Function.prototype]);
const { getPrototypeOf } = Reflect;
const { hasOwn } = Object;

/** Whether `level` is a prototype shared by every object: this realm's, or another realm's `Object.prototype`. */
const isShared = (level) => shared.has(level) || (getPrototypeOf(level) === null && hasOwn(level, '__proto__'));

/** The longest prototype chain walked (a Proxy's `getPrototypeOf` may loop). */
const MAX_DEPTH = 64;

/**
 * `obj[key]`, or undefined when `obj` only inherits it from a shared
 * prototype (see `shared`). Getters and Proxy traps run as for `obj[key]`.
 */
export function member(obj, key) {
  const value = obj[key];
  if (value === undefined) return value;
  let level = obj;
  for (let depth = 0; level !== null && depth < MAX_DEPTH; depth += 1) {
    if (hasOwn(level, key)) return isShared(level) ? undefined : value;
    level = getPrototypeOf(level);
  }
  if (level !== null) throw new TypeError('its prototype chain is too long');
  return value; // no level defines it: a Proxy's `get` trap made it up
}

/** The member whose reads `reading()` records: `{ obj, key, value }` (no `value` until read), or null. */
let watched = null;

/**
 * `[make(), value]`: `value` is what the core's first read of `obj[key]`
 * during `make()` got (undefined if it read none); any later read of it
 * there gets the same. The package can then use the very value the core
 * does, read once: a getter or a change meanwhile cannot give them two.
 */
export function reading(obj, key, make) {
  const outer = watched;
  const watch = { obj, key };
  watched = watch;
  try {
    return [make(), watch.value];
  } finally {
    watched = outer;
  }
}

/** The core's `obj[key]`: `member`, recorded for the member `reading()` watches. */
function get(obj, key) {
  const watch = watched;
  if (watch?.obj !== obj || watch.key !== key) return member(obj, key);
  if (!('value' in watch)) watch.value = member(obj, key);
  return watch.value;
}

/**
 * A copy of `value` as a plain array; null if it is not an array, its
 * length if that is over `max`. Its `length` is read once and checked
 * before anything is copied, and the copy goes by index (an array's own
 * iterator could yield without end).
 */
function array(value, max) {
  if (!Array.isArray(value)) return null;
  const { length } = value;
  if (typeof length !== 'number') return null; // a Proxy's trap
  if (!(length <= max)) return length;
  const copy = [];
  for (let i = 0; i < length; i += 1) copy.push(value[i]);
  return copy;
}

/** What `setHostCalls` takes: `attempt`, `takeError`, `threw` and the operations. */
export const hostCalls = {
  attempt,
  takeError,
  threw,
  get,
  keys: (obj) => Object.keys(obj),
  iterable: (obj) => typeof obj[Symbol.iterator] === 'function',
  array,
  apply: (f, self, args) => Reflect.apply(f, self, args),
  bytes,
  // A lone surrogate is the only code point of category Cs a `u` regex sees.
  wellFormed: (text) => text.isWellFormed?.() ?? !/\p{Cs}/u.test(text),
  // A body stream (or its reader) no longer read: cancelling closes the connection.
  cancel: (stream) => { Promise.resolve(stream.cancel()).catch(() => {}); },
  // Deadlines: the global timers as they are at call time (fake timers
  // apply). `callback` is the core's one timer callback; `id` names the
  // deadline (src/wasm/timeout.rs).
  setTimer: (callback, ms, id) => setTimeout(() => callback(id), ms),
  clearTimer: (id) => clearTimeout(id),
};
