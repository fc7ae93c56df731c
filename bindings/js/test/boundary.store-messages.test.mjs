// Messages from host callbacks are scrubbed (issue 11 item 5, DESIGN point
// 16): a store whose error message quotes the record it was given (as many
// database drivers do for a failed statement) must not put the refresh,
// access or ID token into StorageError.message. The rest of the message
// stays: it is how the host learns what failed.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { MemoryStore, StorageError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

/** A MemoryStore whose saves of matching records fail with a message quoting the record. */
class QuotingStore {
  inner = new MemoryStore();
  /** (record) => whether this save fails. */
  failSave = () => false;

  async load(key) {
    return this.inner.load(key);
  }

  async save(key, record) {
    if (this.failSave(JSON.parse(record))) {
      throw new Error(`INSERT INTO tokens VALUES ('${key}', '${record}') failed: disk full`);
    }
    return this.inner.save(key, record);
  }
}

/** The tokens of a stored record (those it has). */
function tokensOf(record) {
  return [record.refresh_token, record.access_token, record.id_token].filter((t) => typeof t === 'string');
}

/** `message` holds none of `secrets` (the check names none of them when it fails). */
function holdsNone(message, secrets, what) {
  assert.ok(secrets.length > 0);
  secrets.forEach((secret, i) => assert.ok(!message.includes(secret), `${what}: secret #${i} is in the message`));
}

describe('store error messages are scrubbed', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  const newClient = () => new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });

  test('a failed save of the rotated record: no new token in the message', async () => {
    const client = newClient();
    const store = new QuotingStore();
    const family = await emu.seed();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token });
    store.failSave = (record) => record.refresh_token !== family.refresh_token;

    const err = await session.accessToken().then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof StorageError, `${err?.name}`);
    assert.match(err.message, /disk full/, 'the host\'s own words stay');

    store.failSave = () => false;
    await session.accessToken();
    const rotated = JSON.parse(store.inner.get('u1'));
    assert.notEqual(rotated.refresh_token, family.refresh_token);
    assert.ok(rotated.id_token, 'the emulator issued an ID token');
    holdsNone(err.message, [...tokensOf(rotated), family.refresh_token], 'rotated save');
    holdsNone(err.stack ?? '', tokensOf(rotated), 'rotated save, stack');
  });

  test('a failed save of a seeded record: no token in the message', async () => {
    const client = newClient();
    const store = new QuotingStore();
    store.failSave = () => true;
    const seed = { refreshToken: 'rt-SENTINEL-0123456789abcdef', accessToken: 'at-SENTINEL-0123456789abcdef', idToken: 'id-SENTINEL-0123456789abcdef', expiresIn: 900 };
    const err = await client.session('u2', store).seed(seed).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof StorageError, `${err?.name}`);
    assert.match(err.message, /disk full/);
    holdsNone(err.message, [seed.refreshToken, seed.accessToken, seed.idToken], 'seed');
  });

  test('every save failing (the write-ahead marker first): no token in any message', async () => {
    const client = newClient();
    const store = new QuotingStore();
    const family = await emu.seed();
    const session = client.session('u3', store);
    await session.seed({ refreshToken: family.refresh_token, accessToken: family.access_token, expiresIn: 0 });
    store.failSave = () => true;
    const messages = [];
    for (const call of [() => session.accessToken(), () => session.refresh(), () => session.tokens()]) {
      const err = await call().then(() => assert.fail('resolved'), (e) => e);
      assert.ok(err instanceof StorageError, `${err?.name}`);
      messages.push(err.message);
    }
    store.failSave = () => false;
    await session.accessToken();
    const latest = JSON.parse(store.inner.get('u3'));
    for (const message of messages) holdsNone(message, [...tokensOf(latest), family.refresh_token, family.access_token], 'any save');
  });
});
