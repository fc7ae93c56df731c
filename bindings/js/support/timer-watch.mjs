// Watches the global setTimeout/clearTimeout for the boundary tests: which
// timers are set, run, cleared and left, and what their callbacks threw.

/**
 * Wraps the global setTimeout/clearTimeout. `coreOnly`: follow only the
 * core's timers (those its host calls set: pkg/src/host-calls.js
 * `setTimer`, the caller right above setTimeout); others pass through
 * unwatched. `live`: set, not yet cleared or run; `set()`: how many were
 * set; `fired(n)` resolves once `n` have run; `thrown` collects what their
 * callbacks threw. `restore()` puts back the originals.
 */
export function watchTimers({ coreOnly = false } = {}) {
  const real = { set: globalThis.setTimeout, clear: globalThis.clearTimeout };
  const thrown = [];
  const live = new Set();
  let set = 0;
  let ran = 0;
  let waiters = [];
  const fromCore = () => {
    const site = {};
    Error.captureStackTrace(site, globalThis.setTimeout);
    return /host-calls\.js:/.test(site.stack.split('\n')[1] ?? '');
  };
  globalThis.setTimeout = function setTimeout(callback, ms, ...args) {
    if (coreOnly && !fromCore()) return real.set(callback, ms, ...args);
    set += 1;
    const timer = real.set(() => {
      live.delete(timer);
      try {
        callback(...args);
      } catch (e) {
        thrown.push(e);
      } finally {
        ran += 1;
        waiters = waiters.filter(({ n, resolve }) => (ran >= n ? resolve() : true));
      }
    }, ms);
    live.add(timer);
    return timer;
  };
  globalThis.clearTimeout = (timer) => {
    live.delete(timer);
    real.clear(timer);
  };
  return {
    thrown,
    live,
    set: () => set,
    fired: (n) => (ran >= n ? Promise.resolve() : new Promise((resolve) => { waiters.push({ n, resolve }); })),
    restore() {
      globalThis.setTimeout = real.set;
      globalThis.clearTimeout = real.clear;
    },
  };
}
