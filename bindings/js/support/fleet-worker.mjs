// One process of a fleet, for test/fleet.multiprocess.test.mjs: forked with
// an IPC channel and its configuration as JSON in $FRESHTOKEN_FLEET_WORKER:
//
//   { store: 'redis' | 'postgres', redisUrl, prefix, pg: {host, port, user, database},
//     tables: {table, leaseTable}, tokenEndpoint, clientId, clientSecret, key,
//     callers: 100, pauseMs: [min, max], clientOptions: {…}, reportBatches: false,
//     encryption: undefined | { current: { id, key (base64) }, … } (an EncryptedStore around the store) }
//
// It connects its own store client, makes its own TokenClient, and says
// { type: 'ready', pid, leaseOwner }. On { type: 'start' } it fires `callers`
// concurrent `accessToken()` calls (each through a new session handle, as a
// route handler would), waits a short random pause, and again, until
// { type: 'stop' }; then it sends { type: 'report', … } and exits.
//
// The report holds the tokens it was served (the parent compares them across
// processes and with the store; it never prints them) and, per error class,
// how many calls failed. Nothing here prints a token.

import { TokenClient } from 'freshtoken';

const config = JSON.parse(process.env.FRESHTOKEN_FLEET_WORKER ?? 'null');
if (!config || typeof process.send !== 'function') {
  console.error('fleet-worker: fork me with an IPC channel and $FRESHTOKEN_FLEET_WORKER');
  process.exit(2);
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
const send = (message) => new Promise((resolve) => {
  process.send(message, (err) => resolve(err));
});

let store;
let closeStore;
if (config.store === 'redis') {
  const { createClient } = await import('redis');
  const { RedisStore } = await import('freshtoken/redis');
  const redis = createClient({ url: config.redisUrl });
  redis.on('error', () => {}); // reported through the failing calls instead
  await redis.connect();
  store = new RedisStore(redis, { prefix: config.prefix });
  closeStore = () => redis.quit();
} else if (config.store === 'postgres') {
  const { default: pg } = await import('pg');
  const { PostgresStore } = await import('freshtoken/postgres');
  const pool = new pg.Pool({ ...config.pg, max: 4 });
  pool.on('error', () => {});
  store = new PostgresStore(pool, config.tables);
  closeStore = () => pool.end();
} else {
  console.error(`fleet-worker: unknown store ${config.store}`);
  process.exit(2);
}
if (config.encryption) {
  const { EncryptedStore } = await import('freshtoken');
  store = new EncryptedStore(store, config.encryption);
}

const client = new TokenClient({
  tokenEndpoint: config.tokenEndpoint,
  clientId: config.clientId,
  clientSecret: config.clientSecret,
  ...config.clientOptions,
});

let stopping = false;
let started;
const startedPromise = new Promise((resolve) => { started = resolve; });
process.on('message', (message) => {
  if (message?.type === 'start') started();
  if (message?.type === 'stop') {
    stopping = true;
    started();
  }
});
const orphaned = () => process.exit(1); // the parent is gone: never linger
process.on('disconnect', orphaned);

/**
 * token → { count, first, last }: first, when the first call served it
 * settled; last, when the last call served it was made (the token was live
 * then). So last - first stays within the token's lifetime however long
 * a loaded machine takes to settle a call.
 */
const tokens = new Map();
/** 'code/reason' → { count, first, last, name } */
const failures = new Map();
let calls = 0;
let batches = 0;

/** Counts one call under `key`: `at` for `first`, `lastAt` (default `at`) for `last`. */
function tally(map, key, at, extra = {}, lastAt = at) {
  const seen = map.get(key);
  if (seen) {
    seen.count += 1;
    seen.first = Math.min(seen.first, at);
    seen.last = Math.max(seen.last, lastAt);
  } else {
    map.set(key, { count: 1, first: at, last: lastAt, ...extra });
  }
}

async function oneCall() {
  const session = client.session(config.key, store);
  try {
    const calledAt = Date.now();
    const token = await session.accessToken();
    tally(tokens, token, Date.now(), {}, calledAt);
    return { ok: true };
  } catch (err) {
    const key = `${err?.code ?? 'exception'}/${err?.reason ?? '-'}`;
    tally(failures, key, Date.now(), { name: err?.name ?? typeof err, message: String(err?.message ?? err).slice(0, 200) });
    return { ok: false, key };
  } finally {
    session.free();
  }
}

await send({ type: 'ready', pid: process.pid, leaseOwner: client.leaseOwner });
await startedPromise;

const [pauseMin, pauseMax] = config.pauseMs ?? [20, 60];
while (!stopping) {
  const startedAt = Date.now();
  const results = await Promise.all(Array.from({ length: config.callers ?? 100 }, oneCall));
  const endedAt = Date.now();
  calls += results.length;
  batches += 1;
  if (config.reportBatches) {
    const failed = {};
    for (const r of results) if (!r.ok) failed[r.key] = (failed[r.key] ?? 0) + 1;
    await send({ type: 'batch', pid: process.pid, startedAt, endedAt, ok: results.filter((r) => r.ok).length, failed });
  }
  await sleep(pauseMin + Math.random() * (pauseMax - pauseMin));
}

await send({
  type: 'report',
  pid: process.pid,
  leaseOwner: client.leaseOwner,
  calls,
  batches,
  served: [...tokens.values()].reduce((n, t) => n + t.count, 0),
  tokens: [...tokens.entries()].map(([token, t]) => ({ token, ...t })),
  failures: Object.fromEntries(failures),
});
client.free();
await closeStore().catch(() => {});
process.removeListener('disconnect', orphaned);
process.disconnect();
