// freshtoken benchmarks: one table of ratios, each measured in this run
// against a named anchor. Not a test: it never fails on a goal; it prints the
// measured value, the anchor, the ratio, the goal and whether it was met, and
// writes the same table as markdown to bench/results.md.
//
//   node bench/run.mjs            (from the repository root; see README.md)
//
// Needs: the built package (`bash scripts/build-js.sh`), the emulator
// (`cargo build -p freshtoken-emulator`) and `npm install` in bench/.
// Nothing here prints a token.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, totalmem, platform, arch, release } from 'node:os';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { gzipSync } from 'node:zlib';

import { startEmulator, emulatorBinaryPath } from '../bindings/js/support/emulator.mjs';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(BENCH_DIR, '..');
const PKG = resolve(REPO, 'pkg');
const require = createRequire(import.meta.url);

// ---- knobs (sized to finish well under 2 minutes on 2 cores) ---------------
const CACHED = { warmup: 50_000, iterations: 100_000, rounds: 11 };
const CONCURRENT = { callers: 10_000, warmups: 5, reps: 31 };
const HEAP = { sessions: 100_000 };
const LEASES = { warmup: 300, iterations: 2_000, recordBytes: 1_500 };
const CONFIDENTIAL = { clientId: 'test-client', clientSecret: 'test-secret' }; // the emulator's default confidential client

const MiB = 1024 * 1024;
const KiB = 1024;

// ---- helpers ---------------------------------------------------------------
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const nowNs = () => process.hrtime.bigint();

// V8's `gc`, reached without the --expose-gc command-line flag (as
// bindings/js/support/wasm-memory.mjs does).
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
/**
 * A young-generation collection before a timed run of row 2: each run then
 * collects only its own garbage. Without it, a run paid for the garbage of
 * the run before it (10,000 promises, or 10,000 callers' arrays), and which
 * kind ran before which decided the ratio: 1.0–1.6x from process to
 * process, against 0.98–1.06x with it.
 */
const startClean = () => gc({ type: 'minor' });
const fmt = (x, digits) => x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);

function machineInfo(freshtokenVersion, galVersion) {
  const cpuList = cpus();
  return [
    ['date', new Date().toISOString()],
    ['node', `${process.version} (V8 ${process.versions.v8})`],
    ['platform', `${platform()} ${release()} ${arch()}`],
    ['CPUs', `${cpuList.length} × ${cpuList[0]?.model?.trim() ?? 'unknown'}`],
    ['memory', `${fmt(totalmem() / MiB / 1024, 1)} GiB`],
    ['freshtoken', `${freshtokenVersion} (pkg/lib/node.js, nodejs wasm-bindgen build)`],
    ['google-auth-library', galVersion],
  ];
}

// ---- 1. cached access token ------------------------------------------------
async function benchCached(emu, ft, OAuth2Client) {
  log('cached accessToken() vs google-auth-library getAccessToken() …');
  const seeded = await emu.seed({ clientId: CONFIDENTIAL.clientId });
  const requestsBefore = await emu.refreshRequests();

  const client = new ft.TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CONFIDENTIAL });
  const session = client.session('bench-cached', new ft.MemoryStore());
  await session.seed({ refreshToken: seeded.refresh_token, accessToken: seeded.access_token, expiresIn: 900 });

  const gal = new OAuth2Client({ clientId: CONFIDENTIAL.clientId, clientSecret: CONFIDENTIAL.clientSecret });
  gal.setCredentials({
    access_token: seeded.access_token,
    refresh_token: seeded.refresh_token,
    expiry_date: Date.now() + 10 * 365 * 24 * 3600 * 1000,
  });

  // Both must be served from their caches: same token, nothing sent.
  if ((await session.accessToken()) !== seeded.access_token) throw new Error('freshtoken did not serve the seeded access token');
  if ((await gal.getAccessToken()).token !== seeded.access_token) throw new Error('google-auth-library did not serve its cached token');

  const runFt = async (n) => {
    const t = nowNs();
    for (let i = 0; i < n; i++) await session.accessToken();
    return Number(nowNs() - t) / n;
  };
  const runGal = async (n) => {
    const t = nowNs();
    for (let i = 0; i < n; i++) await gal.getAccessToken();
    return Number(nowNs() - t) / n;
  };
  // The floor of any cached read that checks a clock: a settled promise of
  // the token behind one property read and one Date.now() comparison.
  const entry = { until: Date.now() + 3_600_000, promise: Promise.resolve(seeded.access_token) };
  const plainRead = () => (Date.now() < entry.until ? entry.promise : null);
  const runPlain = async (n) => {
    const t = nowNs();
    for (let i = 0; i < n; i++) await plainRead();
    return Number(nowNs() - t) / n;
  };
  await runFt(CACHED.warmup);
  await runGal(CACHED.warmup);
  await runPlain(CACHED.warmup);
  const ftNs = [];
  const galNs = [];
  const plainNs = [];
  for (let r = 0; r < CACHED.rounds; r++) {
    // Interleaved, alternating which goes first.
    if (r % 2 === 0) {
      ftNs.push(await runFt(CACHED.iterations));
      galNs.push(await runGal(CACHED.iterations));
    } else {
      galNs.push(await runGal(CACHED.iterations));
      ftNs.push(await runFt(CACHED.iterations));
    }
    plainNs.push(await runPlain(CACHED.iterations));
  }
  const sent = (await emu.refreshRequests()) - requestsBefore;
  session.free();
  client.free();
  return { ft: median(ftNs), gal: median(galNs), plain: median(plainNs), ftNs, galNs, plainNs, sent };
}

// ---- 2. 10,000 concurrent callers at expiry --------------------------------
async function benchConcurrent(emu, ft) {
  log(`${fmt(CONCURRENT.callers, 0)} concurrent callers at expiry vs one raw fetch …`);
  const client = new ft.TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CONFIDENTIAL });
  let rep = 0;

  /** The refresh request freshtoken sends (client_secret_post), by hand. */
  async function postRefresh(refreshToken) {
    const body = new URLSearchParams({
      grant_type: 'refresh_token',
      client_id: CONFIDENTIAL.clientId,
      client_secret: CONFIDENTIAL.clientSecret,
      refresh_token: refreshToken,
    }).toString();
    const res = await fetch(emu.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body,
    });
    const json = await res.json();
    if (res.status !== 200 || typeof json.access_token !== 'string') throw new Error(`raw refresh answered HTTP ${res.status}`);
    return json;
  }

  async function rawFetch() {
    const seeded = await emu.seed({ clientId: CONFIDENTIAL.clientId });
    const before = await emu.refreshRequests();
    startClean();
    const t = performance.now();
    await postRefresh(seeded.refresh_token);
    const ms = performance.now() - t;
    return { ms, posts: (await emu.refreshRequests()) - before };
  }

  /** The floor for a JS single flight: N async callers sharing one promise of the raw POST (no store, no rotation bookkeeping). */
  async function jsSingleFlight(callers) {
    const seeded = await emu.seed({ clientId: CONFIDENTIAL.clientId });
    const before = await emu.refreshRequests();
    let cached = null;
    let inflight = null;
    async function accessToken() {
      if (cached) return cached;
      inflight ??= postRefresh(seeded.refresh_token).then((json) => { cached = json.access_token; inflight = null; return cached; });
      return inflight;
    }
    startClean();
    const t = performance.now();
    const tokens = await Promise.all(Array.from({ length: callers }, () => accessToken()));
    const ms = performance.now() - t;
    if (!tokens.every((x) => x === tokens[0])) throw new Error('JS single flight handed out different tokens');
    return { ms, posts: (await emu.refreshRequests()) - before };
  }

  async function freshtokenCallers(callers) {
    const seeded = await emu.seed({ clientId: CONFIDENTIAL.clientId });
    const store = new ft.MemoryStore();
    const key = `bench-expiry-${rep++}`;
    const session = client.session(key, store);
    await session.seed({ refreshToken: seeded.refresh_token }); // no access token: the first use refreshes
    const before = await emu.refreshRequests();
    startClean();
    const t = performance.now();
    const tokens = await Promise.all(Array.from({ length: callers }, () => session.accessToken()));
    const ms = performance.now() - t;
    const posts = (await emu.refreshRequests()) - before;
    const first = tokens[0];
    const allSame = tokens.every((x) => x === first);
    const record = JSON.parse(store.get(key) ?? '{}');
    const rotated = typeof record.refresh_token === 'string' && record.refresh_token !== seeded.refresh_token
      && (await emu.refreshTokenState(seeded.refresh_token)) === 'consumed';
    session.free();
    return { ms, posts, allSame, rotated };
  }

  for (let i = 0; i < CONCURRENT.warmups; i++) {
    await rawFetch();
    await freshtokenCallers(CONCURRENT.callers);
    await freshtokenCallers(1);
    await jsSingleFlight(CONCURRENT.callers);
  }
  const raw = [];
  const many = [];
  const one = [];
  const js = [];
  for (let r = 0; r < CONCURRENT.reps; r++) {
    const order = r % 2 === 0 ? ['raw', 'many', 'one', 'js'] : ['many', 'js', 'one', 'raw'];
    for (const what of order) {
      if (what === 'raw') raw.push(await rawFetch());
      else if (what === 'many') many.push(await freshtokenCallers(CONCURRENT.callers));
      else if (what === 'js') js.push(await jsSingleFlight(CONCURRENT.callers));
      else one.push(await freshtokenCallers(1));
    }
  }
  client.free();
  return {
    rawMs: median(raw.map((x) => x.ms)),
    manyMs: median(many.map((x) => x.ms)),
    oneMs: median(one.map((x) => x.ms)),
    jsMs: median(js.map((x) => x.ms)),
    jsPosts: js.map((x) => x.posts),
    rawAll: raw.map((x) => x.ms),
    manyAll: many.map((x) => x.ms),
    jsAll: js.map((x) => x.ms),
    onePosts: one.map((x) => x.posts),
    manyPosts: many.map((x) => x.posts),
    rawPosts: raw.map((x) => x.posts),
    allSame: many.every((x) => x.allSame) && one.every((x) => x.allSame),
    rotated: many.every((x) => x.rotated) && one.every((x) => x.rotated),
  };
}

// ---- 3. heap for 100,000 sessions ------------------------------------------
function heapChild(mode, count, rtLen, atLen) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', resolve(BENCH_DIR, 'heap-child.mjs'), mode, String(count), String(rtLen), String(atLen)], {
      cwd: BENCH_DIR,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c) => { out += c; });
    child.stderr.setEncoding('utf8').on('data', (c) => { err = (err + c).slice(-4000); });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`heap-child ${mode} exited ${code}: ${err.trim()}`));
      try {
        resolvePromise(JSON.parse(out.trim().split('\n').pop()));
      } catch (e) {
        reject(new Error(`heap-child ${mode} printed no JSON: ${e.message}`));
      }
    });
  });
}

async function benchHeap(emu) {
  log(`heap for ${fmt(HEAP.sessions, 0)} sessions (3 child processes) …`);
  // Token shapes as the emulator issues them.
  const sample = await emu.seed({ clientId: CONFIDENTIAL.clientId });
  const rtLen = sample.refresh_token.length;
  const atLen = sample.access_token.length;
  const plain = await heapChild('plain', HEAP.sessions, rtLen, atLen);
  const dropped = await heapChild('freshtoken', HEAP.sessions, rtLen, atLen);
  const held = await heapChild('freshtoken-held', HEAP.sessions, rtLen, atLen);
  return { plain, dropped, held, rtLen, atLen };
}

// ---- 4. package size -------------------------------------------------------
/** Files an entry loads: relative import/require/URL specifiers, followed; a wasm-bindgen glue brings its .wasm. */
function entryFileTree(entry) {
  const seen = new Set();
  const queue = [entry];
  while (queue.length) {
    const file = queue.shift();
    if (seen.has(file)) continue;
    seen.add(file);
    if (!file.endsWith('.js')) continue;
    const text = readFileSync(file, 'utf8');
    // `from '…'`, `import '…'`, `import('…')`, `new URL('…', import.meta.url)`, and
    // any call of a relative path: `require('…')`, which the minifier may rename
    // (`require2('…')` in an ES module).
    const specifiers = /(?:\bfrom\s*|\bimport\s*\(?\s*|[\w$]+\s*\(\s*|\bnew URL\s*\(\s*)['"](\.\.?\/[^'"]+\.(?:js|mjs|wasm))['"]/g;
    for (const m of text.matchAll(specifiers)) queue.push(resolve(dirname(file), m[1]));
    if (/\/dist\/[^/]+\/freshtoken\.js$/.test(file)) queue.push(resolve(dirname(file), 'freshtoken_bg.wasm'));
  }
  return [...seen].sort();
}

const gz9 = (file) => gzipSync(readFileSync(file), { level: 9 }).length;

function sizeOf(files) {
  return files.reduce((acc, f) => {
    const raw = readFileSync(f).length;
    return { raw: acc.raw + raw, gz: acc.gz + gz9(f) };
  }, { raw: 0, gz: 0 });
}

/** The CommonJS files `require('google-auth-library')` loads, from a clean child process. */
function galLoadedFiles() {
  return new Promise((resolvePromise, reject) => {
    const script = "require('google-auth-library'); process.stdout.write(JSON.stringify(Object.keys(require.cache)));";
    const child = spawn(process.execPath, ['-e', script], { cwd: BENCH_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c) => { out += c; });
    child.stderr.setEncoding('utf8').on('data', (c) => { err += c; });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`loading google-auth-library failed: ${err.trim()}`));
      resolvePromise(JSON.parse(out).filter((f) => f.includes('/node_modules/')).sort());
    });
  });
}

/**
 * The cached path across the uniffi FFI, from Kotlin and Python: each
 * binding's own bench script prints one JSON line {name, ns_per_call}.
 * A binding whose tools are missing is reported as not measured.
 */
function benchFfi() {
  const run = (script) => {
    const out = spawnSync('bash', [script], { cwd: REPO, encoding: 'utf8', maxBuffer: 1 << 24 });
    const line = (out.stdout ?? '').trim().split('\n').reverse().find((l) => l.startsWith('{'));
    if (out.status !== 0 || !line) return { error: (out.stderr ?? '').trim().split('\n').slice(-3).join(' | ') };
    return JSON.parse(line);
  };
  return { kotlin: run('scripts/bench-kotlin.sh'), python: run('scripts/bench-python.sh') };
}

/** The file pkg/package.json's `exports[subpath][condition]` names, or null. */
function exported(subpath, condition) {
  const target = JSON.parse(readFileSync(resolve(PKG, 'package.json'), 'utf8')).exports?.[subpath]?.[condition];
  return target ? resolve(PKG, target) : null;
}

async function benchSize() {
  log('package size …');
  // The files the package's exports name, as an installed package loads them.
  const nodeFiles = entryFileTree(exported('.', 'node'));
  const webFiles = entryFileTree(exported('.', 'browser'));
  // The 'freshtoken/jwt' entry may be gone (one entry does everything) or an alias.
  const tree = (file) => (file && existsSync(file) ? entryFileTree(file) : null);
  const nodeJwtFiles = tree(exported('./jwt', 'node'));
  const webJwtFiles = tree(exported('./jwt', 'browser'));
  const galFiles = await galLoadedFiles();
  const galRoot = dirname(require.resolve('google-auth-library/package.json'));
  const galOwn = galFiles.filter((f) => f.startsWith(`${galRoot}/`));
  return {
    node: { files: nodeFiles, ...sizeOf(nodeFiles) },
    web: { files: webFiles, ...sizeOf(webFiles) },
    nodeJwt: nodeJwtFiles && { files: nodeJwtFiles, ...sizeOf(nodeJwtFiles) },
    webJwt: webJwtFiles && { files: webJwtFiles, ...sizeOf(webJwtFiles) },
    gal: { files: galFiles, ...sizeOf(galFiles) },
    galOwn: { files: galOwn, ...sizeOf(galOwn) },
  };
}

// ---- 5. fleet lease round trips (Redis, PostgreSQL) -------------------------
/** The q-quantile (0..1) of `xs` (nearest rank). */
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};

/**
 * Interleaved timings (µs) of `lease` and `anchor`, alternating which goes
 * first, after a warm-up; p50 and p99 of each.
 */
async function timeLeaseAgainst(lease, anchor) {
  for (let i = 0; i < LEASES.warmup; i++) {
    await lease();
    await anchor();
  }
  const leaseUs = [];
  const anchorUs = [];
  const once = async (fn, into) => {
    const t = nowNs();
    await fn();
    into.push(Number(nowNs() - t) / 1000);
  };
  for (let i = 0; i < LEASES.iterations; i++) {
    if (i % 2 === 0) {
      await once(lease, leaseUs);
      await once(anchor, anchorUs);
    } else {
      await once(anchor, anchorUs);
      await once(lease, leaseUs);
    }
  }
  const stats = (xs) => ({ p50: quantile(xs, 0.5), p99: quantile(xs, 0.99), mean: xs.reduce((a, b) => a + b, 0) / xs.length });
  return { lease: stats(leaseUs), anchor: stats(anchorUs), n: LEASES.iterations };
}

/**
 * What a refresh under a fleet lease adds: `acquire` + `release` through the
 * package's RedisStore and PostgresStore on private loopback servers that
 * this bench starts and stops (bindings/js/support/servers.mjs), anchored on
 * a plain read from the same server in the same run. Each server is reported
 * as not measured when it (or its npm client in bindings/js) is missing.
 */
async function benchLeases() {
  log('fleet lease round trips on loopback (Redis, PostgreSQL) …');
  let servers;
  try {
    servers = await import('../bindings/js/support/servers.mjs');
  } catch (err) {
    const error = `bindings/js/support/servers.mjs did not load (${err.message})`;
    return { redis: { error }, postgres: { error } };
  }
  const installed = servers.serversInstalled();
  // The npm clients are the JS tests' devDependencies (bindings/js), not the bench's.
  const jsRequire = createRequire(resolve(REPO, 'bindings/js/package.json'));
  const lib = (name) => {
    try {
      return jsRequire(name);
    } catch {
      throw new Error(`npm ${name} not installed in bindings/js (run npm install there)`);
    }
  };
  const record = 'r'.repeat(LEASES.recordBytes); // about a stored record's size
  const owner = 'bench-owner';
  const result = {};

  result.redis = installed.redis ? await (async () => {
    const { createClient } = lib('redis');
    const { RedisStore } = await import('../pkg/lib/redis-store.js');
    const server = await servers.startRedis();
    try {
      const client = createClient({ url: server.url });
      client.on('error', () => {});
      await client.connect();
      try {
        const store = new RedisStore(client);
        await store.save('bench', record);
        await client.sendCommand(['SET', 'bench-plain', record]);
        const timed = await timeLeaseAgainst(
          async () => {
            if (!(await store.acquire('bench', owner, 60_000))) throw new Error('lease not taken');
            await store.release('bench', owner);
          },
          () => client.sendCommand(['GET', 'bench-plain']),
        );
        return { ...timed, version: server.version };
      } finally {
        await client.quit().catch(() => {});
      }
    } finally {
      await server.stop();
    }
  })().catch((err) => ({ error: err.message })) : { error: 'redis-server is not installed (scripts/setup-servers.sh installs it)' };

  result.postgres = installed.postgres ? await (async () => {
    const pg = lib('pg');
    const { PostgresStore } = await import('../pkg/lib/postgres-store.js');
    const server = await servers.startPostgres();
    try {
      // One connection: the lease and the anchor pay the same pool checkout.
      const pool = new pg.Pool({ ...server.connection, max: 1 });
      pool.on('error', () => {});
      try {
        const store = new PostgresStore(pool);
        await store.migrate();
        await store.save('bench', record);
        const settings = (await pool.query("SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sc")).rows[0];
        const timed = await timeLeaseAgainst(
          async () => {
            if (!(await store.acquire('bench', owner, 60_000))) throw new Error('lease not taken');
            await store.release('bench', owner);
          },
          () => store.load('bench'),
        );
        return { ...timed, version: server.version, settings: `fsync ${settings.fsync}, synchronous_commit ${settings.sc}` };
      } finally {
        await pool.end().catch(() => {});
      }
    } finally {
      await server.stop();
    }
  })().catch((err) => ({ error: err.message })) : { error: 'PostgreSQL is not installed (scripts/setup-servers.sh installs it)' };
  return result;
}

// ---- the table -------------------------------------------------------------
function buildRows(r) {
  const rows = [];
  const row = (o) => rows.push(o);
  const ratio = (a, b) => a / b;

  const c = r.cached;
  row({
    measure: 'cached `await session.accessToken()`',
    measured: `${fmt(c.ft, 0)} ns/call`,
    anchor: 'google-auth-library `OAuth2Client#getAccessToken()`, cached, same process',
    anchorValue: `${fmt(c.gal, 0)} ns/call`,
    ratio: ratio(c.ft, c.gal),
    goal: '≤ 0.60×',
    met: c.sent === 0 && ratio(c.ft, c.gal) <= 0.6,
  });

  const k = r.concurrent;
  const exactlyOne = k.manyPosts.every((p) => p === 1);
  row({
    measure: `${fmt(CONCURRENT.callers, 0)} concurrent \`accessToken()\` at expiry (wall time of \`Promise.all\`); POSTs per run: ${[...new Set(k.manyPosts)].join('/')} (${k.manyPosts.length} runs)`,
    measured: `${fmt(k.manyMs, 2)} ms`,
    anchor: `${fmt(CONCURRENT.callers, 0)} callers of a hand-written JS single flight (async fn + one shared promise of the same raw \`fetch\` POST + \`res.json()\`; no store, no rotation), same run`,
    anchorValue: `${fmt(k.jsMs, 2)} ms`,
    ratio: ratio(k.manyMs, k.jsMs),
    goal: '≤ 1.20× and exactly 1 POST',
    met: exactlyOne && k.allSame && k.rotated && ratio(k.manyMs, k.jsMs) <= 1.2,
  });
  row({
    measure: '(diagnostic) 1 `accessToken()` at expiry, same path',
    measured: `${fmt(k.oneMs, 2)} ms`,
    anchor: 'the same raw `fetch` POST',
    anchorValue: `${fmt(k.rawMs, 2)} ms`,
    ratio: ratio(k.oneMs, k.rawMs),
    goal: '— (explains the 10,000-caller row)',
    met: null,
  });
  row({
    measure: `(diagnostic) ${fmt(CONCURRENT.callers, 0)} callers of a hand-written JS single flight (async fn + one shared promise of the same raw POST; no store, no rotation)`,
    measured: `${fmt(k.jsMs, 2)} ms`,
    anchor: 'the same raw `fetch` POST',
    anchorValue: `${fmt(k.rawMs, 2)} ms`,
    ratio: ratio(k.jsMs, k.rawMs),
    goal: '— (the anchor of the 10,000-caller row)',
    met: null,
  });

  const h = r.heap;
  for (const [label, m, goalMb] of [
    ['handles dropped after use (one handle per request, DESIGN 11)', h.dropped, 48],
    ['all 100,000 `UserSession` handles kept alive', h.held, null],
  ]) {
    row({
      measure: `heap for ${fmt(HEAP.sessions, 0)} sessions (refresh + access token, MemoryStore, read once): ${label}; heapUsed + external (wasm memory) over a gc'd baseline`,
      measured: `${fmt(m.total / MiB, 1)} MB`,
      anchor: `${fmt(HEAP.sessions, 0)} plain JS objects holding the same three strings (key, refresh token, access token)`,
      anchorValue: `${fmt(h.plain.total / MiB, 1)} MB`,
      ratio: ratio(m.total, h.plain.total),
      goal: goalMb === null ? '— (diagnostic)' : `≤ ${goalMb} MB`,
      met: goalMb === null ? null : m.total <= goalMb * MiB && m.sessionCount === HEAP.sessions,
    });
  }

  const s = r.size;
  for (const [label, m] of [['Node build (`lib/node.js` entry)', s.node], ['web build (`lib/web.js` entry)', s.web]]) {
    row({
      measure: `package size, gzip -9: ${label} — ${m.files.length} files`,
      measured: `${fmt(m.gz / KiB, 1)} KB`,
      anchor: `google-auth-library ${r.galVersion}: the ${s.gal.files.length} JS files \`require('google-auth-library')\` loads (own + dependencies), gzip -9 each`,
      anchorValue: `${fmt(s.gal.gz / KiB, 1)} KB`,
      ratio: ratio(m.gz, s.gal.gz),
      goal: '≤ 64 KB (stretch: 40 KB)',
      met: m.gz <= 64 * KiB,
    });
  }
  for (const [label, m, lean] of [
    ["'freshtoken/jwt' Node build (`lib/node-jwt.js`, private_key_jwt)", s.nodeJwt, s.node],
    ["'freshtoken/jwt' web build (`lib/web-jwt.js`, private_key_jwt)", s.webJwt, s.web],
  ].filter(([, m]) => m !== null)) {
    row({
      measure: `package size, gzip -9: ${label} — what RSA signing adds`,
      measured: `${fmt(m.gz / KiB, 1)} KB`,
      anchor: 'the lean build of the same entry (no private_key_jwt), same run',
      anchorValue: `${fmt(lean.gz / KiB, 1)} KB`,
      ratio: ratio(m.gz, lean.gz),
      goal: '— (the lean path stays lean)',
      met: null,
    });
  }

  for (const [name, anchor, m] of [
    ['Redis', 'a plain `GET` of a string of the same size', r.leases.redis],
    ['PostgreSQL', 'a plain `SELECT record … WHERE key = $1` (`store.load`)', r.leases.postgres],
  ]) {
    if (m.error) {
      row({
        measure: `fleet lease round trip (\`acquire\` + \`release\`) on loopback, ${name} — not measured: ${m.error}`,
        measured: '—',
        anchor: `${anchor} on the same server, same run`,
        anchorValue: '—',
        ratio: NaN,
        goal: '— (what a refresh under a lease adds)',
        met: null,
      });
      continue;
    }
    for (const q of ['p50', 'p99']) {
      row({
        measure: `fleet lease round trip (\`acquire\` + \`release\`, ${name === 'Redis' ? 'RedisStore' : 'PostgresStore'}) on loopback, ${name} ${m.version}: ${q} of ${fmt(m.n, 0)}`,
        measured: `${fmt(m.lease[q], 0)} µs`,
        anchor: `${anchor} on the same server, same run, ${q}`,
        anchorValue: `${fmt(m.anchor[q], 0)} µs`,
        ratio: ratio(m.lease[q], m.anchor[q]),
        goal: '— (what a refresh under a lease adds)',
        met: null,
      });
    }
  }

  // Issue 13: the per-request cached read, each binding's mirror, against a
  // plain function returning the same string from a HashMap / dict in the
  // same language and run (each bench script measures both and prints the ratio).
  for (const [label, m, anchor, ratioOf, goal] of [
    ['Kotlin: cached `client.session(key, store).accessToken()` (mirror, no FFI), release library', r.ffi.kotlin,
      'a plain Kotlin function returning the string from a `HashMap`, same JVM run', (k) => [k.hashmap_ns_per_call, k.ratio_vs_hashmap], 2],
    ['Python: cached `client.session(key, store).access_token()` (sync client, mirror, no FFI), release library', r.ffi.python,
      'a plain Python function returning the string from a `dict`, same run (CPU-time ratio, median of rounds)', (p) => [p.anchor_ns_per_call, p.ratio], 3],
  ]) {
    const [anchorNs, measuredRatio] = m.error ? [NaN, NaN] : ratioOf(m);
    row({
      measure: m.error ? `${label} — not measured: ${m.error}` : label,
      measured: m.error ? '—' : `${fmt(m.ns_per_call, 1)} ns/call`,
      anchor,
      anchorValue: m.error ? '—' : `${fmt(anchorNs, 1)} ns/call`,
      ratio: measuredRatio,
      goal: `≤ ${goal}.00×`,
      met: m.error ? false : measuredRatio <= goal,
    });
  }
  const kt = r.ffi.kotlin;
  if (!kt.error && kt.suspending_hashmap_ns_per_call) {
    row({
      measure: '(diagnostic) Kotlin: the suspend cached read above, against an anchor in the same shape',
      measured: `${fmt(kt.ns_per_call, 1)} ns/call`,
      anchor: 'the same plain `HashMap` function in a loop that also holds a suspension point, never taken (what any suspend call adds to its caller\'s loop), same JVM run',
      anchorValue: `${fmt(kt.suspending_hashmap_ns_per_call, 1)} ns/call`,
      ratio: kt.ratio_vs_suspending_hashmap,
      goal: '— (the library\'s own share)',
      met: null,
    });
  }
  if (!kt.error && kt.blocking_ns_per_call) {
    row({
      measure: '(diagnostic) Kotlin: the same cached read through `accessTokenBlocking()` (Java, thread-per-request), in a plain loop',
      measured: `${fmt(kt.blocking_ns_per_call, 1)} ns/call`,
      anchor: 'the same plain `HashMap` function, same JVM run',
      anchorValue: `${fmt(kt.hashmap_ns_per_call, 1)} ns/call`,
      ratio: kt.blocking_ratio_vs_hashmap,
      goal: '— (what the suspend loop adds: its suspension point)',
      met: null,
    });
  }
  for (const [label, m] of [['Kotlin', r.ffi.kotlin], ['Python', r.ffi.python]]) {
    if (m.error || !m.ffi_call_ns) continue;
    row({
      measure: `(diagnostic) ${label}: one non-cached FFI call (${label === 'Kotlin' ? '`sessionCount()`, JNA, call status reused' : '`cached_token()`, ctypes'})`,
      measured: `${fmt(m.ffi_call_ns, 0)} ns/call`,
      anchor: `the cached read above`,
      anchorValue: `${fmt(m.ns_per_call, 1)} ns/call`,
      ratio: ratio(m.ffi_call_ns, m.ns_per_call),
      goal: '— (what a miss costs)',
      met: null,
    });
  }
  return rows;
}

const metText = (m) => (m === null ? 'n/a' : m ? 'met' : 'NOT MET');

function printTable(rows) {
  const plainCell = (s) => s.replace(/`/g, '');
  const headers = ['#', 'measure', 'measured', 'anchor', 'anchor value', 'ratio', 'goal', 'met?'];
  const cells = rows.map((x, i) => [
    String(i + 1), plainCell(x.measure), x.measured, plainCell(x.anchor), x.anchorValue, `${fmt(x.ratio, 2)}×`, x.goal, metText(x.met),
  ]);
  // Long text columns wrap; number columns stay on one line.
  const widths = [2, 46, 13, 46, 13, 8, 26, 7];
  const wrap = (text, w) => {
    const out = [];
    let line = '';
    for (const word of text.split(' ')) {
      if (line && (line.length + 1 + word.length) > w) { out.push(line); line = word; } else line = line ? `${line} ${word}` : word;
    }
    if (line) out.push(line);
    return out.length ? out : [''];
  };
  const sep = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
  const render = (row) => {
    const wrapped = row.map((c, i) => wrap(c, widths[i]));
    const height = Math.max(...wrapped.map((w) => w.length));
    const lines = [];
    for (let l = 0; l < height; l++) {
      lines.push(`| ${wrapped.map((w, i) => (w[l] ?? '').padEnd(widths[i])).join(' | ')} |`);
    }
    return lines.join('\n');
  };
  console.log(sep);
  console.log(render(headers));
  console.log(sep.replace(/-/g, '='));
  for (const c of cells) {
    console.log(render(c));
    console.log(sep);
  }
}

function markdown(info, rows, r, elapsedS) {
  const esc = (s) => s.replace(/\|/g, '\\|');
  const lines = [];
  lines.push('# freshtoken benchmarks — results');
  lines.push('');
  lines.push('Written by `node bench/run.mjs` (see `bench/README.md`); every ratio below was measured in that one run. Goals are targets, not tests.');
  lines.push('');
  for (const [k, v] of info) lines.push(`- **${k}**: ${v}`);
  lines.push(`- **run time**: ${fmt(elapsedS, 1)} s`);
  lines.push('');
  lines.push('| # | measure | measured | anchor | anchor value | ratio | goal | met? |');
  lines.push('| ---: | --- | ---: | --- | ---: | ---: | --- | --- |');
  rows.forEach((x, i) => {
    lines.push(`| ${i + 1} | ${esc(x.measure)} | ${x.measured} | ${esc(x.anchor)} | ${x.anchorValue} | ${fmt(x.ratio, 2)}× | ${esc(x.goal)} | ${metText(x.met)} |`);
  });
  lines.push('');
  lines.push('Where the wasm bytes go (twiggy, measured by hand): `bench/wasm-size.md`.');
  lines.push('');
  lines.push('## How each row was measured');
  lines.push('');
  const c = r.cached;
  lines.push(`1. **Cached token.** One session seeded with the emulator's refresh + access token and \`expiresIn: 900\`; one \`OAuth2Client({clientId, clientSecret})\` with \`setCredentials({access_token, refresh_token, expiry_date: +10 years})\`. Both first checked to return the seeded token. ${fmt(CACHED.warmup, 0)} warm-up calls each, then ${CACHED.rounds} interleaved rounds of ${fmt(CACHED.iterations, 0)} sequential awaited calls each (alternating which goes first); the median round is shown. Token requests sent during the row: ${c.sent}. Per-round ratios: ${c.ftNs.map((x, i) => fmt(x / c.galNs[i], 2)).join(', ')} (median ${fmt(median(c.ftNs.map((x, i) => x / c.galNs[i])), 2)}×). Rounds (ns/call) — freshtoken: ${c.ftNs.map((x) => fmt(x, 0)).join(', ')}; google-auth-library: ${c.galNs.map((x) => fmt(x, 0)).join(', ')}. The floor of any cached read that checks a clock — a settled promise behind one property read and one \`Date.now()\` comparison, in the same rounds: ${fmt(c.plain, 0)} ns/call, ${fmt(c.plain / c.gal, 2)}× google-auth-library; freshtoken is ${fmt(c.ft / c.plain, 2)}× that floor (rounds: ${c.plainNs.map((x) => fmt(x, 0)).join(', ')}).`);
  const k = r.concurrent;
  lines.push(`2. **${fmt(CONCURRENT.callers, 0)} callers at expiry.** Per run: a freshly seeded refresh token, a new session (MemoryStore) seeded with it and no access token, then the wall time of \`Promise.all\` over ${fmt(CONCURRENT.callers, 0)} \`accessToken()\` calls (store read, one refresh POST, save, fan-out). Its anchor is the same number of callers of a hand-written JS single flight (one shared promise of the raw POST below). The diagnostic anchor is a raw \`fetch\` POST of the same \`grant_type=refresh_token\` form (\`client_secret_post\`) to the same emulator endpoint, with a freshly seeded token each time, including \`res.json()\`. ${CONCURRENT.warmups} warm-up runs each, then ${CONCURRENT.reps} interleaved runs each, every timed run after a young-generation collection (so that it collects only its own garbage, not the run's before it); medians shown. POSTs counted at the emulator — ${fmt(CONCURRENT.callers, 0)} callers: ${k.manyPosts.join(', ')}; 1 caller: ${k.onePosts.join(', ')}; raw: ${k.rawPosts.join(', ')}; JS single flight: ${k.jsPosts.join(', ')}. All callers got the same token: ${k.allSame}; the store holds the rotated refresh token and the old one is \`consumed\`: ${k.rotated}. Runs (ms) — ${fmt(CONCURRENT.callers, 0)} callers: ${k.manyAll.map((x) => fmt(x, 2)).join(', ')}; JS single flight: ${k.jsAll.map((x) => fmt(x, 2)).join(', ')}; raw fetch: ${k.rawAll.map((x) => fmt(x, 2)).join(', ')}.`);
  const h = r.heap;
  const hb = (m) => `heapUsed +${fmt(m.heapUsed / MiB, 1)} MB, external +${fmt(m.external / MiB, 1)} MB, rss +${fmt(m.rss / MiB, 1)} MB${m.sessionCount !== null ? `, \`client.sessionCount\` ${fmt(m.sessionCount, 0)}` : ''}${m.storeRecordChars ? `, MemoryStore record text ${fmt(m.storeRecordChars / MiB, 1)} M chars` : ''}, ${fmt(m.elapsedMs / 1000, 1)} s to create`;
  lines.push(`3. **Heap.** Each figure comes from its own \`node --expose-gc bench/heap-child.mjs\` process: baseline after import, warm-up and gc; then ${fmt(HEAP.sessions, 0)} sessions (one \`TokenClient\` with default options, one shared \`MemoryStore\`, which is the core's own store: each session's record object is shared with it, not copied as text), each \`seed({refreshToken, accessToken, expiresIn: 900})\` with random base64url tokens of the emulator's lengths (${h.rtLen} and ${h.atLen} chars) and \`accessToken()\` once; then gc (letting wasm-bindgen's FinalizationRegistry run) and \`process.memoryUsage()\`. Measured = Δ\`heapUsed\` + Δ\`external\` (in Node \`external\` includes the wasm linear memory; \`arrayBuffers\` does not). MB = 2^20 bytes. Breakdown — handles dropped: ${hb(h.dropped)}. Handles kept: ${hb(h.held)}. Plain objects: ${hb(h.plain)}.`);
  const s = r.size;
  const list = (m) => m.files.map((f) => `\`${relative(REPO, f)}\` ${fmt(gz9(f) / KiB, 1)} KB`).join(', ');
  lines.push(`4. **Package size.** Every file the entry point that \`package.json\`'s \`exports\` names loads (relative imports followed; the JavaScript as shipped, minified by \`scripts/minify-js.mjs\`; the wasm-bindgen glue brings its \`.wasm\`), each compressed with zlib gzip level 9 (as \`gzip -9\`), summed — what a server sending each file gzipped would transfer. Node build: ${fmt(s.node.gz / KiB, 1)} KB gzipped (${fmt(s.node.raw / KiB, 1)} KB raw): ${list(s.node)}. Web build: ${fmt(s.web.gz / KiB, 1)} KB gzipped (${fmt(s.web.raw / KiB, 1)} KB raw): ${list(s.web)}. Anchor: the CommonJS files in \`require.cache\` after \`require('google-auth-library')\` in a clean process — ${s.gal.files.length} files, ${fmt(s.gal.gz / KiB, 1)} KB gzipped (${fmt(s.gal.raw / KiB, 1)} KB raw); of them google-auth-library's own: ${s.galOwn.files.length} files, ${fmt(s.galOwn.gz / KiB, 1)} KB gzipped. The anchor is informational (what a common OAuth client costs); the goal is the absolute 64 KB, 40 KB beyond it (KB = 1024 bytes).`);
  lines.push(`5. **Cached reads in Kotlin and Python.** \`scripts/bench-kotlin.sh\` and \`scripts/bench-python.sh\` build the release uniffi library (\`scripts/build-ffi.sh --release\`) and time the per-request pattern \`client.session(key, store).accessToken()\` / \`.access_token()\` (served by the language-side mirror, no FFI call) against a plain function returning the same string from a \`HashMap\` / \`dict\`, interleaved rounds after warm-up, medians. Kotlin: ${r.ffi.kotlin.error ?? JSON.stringify(r.ffi.kotlin)}; Python: ${r.ffi.python.error ?? JSON.stringify(r.ffi.python)}.`);
  const lz = r.leases;
  const leaseText = (name, m) => (m.error ? `${name}: not measured (${m.error}).`
    : `${name} ${m.version}${m.settings ? ` (${m.settings}: each acquire and release commits)` : ''}: lease p50 ${fmt(m.lease.p50, 0)} µs, p99 ${fmt(m.lease.p99, 0)} µs, mean ${fmt(m.lease.mean, 0)} µs; anchor p50 ${fmt(m.anchor.p50, 0)} µs, p99 ${fmt(m.anchor.p99, 0)} µs, mean ${fmt(m.anchor.mean, 0)} µs.`);
  lines.push(`6. **Fleet leases.** The bench starts a private \`redis-server\` and a private PostgreSQL cluster on free loopback ports (\`bindings/js/support/servers.mjs\`; stopped and removed afterwards) and times, through the package's own stores, one lease round trip = \`acquire(key, owner, 60 s)\` (Redis: \`SET NX PX\`; PostgreSQL: the lease upsert) followed by \`release\` (a compare-owner Lua script; a \`DELETE … WHERE owner\`) — what the core adds around every refresh in a fleet — against one plain read of the same server (Redis \`GET\` of a ${fmt(LEASES.recordBytes, 0)}-byte string; PostgreSQL \`SELECT\` of a ${fmt(LEASES.recordBytes, 0)}-byte record by primary key, one pooled connection for both). ${LEASES.warmup} warm-up pairs, then ${fmt(LEASES.iterations, 0)} interleaved pairs (alternating which goes first); nearest-rank p50 and p99 of each. A lease round trip is two round trips to the server, so about 2× a read is its floor. ${leaseText('Redis', lz.redis)} ${leaseText('PostgreSQL', lz.postgres)}`);
  lines.push('');
  return `${lines.join('\n')}\n`;
}

// ---- main ------------------------------------------------------------------
async function main() {
  const t0 = performance.now();
  const pkgVersion = JSON.parse(readFileSync(resolve(PKG, 'package.json'), 'utf8')).version;
  let galVersion;
  let OAuth2Client;
  try {
    galVersion = require('google-auth-library/package.json').version;
    ({ OAuth2Client } = require('google-auth-library'));
  } catch {
    console.error('google-auth-library is not installed: run `cd bench && npm install --no-audit --no-fund`');
    process.exit(2);
  }
  let ft;
  try {
    ft = await import('../pkg/lib/node.js');
  } catch (err) {
    console.error(`cannot load ../pkg/lib/node.js (build it with \`bash scripts/build-js.sh\`): ${err.message}`);
    process.exit(2);
  }

  const info = machineInfo(pkgVersion, galVersion);
  let emu;
  try {
    emu = await startEmulator();
  } catch (err) {
    console.error(`${err.message}\n(emulator path: ${emulatorBinaryPath()})`);
    process.exit(2);
  }

  const results = { galVersion };
  try {
    results.cached = await benchCached(emu, ft, OAuth2Client);
    results.concurrent = await benchConcurrent(emu, ft);
    results.heap = await benchHeap(emu);
    results.size = await benchSize();
    results.leases = await benchLeases();
    results.ffi = benchFfi();
  } finally {
    await emu.stop();
  }
  const elapsedS = (performance.now() - t0) / 1000;

  const rows = buildRows(results);
  console.log('freshtoken benchmarks (ratios measured in this run; goals are targets, not tests)');
  for (const [k, v] of info) console.log(`  ${k.padEnd(20)} ${v}`);
  console.log(`  ${'run time'.padEnd(20)} ${fmt(elapsedS, 1)} s`);
  console.log('');
  printTable(rows);
  const mdPath = resolve(BENCH_DIR, 'results.md');
  writeFileSync(mdPath, markdown(info, rows, results, elapsedS));
  console.log(`\nDetails and per-round numbers: ${relative(process.cwd(), mdPath) || mdPath}`);
}

main().catch((err) => {
  console.error(`bench failed: ${err?.stack ?? err}`);
  process.exitCode = 1;
});
