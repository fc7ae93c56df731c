// EncryptedStore key material that is a Uint8Array only by `instanceof`: a
// Proxy, a view of a detached buffer, a subclass whose `length` throws or
// lies. Its bytes are copied by the package's catching `bytes` with the
// engine's own accessors, at most one byte past the key size, so:
//
// - what is not a readable Uint8Array is a ConfigError naming the field;
// - a genuine one is read by its real bytes, whatever its getters say, and
//   no allocation is sized by a length the host claims;
// - 100,000 bad keys leave the instance healthy (each one used to throw
//   through wasm, leaking wasm stack until, after about 2,600 of them,
//   every call trapped with `unreachable`).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ConfigError, EncryptedStore, MemoryStore, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { wasmMemoryBytes } from '../support/wasm-memory.mjs';

const ROUNDS = 100_000;
const RECORD = '{"schema":"freshtoken.record/1","refresh_token":"rt-SENTINEL","updated_at":1}';

class ThrowingLength extends Uint8Array {
  get length() { throw new Error('length getter threw'); }
}
class LyingLength extends Uint8Array {
  get length() { return 1e9; }
}
const detached = () => {
  const key = new Uint8Array(32);
  structuredClone(key.buffer, { transfer: [key.buffer] });
  return key;
};

/** Keys that cannot be used: each a ConfigError naming the key's field. */
const bad = {
  'a Proxy of a Uint8Array': () => new Proxy(new Uint8Array(32), {}),
  'a detached Uint8Array': detached,
  'a subclass of 4 bytes whose length says 1e9': () => new LyingLength(4),
  'a subclass of 4 bytes whose length throws': () => new ThrowingLength(4),
  'an object with Uint8Array.prototype': () => Object.setPrototypeOf({ length: 32 }, Uint8Array.prototype),
  'a base64 string of a million characters': () => 'A'.repeat(1_000_000),
  '33 bytes': () => new Uint8Array(33),
};

const keysWith = (key) => ({ current: { id: 'k1', key } });

function assertKeyError(make, field = 'keys.current.key') {
  assert.throws(make, (e) => e instanceof ConfigError && e.code === 'config' && e.message.includes(`\`${field}\``), field);
}

describe('EncryptedStore keys that are odd host objects', () => {
  for (const [label, key] of Object.entries(bad)) {
    test(`${label}: a ConfigError naming the key, as current and as old`, () => {
      assertKeyError(() => new EncryptedStore(new MemoryStore(), keysWith(key())));
      assertKeyError(
        () => new EncryptedStore(new MemoryStore(), { ...keysWith(new Uint8Array(32)), old: [{ id: 'k0', key: key() }] }),
        'keys.old[0].key',
      );
    });
  }

  for (const [label, Subclass] of [['throws', ThrowingLength], ['says 1e9', LyingLength]]) {
    test(`a genuine 32-byte key whose length ${label}: read by its real bytes, nothing allocated by the claim`, async () => {
      const bytes = new Uint8Array(32).fill(0x5a);
      const startBytes = wasmMemoryBytes();
      const odd = new EncryptedStore(new MemoryStore(), keysWith(new Subclass(bytes)));
      assert.ok(wasmMemoryBytes() - startBytes <= 64 * 1024, 'no allocation sized by the claimed length');
      const plain = new EncryptedStore(odd.inner, keysWith(bytes));
      await odd.save('u1', RECORD);
      assert.equal(await plain.load('u1'), RECORD, 'the same key as its real bytes');
    });
  }
});

describe(`${ROUNDS.toLocaleString('en')} bad keys, then the instance still works`, () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });

  test('every bad key a ConfigError, no growth, then a refresh through an EncryptedStore', { timeout: 120_000 }, async () => {
    const makers = Object.values(bad).filter((make) => make !== bad['a base64 string of a million characters']);
    // One round first: whatever the first use allocates is not growth.
    for (const make of makers) assertKeyError(() => new EncryptedStore(new MemoryStore(), keysWith(make())));
    const startBytes = wasmMemoryBytes();
    let untyped = 0;
    for (let i = 0; i < ROUNDS; i += 1) {
      try {
        new EncryptedStore(new MemoryStore(), keysWith(makers[i % makers.length]())); // eslint-disable-line no-new
      } catch (e) {
        if (!(e instanceof ConfigError)) untyped += 1;
      }
    }
    assert.equal(untyped, 0, 'every failure a ConfigError');
    const grown = wasmMemoryBytes() - startBytes;
    assert.ok(grown <= 128 * 1024, `wasm memory grew by ${grown} bytes`);

    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });
    const inner = new MemoryStore();
    const store = new EncryptedStore(inner, keysWith(new Uint8Array(32).fill(7)));
    const family = await emu.seed();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token });
    assert.ok((await session.accessToken()).length > 0, 'a token after the bad keys');
    assert.ok(!inner.get('u1').includes('refresh_token'), 'the record is encrypted');
    const saved = JSON.parse(await store.load('u1'));
    assert.equal(await emu.refreshTokenState(saved.refresh_token), 'active', 'the rotated refresh token was saved');
  });
});
