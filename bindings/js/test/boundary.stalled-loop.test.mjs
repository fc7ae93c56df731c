// An event loop stalled past a request's deadline while the server answers
// it: a synchronous onEvent handler, or any long task of the application.
// Node runs due timers before it reads sockets, so the deadlines (the
// fetch's own and the core's) fired first, and a request the server had
// answered, and rotated, counted as timed out: its refresh token in doubt,
// sent again at the next call, and the user told to re-link
// (lost_rotation). A deadline that fires late is now extended once by the
// time the loop lost, which lets the loop read the answer waiting for it.
//
// The stall is the fault injected here (a busy loop, the test's own long
// task); the order is set by the emulator's hold, not by timing: the
// request is held until the test has seen it arrive, then let go by a
// worker thread while this thread is stalled, which stays stalled until
// the worker saw the emulator answer it.
//
// The browser build's offline check is here too: a fetch that fails in a
// browser never says whether the request left, so one that fails after the
// browser said it was offline (navigator.onLine, stood in for in Node)
// reads as not sent.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { after, before, beforeEach, describe, test } from 'node:test';

import { MemoryStore, NetworkError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const CLIENT = { clientId: 'test-client', clientSecret: 'test-secret' };
const TIMEOUT_MS = 1_000;
/** Past the fetch's deadline and the core's (timeoutMs + its 1 s grace). */
const STALL_MS = TIMEOUT_MS + 1_000 + 500;

/**
 * Blocks the event loop until `until` on performance.now() and, when given,
 * until `done()` (at most 20 s more: a releaser that failed fails the test).
 */
function stallUntil(until, done = () => true) {
  const limit = until + 20_000;
  while (performance.now() < until || !done()) {
    if (performance.now() > limit) throw new Error('the releaser never answered');
  }
}

/**
 * A worker thread (an event loop of its own, free while this one is
 * stalled) that lets the emulator's held request go on when told, waits
 * until the emulator has answered it (no token request in flight), and
 * then raises a flag this thread reads with Atomics.
 */
async function startReleaser(adminEndpoint) {
  const shared = new SharedArrayBuffer(4);
  const flag = new Int32Array(shared);
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const flag = new Int32Array(workerData.shared);
    const admin = (method, route) => fetch(workerData.admin + '/' + route, { method }).then((r) => r.json());
    parentPort.once('message', async () => {
      await admin('POST', 'held/release');
      for (let i = 0; i < 10000; i += 1) {
        if ((await admin('GET', 'connections')).token_requests_in_flight === 0) break;
      }
      Atomics.store(flag, 0, 1);
    });
  `, { eval: true, workerData: { admin: adminEndpoint.replace(/\/$/, ''), shared } });
  await once(worker, 'online');
  return {
    release: () => worker.postMessage('go'),
    answered: () => Atomics.load(flag, 0) === 1,
    stop: () => worker.terminate(),
  };
}

describe('the host boundary: an event loop stalled past a deadline', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  async function seeded() {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT, timeoutMs: TIMEOUT_MS });
    const store = new MemoryStore();
    const family = await emu.seed();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token });
    return { client, store, session, family };
  }

  test('an answer that arrived while the loop was stalled is read, not timed out: the rotation is kept', async () => {
    const { store, session, family } = await seeded();
    await emu.fault({ kind: 'hold' });
    const releaser = await startReleaser(emu.adminEndpoint);
    try {
      const started = performance.now();
      const token = session.accessToken().then((t) => ({ t }), (e) => ({ e }));
      await emu.waitHeld(1);
      // The answer is written while this thread is stalled, past both deadlines.
      releaser.release();
      stallUntil(started + STALL_MS, releaser.answered);

      const outcome = await token;
      assert.equal(outcome.e, undefined, `the answered request succeeded: ${outcome.e?.code} ${outcome.e?.message}`);
      const record = JSON.parse(await store.load('u1'));
      assert.equal(record.in_doubt ?? false, false);
      assert.equal(await emu.refreshTokenState(family.refresh_token), 'consumed');
      assert.equal(await emu.refreshTokenState(record.refresh_token), 'active', 'the rotated token was kept');
      assert.equal(await session.accessToken(), outcome.t, 'served again, no refresh');
      assert.equal(await emu.refreshRequests(), 1);
      assert.equal((await emu.counters()).reuse_detected, 0);
    } finally {
      await releaser.stop();
    }
  });

  test('a request that is still unanswered after the stall still times out', async () => {
    const { store, session } = await seeded();
    await emu.fault({ kind: 'hold' });
    const started = performance.now();
    const token = session.accessToken().then((t) => ({ t }), (e) => ({ e }));
    await emu.waitHeld(1);
    stallUntil(started + STALL_MS);

    const outcome = await token;
    assert.equal(outcome.e?.code, 'timeout');
    assert.ok(performance.now() - started < STALL_MS + 2 * TIMEOUT_MS, 'extended once, not again and again');
    assert.equal(JSON.parse(await store.load('u1')).in_doubt, true, 'in doubt: it may have been processed');
    await emu.releaseHeld();
  });

  test('a request built past its deadline (a signature the loop stalled on) is not sent: nothing in doubt', async () => {
    // private_key_jwt in wasm: WebCrypto signs the client assertion, and the deadline covers signing and
    // sending. A deadline set again after the stall must not let a request start after it.
    const privateKeyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' });
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', privateKeyPem, timeoutMs: TIMEOUT_MS, retry: { maxAttempts: 1 },
    });
    const store = new MemoryStore();
    const family = await emu.seed();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token });
    const subtle = globalThis.crypto.subtle;
    const had = Object.getOwnPropertyDescriptor(subtle, 'sign');
    const sign = subtle.sign.bind(subtle);
    const started = performance.now();
    subtle.sign = (...args) => {
      const signed = sign(...args);
      stallUntil(started + STALL_MS); // the stall, while the signature is made
      return signed;
    };
    try {
      const err = await session.refresh().then(() => assert.fail('resolved'), (e) => e);
      assert.ok(err instanceof NetworkError, `${err}`);
      assert.match(err.message, /not sent/);
    } finally {
      if (had) Object.defineProperty(subtle, 'sign', had);
      else delete subtle.sign;
    }
    assert.equal(await emu.refreshRequests(), 0, 'nothing sent');
    assert.equal(JSON.parse(await store.load('u1')).in_doubt ?? false, false);
    assert.equal(await emu.refreshTokenState(family.refresh_token), 'active');
    client.free();
  });

  test('a fetch that fails after the browser said it was offline is not sent: retried, nothing in doubt; nothing is held back', async () => {
    const { store, session } = await seeded();
    const had = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
    Object.defineProperty(globalThis, 'navigator', { configurable: true, get: () => ({ onLine: false }) });
    try {
      // A browser's failed fetch says nothing of whether the request left; a connection the server drops
      // stands in for it (in Node its error names no "never sent" code either).
      await emu.fault({ kind: 'drop_before' });
      await session.accessToken();
      assert.equal(await emu.refreshRequests(), 2, 'the dropped request, then its retry: the failure read as "not sent"');
      assert.equal(JSON.parse(await store.load('u1')).in_doubt ?? false, false);
      // Some setups say offline wrongly: the request is sent all the same.
      await session.refresh();
      assert.equal(await emu.refreshRequests(), 3);
    } finally {
      if (had) Object.defineProperty(globalThis, 'navigator', had);
      else delete globalThis.navigator;
    }
    // Online, the same failure is "maybe sent": in doubt, not retried.
    await emu.fault({ kind: 'drop_before' });
    const err = await session.refresh().then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof NetworkError, `${err}`);
    assert.equal(JSON.parse(await store.load('u1')).in_doubt, true);
  });
});
