// A host clock (`now`) that calls back into the package on every reading,
// not only the first: the core reads the clock at many points of a refresh
// (the write-ahead marker, the rotated record), and must never read it
// while it holds the session's state, or the nested call traps the wasm
// instance ("unreachable") and poisons the client (its later free() throws).

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { FreshTokenError, MemoryStore, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';

describe('a host clock that calls back into the package on every reading', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  for (const [name, op] of Object.entries({
    status: (session) => session.status(),
    accessToken: (session) => session.accessToken(),
  })) {
    test(`${name}() of the same session inside each now(): every call settles with the core's verdict`, async () => {
      let client;
      let armed = false;
      let inside = false;
      const nested = [];
      const store = new MemoryStore();
      client = new TokenClient({
        tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET,
        now: () => {
          if (armed && !inside) {
            inside = true;
            try { nested.push(op(client.session('u1', store))); } finally { inside = false; }
          }
          return Date.now();
        },
      });
      const family = await emu.seed();
      await client.session('u1', store).seed({ refreshToken: family.refresh_token });
      armed = true;
      const token = await client.session('u1', store).accessToken();
      armed = false;

      assert.ok(nested.length > 2, `the clock was read (and called back) ${nested.length} times`);
      const outcomes = await Promise.all(nested.map((p) => p.then(() => null, (e) => e)));
      for (const e of outcomes) assert.ok(e === null || e instanceof FreshTokenError, `a nested call: ${e}`);
      assert.equal(JSON.parse(store.get('u1')).access_token === token, true, 'the rotated record is saved');
      assert.equal(await emu.refreshRequests(), 1);
      client.free(); // throws on a client a trap left borrowed
    });
  }
});
