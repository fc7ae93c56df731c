// A success answer the core cannot use still carries the server's rotated
// refresh token: it is kept (the next call spends it), whatever else in the
// body could not be read. Here a member (its value or its name) holds a lone surrogate, which
// JSON.parse accepts and a Rust string cannot hold: it must not hide the
// refresh token (src/response.rs `salvage_refresh_token`).

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { FreshTokenError, MemoryStore, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

describe('a rotated refresh token in an answer with an unreadable member', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  for (const [label, extra] of [
    ['scope', '"scope":"\\ud800"'],
    ['an unknown member', '"note":"\\ud800"'],
    ['a member name', '"\\ud800":1'],
    ['a nested member name', '"note":{"\\udc00":["\\udfff"]}'],
  ]) {
    test(`a lone surrogate in ${label}: the refresh token is kept`, async () => {
      const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });
      const store = new MemoryStore();
      const family = await emu.seed();
      await client.session('u1', store).seed({ refreshToken: family.refresh_token });
      await emu.fault({
        kind: 'body', status: 200, grant: 'refresh_token',
        body: `{"access_token":"at","token_type":"Bearer","expires_in":900,"refresh_token":"rt-kept",${extra}}`,
      });
      const outcome = await client.session('u1', store).accessToken().then((t) => t, (e) => e);
      if (outcome instanceof Error) assert.ok(outcome instanceof FreshTokenError, String(outcome));
      assert.equal(JSON.parse(store.get('u1')).refresh_token === 'rt-kept', true, 'the rotated refresh token is stored');
      client.free();
    });
  }
});
