// authorizationUrl({ extraParams }): further query parameters (Stitch's
// `provider`, `login_hint`, …) as a plain object of strings, sent after the
// URL's own in the object's key order, and approved by the emulator's
// authorize endpoint (which refuses a parameter given twice).

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { ConfigError, MemoryStore, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const REDIRECT = 'https://app.example/callback';

describe('authorizationUrl() extraParams', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  const client = () => new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });

  test('are sent percent-encoded, in key order, after the URL\'s own, and the emulator approves the URL', async () => {
    const c = client();
    const hint = 'a b&c=d+é';
    const request = await c.authorizationUrl({
      redirectUri: REDIRECT,
      scopes: ['openid', 'accounts'],
      extraParams: { provider: 'fnb', login_hint: hint, ui_locales: 'en-ZA' },
    });
    const query = request.url.split('?')[1];
    assert.ok(query.includes('&provider=fnb&login_hint=a+b%26c%3Dd%2B%C3%A9&ui_locales=en-ZA'), query);
    assert.ok(query.endsWith('&ui_locales=en-ZA'), 'after the URL\'s own parameters');
    const q = new URL(request.url).searchParams;
    assert.equal(q.get('login_hint'), hint, 'decodes to the value given');
    assert.deepEqual([...q.keys()].slice(-3), ['provider', 'login_hint', 'ui_locales']);

    // The server sees each parameter once, approves, and the code redeems.
    const response = await fetch(request.url, { redirect: 'manual' });
    await response.arrayBuffer();
    assert.equal(response.status, 302);
    const back = new URL(response.headers.get('location')).searchParams;
    assert.equal(back.get('state'), request.state);
    const session = await c.exchangeCode({ code: back.get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT }, 'u1', new MemoryStore());
    assert.equal(typeof await session.accessToken(), 'string');
  });

  test('only own enumerable keys are sent; none, null or {} sends no more', async () => {
    const c = client();
    const inherited = Object.create({ inherited: 'x' }, { own: { value: 'y', enumerable: true }, hidden: { value: 'z' } });
    const q = new URL((await c.authorizationUrl({ redirectUri: REDIRECT, extraParams: inherited })).url).searchParams;
    assert.equal(q.get('own'), 'y');
    assert.equal(q.has('inherited') || q.has('hidden'), false);
    const plain = [...new URL((await c.authorizationUrl({ redirectUri: REDIRECT })).url).searchParams.keys()];
    for (const [i, extraParams] of [undefined, null, {}, Object.create(null)].entries()) {
      const keys = [...new URL((await c.authorizationUrl({ redirectUri: REDIRECT, extraParams })).url).searchParams.keys()];
      assert.deepEqual(keys, plain, `case ${i}`);
    }
  });

  test('a parameter the URL sets itself is a ConfigError naming extraParams and the parameter', async () => {
    const c = client();
    for (const name of ['state', 'scope', 'prompt', 'client_id', 'redirect_uri', 'code_challenge', 'nonce', '']) {
      await assert.rejects(
        c.authorizationUrl({ redirectUri: REDIRECT, extraParams: { provider: 'fnb', [name]: 'secret-value' } }),
        (err) => err instanceof ConfigError && err.field === 'extraParams' && err.message.includes(`\`${name}\``)
          && !err.message.includes('secret-value'),
        name,
      );
    }
    assert.equal((await emu.counters()).token_requests, 0);
  });

  test('not an object, or a value that is not a string, is a ConfigError naming extraParams (never the value)', async () => {
    const c = client();
    const iterables = [new Map([['provider', 'fnb']]), new URLSearchParams('provider=fnb'), new Set(['fnb'])];
    for (const extraParams of ['provider=fnb', 5, true, ['fnb'], [], () => {}, Symbol('x'), ...iterables]) {
      await assert.rejects(
        c.authorizationUrl({ redirectUri: REDIRECT, extraParams }),
        (err) => err instanceof ConfigError && err.field === 'extraParams' && /must be an object of strings/.test(err.message),
        String(typeof extraParams),
      );
    }
    for (const value of [1, undefined, null, { id: 'fnb' }, ['fnb'], 10n]) {
      await assert.rejects(
        c.authorizationUrl({ redirectUri: REDIRECT, extraParams: { provider: value } }),
        (err) => err instanceof ConfigError && err.field === 'extraParams' && err.message.includes('`provider` must be a string')
          && !err.message.includes('fnb'),
        String(value),
      );
    }
    await assert.rejects(
      c.authorizationUrl({ redirectUri: REDIRECT, extraParams: { provider: 'fnb\ud800' } }),
      (err) => err instanceof ConfigError && err.field === 'extraParams' && /lone UTF-16 surrogate/.test(err.message),
    );
    const throwing = { get provider() { throw new Error('getter exploded'); } };
    await assert.rejects(
      c.authorizationUrl({ redirectUri: REDIRECT, extraParams: throwing }),
      (err) => err instanceof ConfigError && err.field === 'extraParams' && /could not be read/.test(err.message),
    );
    // A misspelling of the member is named as ever.
    await assert.rejects(
      c.authorizationUrl({ redirectUri: REDIRECT, extraParam: { provider: 'fnb' } }),
      (err) => err instanceof ConfigError && err.field === 'extraParam',
    );
  });
});
