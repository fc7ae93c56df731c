// Starts the project's Rust token-endpoint emulator (tests/emulator) as a child
// process and drives its admin API. See tests/emulator/README.md for the flags,
// the ready line, the admin endpoints, the fault objects and the counters.
//
// This module builds nothing: run `cargo build -p freshtoken-emulator` from the
// repository root first (or point $FRESHTOKEN_EMULATOR_BIN at a binary).
//
// Nothing here prints a token: errors carry HTTP statuses, admin error codes
// and the emulator's stderr (which never holds tokens), never response bodies
// of token-bearing calls.

import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;

/** The repository root (…/bindings/js/support/ → …/). */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** Where the emulator binary is looked for: $FRESHTOKEN_EMULATOR_BIN, else <repo>/target/debug/freshtoken-emulator. */
export function emulatorBinaryPath() {
  return process.env.FRESHTOKEN_EMULATOR_BIN
    || fileURLToPath(new URL('../../../target/debug/freshtoken-emulator', import.meta.url));
}

function secsArg(name, value) {
  if (value === undefined || value === null) return [];
  if (!Number.isInteger(value) || value < 0) {
    throw new TypeError(`startEmulator: ${name} must be a non-negative integer number of seconds`);
  }
  return [`--${name}`, String(value)];
}

/**
 * Spawns the emulator on a free loopback port and resolves once it printed its ready line.
 *
 * @param {object} [options]
 * @param {number} [options.accessTtl]  user access-token lifetime in seconds (--access-ttl)
 * @param {number} [options.clientTtl]  client-credentials token lifetime in seconds (--client-ttl)
 * @param {number} [options.refreshTtl] sliding refresh-token lifetime in seconds (--refresh-ttl)
 * @param {boolean} [options.reuseDetection=true] revoke the family when a consumed refresh token is reused
 * @param {string[]} [options.extraArgs=[]] more flags, e.g. ['--client', 'id:secret', '--verbose']
 */
export async function startEmulator({
  accessTtl, clientTtl, refreshTtl, reuseDetection = true, extraArgs = [],
} = {}) {
  const bin = emulatorBinaryPath();
  try {
    accessSync(bin, fsConstants.X_OK);
  } catch {
    throw new Error(
      `freshtoken-emulator binary not found or not executable at ${bin}: `
      + 'run `cargo build -p freshtoken-emulator` in the repository root, '
      + 'or set FRESHTOKEN_EMULATOR_BIN',
    );
  }

  const args = [
    '--port', '0',
    '--exit-on-stdin-eof',
    ...secsArg('access-ttl', accessTtl),
    ...secsArg('client-ttl', clientTtl),
    ...secsArg('refresh-ttl', refreshTtl),
    reuseDetection ? '--reuse-detection' : '--no-reuse-detection',
    ...extraArgs,
  ];

  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  // The emulator may be gone when we close its stdin: never let EPIPE crash a test.
  child.stdin.on('error', () => {});
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    // Keep the tail only: enough to explain a failed start.
    stderr = (stderr + chunk).slice(-8192);
  });

  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  // If this process dies first, take the emulator along (closing stdin would too).
  const killOnExit = () => { try { child.kill('SIGKILL'); } catch { /* already gone */ } };
  process.once('exit', killOnExit);

  let ready;
  try {
    ready = await new Promise((resolve, reject) => {
      const lines = createInterface({ input: child.stdout });
      const fail = (err) => {
        clearTimeout(timer);
        lines.close();
        reject(err);
      };
      const timer = setTimeout(() => {
        fail(new Error(`freshtoken-emulator printed no ready line within ${READY_TIMEOUT_MS / 1000} s${stderrNote(stderr)}`));
      }, READY_TIMEOUT_MS);
      child.once('error', (err) => fail(new Error(`could not start freshtoken-emulator (${bin}): ${err.message}`)));
      child.once('exit', (code, signal) => {
        fail(new Error(`freshtoken-emulator exited before it was ready (code ${code}, signal ${signal})${stderrNote(stderr)}`));
      });
      lines.once('line', (line) => {
        let parsed;
        try {
          parsed = JSON.parse(line);
        } catch {
          fail(new Error(`freshtoken-emulator's first stdout line is not JSON: ${JSON.stringify(line.slice(0, 200))}`));
          return;
        }
        if (parsed?.ready !== true || !parsed.token_endpoint || !parsed.admin_endpoint) {
          fail(new Error(`freshtoken-emulator's first stdout line is not a ready line: ${line.slice(0, 300)}`));
          return;
        }
        clearTimeout(timer);
        lines.close();
        resolve(parsed);
      });
    });
  } catch (err) {
    process.removeListener('exit', killOnExit);
    if (!exitInfo) {
      child.kill('SIGKILL');
      await exited;
    }
    throw err;
  }

  // Drain stdout from now on (it prints nothing more, but never let a pipe fill),
  // and let a test process that forgot stop() still exit: closing our end of
  // stdin then stops the emulator.
  child.stdout.resume();
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) stream.unref?.();

  const adminBase = ready.admin_endpoint.replace(/\/$/, '');

  async function admin(method, route, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(`${adminBase}/${route}`, init);
    const text = await res.text();
    if (!res.ok) {
      // Admin error bodies are {"error","error_description"} and hold no tokens.
      let detail = '';
      try {
        const err = JSON.parse(text);
        detail = `: ${err.error}${err.error_description ? ` (${err.error_description})` : ''}`;
      } catch { /* not JSON */ }
      throw new Error(`emulator admin ${method} /admin/${route} answered HTTP ${res.status}${detail}`);
    }
    return JSON.parse(text);
  }

  let stopping = null;
  const emulator = {
    tokenEndpoint: ready.token_endpoint,
    authorizationEndpoint: ready.authorization_endpoint,
    revocationEndpoint: ready.revocation_endpoint,
    /** The issuer its discovery document names (`{issuer}/.well-known/openid-configuration`). */
    discoveryIssuer: ready.discovery_endpoint.replace(/\/\.well-known\/openid-configuration$/, ''),
    apiEndpoint: ready.api_endpoint,
    adminEndpoint: ready.admin_endpoint,
    issuer: ready.issuer,
    port: ready.port,
    /** The child process (for tests that want to signal it themselves). */
    process: child,

    /** Issues a token set as if a user had just linked: {refresh_token, access_token, expires_in, scope, id_token}. */
    seed({ clientId = 'test-client', scope = 'openid offline_access accounts' } = {}) {
      return admin('POST', 'seed', { client_id: clientId, scope });
    },
    /** The emulator's counters (see its README). */
    counters() {
      return admin('GET', 'counters');
    },
    /** How many refresh_token grant requests reached the token endpoint (faulted ones included). */
    async refreshRequests() {
      return (await admin('GET', 'counters')).by_grant?.refresh_token ?? 0;
    },
    /** How many token requests with this grant_type reached the token endpoint. */
    async grantRequests(grant) {
      return (await admin('GET', 'counters')).by_grant?.[grant] ?? 0;
    },
    /** Queues one fault object or an array of them: resolves with {added, queued}. */
    fault(faultOrArray) {
      return admin('POST', 'faults', faultOrArray);
    },
    /** The faults still queued. */
    pendingFaults() {
      return admin('GET', 'faults');
    },
    /** Empties the fault queue: resolves with {cleared}. */
    clearFaults() {
      return admin('DELETE', 'faults');
    },
    /** Moves the emulator's clock forward: resolves with {offset_secs, now}. */
    advanceClock(secs) {
      return admin('POST', 'clock', { advance_secs: secs });
    },
    /**
     * Changes the config in force, with the admin API's field names:
     * {reuse_detection, access_ttl_secs, client_ttl_secs, refresh_ttl_secs} (all optional).
     * Resolves with the config now in force.
     */
    config(obj = {}) {
      return admin('POST', 'config', obj);
    },
    /**
     * Breaks (or mends) the discovery document: 'normal' | 'not_found' |
     * 'wrong_issuer' | 'insecure_token_endpoint' | 'invalid_json'.
     */
    setDiscovery(mode) {
      return admin('POST', 'discovery', { mode });
    },
    /** Forgets tokens, codes, counters and faults; restores the start-up clock, lifetimes and reuse detection. */
    reset() {
      return admin('POST', 'reset');
    },
    /** 'active' | 'consumed' | 'revoked' | 'expired' | 'unknown' */
    async refreshTokenState(token) {
      return (await admin('POST', 'refresh-token-state', { refresh_token: token })).state;
    },
    /**
     * The state and, for a known token, its lineage:
     * {state, family, generation, latest_generation, successor_state}
     * (`latest_generation - generation` = rotations behind; see the emulator's README).
     */
    refreshTokenInfo(token) {
      return admin('POST', 'refresh-token-state', { refresh_token: token });
    },
    /** How many token requests a {kind: 'hold'} fault holds now. */
    async held() {
      return (await admin('GET', 'held')).held;
    },
    /**
     * Resolves with the number held once at least `count` token requests are
     * held by {kind: 'hold'} faults; rejects after `timeoutMs` (the emulator
     * answers 504), so a request that never arrives fails the test instead of
     * hanging it.
     */
    async waitHeld(count = 1, { timeoutMs = 10_000 } = {}) {
      return (await admin('POST', 'held/wait', { count, timeout_ms: timeoutMs })).held;
    },
    /** Lets every held request go on (to the next queued fault, or normal processing): resolves with how many. */
    async releaseHeld() {
      return (await admin('POST', 'held/release')).released;
    },
    /** The {kind: 'endless'} responses so far: [{status, framing, bytes_written, end}] (end: null while streaming). */
    endlessStreams() {
      return admin('GET', 'streams');
    },
    /**
     * Resolves with the endless responses once at least `count` have ended
     * and none is still streaming; rejects after `timeoutMs` (e.g. when the
     * client never closed the connection).
     */
    waitEndlessEnded(count = 1, { timeoutMs = 10_000 } = {}) {
      return admin('POST', 'streams/wait', { count, timeout_ms: timeoutMs });
    },
    /** {open, token_requests_in_flight}: connections accepted and not yet closed (this one excluded). */
    connections() {
      return admin('GET', 'connections');
    },
    /**
     * Resolves once no connection but the asking one is open, polling every
     * `intervalMs`. Called after a client process died (its sockets closed),
     * it waits out every request that process had started, even one still
     * waiting to be accepted: no late rotation can follow.
     */
    async drained({ timeoutMs = 5_000, intervalMs = 2 } = {}) {
      const endAt = Date.now() + timeoutMs;
      for (;;) {
        const { open } = await admin('GET', 'connections');
        if (open === 0) return;
        if (Date.now() >= endAt) throw new Error(`emulator still had ${open} open connection(s) after ${timeoutMs} ms`);
        await new Promise((resolve) => { setTimeout(resolve, intervalMs); });
      }
    },
    /** Stops the emulator (closes its stdin; SIGKILL after 5 s) and waits for it to exit. */
    stop() {
      if (stopping) return stopping;
      stopping = (async () => {
        process.removeListener('exit', killOnExit);
        if (exitInfo) return exitInfo;
        child.ref();
        child.stdin.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        try {
          return await exited;
        } finally {
          clearTimeout(timer);
        }
      })();
      return stopping;
    },
  };
  return emulator;
}

function stderrNote(stderr) {
  const tail = stderr.trim();
  return tail ? `; its stderr:\n${tail}` : '';
}
