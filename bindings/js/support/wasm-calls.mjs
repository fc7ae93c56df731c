// Counts calls into the wasm build that the package's Node entry point
// loaded: every method of its internal TokenClient class (the one the
// package's TokenClient and UserSession call) is wrapped with a counter.
// Requiring the same glue file gives the same module (CommonJS caches it by
// path), so the package and this spy see one prototype.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const glue = require(fileURLToPath(new URL('../../../pkg/dist/node/freshtoken.js', import.meta.url)));

/**
 * Starts counting; returns `{ count(), byName(), stop() }`. `count()` is the
 * number of wasm method calls since the last `count()` (or the start).
 */
export function countWasmCalls() {
  const proto = glue.TokenClient.prototype;
  const originals = new Map();
  const byName = new Map();
  let calls = 0;
  for (const name of Object.getOwnPropertyNames(proto)) {
    const desc = Object.getOwnPropertyDescriptor(proto, name);
    if (name === 'constructor' || name === 'free' || typeof desc.value !== 'function') continue;
    originals.set(name, desc.value);
    const original = desc.value;
    proto[name] = function counted(...args) {
      calls += 1;
      byName.set(name, (byName.get(name) ?? 0) + 1);
      return original.apply(this, args);
    };
  }
  return {
    count() {
      const n = calls;
      calls = 0;
      return n;
    },
    byName: () => Object.fromEntries(byName),
    stop() {
      for (const [name, f] of originals) proto[name] = f;
    },
  };
}
