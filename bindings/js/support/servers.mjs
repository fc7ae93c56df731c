// Private Redis and PostgreSQL servers for the fleet tests and the lease
// bench: each on a free loopback port, with its files in a new temporary
// directory, started here and stopped (and its directory removed) by
// `stop()` — also when starting fails half-way, and, best effort, when the
// process exits without stopping them.
//
// Needs Debian's `redis-server` and `postgresql` packages
// (scripts/setup-servers.sh installs them). As root, the PostgreSQL cluster
// is initialised and run as the `postgres` OS user (`runuser -u postgres --`),
// because PostgreSQL refuses to run as root.
//
// Readiness is polled (a Redis PING, `pg_isready`) until a deadline; no fixed
// sleeps. Nothing here prints a record or a token.

import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 25;
const HOST = '127.0.0.1';

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// ---- what is installed -------------------------------------------------------

function which(name) {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/bin', '/usr/sbin'])) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

/** The newest <root>/<major>/bin with initdb, pg_ctl, pg_isready and postgres, or null; root: $FRESHTOKEN_PG_ROOT, else /usr/lib/postgresql. */
export function postgresBinDir() {
  const root = process.env.FRESHTOKEN_PG_ROOT || '/usr/lib/postgresql';
  let majors;
  try {
    majors = readdirSync(root);
  } catch {
    return null;
  }
  const candidates = majors
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join(root, v, 'bin'))
    .filter((bin) => ['initdb', 'pg_ctl', 'pg_isready', 'postgres'].every((f) => existsSync(join(bin, f))));
  return candidates[0] ?? null;
}

/** The redis-server binary ($FRESHTOKEN_REDIS_SERVER, else on PATH), or null. */
export function redisServerPath() {
  const chosen = process.env.FRESHTOKEN_REDIS_SERVER;
  if (chosen) return existsSync(chosen) ? chosen : null;
  return which('redis-server');
}

/** Which servers can be started here, and what to do about the others. */
export function serversInstalled() {
  const redis = redisServerPath() !== null;
  const postgres = postgresBinDir() !== null;
  const missing = [...(redis ? [] : ['redis-server']), ...(postgres ? [] : ['postgresql'])];
  return {
    redis,
    postgres,
    missing,
    hint: missing.length ? `not installed: ${missing.join(', ')} (run scripts/setup-servers.sh as root)` : '',
  };
}

// ---- helpers -----------------------------------------------------------------

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Runs a command to completion; rejects with its output's tail on a non-zero exit. */
function run(cmd, args, { cwd, timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (c) => { out = (out + c).slice(-4000); };
    child.stdout.setEncoding('utf8').on('data', keep);
    child.stderr.setEncoding('utf8').on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code ?? signal}: ${out.trim().split('\n').slice(-6).join(' | ')}`));
    });
  });
}

/** Polls `check` (resolving true when ready) until `deadline`; `gone()` returning a string aborts early. */
async function pollUntil(what, check, { timeoutMs = READY_TIMEOUT_MS, gone = () => null, detail = () => '' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = gone();
    if (dead) throw new Error(`${what}: ${dead}${detail()}`);
    if (await check().catch(() => false)) return;
    if (Date.now() >= deadline) throw new Error(`${what}: not ready within ${timeoutMs} ms${detail()}`);
    await sleep(POLL_MS);
  }
}

/** Sends one inline command to a Redis port and resolves with the first reply line. */
export function redisInline(port, command, timeoutMs = 1_000) {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: HOST, port });
    let data = '';
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('timeout')); }, timeoutMs);
    socket.setEncoding('utf8');
    socket.once('error', (err) => { clearTimeout(timer); reject(err); });
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk) => {
      data += chunk;
      const end = data.indexOf('\r\n');
      if (end >= 0) {
        clearTimeout(timer);
        socket.destroy();
        resolve(data.slice(0, end));
      }
    });
  });
}

// Servers not stopped yet: the exit hook stops them if the process ends first.
const live = new Set();
let hooked = false;
function track(server) {
  live.add(server);
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const s of live) {
      try { s.stopSync(); } catch { /* best effort */ }
    }
  });
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      for (const s of live) {
        try { s.stopSync(); } catch { /* best effort */ }
      }
      live.clear();
      process.kill(process.pid, signal);
    });
  }
}

// ---- Redis -------------------------------------------------------------------

/**
 * Starts a private redis-server on a free loopback port (no persistence).
 * Resolves with { host, port, url, version, stop() }.
 */
export async function startRedis({ timeoutMs = READY_TIMEOUT_MS } = {}) {
  const bin = redisServerPath();
  if (!bin) throw new Error(`redis-server ${serversInstalled().hint}`);
  let lastError;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      return await startRedisOnce(bin, timeoutMs);
    } catch (err) {
      lastError = err;
      if (!/Address already in use|bind/i.test(err.message)) throw err;
    }
  }
  throw lastError;
}

async function startRedisOnce(bin, timeoutMs) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'freshtoken-redis-'));
  const child = spawn(bin, [
    '--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--daemonize', 'no',
    '--dir', dir, '--logfile', '',
  ], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (c) => { output = (output + c).slice(-4000); };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => { exitInfo = { code, signal }; resolve(exitInfo); });
  });
  child.once('error', (err) => { exitInfo = exitInfo ?? { error: err.message }; });

  let stopping = null;
  const server = {
    host: HOST,
    port,
    url: `redis://${HOST}:${port}`,
    dir,
    process: child,
    version: null,
    stop() {
      stopping ??= (async () => {
        live.delete(server);
        if (!exitInfo) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
    stopSync() {
      if (!exitInfo) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  track(server);
  try {
    await pollUntil(`redis-server on port ${port}`, async () => (await redisInline(port, 'PING')) === '+PONG', {
      timeoutMs,
      gone: () => (exitInfo ? `exited (${JSON.stringify(exitInfo)})` : null),
      detail: () => (output.trim() ? `; its output: ${output.trim().split('\n').slice(-4).join(' | ')}` : ''),
    });
  } catch (err) {
    await server.stop();
    throw err;
  }
  server.version = /v=(\S+)/.exec(spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout ?? '')?.[1] ?? 'unknown';
  return server;
}

// ---- PostgreSQL ----------------------------------------------------------------

function postgresUser() {
  const id = (flag) => {
    const out = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
    if (out.status !== 0) throw new Error('running as root, but there is no `postgres` OS user to run PostgreSQL as (install Debian\'s postgresql package)');
    return Number(out.stdout.trim());
  };
  return { uid: id('-u'), gid: id('-g') };
}

/**
 * Starts a private PostgreSQL cluster (initdb into a temporary directory,
 * trust authentication, superuser `postgres`) listening on 127.0.0.1 at a
 * free port, with its socket in that directory. Resolves with
 * { host, port, user, database, connection, version, stop() } where
 * `connection` suits `new pg.Pool(connection)`.
 */
export async function startPostgres({ timeoutMs = READY_TIMEOUT_MS } = {}) {
  const bin = postgresBinDir();
  if (!bin) throw new Error(`PostgreSQL ${serversInstalled().hint}`);
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? postgresUser() : null;
  const asOwner = (cmd, args) => (asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]);

  const base = mkdtempSync(join(tmpdir(), 'freshtoken-pg-'));
  const data = join(base, 'data');
  const socketDir = join(base, 'sock');
  let logFile = join(base, 'postgres-0.log'); // one per start attempt
  mkdirSync(socketDir);
  if (owner) {
    chownSync(base, owner.uid, owner.gid);
    chownSync(socketDir, owner.uid, owner.gid);
  }
  const pgCtl = join(bin, 'pg_ctl');
  const logTail = () => {
    try {
      const text = readFileSync(logFile, 'utf8').trim();
      return text ? `; its log: ${text.split('\n').slice(-5).join(' | ')}` : '';
    } catch {
      return '';
    }
  };
  const postmasterPid = () => {
    try {
      return Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]) || null;
    } catch {
      return null;
    }
  };
  const alive = (pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  let stopping = null;
  let port = null;
  const server = {
    host: HOST,
    get port() { return port; },
    user: 'postgres',
    database: 'postgres',
    dir: base,
    version: null,
    get connection() {
      return { host: HOST, port, user: 'postgres', database: 'postgres' };
    },
    stop() {
      stopping ??= (async () => {
        live.delete(server);
        const pid = postmasterPid();
        if (pid && alive(pid)) {
          // Immediate: the cluster is thrown away, so no shutdown checkpoint.
          const [cmd, args] = asOwner(pgCtl, ['-D', data, '-m', 'immediate', '-W', 'stop']);
          await run(cmd, args, { cwd: base, timeoutMs: STOP_TIMEOUT_MS }).catch(() => {});
          const deadline = Date.now() + STOP_TIMEOUT_MS;
          while (alive(pid) && Date.now() < deadline) await sleep(POLL_MS);
          if (alive(pid)) {
            try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
            while (alive(pid) && Date.now() < deadline + STOP_TIMEOUT_MS) await sleep(POLL_MS);
          }
        }
        rmSync(base, { recursive: true, force: true });
      })();
      return stopping;
    },
    stopSync() {
      const pid = postmasterPid();
      if (pid && alive(pid)) {
        // SIGQUIT: the postmaster's "immediate shutdown"; its children follow.
        try { process.kill(pid, 'SIGQUIT'); } catch { /* gone */ }
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
  track(server);

  try {
    {
      const [cmd, args] = asOwner(join(bin, 'initdb'), [
        '-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync',
      ]);
      await run(cmd, args, { cwd: base, timeoutMs: 60_000 });
    }
    let started = false;
    for (let attempt = 0; attempt < 3 && !started; attempt += 1) {
      port = await freePort();
      logFile = join(base, `postgres-${attempt}.log`);
      const options = `-p ${port} -k ${socketDir} -c listen_addresses=${HOST}`;
      const [cmd, args] = asOwner(pgCtl, ['-D', data, '-l', logFile, '-W', '-o', options, 'start']);
      await run(cmd, args, { cwd: base, timeoutMs: 30_000 });
      const [isready, readyArgs] = asOwner(join(bin, 'pg_isready'), ['-q', '-h', HOST, '-p', String(port), '-U', 'postgres', '-d', 'postgres']);
      try {
        await pollUntil(`PostgreSQL on port ${port}`, async () => {
          await run(isready, readyArgs, { cwd: base, timeoutMs: 5_000 });
          return true;
        }, {
          timeoutMs,
          gone: () => {
            // Once pg_ctl returned, the postmaster wrote its pid file; no process, no server.
            const pid = postmasterPid();
            if (pid === null && /could not bind|Address already in use/.test(logTail())) return 'port taken';
            return pid !== null && !alive(pid) ? 'the postmaster exited' : null;
          },
          detail: logTail,
        });
        started = true;
      } catch (err) {
        if (!/port taken/.test(err.message)) throw err;
      }
    }
    if (!started) throw new Error(`PostgreSQL could not bind a free port${logTail()}`);
    const version = spawnSync(join(bin, 'postgres'), ['--version'], { encoding: 'utf8' }).stdout ?? '';
    server.version = /\(PostgreSQL\)\s+(\S+)/.exec(version)?.[1] ?? 'unknown';
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/** Both servers; if the second fails to start, the first is stopped. */
export async function startServers(options = {}) {
  const redis = await startRedis(options);
  try {
    const postgres = await startPostgres(options);
    return {
      redis,
      postgres,
      async stop() {
        await Promise.allSettled([redis.stop(), postgres.stop()]);
      },
    };
  } catch (err) {
    await redis.stop();
    throw err;
  }
}
