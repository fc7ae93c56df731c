// EncryptedStore: records encrypted at rest (AES-256-GCM, the host's
// WebCrypto) around any store. Alone over a MemoryStore — the envelope,
// tampering, moved records, rotation, plain records, key forms and argument
// errors, interoperability with the Rust build and with Node's WebCrypto by
// the documented format — and under sessions against the emulator (no
// token in the store's raw contents; a tampered record is a StorageError).
// The Redis fleet run encrypted is in fleet.multiprocess.test.mjs.

import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { after, before, beforeEach, describe, test } from 'node:test';

import { ConfigError, EncryptedStore, MemoryStore, StorageError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const RECORD = '{"schema":"freshtoken.record/1","refresh_token":"rt-SENTINEL-record","updated_at":1}';
const KEY_A = new Uint8Array(32).fill(0xa1);
const KEY_B = new Uint8Array(32).fill(0xb2);
const CLIENT = { clientId: 'test-client', clientSecret: 'test-secret' };

/** An envelope the Rust build wrote (src/encrypted_store.rs FROZEN_V1): key 32 × 0x42, session key `user-42`. */
const FROZEN_V1 = '{"schema":"freshtoken.encrypted/1","kid":"2026-11","nonce":"2-uqFOs9KQa__xFw","ciphertext":"h_EdT1HjmXKYom8z0O-qz76aoPcHB59Ei_xAeNVCCP7SYJdAeVceCmgJJbIYN0ePFl8H0gBMObYXbsc6fwNFtbROy5we8g5XPOJk_0FwBHIokaUXhq2r-_8FIQ"}';
const FROZEN_RECORD = '{"schema":"freshtoken.record/1","refresh_token":"rt-frozen","updated_at":1}';

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
const fromB64url = (text) => new Uint8Array(Buffer.from(text, 'base64url'));

/** The envelope's members with one replaced. */
const withMember = (raw, name, value) => JSON.stringify({ ...JSON.parse(raw), [name]: value });

async function rejection(promise) {
  return promise.then((value) => assert.fail(`resolved with ${typeof value}`), (e) => e);
}

/** Asserts a StorageError that names `kid` and carries nothing of the record. */
function assertStorage(error, { kid, key }) {
  assert.ok(error instanceof StorageError, `${error?.name}: ${error?.message}`);
  assert.equal(error.code, 'storage');
  if (kid !== undefined) assert.ok(error.message.includes(`key id "${kid}"`), error.message);
  if (key !== undefined) assert.ok(error.message.includes(`session key "${key}"`), error.message);
  assert.ok(!error.message.includes('SENTINEL'), 'no record content in the message');
}

describe('EncryptedStore over a MemoryStore', () => {
  test('a record round-trips; the inner store holds only the versioned envelope', async () => {
    const inner = new MemoryStore();
    const store = new EncryptedStore(inner, { current: { id: '2026-11', key: KEY_A } });
    assert.equal(await store.load('user-1'), null);
    await store.save('user-1', RECORD);
    const raw = inner.get('user-1');
    assert.ok(!raw.includes('SENTINEL') && !raw.includes('refresh_token'), raw);
    const envelope = JSON.parse(raw);
    assert.deepEqual(Object.keys(envelope), ['schema', 'kid', 'nonce', 'ciphertext']);
    assert.equal(envelope.schema, 'freshtoken.encrypted/1');
    assert.equal(envelope.kid, '2026-11');
    assert.equal(fromB64url(envelope.nonce).length, 12, '96-bit nonce');
    assert.equal(fromB64url(envelope.ciphertext).length, RECORD.length + 16, 'ciphertext and a 16-byte tag');
    assert.equal(await store.load('user-1'), RECORD);
    assert.equal(store.inner, inner);
  });

  test('every save draws a fresh nonce', async () => {
    const inner = new MemoryStore();
    const store = new EncryptedStore(inner, { current: { id: 'k', key: KEY_A } });
    const nonces = new Set();
    for (let i = 0; i < 50; i += 1) {
      await store.save('u', RECORD);
      nonces.add(JSON.parse(inner.get('u')).nonce);
    }
    assert.equal(nonces.size, 50);
  });

  test('the Rust build\'s frozen envelope decrypts here (the same format, two implementations)', async () => {
    const inner = new MemoryStore();
    await inner.save('user-42', FROZEN_V1);
    const store = new EncryptedStore(inner, { current: { id: '2026-11', key: new Uint8Array(32).fill(0x42) } });
    assert.equal(await store.load('user-42'), FROZEN_RECORD);
    assertStorage(await rejection(new EncryptedStore(inner, { current: { id: '2026-11', key: KEY_A } }).load('user-42')), { kid: '2026-11', key: 'user-42' });
  });

  test('the envelope is what the README documents: Node\'s WebCrypto decrypts it with the documented associated data', async () => {
    const inner = new MemoryStore();
    const store = new EncryptedStore(inner, { current: { id: 'doc-key', key: KEY_A } });
    await store.save('user "7"', RECORD);
    const envelope = JSON.parse(inner.get('user "7"'));
    const key = await webcrypto.subtle.importKey('raw', KEY_A, 'AES-GCM', false, ['decrypt']);
    const aad = Buffer.from(`freshtoken.encrypted/1\0${envelope.kid}\0user "7"`, 'utf8');
    const plain = await webcrypto.subtle.decrypt(
      { name: 'AES-GCM', iv: fromB64url(envelope.nonce), additionalData: aad },
      key,
      fromB64url(envelope.ciphertext),
    );
    assert.equal(Buffer.from(plain).toString('utf8'), RECORD);
  });

  test('any altered byte of the nonce or the ciphertext is a StorageError naming the key id', async () => {
    const inner = new MemoryStore();
    const store = new EncryptedStore(inner, { current: { id: '2026-11', key: KEY_A } });
    await store.save('user-1', RECORD);
    const raw = inner.get('user-1');
    for (const name of ['nonce', 'ciphertext']) {
      const bytes = fromB64url(JSON.parse(raw)[name]);
      for (let i = 0; i < bytes.length; i += 1) {
        const altered = Uint8Array.from(bytes);
        altered[i] ^= 0x01;
        await inner.save('user-1', withMember(raw, name, b64url(altered)));
        const error = await rejection(store.load('user-1'));
        assertStorage(error, { kid: '2026-11', key: 'user-1' });
        assert.match(error.message, /failed to decrypt/, `${name}[${i}]`);
      }
    }
    await inner.save('user-1', withMember(raw, 'nonce', 'not base64!'));
    assert.match((await rejection(store.load('user-1'))).message, /damaged/);
    await inner.save('user-1', raw);
    assert.equal(await store.load('user-1'), RECORD, 'the intact record still reads');
  });

  test('a record copied to another session key, or relabelled with another key id, fails', async () => {
    const inner = new MemoryStore();
    // Two ids for one key: only the associated data tells them apart.
    const store = new EncryptedStore(inner, { current: { id: 'new', key: KEY_A }, old: [{ id: 'old', key: KEY_A }] });
    await store.save('alice', RECORD);
    await inner.save('mallory', inner.get('alice'));
    assertStorage(await rejection(store.load('mallory')), { kid: 'new', key: 'mallory' });
    await inner.save('alice', withMember(inner.get('alice'), 'kid', 'old'));
    assertStorage(await rejection(store.load('alice')), { kid: 'old', key: 'alice' });
  });

  test('an inner store that returns something other than a string: a StorageError naming its method', async () => {
    for (const bad of [42, {}, true]) {
      const inner = { load: async () => bad, save: async () => {}, loadVersioned: async () => ({ record: bad, version: '1' }), saveVersioned: async () => '2' };
      const store = new EncryptedStore(inner, { current: { id: 'k', key: KEY_A } });
      const error = await rejection(store.load('u'));
      assert.ok(error instanceof StorageError, `load of ${typeof bad}: ${error}`);
      assert.equal(error.message, "the inner store's load() must resolve to a string or null");
    }
  });

  test('an inner loadVersioned() answer not { record, version } is a StorageError, never "nothing stored"', async () => {
    // Read as nothing stored, a re-link would compare and swap against an absent record.
    for (const bad of [42, 'text', [], { record: 'x' }, { record: 42, version: '1' }, { record: 'x', version: 2 }]) {
      const inner = { load: async () => null, save: async () => {}, loadVersioned: async () => bad, saveVersioned: async () => '2' };
      const store = new EncryptedStore(inner, { current: { id: 'k', key: KEY_A } });
      for (const [method, call] of [['loadVersion', () => store.loadVersion('u')], ['loadVersioned', () => store.loadVersioned('u')]]) {
        const error = await rejection(call());
        assert.ok(error instanceof StorageError, `${method} of ${JSON.stringify(bad)}: ${error}`);
        assert.equal(error.message, "the inner store's loadVersioned() must resolve to { record, version } (strings) or null");
      }
    }
  });

  test('text from the inner store that cannot be read (too long, a lone surrogate) is a StorageError, not a ConfigError', async () => {
    const texts = [
      ['x'.repeat(400_000), /larger than|longer than/],
      [`{"schema":"freshtoken.encrypted/1","kid":"k","nonce":"\ud800","ciphertext":"AAAA"}`, /lone UTF-16 surrogate/],
    ];
    for (const [text, reason] of texts) {
      const inner = { load: async () => text, save: async () => {}, loadVersioned: async () => ({ record: text, version: '1' }), saveVersioned: async () => '2' };
      const store = new EncryptedStore(inner, { current: { id: 'k', key: KEY_A } });
      for (const error of [await rejection(store.load('u-1')), await rejection(store.loadVersioned('u-1'))]) {
        assertStorage(error, { key: 'u-1' });
        assert.match(error.message, reason);
        assert.ok(!('field' in error) || error.field === undefined, `no config field: ${error.field}`);
      }
    }
  });

  test('a platform without WebCrypto is told apart from an altered record', async () => {
    const inner = new MemoryStore();
    await new EncryptedStore(inner, { current: { id: 'k', key: KEY_A } }).save('u', RECORD);
    const crypto = Object.getOwnPropertyDescriptor(globalThis, 'crypto');
    // No `crypto` at all, and a `crypto` without `subtle` (a browser page served over plain http).
    for (const stand of [undefined, { subtle: undefined, getRandomValues: (a) => a }]) {
      // A new store: its key has not been imported into WebCrypto yet.
      const store = new EncryptedStore(inner, { current: { id: 'k', key: KEY_A } });
      Object.defineProperty(globalThis, 'crypto', { value: stand, configurable: true, writable: true });
      let error;
      try {
        error = await rejection(store.load('u'));
      } finally {
        Object.defineProperty(globalThis, 'crypto', crypto);
      }
      assertStorage(error, { kid: 'k', key: 'u' });
      assert.doesNotMatch(error.message, /altered|another session key/);
      assert.match(error.message, /WebCrypto/);
      assert.equal(await store.load('u'), RECORD, 'read once WebCrypto is back');
    }
  });

  test('an unknown key id is a StorageError naming it, never a fallback', async () => {
    const inner = new MemoryStore();
    await new EncryptedStore(inner, { current: { id: '2025-01', key: KEY_A } }).save('u', RECORD);
    // The same key bytes under another id: still refused.
    const error = await rejection(new EncryptedStore(inner, { current: { id: '2026-11', key: KEY_A } }).load('u'));
    assertStorage(error, { kid: '2025-01', key: 'u' });
    assert.match(error.message, /not among the keys/);
  });

  test('rotation: read under an old key, written under the current one by the next save', async () => {
    const inner = new MemoryStore();
    await new EncryptedStore(inner, { current: { id: '2025', key: KEY_A } }).save('u', RECORD);
    const rotated = new EncryptedStore(inner, {
      current: { id: '2026', key: KEY_B },
      old: [{ id: '2025', key: Buffer.from(KEY_A).toString('base64') }],
    });
    const record = await rotated.load('u');
    assert.equal(record, RECORD);
    assert.equal(JSON.parse(inner.get('u')).kid, '2025', 'a read writes nothing');
    await rotated.save('u', record);
    assert.equal(JSON.parse(inner.get('u')).kid, '2026');
    assert.equal(await new EncryptedStore(inner, { current: { id: '2026', key: KEY_B } }).load('u'), RECORD);
    assertStorage(await rejection(new EncryptedStore(inner, { current: { id: '2025', key: KEY_A } }).load('u')), { kid: '2026' });
  });

  test('plain records are read and encrypted by their next save, unless refusePlaintext', async () => {
    const inner = new MemoryStore();
    await inner.save('u', RECORD);
    const store = new EncryptedStore(inner, { current: { id: 'k', key: KEY_A } });
    assert.equal(await store.load('u'), RECORD);
    assert.equal(inner.get('u'), RECORD, 'a read writes nothing');
    await store.save('u', RECORD);
    assert.equal(JSON.parse(inner.get('u')).kid, 'k');

    await inner.save('p', RECORD);
    const strict = new EncryptedStore(inner, { current: { id: 'k', key: KEY_A }, refusePlaintext: true });
    const error = await rejection(strict.load('p'));
    assertStorage(error, { key: 'p' });
    assert.match(error.message, /not encrypted/);
    assert.equal(await strict.load('u'), RECORD);
  });

  test('keys: a Uint8Array of 32 bytes, or base64 (standard or URL-safe, padding optional)', async () => {
    const bytes = Uint8Array.from({ length: 32 }, (_, i) => (i % 2 ? 0xff : 0xfb));
    const standard = Buffer.from(bytes).toString('base64');
    assert.ok(standard.includes('+') && standard.includes('/') && standard.endsWith('='));
    const inner = new MemoryStore();
    await new EncryptedStore(inner, { current: { id: 'k', key: bytes } }).save('u', RECORD);
    for (const key of [standard, standard.replace(/=+$/, ''), Buffer.from(bytes).toString('base64url'), Buffer.from(bytes)]) {
      assert.equal(await new EncryptedStore(inner, { current: { id: 'k', key } }).load('u'), RECORD, String(key));
    }
  });

  test('bad arguments are ConfigErrors naming the field, before any I/O', () => {
    const inner = new MemoryStore();
    const field = (inner2, keys) => {
      try {
        new EncryptedStore(inner2, keys); // eslint-disable-line no-new
      } catch (e) {
        assert.ok(e instanceof ConfigError, `${e?.name}: ${e?.message}`);
        assert.ok(!e.message.includes('AAAA'), 'no key material in the message');
        return e.message;
      }
      return assert.fail('accepted');
    };
    const good = { id: 'k', key: KEY_A };
    assert.match(field(null, { current: good }), /`inner`/);
    assert.match(field({ load() {} }, { current: good }), /`inner`/);
    assert.match(field(inner, undefined), /`keys`/);
    assert.match(field(inner, {}), /`keys\.current`/);
    assert.match(field(inner, { current: good, bogus: 1 }), /`keys\.bogus`/);
    assert.match(field(inner, { current: { id: 'k', key: new Uint8Array(16) } }), /`keys\.current\.key`.*32 bytes/);
    assert.match(field(inner, { current: { id: 'k', key: 'AAAA' } }), /`keys\.current\.key`/);
    assert.match(field(inner, { current: { id: 'k', key: 42 } }), /`keys\.current\.key`/);
    assert.match(field(inner, { current: { id: 'has space', key: KEY_A } }), /`keys\.current\.id`/);
    assert.match(field(inner, { current: { id: '', key: KEY_A } }), /`keys\.current\.id`/);
    assert.match(field(inner, { current: good, old: [good] }), /`keys\.old`.*"k"/);
    assert.match(field(inner, { current: good, old: [{ id: 'o', key: KEY_B }, { id: 'p' }] }), /`keys\.old\[1\]\.key`/);
    assert.match(field(inner, { current: good, old: 'k' }), /`keys\.old`/);
    assert.match(field(inner, { current: good, refusePlaintext: 'yes' }), /`keys\.refusePlaintext`/);
  });

  test('the fleet members exist exactly when the inner store has them; leases pass through', async () => {
    const plain = new EncryptedStore(new MemoryStore(), { current: { id: 'k', key: KEY_A } });
    assert.deepEqual(['acquire', 'release', 'loadVersioned', 'saveVersioned'].filter((m) => typeof plain[m] === 'function'), []);
    const records = new Map();
    const leases = new Map();
    const fleet = {
      async load(key) { return records.get(key)?.record ?? null; },
      async save(key, record) { records.set(key, { record, version: String(Number(records.get(key)?.version ?? 0) + 1) }); },
      async acquire(key, owner) { if (leases.has(key) && leases.get(key) !== owner) return false; leases.set(key, owner); return true; },
      async release(key, owner) { if (leases.get(key) === owner) leases.delete(key); },
      async loadVersioned(key) { return records.get(key) ?? null; },
      async saveVersioned(key, record, expected) {
        if ((records.get(key)?.version ?? null) !== expected) return null;
        await this.save(key, record);
        return records.get(key).version;
      },
    };
    const store = new EncryptedStore(fleet, { current: { id: 'k', key: KEY_A } });
    assert.equal(await store.acquire('u', 'a', 1000), true);
    assert.equal(await store.acquire('u', 'b', 1000), false);
    await store.release('u', 'a');
    assert.equal(leases.size, 0);
    assert.equal(await store.saveVersioned('u', RECORD, null), '1');
    assert.equal(await store.saveVersioned('u', RECORD, null), null, 'a conflict passes through');
    assert.deepEqual(await store.loadVersioned('u'), { record: RECORD, version: '1' });
    assert.ok(!records.get('u').record.includes('SENTINEL'));
    assert.equal(await store.loadVersioned('nobody'), null);
    assert.equal(await store.loadVersion('u'), '1', 'the version, the envelope unopened');
    assert.equal(await store.loadVersion('nobody'), null);
    assert.equal(typeof plain.loadVersion, 'undefined');
  });

  test('every member called directly refuses a bad argument with a ConfigError naming it; the inner store sees nothing', async () => {
    const calls = [];
    const logged = (name) => async (...args) => { calls.push(name); return name === 'acquire' ? true : null; };
    const inner = Object.fromEntries(['load', 'save', 'acquire', 'release', 'loadVersioned', 'loadVersion', 'saveVersioned'].map((m) => [m, logged(m)]));
    const store = new EncryptedStore(inner, { current: { id: 'k', key: KEY_A } });
    const field = async (promise) => {
      const e = await rejection(promise);
      assert.ok(e instanceof ConfigError, `${e?.name}: ${e?.message}`);
      return e.field;
    };
    for (const bad of [42, '\ud800', null, undefined, {}, 'x'.repeat(64 * 1024 + 1)]) {
      assert.equal(await field(store.load(bad)), 'key');
      assert.equal(await field(store.save(bad, RECORD)), 'key');
      assert.equal(await field(store.acquire(bad, 'o', 1000)), 'key');
      assert.equal(await field(store.release(bad, 'o')), 'key');
      assert.equal(await field(store.loadVersioned(bad)), 'key');
      assert.equal(await field(store.loadVersion(bad)), 'key');
      assert.equal(await field(store.saveVersioned(bad, RECORD, null)), 'key');
    }
    for (const bad of [42, '\ud800', null]) {
      assert.equal(await field(store.acquire('u', bad, 1000)), 'owner');
      assert.equal(await field(store.release('u', bad)), 'owner');
    }
    for (const bad of ['x', 1.5, -1, NaN, null]) assert.equal(await field(store.acquire('u', 'o', bad)), 'ttlMs');
    for (const bad of [5, {}, undefined]) assert.equal(await field(store.saveVersioned('u', RECORD, bad)), 'expectedVersion');
    assert.deepEqual(calls, []);
    assert.equal(await store.acquire('u', 'o', 1000), true, 'good arguments pass through');
    assert.equal(await store.loadVersion('u'), null);
    assert.deepEqual(calls, ['acquire', 'loadVersion']);
  });
});

/** A compare-and-swap store in memory (versions count the saves of a key). */
function versionedStore() {
  const records = new Map();
  return {
    records,
    async load(key) { return records.get(key)?.record ?? null; },
    async save(key, record) { records.set(key, { record, version: String(Number(records.get(key)?.version ?? 0) + 1) }); },
    async loadVersioned(key) { return records.get(key) ?? null; },
    async saveVersioned(key, record, expected) {
      if ((records.get(key)?.version ?? null) !== expected) return null;
      await this.save(key, record);
      return records.get(key).version;
    },
  };
}

describe('EncryptedStore under sessions against the emulator', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  function fakeClient() {
    const time = { ms: Math.floor(Date.now() / 1000) * 1000 };
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT, now: () => time.ms, sleep: async (ms) => { time.ms += ms; } });
    return { time, client };
  }

  test('refreshes rotate through the encrypted store; its raw contents never hold a token', async () => {
    const inner = new MemoryStore();
    const store = new EncryptedStore(inner, { current: { id: '2026-11', key: KEY_A } });
    const { time, client } = fakeClient();
    const family = await emu.seed();
    await client.session('user-42', store).seed({ refreshToken: family.refresh_token });
    const tokens = [family.refresh_token];
    for (let window = 1; window <= 3; window += 1) {
      const access = await client.session('user-42', store).accessToken();
      assert.equal(await emu.refreshRequests(), window);
      const record = JSON.parse(await store.load('user-42'));
      assert.ok(record.access_token === access, 'the decrypted record holds the token served');
      assert.equal(await emu.refreshTokenState(record.refresh_token), 'active');
      tokens.push(access, record.refresh_token);
      const raw = inner.get('user-42');
      assert.ok(tokens.every((t) => t.length > 8 && !raw.includes(t)), 'no token in the raw record');
      time.ms += 901_000;
    }
    // A new client (a restart) reads the encrypted record.
    const { client: restarted } = fakeClient();
    assert.ok(typeof await restarted.session('user-42', store).accessToken() === 'string');
    client.free();
    restarted.free();
  });

  test('a record no key opens (its key removed too early) is replaced by a re-link', async () => {
    const inner = versionedStore();
    const { client } = fakeClient();
    const old = await emu.seed();
    await client.session('u', new EncryptedStore(inner, { current: { id: '2025', key: KEY_A } })).seed({ refreshToken: old.refresh_token });
    const current = new EncryptedStore(inner, { current: { id: '2026', key: KEY_B } });
    const { client: later } = fakeClient();
    const session = later.session('u', current);
    assertStorage(await rejection(session.accessToken()), { kid: '2025', key: 'u' });
    const relinked = await emu.seed();
    await session.seed({ refreshToken: relinked.refresh_token });
    assert.equal(JSON.parse(inner.records.get('u').record).kid, '2026', 'the new link is saved under the current key');
    assert.equal(JSON.parse(await current.load('u')).refresh_token, relinked.refresh_token);
    assert.equal(typeof await session.accessToken(), 'string');
    assert.equal(await emu.refreshRequests(), 1);
    client.free();
    later.free();
  });

  test('a tampered record is a StorageError naming the key id; nothing is sent', async () => {
    const inner = new MemoryStore();
    const store = new EncryptedStore(inner, { current: { id: '2026-11', key: KEY_A } });
    const { client } = fakeClient();
    const family = await emu.seed();
    await client.session('alice', store).seed({ refreshToken: family.refresh_token });
    const raw = inner.get('alice');
    const ciphertext = fromB64url(JSON.parse(raw).ciphertext);
    ciphertext[5] ^= 0x80;
    await inner.save('alice', withMember(raw, 'ciphertext', b64url(ciphertext)));
    const { client: fresh } = fakeClient();
    const error = await rejection(fresh.session('alice', store).accessToken());
    assertStorage(error, { kid: '2026-11', key: 'alice' });
    assert.ok(!error.message.includes(family.refresh_token));
    assert.equal(await emu.refreshRequests(), 0, 'nothing sent');
    client.free();
    fresh.free();
  });
});
