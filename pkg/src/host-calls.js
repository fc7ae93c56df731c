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

/** What `setHostCalls` takes: `attempt`, `takeError`, `threw` and the operations. */
export const hostCalls = {
  attempt,
  takeError,
  threw,
  get: (obj, key) => obj[key],
  keys: (obj) => Object.keys(obj),
  array: (value) => (Array.isArray(value) ? Array.from(value) : null),
  apply: (f, self, args) => Reflect.apply(f, self, args),
  bytes,
  // A lone surrogate is the only code point of category Cs a `u` regex sees.
  wellFormed: (text) => text.isWellFormed?.() ?? !/\p{Cs}/u.test(text),
  // A body stream (or its reader) no longer read: cancelling closes the connection.
  cancel: (stream) => { Promise.resolve(stream.cancel()).catch(() => {}); },
  // Deadlines: the global timers as they are at call time (fake timers apply).
  setTimer: (callback, ms) => setTimeout(callback, ms),
  clearTimer: (id) => clearTimeout(id),
};
