// Configuration and argument checks: every mistake is a ConfigError (code
// 'config') whose message names the field as a JavaScript caller spells it.
// Nothing here talks to a server.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ConfigError, FreshTokenError, MemoryStore, TokenClient, refreshTokens } from 'freshtoken';

const BASE = { tokenEndpoint: 'https://bank.example/connect/token', clientId: 'client', clientSecret: 'secret' };

/** `make()` throws a ConfigError whose message names `field`. */
function configError(make, field) {
  let thrown;
  try {
    make();
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown instanceof ConfigError, `expected a ConfigError naming ${field}, got ${thrown?.name ?? 'no error'}`);
  assert.ok(thrown instanceof FreshTokenError);
  assert.equal(thrown.code, 'config');
  assert.equal(thrown.name, 'ConfigError');
  assert.ok(thrown.message.includes(`\`${field}\``), `message names ${field}: ${thrown.message}`);
  assert.equal(thrown.field, field, 'and so does its `field`');
  return thrown;
}

describe('TokenClient options', () => {
  test('a valid configuration builds; loopback http is allowed for tests', () => {
    assert.ok(new TokenClient(BASE) instanceof TokenClient);
    for (const host of ['127.0.0.1:8080', 'localhost:1', '[::1]:9']) {
      assert.ok(new TokenClient({ ...BASE, tokenEndpoint: `http://${host}/connect/token` }));
    }
    assert.equal(new TokenClient(BASE).sessionCount, 0);
  });

  test('an unknown option is named', () => {
    configError(() => new TokenClient({ ...BASE, tokenEndpiont: 'x' }), 'tokenEndpiont');
    configError(() => new TokenClient({ ...BASE, leeway: 30 }), 'leeway');
    // Named as written: the core's snake_case names are not the option's.
    const err = configError(() => new TokenClient({ ...BASE, client_id: 'x' }), 'client_id');
    assert.ok(!err.message.includes('clientId'), err.message);
  });

  test('other options a message names are spelled as JavaScript sets them', () => {
    const err = configError(() => new TokenClient({ ...BASE, leaseTtlMs: 1_000 }), 'leaseTtlMs');
    for (const name of ['timeoutMs', 'retry.budgetMs', 'storeTimeoutMs']) {
      assert.ok(err.message.includes(name), `${name} in: ${err.message}`);
    }
    assert.doesNotMatch(err.message, /timeout_ms|budget_ms/);
    // An unknown snake_case option is still named as written.
    const unknown = configError(() => new TokenClient({ ...BASE, lease_ttl_ms: 60_000 }), 'lease_ttl_ms');
    assert.ok(!unknown.message.includes('leaseTtlMs'), unknown.message);
  });

  test('a non-https, non-loopback endpoint names tokenEndpoint', () => {
    const err = configError(() => new TokenClient({ ...BASE, tokenEndpoint: 'http://bank.example/connect/token' }), 'tokenEndpoint');
    assert.match(err.message, /https/);
    configError(() => new TokenClient({ ...BASE, tokenEndpoint: 'not a url' }), 'tokenEndpoint');
    configError(() => new TokenClient({ ...BASE, tokenEndpoint: 'http://127.0.0.1.bank.example/token' }), 'tokenEndpoint');
  });

  test('a negative or fractional leewaySeconds', () => {
    configError(() => new TokenClient({ ...BASE, leewaySeconds: -1 }), 'leewaySeconds');
    configError(() => new TokenClient({ ...BASE, leewaySeconds: 1.5 }), 'leewaySeconds');
    configError(() => new TokenClient({ ...BASE, leewaySeconds: '60' }), 'leewaySeconds');
  });

  test('client_secret_basic (or _post) without a secret; an unknown clientAuth', () => {
    const { clientSecret, ...noSecret } = BASE;
    assert.equal(typeof clientSecret, 'string');
    configError(() => new TokenClient({ ...noSecret, clientAuth: 'client_secret_basic' }), 'clientSecret');
    configError(() => new TokenClient({ ...noSecret, clientAuth: 'client_secret_post' }), 'clientSecret');
    configError(() => new TokenClient({ ...BASE, clientAuth: 'tls_client_auth' }), 'clientAuth');
    // private_key_jwt is known; with a secret but no key, the key is what is missing.
    configError(() => new TokenClient({ ...BASE, clientAuth: 'private_key_jwt' }), 'privateKeyPem');
    assert.ok(new TokenClient({ ...noSecret }), 'no secret: a public client');
  });

  test('required and typed fields', () => {
    configError(() => new TokenClient({ tokenEndpoint: BASE.tokenEndpoint }), 'clientId');
    configError(() => new TokenClient({ clientId: 'c' }), 'tokenEndpoint');
    configError(() => new TokenClient({ ...BASE, clientId: 5 }), 'clientId');
    configError(() => new TokenClient(), 'options');
    configError(() => new TokenClient({ ...BASE, timeoutMs: 0 }), 'timeoutMs');
    configError(() => new TokenClient({ ...BASE, maxSessions: -1 }), 'maxSessions');
    // Past 2^32 - 1 (wasm32's usize): no bound, as natively, not "negative".
    new TokenClient({ ...BASE, maxSessions: 5_000_000_000 }).free();
    configError(() => new TokenClient({ ...BASE, fetch: 'fetch' }), 'fetch');
    configError(() => new TokenClient({ ...BASE, now: 0 }), 'now');
    configError(() => new TokenClient({ ...BASE, retry: { maxAttempts: 0 } }), 'retry.maxAttempts');
    configError(() => new TokenClient({ ...BASE, retry: { maxAttempts: -1 } }), 'retry.maxAttempts');
  });

  test('an unknown key inside retry is named too', () => {
    configError(() => new TokenClient({ ...BASE, retry: { maxAtempts: 1 } }), 'retry.maxAtempts');
  });

  test('refreshTokens() checks its options the same way, before any request', async () => {
    let fetched = 0;
    const fetch = async () => { fetched += 1; throw new Error('must not be called'); };
    await assert.rejects(refreshTokens({ ...BASE, fetch }), (err) => err instanceof ConfigError && /`refreshToken`/.test(err.message));
    await assert.rejects(refreshTokens({ ...BASE, fetch, refreshToken: '' }), ConfigError);
    await assert.rejects(refreshTokens({ ...BASE, fetch, refreshToken: 'rt', bogus: 1 }), (err) => err instanceof ConfigError && /`bogus`/.test(err.message));
    assert.equal(fetched, 0);
  });
});

describe('session arguments', () => {
  const client = new TokenClient(BASE);

  test('a store without save() (or load()) names store', () => {
    configError(() => client.session('u1', { load: async () => null }), 'store');
    configError(() => client.session('u1', { save: async () => {} }), 'store');
    configError(() => client.session('u1', null), 'store');
  });

  test("session('') names key", () => {
    configError(() => client.session('', new MemoryStore()), 'key');
    assert.equal(client.sessionCount, 0, 'nothing was created');
  });

  test('a store class instance with methods on its prototype is accepted', () => {
    class Store {
      async load() { return null; }
      async save() {}
    }
    assert.equal(client.session('u1', new Store()).key, 'u1');
  });
});
