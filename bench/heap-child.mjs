// One heap measurement, run by run.mjs in its own process:
//   node --expose-gc heap-child.mjs <mode> <count> <refreshTokenLength> <accessTokenLength>
// mode: `freshtoken`      sessions created per use and dropped (DESIGN point 11)
//       `freshtoken-held` every UserSession handle kept alive
//       `plain`           the anchor: plain JS objects holding the same three strings
// Prints one JSON line with byte deltas against a baseline taken after gc.
// No network: the client points at a port nothing listens on and every
// session is seeded with a fresh access token (read from memory).

import { randomBytes } from 'node:crypto';

if (typeof globalThis.gc !== 'function') {
  console.error('heap-child.mjs needs node --expose-gc');
  process.exit(2);
}

const [mode, countArg, rtLenArg, atLenArg] = process.argv.slice(2);
const count = Number(countArg);
const rtLen = Number(rtLenArg);
const atLen = Number(atLenArg);
if (!['freshtoken', 'freshtoken-held', 'plain'].includes(mode) || !(count > 0) || !(rtLen > 0) || !(atLen > 0)) {
  console.error('usage: node --expose-gc heap-child.mjs freshtoken|freshtoken-held|plain COUNT RT_LEN AT_LEN');
  process.exit(2);
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
/** gc until the numbers settle, letting FinalizationRegistry callbacks (wasm-bindgen handles) run in between. */
async function settledUsage() {
  for (let i = 0; i < 4; i++) {
    globalThis.gc();
    await tick();
  }
  globalThis.gc();
  return process.memoryUsage();
}

/**
 * A random base64url string of exactly `len` characters (like the emulator's
 * opaque tokens), always a flat string: a `.slice()` of 13+ characters would be
 * a V8 SlicedString that keeps its longer parent alive and skews the numbers.
 */
function token(len) {
  const s = randomBytes(Math.ceil((len * 3) / 4) + 2).toString('base64url');
  return s.length === len ? s : Buffer.from(s.slice(0, len), 'latin1').toString('latin1');
}
const keyOf = (i) => `user-${String(i).padStart(7, '0')}`;

const endpoint = 'http://127.0.0.1:9/connect/token'; // never contacted
let ft;
if (mode !== 'plain') {
  ft = await import('../pkg/lib/node.js');
  // Warm up the code paths on a throwaway client, so the baseline holds the
  // module, the JIT and the wasm memory's start-up size.
  const warm = new ft.TokenClient({ tokenEndpoint: endpoint, clientId: 'bench-client', clientSecret: 'bench-secret' });
  const warmStore = new ft.MemoryStore();
  for (let i = 0; i < 200; i++) {
    const s = warm.session(`warm-${i}`, warmStore);
    await s.seed({ refreshToken: token(rtLen), accessToken: token(atLen), expiresIn: 900 });
    await s.accessToken();
    s.free();
  }
  warm.free();
}

const base = await settledUsage();
const started = performance.now();
const held = [];
let client;
let store;
let tokenChars = 0;

if (mode === 'plain') {
  for (let i = 0; i < count; i++) {
    const refreshToken = token(rtLen);
    const accessToken = token(atLen);
    held.push({ key: keyOf(i), refreshToken, accessToken });
    tokenChars += refreshToken.length + accessToken.length;
  }
} else {
  client = new ft.TokenClient({ tokenEndpoint: endpoint, clientId: 'bench-client', clientSecret: 'bench-secret' });
  store = new ft.MemoryStore();
  for (let i = 0; i < count; i++) {
    const session = client.session(keyOf(i), store);
    await session.seed({ refreshToken: token(rtLen), accessToken: token(atLen), expiresIn: 900 });
    const t = await session.accessToken(); // read once, from memory
    tokenChars += t.length + rtLen;
    if (mode === 'freshtoken-held') held.push(session);
  }
}
const elapsedMs = performance.now() - started;
const after = await settledUsage();

let recordBytes = 0;
if (store) for (let i = 0; i < count; i++) recordBytes += store.get(keyOf(i))?.length ?? 0;

const delta = (k) => after[k] - base[k];
console.log(JSON.stringify({
  mode,
  count,
  elapsedMs,
  heapUsed: delta('heapUsed'),
  external: delta('external'),
  arrayBuffers: delta('arrayBuffers'),
  rss: delta('rss'),
  total: delta('heapUsed') + delta('external'),
  sessionCount: client?.sessionCount ?? null,
  heldHandles: mode === 'freshtoken-held' ? held.length : 0,
  storeRecordChars: recordBytes,
  tokenChars,
}));
