// maxSessions bounds memory (issue 11 item 8, DESIGN point 11): a backend
// creates one handle per request and drops it without free(); idle session
// state is evictable whatever handles still exist, and wasm-bindgen's
// FinalizationRegistry frees a dropped handle's wasm side once V8 collects
// it. 100,000 users with maxSessions: 1000 must keep about 1000 sessions and
// stay under 5 MB of wasm memory (which never shrinks: this is the peak).
//
// V8 collects on its own schedule; here a full GC runs every 20,000 requests
// to stand in for it, so up to 20,000 dropped handles are alive at once.
// Nothing talks to a server: every user's record is fresh, so each request
// is one store load and then the cached path.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MemoryStore, TokenClient } from 'freshtoken';
import { collectGarbage, wasmMemoryBytes } from '../support/wasm-memory.mjs';

const USERS = 100_000;
const MAX_SESSIONS = 1000;
const GC_EVERY = 20_000;
const MB = 1000 * 1000;

describe('maxSessions bounds memory', () => {
  test('dropped handles are freed once collected (wasm-bindgen\'s FinalizationRegistry)', async () => {
    const client = new TokenClient({ tokenEndpoint: 'http://127.0.0.1:9/connect/token', clientId: 'c', clientSecret: 's' });
    const store = new MemoryStore();
    await client.session('u1', store).seed({ refreshToken: 'rt', accessToken: 'at-fresh', expiresIn: 3600 });
    const batch = async () => {
      for (let i = 0; i < GC_EVERY; i += 1) assert.equal(await client.session('u1', store).accessToken(), 'at-fresh');
      await collectGarbage();
    };
    await batch();
    const settled = wasmMemoryBytes();
    for (let round = 0; round < 5; round += 1) await batch();
    // Uncollected, they would take about 8 MB.
    const grown = wasmMemoryBytes() - settled;
    assert.ok(grown <= 256 * 1024, `${5 * GC_EVERY} more handles, dropped and collected, took ${grown} more bytes`);
  });

  test(`${USERS.toLocaleString('en')} users, one handle per request, never freed`, async () => {
    const client = new TokenClient({
      tokenEndpoint: 'http://127.0.0.1:9/connect/token',
      clientId: 'c',
      clientSecret: 's',
      maxSessions: MAX_SESSIONS,
    });
    // One fresh record, served for every user (its tokens are not checked
    // against the key).
    const seedStore = new MemoryStore();
    await client.session('seed', seedStore).seed({ refreshToken: 'rt', accessToken: 'at-fresh', expiresIn: 3600 });
    const record = seedStore.get('seed');
    let loads = 0;
    const store = {
      load: async () => { loads += 1; return record; },
      save: async () => {},
    };

    let mostSessions = 0;
    for (let i = 0; i < USERS; i += 1) {
      const session = client.session(`user-${i}`, store);
      assert.equal(await session.accessToken(), 'at-fresh');
      mostSessions = Math.max(mostSessions, client.sessionCount);
      if (i % GC_EVERY === GC_EVERY - 1) await collectGarbage();
    }
    assert.equal(loads, USERS, 'each user was loaded once');
    assert.ok(mostSessions <= MAX_SESSIONS * 1.1 + 1, `at most about ${MAX_SESSIONS} sessions held; saw ${mostSessions}`);
    const bytes = wasmMemoryBytes();
    assert.ok(bytes < 5 * MB, `wasm memory reached ${(bytes / MB).toFixed(1)} MB`);
  });
});
