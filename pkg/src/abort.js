// A caller's AbortSignal (`{ signal }`, as fetch takes it): the caller may
// stop waiting, never the work others share. An aborted call rejects with
// `signal.reason` (an AbortError DOMException, or AbortSignal.timeout()'s
// TimeoutError; an AbortError where an engine has no `reason`), as fetch does; a refresh it started or joined still
// finishes and saves its rotated token for every other caller, as a
// Python `timeout=` or a cancelled Kotlin coroutine does. A signal already
// aborted starts nothing: no refresh (each opens a banking session that
// may notify the user) is sent for a request nobody waits for.

import { configError } from './errors.js';
import { member } from './host-calls.js';

/**
 * A call's `options` checked: undefined, or an object whose only member is
 * `signal` (an AbortSignal or undefined); returns the signal. A misspelt
 * option is a ConfigError naming it (under `name`, the argument's name in
 * index.d.ts), not a call that can never be cancelled.
 */
export function signalOf(options, name = 'options') {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== 'object') throw configError(name, 'must be an object');
  let signal;
  try {
    for (const key of Object.keys(options)) {
      if (key !== 'signal') throw configError(`${name}.${key}`, 'is not an option of this call (`signal` is)');
    }
    signal = member(options, 'signal'); // never one inherited from Object.prototype
  } catch (e) {
    if (e?.code === 'config') throw e;
    throw configError(name, 'could not be read (it threw)');
  }
  if (signal === undefined) return undefined;
  try {
    // What fetch needs of a signal, read here once, so that a Proxy or a
    // lookalike fails now rather than inside a call.
    if (typeof signal === 'object' && signal !== null
      && typeof signal.aborted === 'boolean'
      && typeof signal.addEventListener === 'function'
      && typeof signal.removeEventListener === 'function') return signal;
  } catch {
    throw configError(`${name}.signal`, 'could not be read (it threw)');
  }
  throw configError(`${name}.signal`, 'must be an AbortSignal');
}

/**
 * signal -> `{ aborts, listener }`: the calls waiting on it, behind one
 * `abort` listener. One per call would pass Node's limit of ten listeners
 * per signal (a warning of a leak) as soon as eleven requests share one
 * signal, a server's shutdown signal say.
 */
const waiting = new WeakMap();

/**
 * Runs `abort` once `signal` aborts (until `unlisten`). A lookalike whose
 * `addEventListener` throws is not listened to: the wait then ends with
 * the call.
 */
function listen(signal, abort) {
  let entry = waiting.get(signal);
  if (entry === undefined) {
    const aborts = new Set();
    const listener = () => {
      waiting.delete(signal);
      for (const each of aborts) each();
    };
    entry = { aborts, listener };
    try {
      signal.addEventListener('abort', listener, { once: true });
    } catch {
      return;
    }
    waiting.set(signal, entry);
  }
  entry.aborts.add(abort);
}

/** Forgets `abort`; the signal's listener goes with its last call (whatever its removal throws). */
function unlisten(signal, abort) {
  const entry = waiting.get(signal);
  if (entry === undefined || !entry.aborts.delete(abort) || entry.aborts.size > 0) return;
  waiting.delete(signal);
  try {
    signal.removeEventListener('abort', entry.listener);
  } catch {
    // A lookalike's: its listener then runs once more, for no call.
  }
}

/**
 * Why `signal` aborted: its `reason`, or an AbortError where the engine
 * (or a polyfill) predates `reason`.
 */
// Only an absent reason (an older engine, a polyfill) becomes an AbortError:
// `abort(null)` rejects with null, as fetch does.
const reasonOf = (signal) => (signal.reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : signal.reason);

/**
 * Starts `start()` unless `signal` is already aborted, and settles as it
 * does, or with `signal.reason` once the signal aborts first (the call runs
 * on; its own outcome is then handled here, never left unhandled). Its
 * listening ends when either comes, so a long-lived signal gathers nothing.
 * Without a signal, `start()` as it is.
 */
export function abortable(signal, start) {
  if (signal === undefined) return start();
  if (signal.aborted) return Promise.reject(reasonOf(signal));
  const call = start();
  return new Promise((resolve, reject) => {
    const abort = () => reject(reasonOf(signal));
    const settle = (finish) => (value) => {
      unlisten(signal, abort);
      finish(value);
    };
    Promise.resolve(call).then(settle(resolve), settle(reject));
    // Aborted by `start()` itself (a store or fetch that aborts it): the
    // event has been dispatched already.
    if (signal.aborted) abort();
    else listen(signal, abort);
  });
}
