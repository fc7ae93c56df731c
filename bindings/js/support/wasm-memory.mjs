// The wasm instance's memory and the garbage collector, for the memory tests.
//
// `wasmMemoryBytes()` reads the size of the instance that the package's Node
// entry point loaded: requiring the same glue file gives the same module
// (CommonJS caches it by path), whose internal `__wasmMemoryBytes` export
// reports `memory.size * 64 KiB`. Wasm memory never shrinks, so this is the
// high-water mark of everything the core ever held at once.
//
// `collectGarbage()` runs a full GC (V8's `gc`, reached without the
// --expose-gc command-line flag) and then lets the FinalizationRegistry
// callbacks it queued run, which free the wasm side of dropped handles.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';

const require = createRequire(import.meta.url);
const glue = require(fileURLToPath(new URL('../../../pkg/dist/node/freshtoken.js', import.meta.url)));

/** Bytes of wasm memory the package's instance has grown to. */
export function wasmMemoryBytes() {
  return glue.__wasmMemoryBytes();
}

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

/** Full garbage collections, each followed by a macrotask turn for the finalizers it queued. */
export async function collectGarbage(rounds = 2) {
  for (let i = 0; i < rounds; i += 1) {
    gc();
    await new Promise((resolve) => { setImmediate(resolve); });
  }
}
