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

/** What `setHostCalls` takes: `attempt`, `takeError`, `threw` and the operations. */
export const hostCalls = {
  attempt,
  takeError,
  threw,
  get: (obj, key) => obj[key],
  keys: (obj) => Object.keys(obj),
  array: (value) => (Array.isArray(value) ? Array.from(value) : null),
  apply: (f, self, args) => Reflect.apply(f, self, args),
  // A lone surrogate is the only code point of category Cs a `u` regex sees.
  wellFormed: (text) => text.isWellFormed?.() ?? !/\p{Cs}/u.test(text),
  // A body stream (or its reader) no longer read: cancelling closes the connection.
  cancel: (stream) => { Promise.resolve(stream.cancel()).catch(() => {}); },
  // Deadlines: the global timers as they are at call time (fake timers apply).
  setTimer: (callback, ms) => setTimeout(callback, ms),
  clearTimer: (id) => clearTimeout(id),
};
