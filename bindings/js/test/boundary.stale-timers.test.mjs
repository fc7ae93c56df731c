// A deadline timer the host's clearTimeout did not clear fires into
// nothing (DESIGN point 15; src/wasm/timeout.rs). Fake timers installed
// while a store call is pending (node:test's mock.timers, as a test suite
// does) take over clearTimeout, which cannot clear the real timer the core
// set before: when that timer fires, the core's callback must be a no-op,
// never an exception thrown into the event loop (which ends a default Node
// process).
//
// The real setTimeout is wrapped for the test so that the test knows when
// each of the core's timers has run (and what its callback threw): no
// sleeps. Everything else is real, the token endpoint is the emulator.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, mock, test } from 'node:test';

import { MemoryStore, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { watchTimers } from '../support/timer-watch.mjs';

const STALE = 5;

describe('deadline timers that the host could not clear', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  test('fake timers installed mid-call: the real timers fire later, harmlessly; the client works on', async () => {
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret', storeTimeoutMs: 50,
    });
    const timers = watchTimers();
    try {
      // Deadlines cleared by a working clearTimeout: none is left set.
      const kept = new MemoryStore();
      const plain = { load: (key) => kept.load(key), save: (key, record) => kept.save(key, record) };
      for (let i = 0; i < 20; i += 1) await client.session(`plain-${i}`, plain).status();
      assert.equal(timers.live.size, 0, 'every deadline of an answered store call was cleared');

      for (let i = 0; i < STALE; i += 1) {
        let answer;
        const stalled = { load: () => new Promise((resolve) => { answer = resolve; }), save: async () => {} };
        const status = client.session(`stale-${i}`, stalled).status();
        mock.timers.enable({ apis: ['setTimeout'] });
        try {
          answer(null);
          assert.equal((await status).hasRecord, false);
        } finally {
          mock.timers.reset();
        }
      }
      // The deadlines were "cleared" by the fake clearTimeout: the real
      // timers are still set, and now run out.
      assert.equal(timers.live.size, STALE);
      await timers.fired(STALE);
      assert.deepEqual(timers.thrown.map((e) => e.message), [], 'no timer callback threw');
    } finally {
      timers.restore();
    }

    const store = new MemoryStore();
    const session = client.session('after', store);
    const family = await emu.seed();
    await session.seed({ refreshToken: family.refresh_token });
    const token = await session.accessToken();
    assert.equal(typeof token, 'string');
    assert.equal(await emu.refreshRequests(), 1);
  });
});
