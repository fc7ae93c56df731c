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
 * `signal` (an AbortSignal or undefined); returns `[signal, aborted]`, or
 * `[]` without a signal. A misspelt option is a ConfigError naming it
 * (under `name`, the argument's name in index.d.ts), not a call that can
 * never be cancelled.
 */
function check(options, name) {
  if (options === undefined) return [];
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
  if (signal === undefined) return [];
  let aborted;
  try {
    // What fetch needs of a signal, read here once, so that a Proxy or a
    // lookalike fails now rather than inside a call. The call uses what was
    // read; only `reason` is read again, once it aborts (see `reasonOf`),
    // and the listener methods are called, their throws caught (`listen`).
    if (typeof signal === 'object' && signal !== null
      && typeof signal.addEventListener === 'function'
      && typeof signal.removeEventListener === 'function') aborted = signal.aborted;
  } catch {
    throw unreadable(name);
  }
  if (typeof aborted !== 'boolean') throw configError(`${name}.signal`, 'must be an AbortSignal');
  return [signal, aborted];
}

/** The ConfigError of a signal, in the argument `name`, that threw when read. */
const unreadable = (name) => configError(`${name}.signal`, 'could not be read (it threw)');

/** The signal of a call's `options` (see `check`), or undefined; throws a ConfigError naming what is wrong. */
export const signalOf = (options, name = 'options') => check(options, name)[0];

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
 * (or a polyfill) predates `reason`; a ConfigError (the signal in the
 * argument `name`) if reading it throws, which must not throw out of the
 * listener that aborts the calls waiting on the signal.
 */
// Only an absent reason (an older engine, a polyfill) becomes an AbortError:
// `abort(null)` rejects with null, as fetch does.
function reasonOf(signal, name) {
  let reason;
  try {
    reason = signal.reason;
  } catch {
    return unreadable(name);
  }
  return reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
}

/**
 * `start()` for a caller with call `options` (`{ signal }`; `name`, the
 * argument's name in index.d.ts, for errors). A bad option throws a
 * ConfigError, and a signal already aborted rejects with its reason,
 * before anything starts. Else settles as `start()` does, or with
 * `signal.reason` once the signal aborts first (the call runs on; its own
 * outcome is then handled here, never left unhandled); a reason that
 * throws when read is a ConfigError. Its listening ends when either comes,
 * so a long-lived signal gathers nothing. Without a signal, `start()` as
 * it is.
 */
export function abortable(options, start, name = 'options') {
  const [signal, aborted] = check(options, name);
  if (signal === undefined) return start();
  if (aborted) return Promise.reject(reasonOf(signal, name));
  return new Promise((resolve, reject) => {
    const abort = () => reject(reasonOf(signal, name));
    // Listening first: an abort by `start()` itself (a store or fetch that
    // aborts it) is heard as it is dispatched, with no later read of `aborted`.
    listen(signal, abort);
    const settle = (finish) => (value) => {
      unlisten(signal, abort);
      finish(value);
    };
    try {
      Promise.resolve(start()).then(settle(resolve), settle(reject));
    } catch (e) {
      settle(reject)(e);
    }
  });
}
