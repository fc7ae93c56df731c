// What crosses into wasm is checked (issue 11 item 4, DESIGN point 16):
// every entry point answers a wrong argument with a ConfigError naming it
// (a Promise-returning one rejects with it), never a RuntimeError from a
// trapped instance; keys with lone UTF-16 surrogates are refused instead of
// merged; a freed handle is refused before it reaches wasm. Nothing here
// talks to a server.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ConfigError, MemoryStore, TokenClient, refreshTokens } from 'freshtoken';
import { wasmMemoryBytes } from '../support/wasm-memory.mjs';

const BASE = { tokenEndpoint: 'http://127.0.0.1:9/connect/token', clientId: 'client', clientSecret: 'secret' };

/** Checks that `err` is a ConfigError whose message names `field`. */
function namesField(err, field) {
  assert.ok(err instanceof ConfigError, `expected a ConfigError naming ${field}, got ${err?.name}: ${err?.message}`);
  assert.equal(err.code, 'config');
  assert.ok(err.message.includes(`\`${field}\``), `the message names ${field}: ${err.message}`);
  return true;
}

const throwsNaming = (make, field, label = field) => assert.throws(make, (err) => namesField(err, field), label);
const rejectsNaming = (promise, field, label = field) => assert.rejects(promise, (err) => namesField(err, field), label);

/** A Proxy that was revoked: every operation on it throws a TypeError. */
function revoked(target = {}) {
  const { proxy, revoke } = Proxy.revocable(target, {});
  revoke();
  return proxy;
}

/** Values that are not strings, and what they are. */
const NOT_STRINGS = [
  ['a number', 42], ['an object', {}], ['null', null], ['undefined', undefined], ['a Symbol', Symbol('key')],
  ['a BigInt', 10n], ['a boolean', true], ['an array', ['u1']], ['a String object', new String('u1')],
  ['a function', () => 'u1'], ['a revoked Proxy', revoked()],
];

describe('entry points check their arguments', () => {
  const client = new TokenClient(BASE);
  const store = new MemoryStore();

  test('session(key): a non-string key names `key`', () => {
    for (const [label, key] of NOT_STRINGS) throwsNaming(() => client.session(key, store), 'key', label);
    throwsNaming(() => client.session('', store), 'key', 'the empty string');
    throwsNaming(() => client.session(), 'key', 'no arguments');
  });

  test('session(key, store): a store without load() and save() names `store`', () => {
    const stores = [
      null, undefined, 42, 'store', {}, { load: async () => null }, { save: async () => {} },
      { load: 'x', save: async () => {} }, revoked(), revoked(new MemoryStore()),
      new Proxy({}, { get() { throw new Error('trap'); } }),
      Object.defineProperty({ save: async () => {} }, 'load', { get() { throw new Error('getter'); } }),
    ];
    for (const [i, bad] of stores.entries()) throwsNaming(() => client.session('u1', bad), 'store', `store #${i}`);
  });

  test('keys with a lone surrogate are refused, not merged; paired surrogates and U+FFFD itself are fine', async () => {
    for (const key of ['x\uD800', 'x\uDBFF', '\uDC00x', 'a\uDFFFb', 'x\uDE00\uD83D']) {
      throwsNaming(() => client.session(key, store), 'key', JSON.stringify(key));
    }
    const emoji = client.session('x\uD83D\uDE00', store);
    const replacement = client.session('x\uFFFD', store);
    assert.equal(emoji.key, 'x\u{1F600}');
    assert.equal(replacement.key, 'x\uFFFD');
    await emoji.seed({ refreshToken: 'rt-emoji' });
    assert.ok(store.get('x\u{1F600}') !== null);
    assert.equal(store.get('x\uFFFD'), null, 'two keys, two records');
  });

  test('a stored record with a lone surrogate is a StorageError, and its refresh token is never sent changed', async () => {
    // JSON.stringify writes a lone surrogate as an escape (\ud800); `raw` puts the character itself in the text.
    const escaped = (rt) => JSON.stringify({ schema: 'freshtoken.record/1', refresh_token: rt, updated_at: 1 });
    const raw = (rt) => escaped(rt).replace(/\\u(d[89a-f][0-9a-f]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
    assert.ok(raw('rt-\uD800').includes('\uD800') && escaped('rt-\uD800').includes('\\ud800'));
    const versioned = (text) => ({
      load: async () => null,
      save: async () => {},
      loadVersioned: async () => ({ record: text, version: '1' }),
      saveVersioned: async () => '2',
    });
    const cases = [
      ['load', { load: async () => raw('rt-\uD800-1'), save: async () => {} }, /store\.load returned a record with a lone UTF-16 surrogate; it was not read/],
      ['loadVersioned', versioned(raw('rt-\uDFFF-2')), /store\.loadVersioned returned a record with a lone UTF-16 surrogate; it was not read/],
      // As serde_json does natively: a lone surrogate's escape is not JSON.
      ['load, escaped', { load: async () => escaped('rt-\uD800-3'), save: async () => {} }, /the stored record is not JSON/],
      ['loadVersioned, escaped', versioned(escaped('rt-\uDBFF-4')), /the stored record is not JSON/],
      // Not a string at all: said so, as the store's wrong type.
      ['load, a number', { load: async () => 42, save: async () => {} }, /store\.load must resolve to a string or null/],
      ['loadVersioned, a number', versioned(42), /store\.loadVersioned must resolve to \{ record, version \} \(strings\) or null/],
    ];
    const client = new TokenClient(BASE); // nothing listens: a refresh would be a NetworkError
    for (const [i, [label, store, message]] of cases.entries()) {
      const error = await client.session(`u${i}`, store).accessToken().then(() => assert.fail('served'), (e) => e);
      assert.equal(error.code, 'storage', `${label}: ${error.code}: ${error.message}`);
      assert.match(error.message, message, label);
    }
    // A paired surrogate is a character like any other: read, then refreshed (here: no server).
    for (const text of [raw('rt-\uD83D\uDE00'), escaped('rt-\uD83D\uDE00')]) {
      const paired = { load: async () => text, save: async () => {} };
      const error = await client.session('paired', paired).accessToken().then(() => assert.fail('served'), (e) => e);
      assert.equal(error.code, 'network', `${error.code}: ${error.message}`);
    }
    client.free();
  });

  test('a store version with a lone surrogate is a StorageError, never a version changed (and a conflict at every save)', async () => {
    // Converted, a lone surrogate becomes U+FFFD: the version sent back as
    // `expected` would never match, and every save of the session would be
    // a `conflict`, for good. A paired one is kept exactly.
    const store = (bad, version) => {
      const rows = new Map();
      return {
        load: async (key) => rows.get(key)?.record ?? null,
        save: async () => assert.fail('a versioned store is saved with saveVersioned'),
        loadVersioned: async (key) => {
          const row = rows.get(key);
          return row ? { record: row.record, version: bad === 'loadVersioned' ? version : row.version } : null;
        },
        saveVersioned: async (key, record, expected) => {
          if ((rows.get(key)?.version ?? null) !== expected) return null;
          const n = (rows.get(key)?.n ?? 0) + 1; // the row's own versions: well-formed unless pairing is tested
          rows.set(key, { record, n, version: bad === null ? `${version}${n}` : `r${n}` });
          return bad === 'saveVersioned' ? version : rows.get(key).version;
        },
        ...(bad === 'loadVersion' ? { loadVersion: async () => version } : {}),
      };
    };
    const client = new TokenClient(BASE); // nothing listens: a refresh would be a NetworkError
    for (const bad of ['loadVersioned', 'loadVersion', 'saveVersioned']) {
      const session = client.session(`v-${bad}`, store(bad, 'v\uD800'));
      const error = await session.seed({ refreshToken: 'rt', accessToken: 'at', expiresIn: 0 })
        .then(() => session.refresh())
        .then(() => assert.fail('refreshed'), (e) => e);
      assert.equal(error.code, 'storage', `${bad}: ${error.code}: ${error.message}`);
      assert.match(error.message, new RegExp(`store\\.${bad} returned a version with a lone UTF-16 surrogate; it was not read`));
    }
    const paired = client.session('v-paired', store(null, 'v\uD83D\uDE00'));
    await paired.seed({ refreshToken: 'rt', accessToken: 'at', expiresIn: 0 });
    const error = await paired.refresh().then(() => assert.fail('refreshed'), (e) => e);
    assert.equal(error.code, 'network', `the write-ahead matched the version: ${error.code}: ${error.message}`);
    client.free();
  });

  test('session methods: tokenRejected(token) and seed(seed) name their argument', async () => {
    const session = client.session('u1', store);
    for (const [label, token] of NOT_STRINGS) await rejectsNaming(session.tokenRejected(token), 'token', label);
    await rejectsNaming(session.tokenRejected('at\uD800'), 'token', 'a lone surrogate');
    for (const seed of [null, undefined, 42, 'rt']) await rejectsNaming(session.seed(seed), 'seed', typeof seed);
    await rejectsNaming(session.seed(revoked()), 'seed', 'a revoked Proxy');
    // A misspelt optional member is named, not dropped (the token would be refreshed at once).
    await rejectsNaming(session.seed({ refreshToken: 'rt', accessToken: 'at', expires_in: 900 }), 'expires_in');
    await rejectsNaming(session.seed({ refreshToken: 42 }), 'refreshToken');
    await rejectsNaming(session.seed({ refreshToken: 'rt', expiresIn: 10n }), 'expiresIn');
    await rejectsNaming(session.seed({ refreshToken: 'rt', scope: Symbol('s') }), 'scope');
    await rejectsNaming(session.seed(new Proxy({}, { get() { throw new Error('trap'); } })), 'refreshToken');
  });

  test('exchangeCode(options, key, store) names each argument', async () => {
    const params = { code: 'c', codeVerifier: 'v'.repeat(43), redirectUri: 'https://app.example/cb' };
    for (const [label, key] of NOT_STRINGS) await rejectsNaming(client.exchangeCode(params, key, store), 'key', label);
    await rejectsNaming(client.exchangeCode(params, 'x\uD800', store), 'key', 'a lone surrogate');
    for (const bad of [null, 42, 'code']) await rejectsNaming(client.exchangeCode(bad, 'u1', store), 'options', String(bad));
    await rejectsNaming(client.exchangeCode({ ...params, code: 42 }, 'u1', store), 'code');
    await rejectsNaming(client.exchangeCode(params, 'u1', null), 'store');
  });

  test('authorizationUrl(options), clientToken(scopes), invalidateClientToken(scopes)', async () => {
    for (const bad of [null, 42, 'https://app.example/cb']) await rejectsNaming(client.authorizationUrl(bad), 'options', String(bad));
    await rejectsNaming(client.authorizationUrl({ redirectUri: 'https://app.example/cb', scopes: 'openid' }), 'scopes');
    await rejectsNaming(client.authorizationUrl({ redirectUri: 42 }), 'redirectUri');
    // `scope` for `scopes` would ask the user to consent to offline_access alone.
    await rejectsNaming(client.authorizationUrl({ redirectUri: 'https://app.example/cb', scope: 'openid accounts' }), 'scope');
    const scopeLists = [
      'openid', null, 42, {}, [1], ['a', Symbol('b')], ['a\uD800'], revoked([]), revoked(),
      new Proxy(['a'], { get(target, name) { if (name === '0') throw new Error('trap'); return target[name]; } }),
    ];
    for (const [i, scopes] of scopeLists.entries()) {
      await rejectsNaming(client.clientToken(scopes), 'scopes', `clientToken #${i}`);
      throwsNaming(() => client.invalidateClientToken(scopes), 'scopes', `invalidateClientToken #${i}`);
    }
  });

  test('options objects: revoked or throwing Proxies, throwing getters, non-objects', async () => {
    for (const [i, options] of [null, undefined, 42, 'options', revoked(), revoked(BASE)].entries()) {
      throwsNaming(() => new TokenClient(options), 'options', `options #${i}`);
      await rejectsNaming(refreshTokens(options), 'options', `options #${i}`);
    }
    throwsNaming(() => new TokenClient(new Proxy(BASE, { ownKeys() { throw new Error('trap'); } })), 'options');
    const throwingSecret = new Proxy(BASE, { get(target, name) { if (name === 'clientSecret') throw new Error('trap'); return target[name]; } });
    throwsNaming(() => new TokenClient(throwingSecret), 'clientSecret');
    throwsNaming(() => new TokenClient({ ...BASE, retry: revoked() }), 'retry');
    throwsNaming(() => new TokenClient({ ...BASE, clientSecret: 'se\uDC00cret' }), 'clientSecret');
    throwsNaming(() => TokenClient.fromCredentialsJson(42), 'json');
    throwsNaming(() => TokenClient.fromCredentialsJson('{"clientId":"c","clientSecret":"s","slidingRefreshTokenLifetime":3600}', revoked()), 'options');
  });

  test('a freed handle is refused by every method; free() twice is harmless', async () => {
    const session = client.session('u1', store);
    session.free();
    session.free();
    throwsNaming(() => session.key, 'this');
    for (const name of ['accessToken', 'tokens', 'refresh', 'status']) await rejectsNaming(session[name](), 'this', name);
    await rejectsNaming(session.tokenRejected('at'), 'this', 'tokenRejected');
    await rejectsNaming(session.seed({ refreshToken: 'rt' }), 'this', 'seed');
    const other = new TokenClient(BASE);
    other.free();
    throwsNaming(() => other.session('u1', store), 'this');
    throwsNaming(() => other.sessionCount, 'this');
    await rejectsNaming(other.clientToken(['a']), 'this');
    throwsNaming(() => client.session.call({}, 'u1', store), 'this', 'a foreign this');
  });

  test('100,000 refused arguments leave the instance working and its memory flat', async () => {
    const freed = client.session('u1', store);
    freed.free();
    const cases = [
      () => client.session(42, store),
      () => client.session('x\uD800', store),
      () => client.session('u1', revoked()),
      () => new TokenClient(revoked()),
      () => client.invalidateClientToken(revoked([])),
      () => freed.key,
    ];
    const before = wasmMemoryBytes();
    for (let i = 0; i < 100_000; i += 1) {
      assert.throws(cases[i % cases.length], ConfigError);
    }
    assert.ok(wasmMemoryBytes() - before <= 64 * 1024, `wasm memory grew by ${wasmMemoryBytes() - before} bytes`);
    const session = client.session('after', store);
    await session.seed({ refreshToken: 'rt', accessToken: 'at-after', expiresIn: 900 });
    assert.equal(await session.accessToken(), 'at-after');
  });
});
