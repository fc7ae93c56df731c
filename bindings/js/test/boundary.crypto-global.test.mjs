// The host's WebCrypto as the wasm reaches it: `globalThis.crypto`,
// `crypto.subtle` and `crypto.getRandomValues`. An accessor that throws (a
// sandbox, a test), or a polyfill whose methods throw, answer with no
// promise, with no ArrayBuffer or take the buffer they were given, must be
// a typed error and nothing sent. Such an exception used to unwind through
// wasm: the client stayed borrowed (its `free()` then threw from a
// microtask, which ends a Node process), a private_key_jwt session was
// left "in doubt", and about 1,300 of them trapped the shared instance for
// every client in the process.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { ConfigError, EncryptedStore, MemoryStore, StorageError, TimeoutError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';
const REDIRECT_URI = 'https://app.example/callback';
const ROUNDS = 3000;

const realCrypto = Object.getOwnPropertyDescriptor(globalThis, 'crypto');
const webCrypto = globalThis.crypto;

/** Runs `fn` with `globalThis.crypto` defined by `descriptor`, then puts the real one back. */
async function withCrypto(descriptor, fn) {
  Object.defineProperty(globalThis, 'crypto', { configurable: true, ...descriptor });
  try {
    return await fn();
  } finally {
    Object.defineProperty(globalThis, 'crypto', realCrypto);
  }
}

const throwingGetter = { get() { throw new Error('crypto is not available here'); } };

/** A WebCrypto stand-in: the real one, with `subtle` members replaced. */
function polyfill(subtle, getRandomValues = (a) => webCrypto.getRandomValues(a)) {
  const real = webCrypto.subtle;
  return {
    value: {
      getRandomValues,
      subtle: {
        importKey: (...a) => real.importKey(...a),
        digest: (...a) => real.digest(...a),
        sign: (...a) => real.sign(...a),
        encrypt: (...a) => real.encrypt(...a),
        decrypt: (...a) => real.decrypt(...a),
        ...subtle,
      },
    },
  };
}

/** The error `promise` rejects with (it must reject). */
async function rejection(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail('expected a rejection');
}

describe('the host WebCrypto as the wasm reaches it', () => {
  let emu;
  let privateKeyPem;
  before(async () => {
    emu = await startEmulator();
    privateKeyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
      .export({ type: 'pkcs8', format: 'pem' });
  });
  after(async () => { await emu?.stop(); });

  const secretClient = () => new TokenClient({
    tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET,
  });
  const jwtClient = () => new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, privateKeyPem });

  /** A session on `client` seeded with a fresh refresh token from the emulator. */
  async function seeded(client, key) {
    const session = client.session(key, new MemoryStore());
    await session.seed({ refreshToken: (await emu.seed()).refresh_token });
    return session;
  }

  test(`a throwing globalThis.crypto, ${ROUNDS.toLocaleString('en')} times: typed errors, nothing sent, no client or session harmed`, async () => {
    const bystander = await seeded(secretClient(), 'bystander');
    const client = secretClient();
    const jwt = jwtClient();
    const jwtSession = await seeded(jwt, 'jwt-user');
    const encrypted = new EncryptedStore(new MemoryStore(), { current: { id: 'k', key: new Uint8Array(32).fill(7) } });
    const sentBefore = await emu.refreshRequests();

    await withCrypto(throwingGetter, async () => {
      for (let i = 0; i < ROUNDS; i += 1) {
        const error = await rejection(client.authorizationUrl({ redirectUri: REDIRECT_URI }));
        assert.ok(error instanceof ConfigError, `round ${i}: ${error?.constructor?.name}: ${error?.message}`);
      }
      const refresh = await rejection(jwtSession.refresh());
      assert.ok(refresh instanceof ConfigError, `${refresh?.constructor?.name}: ${refresh?.message}`);
      const save = await rejection(encrypted.save('u', '{}'));
      assert.ok(save instanceof StorageError, `${save?.constructor?.name}: ${save?.message}`);
      const made = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
      assert.equal(typeof made.leaseOwner, 'string', 'a client can still be made');
      made.free();
    });
    assert.equal(await emu.refreshRequests(), sentBefore, 'nothing was sent while WebCrypto threw');

    // WebCrypto back: every client works, and the session was never in doubt.
    assert.equal((await jwtSession.status()).inDoubt, false);
    assert.equal(typeof (await jwtSession.refresh()).accessToken, 'string');
    assert.equal(typeof (await bystander.refresh()).accessToken, 'string');
    assert.match((await client.authorizationUrl({ redirectUri: REDIRECT_URI })).url, /code_challenge=/);
    assert.equal(await emu.refreshRequests(), sentBefore + 2);
    for (const c of [client, jwt]) c.free();
    // `free()` of a client still borrowed threw from a microtask, past any caller.
    await new Promise((resolve) => setImmediate(resolve));
  });

  test('a polyfill that throws, answers with no promise or no ArrayBuffer, or takes the buffer: typed errors, nothing sent', async () => {
    const jwt = jwtClient();
    const session = await seeded(jwt, 'polyfilled');
    const sentBefore = await emu.refreshRequests();
    const detach = (array) => { structuredClone(array.buffer, { transfer: [array.buffer] }); return array; };
    const stands = {
      'a crypto.subtle accessor that throws': { value: { getRandomValues: (a) => webCrypto.getRandomValues(a), get subtle() { throw new Error('no'); } } },
      'methods that throw': polyfill({ digest() { throw new Error('no'); }, sign() { throw new Error('no'); } }),
      'methods that answer undefined': polyfill({ digest: () => undefined, sign: () => undefined }),
      'methods that answer a thenable whose then throws': polyfill({
        digest: () => ({ then() { throw new Error('no'); } }),
        sign: () => ({ then() { throw new Error('no'); } }),
      }),
      'methods that resolve with a string': polyfill({ digest: async () => 'digest', sign: async () => 'signature' }),
      'methods that resolve with a detached ArrayBuffer': polyfill({
        digest: async () => detach(new Uint8Array(32)).buffer,
        sign: async () => detach(new Uint8Array(256)).buffer,
      }),
      'methods that resolve with more bytes than any digest or signature': polyfill({
        digest: async () => new ArrayBuffer(8192),
        sign: async () => new ArrayBuffer(8192),
      }),
      'getRandomValues that throws': polyfill({}, () => { throw new Error('no'); }),
      'getRandomValues that takes the buffer': polyfill({}, detach),
      'getRandomValues that fills nothing': polyfill({}, (array) => array),
    };
    for (const [name, stand] of Object.entries(stands)) {
      await withCrypto(stand, async () => {
        const url = await rejection(jwt.authorizationUrl({ redirectUri: REDIRECT_URI }));
        assert.ok(url instanceof ConfigError, `${name}, authorizationUrl: ${url?.constructor?.name}: ${url?.message}`);
        const refresh = await rejection(session.refresh());
        assert.ok(refresh instanceof ConfigError, `${name}, refresh: ${refresh?.constructor?.name}: ${refresh?.message}`);
      });
    }
    assert.equal(await emu.refreshRequests(), sentBefore, 'no assertion left without a signature');
    assert.equal((await session.status()).inDoubt, false);
    assert.equal(typeof (await session.refresh()).accessToken, 'string', 'the session goes on with the real WebCrypto');
    jwt.free();
    await new Promise((resolve) => setImmediate(resolve));
  });

  test('a signature that never comes: the request deadline ends the refresh, nothing sent, nothing left in doubt', async () => {
    // WebCrypto signs the client assertion in the host: it had no deadline,
    // so one hung sign() left the refresh pending for good, every later
    // caller joined it, and the record stayed marked in doubt.
    const jwt = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, privateKeyPem, timeoutMs: 100, retry: { maxAttempts: 2 },
    });
    const session = await seeded(jwt, 'hung-sign');
    const sentBefore = await emu.refreshRequests();
    let signs = 0;
    await withCrypto(polyfill({ sign: () => { signs += 1; return new Promise(() => {}); } }), async () => {
      const refresh = await rejection(session.refresh());
      assert.equal(refresh.code, 'network', `${refresh?.constructor?.name}: ${refresh?.message}`);
      assert.match(refresh.message, /not signed in time/);
    });
    assert.equal(signs, 2, 'nothing was sent: tried again, as a connection refused is');
    assert.equal(await emu.refreshRequests(), sentBefore, 'nothing sent');
    assert.equal((await session.status()).inDoubt, false, 'the write-ahead marker withdrawn');
    assert.equal(typeof (await session.refresh()).accessToken, 'string', 'the next call starts anew');
    assert.equal(await emu.refreshRequests(), sentBefore + 1);
    jwt.free();
  });

  test('a PKCE hash that never comes: authorizationUrl() rejects at the request timeout', async () => {
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, timeoutMs: 100,
    });
    await withCrypto(polyfill({ digest: () => new Promise(() => {}) }), async () => {
      const error = await rejection(client.authorizationUrl({ redirectUri: REDIRECT_URI }));
      assert.ok(error instanceof TimeoutError, `${error?.constructor?.name}: ${error?.message}`);
    });
    assert.match((await client.authorizationUrl({ redirectUri: REDIRECT_URI })).url, /code_challenge=/);
    client.free();
  });

  test('EncryptedStore with a polyfill that answers no ArrayBuffer: a StorageError, and the record reads back later', async () => {
    const inner = new MemoryStore();
    const options = { current: { id: 'k', key: new Uint8Array(32).fill(9) } };
    await new EncryptedStore(inner, options).save('u', '{"r":1}');
    const stands = [
      polyfill({ decrypt: () => undefined, encrypt: () => undefined }),
      polyfill({ decrypt: async () => 'text', encrypt: async () => 'text' }),
      polyfill({ importKey() { throw new Error('no'); } }),
      // More bytes than AES-GCM gives: never saved or read cut short.
      polyfill({ decrypt: async () => new ArrayBuffer(1 << 16), encrypt: async () => new ArrayBuffer(1 << 16) }),
    ];
    for (const stand of stands) {
      const store = new EncryptedStore(inner, options);
      await withCrypto(stand, async () => {
        const load = await rejection(store.load('u'));
        assert.ok(load instanceof StorageError, `${load?.constructor?.name}: ${load?.message}`);
        assert.doesNotMatch(load.message, /altered/, 'a broken platform is not reported as tampering');
        const save = await rejection(store.save('u', '{"r":2}'));
        assert.ok(save instanceof StorageError, `${save?.constructor?.name}: ${save?.message}`);
      });
      assert.equal(await store.load('u'), '{"r":1}', 'nothing was overwritten');
    }
  });

  test('EncryptedStore with a getRandomValues that fills nothing saves nothing: no two records under one nonce', async () => {
    // AES-GCM nonces are 12 bytes; two records under one nonce give away their text.
    const inner = new MemoryStore();
    const store = new EncryptedStore(inner, { current: { id: 'k', key: new Uint8Array(32).fill(9) } });
    await store.save('u', '{"r":1}');
    const saved = inner.get('u');
    await withCrypto(polyfill({}, (array) => array), async () => {
      const save = await rejection(store.save('u', '{"r":2}'));
      assert.ok(save instanceof StorageError, `${save?.constructor?.name}: ${save?.message}`);
      assert.match(save.message, /could not be encrypted/);
    });
    assert.equal(inner.get('u'), saved, 'nothing was overwritten');
  });
});
