// An array argument's length is checked before it is copied (DESIGN point
// 16: size caps hold while reading). A sparse array with a huge length as
// `scopes` (or an EncryptedStore's `keys.old`) is a ConfigError naming it at
// once; copied first, 2^32 - 1 holes took seconds before the same error.
// The cap, 32,768 items (src/wasm/convert.rs MAX_ARRAY_ITEMS): n non-empty
// scopes joined by spaces need 2n - 1 characters, and a string argument
// holds at most 65,536. Nothing here talks to a server.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ConfigError, EncryptedStore, MemoryStore, TokenClient } from 'freshtoken';

const MAX_ITEMS = 32_768;
const BASE = { tokenEndpoint: 'http://127.0.0.1:9/connect/token', clientId: 'client', clientSecret: 'secret' };

/** A ConfigError naming `field` and the cap. */
function overCap(field) {
  return (err) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err?.name}: ${err?.message}`);
    assert.equal(err.field, field);
    assert.match(err.message, new RegExp(`\`${field.replace('.', '\\.')}\`: has more than ${MAX_ITEMS} items`));
    return true;
  };
}

/** An array of `length` holes whose items, if anything reads one, are counted in `reads.count`. */
function counted(length) {
  const reads = { count: 0 };
  const target = [];
  target.length = length;
  const array = new Proxy(target, {
    get(t, name, receiver) {
      if (typeof name === 'string' && /^\d+$/.test(name)) reads.count += 1;
      return Reflect.get(t, name, receiver);
    },
  });
  return { array, reads };
}

describe('array arguments are measured before they are copied', () => {
  const client = new TokenClient(BASE);

  test('scopes longer than the cap: a ConfigError naming `scopes`, no item read', async () => {
    const { array, reads } = counted(1_000_000);
    assert.throws(() => client.invalidateClientToken(array), overCap('scopes'));
    await assert.rejects(client.clientToken(array), overCap('scopes'));
    await assert.rejects(client.authorizationUrl({ redirectUri: 'http://127.0.0.1/cb', scopes: array }), overCap('scopes'));
    assert.equal(reads.count, 0, 'no item was read');
  });

  test('a sparse array of length 2^32 - 1 is refused at once', () => {
    const scopes = [];
    scopes.length = 2 ** 32 - 1;
    assert.throws(() => client.invalidateClientToken(scopes), overCap('scopes'));
    // "At once" is counted in items read, not in time: copying first reads them all.
    const { array, reads } = counted(2 ** 32 - 1);
    assert.throws(() => client.invalidateClientToken(array), overCap('scopes'));
    assert.equal(reads.count, 0, 'no item was read');
  });

  test('scopes up to the cap are read', () => {
    const scopes = Array.from({ length: MAX_ITEMS }, (_, i) => `s${i}`);
    client.invalidateClientToken(scopes);
    assert.throws(() => client.invalidateClientToken([...scopes, 'one-more']), overCap('scopes'));
  });

  test('EncryptedStore keys.old longer than the cap: a ConfigError naming `keys.old`', () => {
    const { array, reads } = counted(MAX_ITEMS + 1);
    const current = { id: 'k1', key: new Uint8Array(32) };
    assert.throws(() => new EncryptedStore(new MemoryStore(), { current, old: array }), overCap('keys.old'));
    assert.equal(reads.count, 0, 'no item was read');
  });
});
