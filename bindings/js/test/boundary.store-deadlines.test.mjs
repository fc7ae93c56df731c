// Every store call has a deadline, and a caller that gives up stops nothing
// (issue 11 items 1 and 2, DESIGN point 15), through the JS API against the
// token emulator.
//
// - A save that never settles (a database stall after the server rotated):
//   the callers get a StorageError saying the store did not answer, within
//   storeTimeoutMs; the renewed record stays in memory, a new handle with a
//   healthy store gets the rotated token without a second refresh and saves
//   the record first; the abandoned save's late answer changes nothing.
// - A load that never settles: likewise, and nothing is sent.
// - A caller that stops awaiting (Promise.race with its own give-up signal,
//   then free()) while the rotated record is being saved: the refresh still
//   finishes and saves, and the emulator saw exactly one refresh.
//
// Real time: the deadlines are real timers. Stalls are held by the store
// until the test releases them; no test waits on a timer of its own.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { MemoryStore, NetworkError, StorageError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { watchTimers } from '../support/timer-watch.mjs';

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';
const STORE_TIMEOUT_MS = 150;
/** Slack for a loaded machine: the rejection must come this soon after the deadline. */
const SLACK_MS = 10_000; // generous: a loaded 2-core CI machine; the failure it catches is a hang

function deferred() {
  let resolve;
  const promise = new Promise((res) => { resolve = res; });
  return { promise, resolve };
}

/** Lets queued callbacks (a late answer and what it wakes) run. */
const turns = async (n = 5) => {
  for (let i = 0; i < n; i += 1) await new Promise((resolve) => { setImmediate(resolve); });
};

/**
 * A MemoryStore whose loads or saves can be held. A held call waits until
 * the test either `resume()`s it (it then does its work; resolves when
 * done) or `answer(value)`s it (it resolves with `value` and does nothing:
 * a late acknowledgement of a call abandoned long ago).
 */
class HoldingStore {
  inner = new MemoryStore();
  held = [];
  /** (record) => whether to hold this save; null: hold none. */
  holdSave = null;
  holdLoads = false;
  #entered = deferred();
  #saved = [];

  /** Resolves when a call is held. */
  nextHeld() {
    return this.#entered.promise;
  }

  /** Resolves once a save of a record matching `match` has written it. */
  savedMatching(match) {
    const waiter = deferred();
    this.#saved.push({ match, resolve: waiter.resolve });
    return waiter.promise;
  }

  async #hold(what, work) {
    const outcome = deferred();
    const done = deferred();
    this.held.push({
      what,
      resume: () => { outcome.resolve({ work: true }); return done.promise; },
      answer: (value) => { outcome.resolve({ value }); },
    });
    this.#entered.resolve(what);
    this.#entered = deferred();
    const { work: doIt, value } = await outcome.promise;
    if (!doIt) return value;
    const result = await work();
    done.resolve();
    return result;
  }

  async load(key) {
    const work = () => this.inner.load(key);
    return this.holdLoads ? this.#hold('load', work) : work();
  }

  async save(key, record) {
    const parsed = JSON.parse(record);
    const work = async () => {
      await this.inner.save(key, record);
      for (const waiter of this.#saved.filter((w) => w.match(parsed))) waiter.resolve();
    };
    return this.holdSave?.(parsed) ? this.#hold('save', work) : work();
  }

  record(key) {
    const text = this.inner.get(key);
    return text === null ? null : JSON.parse(text);
  }

  /** Another store object on the same records that holds nothing (the database after the stall); `ops` logs its calls. */
  healthy() {
    const ops = [];
    return {
      ops,
      load: (key) => { ops.push('load'); return this.inner.load(key); },
      save: (key, record) => { ops.push('save'); return this.inner.save(key, record); },
    };
  }
}

/** Checks `err` is the StorageError of a store call past its deadline. */
function pastDeadline(err) {
  assert.ok(err instanceof StorageError, `expected a StorageError, got ${err?.name}: ${err?.message}`);
  assert.equal(err.code, 'storage');
  assert.match(err.message, /did not answer/);
  assert.match(err.message, new RegExp(`${STORE_TIMEOUT_MS}`));
  return true;
}

/** `promise` rejects past the store deadline, not before it and not much after. */
async function rejectsAtDeadline(promise) {
  const started = Date.now();
  await assert.rejects(promise, pastDeadline);
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= STORE_TIMEOUT_MS - 5, `rejected after ${elapsed} ms, before the deadline`);
  assert.ok(elapsed < STORE_TIMEOUT_MS + SLACK_MS, `rejected after ${elapsed} ms`);
}

describe('store deadlines and callers that give up', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  const newClient = () => new TokenClient({
    tokenEndpoint: emu.tokenEndpoint,
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    storeTimeoutMs: STORE_TIMEOUT_MS,
  });

  async function seeded(client, store, key = 'u1') {
    const family = await emu.seed();
    await client.session(key, store).seed({ refreshToken: family.refresh_token });
    return family.refresh_token;
  }

  test('a save that never settles after the server rotated: StorageError in time, nothing lost, not stuck', async () => {
    const client = newClient();
    const store = new HoldingStore();
    const rt0 = await seeded(client, store);
    store.holdSave = (record) => record.refresh_token !== rt0;

    const session = client.session('u1', store);
    await rejectsAtDeadline(session.accessToken());
    assert.equal(store.held.length, 1, 'the save of the rotated record was held');
    assert.equal(await emu.refreshRequests(), 1);
    assert.equal((await session.status()).unpersisted, true, 'the renewed record is kept in memory');

    store.holdSave = null;
    const healthy = store.healthy();
    const again = client.session('u1', healthy);
    const token = await again.accessToken();
    assert.equal(await emu.refreshRequests(), 1, 'the consumed refresh token was not sent again');
    assert.equal(healthy.ops[0], 'save', 'the kept record is saved before anything else');
    const saved = store.record('u1');
    assert.ok(saved.access_token === token, 'the kept record was saved');
    assert.notEqual(saved.refresh_token, rt0);
    assert.equal(await emu.refreshTokenState(saved.refresh_token), 'active');
    assert.equal((await again.status()).unpersisted, false);

    // The abandoned save answers now.
    store.held[0].answer();
    await turns();
    assert.equal(await again.accessToken(), token, 'same token, from memory');
    assert.equal((await again.status()).unpersisted, false);
    assert.deepEqual(store.record('u1'), saved, 'the stored record is unchanged');
    assert.equal(await emu.refreshRequests(), 1);
    assert.equal((await emu.counters()).reuse_detected, 0);
  });

  test('every caller of the stalled flight gets the StorageError, and so does the next one while it lasts', async () => {
    const client = newClient();
    const store = new HoldingStore();
    const rt0 = await seeded(client, store);
    store.holdSave = (record) => record.refresh_token !== rt0;
    const callers = Array.from({ length: 10 }, () => client.session('u1', store).accessToken());
    for (const caller of callers) await assert.rejects(caller, pastDeadline);
    assert.equal(await emu.refreshRequests(), 1, 'one flight');
    // The store still stalls: the next call tries to save the kept record first, and times out again.
    await rejectsAtDeadline(client.session('u1', store).accessToken());
    assert.equal(await emu.refreshRequests(), 1);
    for (const { answer } of store.held) answer();
  });

  test('a load that never settles: StorageError in time, nothing sent, not stuck', async () => {
    const first = newClient();
    const store = new HoldingStore();
    await seeded(first, store);
    // Another client (another process) has not read the store yet.
    const client = newClient();
    store.holdLoads = true;
    await rejectsAtDeadline(client.session('u1', store).accessToken());
    assert.equal(store.held.length, 1);
    assert.equal((await emu.counters()).token_requests, 0, 'nothing sent');

    store.holdLoads = false;
    const session = client.session('u1', store.healthy());
    const token = await session.accessToken();
    assert.equal(await emu.refreshRequests(), 1);

    // The abandoned load answers now, with nothing.
    store.held[0].answer(null);
    await turns();
    assert.equal(await session.accessToken(), token);
    assert.equal((await session.status()).hasRecord, true);
    assert.equal(await emu.refreshRequests(), 1);
  });

  test('a deadline that did not fire leaves no timer behind (nothing keeps the process alive)', async () => {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
    const store = new HoldingStore();
    // Only the core's timers count: fetch's own come and go meanwhile.
    const core = watchTimers({ coreOnly: true });
    try {
      await seeded(client, store);
      for (let i = 0; i < 100; i += 1) {
        const session = client.session(`fresh-${i}`, store);
        await session.seed({ refreshToken: `rt-${i}`, accessToken: `at-${i}`, expiresIn: 900 });
      }
      await client.session('u1', store).accessToken();
      await turns();
    } finally {
      core.restore();
    }
    assert.ok(core.set() > 100, `the core's deadlines were seen (${core.set()})`);
    assert.equal(core.live.size, 0, 'every store call answered in time, and its deadline was cleared');
    assert.deepEqual(core.thrown, []);
  });

  test('a caller that stops awaiting never stops the shared refresh from finishing and saving', async () => {
    // A deadline the held save never reaches: this is about the caller, not the store.
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
    const store = new HoldingStore();
    const rt0 = await seeded(client, store);
    // Hold the flight's first save (the write-ahead marker; without one, the rotated record).
    let first = true;
    store.holdSave = () => { const hold = first; first = false; return hold; };
    const rotatedSaved = store.savedMatching((record) => record.refresh_token !== rt0);

    const session = client.session('u1', store);
    const outcome = await Promise.race([session.accessToken(), store.nextHeld().then(() => 'gave up')]);
    assert.equal(outcome, 'gave up', 'the caller moved on while the flight was saving');
    session.free();

    // Nobody awaits the flight any more; it must still send, rotate and save.
    await store.held[0].resume();
    await rotatedSaved;
    const saved = store.record('u1');
    assert.notEqual(saved.refresh_token, rt0);
    assert.equal(await emu.refreshTokenState(saved.refresh_token), 'active', 'the store holds the rotated record');
    assert.equal(await emu.refreshRequests(), 1, 'exactly one refresh');

    const token = await client.session('u1', store).accessToken();
    assert.ok(token === saved.access_token, 'the next caller gets the rotated token');
    assert.equal(await emu.refreshRequests(), 1);
    assert.equal((await emu.counters()).reuse_detected, 0);
  });

  test('a host whose setTimeout throws a non-Error gets a typed error, and the client works once timers are back', async () => {
    const client = newClient();
    // A store of the host's (a plain MemoryStore is the core's own, which needs no deadline).
    const store = new (class HostStore extends MemoryStore {})();
    const realSetTimeout = globalThis.setTimeout;
    globalThis.setTimeout = () => { throw 'no timers here'; }; // eslint-disable-line no-throw-literal
    let failure;
    try {
      failure = await client.session('u1', store).seed({ refreshToken: 'refresh-token-0001' }).then(() => null, (e) => e);
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
    // No deadline can be armed: the store call is cut off (fail closed), typed, nothing thrown raw,
    // and the message says why (not that the store was too slow).
    assert.ok(failure instanceof StorageError, String(failure));
    assert.equal(failure.code, 'storage');
    assert.match(failure.message, /was abandoned: no deadline could be set for it \(setTimeout threw: no timers here\)/);
    assert.doesNotMatch(failure.message, /did not answer within/);
    await client.session('u1', store).seed({ refreshToken: 'refresh-token-0002' });
    assert.equal((await client.session('u1', store).status()).hasRecord, true);
    assert.equal(JSON.parse(store.get('u1')).refresh_token, 'refresh-token-0002');
  });

  test('a refresh whose request timer cannot be set is not sent, so its refresh token is never in doubt', async () => {
    const HTTP_TIMEOUT_MS = 7_777; // only the fetch transport's own timer uses this length
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      timeoutMs: HTTP_TIMEOUT_MS,
      retry: { maxAttempts: 1 },
    });
    const store = new MemoryStore();
    const refreshToken = await seeded(client, store);
    const realSetTimeout = globalThis.setTimeout;
    globalThis.setTimeout = (callback, ms, ...rest) => {
      if (ms === HTTP_TIMEOUT_MS) throw new Error('timer quota exceeded');
      return realSetTimeout(callback, ms, ...rest);
    };
    let failure;
    try {
      failure = await client.session('u1', store).accessToken().then(() => null, (e) => e);
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
    assert.ok(failure instanceof NetworkError, String(failure));
    assert.equal(failure.code, 'network');
    assert.match(failure.message, /not sent: no deadline could be set for it \(setTimeout threw: timer quota exceeded\)/);
    assert.equal(await emu.refreshRequests(), 0, 'fetch was never called');
    const status = await client.session('u1', store).status();
    assert.equal(status.inDoubt, false, 'the write-ahead marker is withdrawn: nothing was sent');
    assert.equal(await emu.refreshTokenState(refreshToken), 'active');

    const token = await client.session('u1', store).accessToken();
    assert.equal(typeof token, 'string');
    assert.equal(await emu.refreshRequests(), 1, 'with timers back, exactly one refresh');
    assert.equal(await emu.refreshTokenState(refreshToken), 'consumed');
  });
});
