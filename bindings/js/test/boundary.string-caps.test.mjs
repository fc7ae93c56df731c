// Size caps on host strings hold before the copy into wasm (DESIGN point
// 16): a JavaScript string's length in UTF-16 units is a lower bound of its
// UTF-8 bytes, so one longer than the cap is refused without being copied.
// A 100 MB record from a store's load used to be copied in and then refused,
// leaving wasm memory at 101 MB for good; concurrent calls with huge token
// arguments grew it by their total size (and past 4 GiB trapped the
// allocator, poisoning the instance).
//
// - records from load / loadVersioned: over 256 KiB, a StorageError (and
//   EncryptedStore's envelopes from its inner store: over their cap, one too);
// - token-like arguments (tokenRejected, seed): over the response body cap
//   (64 KiB, every token came in a response), a ConfigError naming them;
// - records given to EncryptedStore's and MemoryStore's save: the same.
// - option names: quoted in the error up to 64 characters, never copied whole.
// In each case wasm memory does not grow, and the instance works after.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ConfigError, EncryptedStore, MemoryStore, StorageError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { wasmMemoryBytes } from '../support/wasm-memory.mjs';

const MB = 1024 * 1024;

// Wasm memory only grows: copying a string smaller than one copied before
// would reuse freed memory and show no growth. Each check therefore uses a
// string 8 MiB longer than any before it, so that each could fail alone.
let size = 0;
/** A string longer than every one before it. */
const bigger = () => { size += 8 * MB; return 'x'.repeat(size); };
/** A record longer than every string before it. */
const biggerRecord = () => `{"schema":"freshtoken.record/1","refresh_token":"rt","pad":"${bigger()}"}`;

/** Runs `run`, then asserts wasm memory grew by less than 1 MiB. */
async function noGrowth(run) {
  const start = wasmMemoryBytes();
  await run();
  const grown = wasmMemoryBytes() - start;
  assert.ok(grown < MB, `wasm memory grew by ${grown} bytes`);
}

const names = (field) => (e) => e instanceof ConfigError && e.message.includes(`\`${field}\``);

describe('host strings are measured before they are copied into wasm', () => {
  let emu;
  let client;
  before(async () => {
    emu = await startEmulator();
    client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });
  });
  after(async () => { await emu?.stop(); });

  test('a record of 8 MiB from load(): a StorageError, nothing copied in', async () => {
    const record = biggerRecord();
    await noGrowth(async () => {
      const session = client.session('big-load', { load: async () => record, save: async () => {} });
      await assert.rejects(session.accessToken(), (e) => e instanceof StorageError && /larger than 262144 bytes/.test(e.message));
    });
  });

  test('a record of 16 MiB from loadVersioned(): a StorageError, nothing copied in', async () => {
    const record = biggerRecord();
    const store = {
      load: async () => record,
      save: async () => {},
      loadVersioned: async () => ({ record, version: '1' }),
      saveVersioned: async () => '2',
    };
    await noGrowth(async () => {
      await assert.rejects(client.session('big-versioned', store).accessToken(), StorageError);
    });
  });

  test('huge tokens in tokenRejected() (9 at once) and seed(): ConfigErrors naming them', async () => {
    const slowStore = { load: () => new Promise((resolve) => { setTimeout(() => resolve(null), 50); }), save: async () => {} };
    const session = client.session('big-token', slowStore);
    const token = bigger();
    await noGrowth(async () => {
      await Promise.all(Array.from({ length: 9 }, () => assert.rejects(session.tokenRejected(token), names('token'))));
    });
    size = 9 * size; // nine copies may have been held at once
    for (const field of ['refreshToken', 'accessToken']) {
      const huge = bigger();
      await noGrowth(async () => {
        await assert.rejects(session.seed({ refreshToken: 'rt', [field]: huge }), names(field));
      });
    }
  });

  test('EncryptedStore and MemoryStore: oversize records and envelopes are refused unread', async () => {
    const key = new Uint8Array(32).fill(3);
    let stored;
    const inner = { load: async () => stored, save: async () => {} };
    const encrypted = new EncryptedStore(inner, { current: { id: 'k', key } });
    stored = biggerRecord();
    // What the inner store returned is the store's failure, not a bad argument.
    await noGrowth(() => assert.rejects(encrypted.load('u1'), (e) => e instanceof StorageError && /larger than \d+ bytes/.test(e.message)));
    stored = biggerRecord();
    await noGrowth(() => assert.rejects(client.session('big-enc', encrypted).accessToken(), StorageError));
    stored = null;
    const record = biggerRecord();
    await noGrowth(() => assert.rejects(encrypted.save('u1', record), names('record')));
    const memoryRecord = biggerRecord();
    await noGrowth(() => assert.rejects(new MemoryStore().save('u1', memoryRecord), names('record')));
  });

  test('a store error with a huge message: its first 4096 characters, nothing more copied in', async () => {
    const message = `disk full: ${bigger()}`;
    await noGrowth(async () => {
      const session = client.session('huge-message', { load: async () => { throw new Error(message); }, save: async () => {} });
      const error = await session.accessToken().then(() => null, (e) => e);
      assert.ok(error instanceof StorageError, `${error}`);
      assert.match(error.message, /disk full: x+…/);
      assert.ok(error.message.length < 4096 + 200, `${error.message.length} characters`);
    });
  });

  test('an option whose name is 8 MiB long: a ConfigError quoting its first 64 characters, nothing copied in', async () => {
    const quotesStart = (e) => e instanceof ConfigError && /`(options\.)?x{64}…`: is not a known option/.test(e.message) && e.message.length < 300;
    const name = bigger();
    await noGrowth(() => {
      assert.throws(() => new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', [name]: 1 }), quotesStart);
    });
    const seedName = bigger();
    await noGrowth(() => assert.rejects(client.session('big-option', new MemoryStore()).seed({ refreshToken: 'rt', [seedName]: 1 }), quotesStart));
  });

  test('a token at the cap still works; afterwards a normal refresh', async () => {
    const session = client.session('at-cap', new MemoryStore());
    await session.seed({ refreshToken: (await emu.seed()).refresh_token, accessToken: 'a'.repeat(64 * 1024), expiresIn: 3600 });
    assert.equal((await session.accessToken()).length, 64 * 1024);
    const fresh = client.session('after', new MemoryStore());
    await fresh.seed({ refreshToken: (await emu.seed()).refresh_token });
    assert.ok((await fresh.accessToken()).length > 0);
  });
});
