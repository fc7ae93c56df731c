// Events through the JS API against the token emulator (issue 14): onEvent
// gets the kinds in order after the current turn (revocations included); a handler that throws or
// rejects changes nothing; diagnostics_channel `freshtoken:event`
// subscribers get every event without onEvent; key redaction; the options'
// checks; and no event of any kind carries a token or a secret. Mirrors
// tests/events.rs.
//
// Time is fake (the client's `now`/`sleep` options). Assertions never print
// a token: a leaked secret is reported replaced.

import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import { inspect } from 'node:util';
import { after, before, beforeEach, describe, test } from 'node:test';

import { ConfigError, EVENT_CHANNEL, MemoryStore, TokenClient, refreshTokens } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';
import { fakeTime } from '../support/fake-time.mjs';

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';
const REDIRECT = 'https://app.example/callback';

/** Lets every queued microtask and pending I/O callback run once. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

/** A store with a lease and compare-and-swap (a fleet's store), on fake time. */
class LeaseStore extends MemoryStore {
  #leases = new Map();
  #versions = new Map();

  constructor(time) {
    super();
    this.time = time;
  }

  async acquire(key, owner, ttlMs) {
    const held = this.#leases.get(key);
    if (held && held.owner !== owner && held.until > this.time.now()) return false;
    this.#leases.set(key, { owner, until: this.time.now() + ttlMs });
    return true;
  }

  async release(key, owner) {
    if (this.#leases.get(key)?.owner === owner) this.#leases.delete(key);
  }

  async loadVersioned(key) {
    const record = this.get(key);
    return record === null ? null : { record, version: String(this.#versions.get(key)) };
  }

  async saveVersioned(key, record, expected) {
    const version = this.#versions.get(key);
    if ((version === undefined ? null : String(version)) !== expected) return null;
    const next = (version ?? 0) + 1;
    this.#versions.set(key, next);
    await this.save(key, record);
    return String(next);
  }
}

/** A MemoryStore whose next `failures` saves of a settled (not in-doubt) record fail. */
class FailingStore extends MemoryStore {
  failures = 0;

  async save(key, record) {
    if (this.failures > 0 && !JSON.parse(record).in_doubt) {
      this.failures -= 1;
      throw new Error('disk full');
    }
    return super.save(key, record);
  }
}

/** The tokens a stored record holds. */
function recordSecrets(text) {
  if (text === null) return [];
  const r = JSON.parse(text);
  return [r.access_token, r.refresh_token, r.id_token].filter((s) => typeof s === 'string');
}

const kinds = (events) => events.map((e) => e.kind);

describe('events against the emulator', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  /** A client on fake time whose onEvent (unless `extra` says otherwise) records into `events`. */
  function setup(extra = {}) {
    const time = fakeTime();
    const events = [];
    const client = new TokenClient({
      tokenEndpoint: emu.tokenEndpoint,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      now: time.now,
      sleep: time.sleep,
      onEvent: (event) => { events.push(event); },
      ...extra,
    });
    return { time, client, events, store: new MemoryStore() };
  }

  async function seeded(client, store, key = 'u1') {
    const family = await emu.seed();
    const session = client.session(key, store);
    await session.seed({ refreshToken: family.refresh_token });
    return { session, family };
  }

  test('onEvent gets a refresh\'s kinds in order, after the current turn', async () => {
    const { client, events, store, time } = setup();
    const { session } = await seeded(client, store);
    await turn();
    assert.deepEqual(kinds(events.splice(0)), ['saved'], 'the seed\'s save');

    const token = await session.accessToken();
    await turn();
    assert.deepEqual(kinds(events), ['saved', 'refresh_started', 'saved', 'refreshed']);
    const refreshed = events[3];
    assert.equal(refreshed.key, 'u1');
    assert.equal(refreshed.attempts, 1);
    assert.equal(refreshed.durationMs, 0, 'fake time did not move');
    assert.equal(refreshed.at, time.now());
    assert.equal('errorCode' in refreshed, false, 'absent fields are left out');
    assert.ok(Object.isFrozen(refreshed));
    assert.equal(typeof token, 'string');
  });

  test('handlers run after the turn that emitted, never inside the wasm call', async () => {
    const stacks = [];
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 100;
    try {
      const { client, events } = setup({ onEvent: (event) => { stacks.push(new Error().stack); events.push(event); } });
      await client.clientToken(['accounts']);
      await turn();
      assert.deepEqual(kinds(events), ['client_token_issued']);
      assert.equal(events[0].scope, 'accounts');
      assert.equal('key' in events[0], false, 'client tokens have no key');
      assert.equal(stacks.length, 1);
      assert.ok(!stacks[0].includes('wasm://'), 'no wasm frame below the handler');
    } finally {
      Error.stackTraceLimit = limit;
    }
  });

  test('a failed refresh says refresh_failed with its code and attempts', async () => {
    const { client, events, store } = setup();
    const { session } = await seeded(client, store);
    await emu.fault({ kind: 'status', status: 503, count: 4 });
    await assert.rejects(session.accessToken(), { code: 'transient' });
    await turn();
    assert.deepEqual(kinds(events), ['saved', 'saved', 'refresh_started', 'refresh_failed']);
    const failed = events[3];
    assert.equal(failed.errorCode, 'transient');
    assert.equal(failed.attempts, 4);
    assert.ok(failed.durationMs > 0, 'three backoffs on fake time');
  });

  test('a re-link says reauthorization_required with its reason', async () => {
    const { client, events, store } = setup();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: 'a-refresh-token-the-server-never-issued' });
    await assert.rejects(session.accessToken(), { code: 'reauthorization_required' });
    await turn();
    assert.deepEqual(kinds(events), ['saved', 'saved', 'refresh_started', 'saved', 'reauthorization_required']);
    assert.equal(events[4].reason, 'invalid_grant');
  });

  test('a handler that throws, or rejects, changes nothing', async () => {
    for (const onEvent of [
      () => { throw new Error('a handler that fails'); },
      async () => { throw new Error('a handler that rejects'); },
      () => ({ then() { throw new Error('a thenable that throws'); } }),
    ]) {
      let calls = 0;
      const rejections = [];
      const onRejection = (reason) => rejections.push(reason);
      process.on('unhandledRejection', onRejection);
      try {
        const { client, store } = setup({ onEvent: (event) => { calls += 1; return onEvent(event); } });
        const { session, family } = await seeded(client, store);
        const token = await session.accessToken();
        const stored = JSON.parse(store.get('u1'));
        assert.ok(stored.access_token === token, 'the stored token is the one handed out');
        assert.ok(stored.refresh_token !== family.refresh_token, 'rotated and saved');
        assert.equal(await emu.refreshRequests(), 1);
        await turn();
        await turn();
        assert.equal(calls, 5, 'the handler saw every event');
        assert.deepEqual(rejections, [], 'no unhandled rejection');
      } finally {
        process.off('unhandledRejection', onRejection);
      }
      await emu.reset();
    }
  });

  test('diagnostics_channel subscribers get every event without onEvent', async () => {
    assert.equal(EVENT_CHANNEL, 'freshtoken:event');
    const published = [];
    const subscriber = (event, name) => { published.push([event, name]); };
    diagnosticsChannel.subscribe(EVENT_CHANNEL, subscriber);
    try {
      const { client, store } = setup({ onEvent: undefined });
      const { session } = await seeded(client, store);
      await session.accessToken();
      await turn();
      assert.deepEqual(published.map(([e]) => e.kind), ['saved', 'saved', 'refresh_started', 'saved', 'refreshed']);
      assert.ok(published.every(([, name]) => name === 'freshtoken:event'));

      // With onEvent as well, both get the same (frozen) event.
      published.length = 0;
      const { client: both, events } = setup();
      await both.clientToken(['accounts']);
      await turn();
      assert.equal(published.length, 1);
      assert.equal(events.length, 1);
      assert.equal(published[0][0], events[0]);
    } finally {
      diagnosticsChannel.unsubscribe(EVENT_CHANNEL, subscriber);
    }
  });

  test('a revocation says revoked, a client token\'s with its scope', async () => {
    const { client, events, store } = setup();
    const { session } = await seeded(client, store);
    await session.accessToken();
    await turn();
    events.length = 0;
    await session.revoke();
    await turn();
    assert.deepEqual(kinds(events), ['saved', 'saved', 'revoked'], 'revoked after the last save');
    assert.equal(events[2].key, 'u1');
    assert.equal('errorCode' in events[2], false);

    await client.clientToken(['accounts']);
    await client.revokeClientTokens();
    await turn();
    assert.deepEqual(kinds(events.slice(3)), ['client_token_issued', 'revoked']);
    assert.equal(events[4].scope, 'accounts');
  });

  test('eventKeys: hidden leaves the key out', async () => {
    const { client, events, store } = setup({ eventKeys: 'hidden' });
    const { session } = await seeded(client, store, 'user-with-a-name');
    await session.accessToken();
    await turn();
    assert.equal(events.length, 5);
    assert.ok(events.every((e) => !('key' in e)));
    assert.ok(!inspect(events).includes('user-with-a-name'));
  });

  test('the event options are checked, and refreshTokens takes none', async () => {
    const base = { tokenEndpoint: emu.tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET };
    assert.throws(() => new TokenClient({ ...base, onEvent: 'log' }), (e) => e instanceof ConfigError && /onEvent/.test(e.message));
    assert.throws(() => new TokenClient({ ...base, eventKeys: 'hashed' }), (e) => e instanceof ConfigError && /eventKeys/.test(e.message));
    await assert.rejects(
      refreshTokens({ ...base, refreshToken: 'x', onEvent: () => {} }),
      (e) => e instanceof ConfigError && /onEvent/.test(e.message),
    );
    const fromJson = TokenClient.fromCredentialsJson(
      JSON.stringify({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, tokenEndpoint: emu.tokenEndpoint, slidingRefreshTokenLifetime: 31536000 }),
      { onEvent: () => {} },
    );
    assert.equal(typeof fromJson.leaseOwner, 'string');
  });

  // --- The secret scan: every kind, from a scenario that produces it. ---

  /** Runs a scenario emitting `kind`; resolves to { events, secrets }, or null with no scenario yet. */
  async function scenario(kind) {
    const { client, events, store, time } = setup();
    const secrets = [CLIENT_SECRET];
    switch (kind) {
      case 'refresh_started':
      case 'refreshed':
      case 'saved': {
        const request = await client.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid'] });
        const response = await fetch(request.url, { redirect: 'manual' });
        await response.arrayBuffer();
        const code = new URL(response.headers.get('location')).searchParams.get('code');
        secrets.push(code, request.codeVerifier);
        const session = await client.exchangeCode({ code, codeVerifier: request.codeVerifier, redirectUri: REDIRECT }, 'u1', store);
        secrets.push(...recordSecrets(store.get('u1')));
        for (let i = 0; i < 2; i += 1) {
          secrets.push((await session.refresh()).accessToken, ...recordSecrets(store.get('u1')));
        }
        break;
      }
      case 'refresh_failed': {
        const { session, family } = await seeded(client, store);
        secrets.push(family.refresh_token, family.access_token);
        await emu.fault({ kind: 'status', status: 503, count: 4 });
        await assert.rejects(session.accessToken());
        break;
      }
      case 'reauthorization_required': {
        const { session, family } = await seeded(client, store);
        secrets.push(family.refresh_token, family.access_token, ...recordSecrets(store.get('u1')));
        // The server refuses the token (as after its use elsewhere).
        await emu.fault({ kind: 'body', status: 400, body: '{"error":"invalid_grant"}', grant: 'refresh_token' });
        await assert.rejects(session.accessToken(), { code: 'reauthorization_required' });
        break;
      }
      case 'save_failed': {
        const failing = new FailingStore();
        const { session, family } = await seeded(client, failing);
        secrets.push(family.refresh_token);
        failing.failures = 1;
        await assert.rejects(session.accessToken(), { code: 'storage' });
        secrets.push(await session.accessToken(), ...recordSecrets(failing.get('u1')));
        break;
      }
      case 'lease_waited': {
        const fleet = new LeaseStore(time);
        const { session, family } = await seeded(client, fleet);
        secrets.push(family.refresh_token);
        assert.equal(await fleet.acquire('u1', 'another-process', 30_000), true);
        secrets.push(await session.accessToken(), ...recordSecrets(fleet.get('u1')));
        break;
      }
      case 'client_token_issued':
        secrets.push(await client.clientToken(['accounts']), await client.clientToken(['payments']));
        break;
      case 'revoked': {
        const { session, family } = await seeded(client, store);
        secrets.push(family.refresh_token, await session.accessToken(), ...recordSecrets(store.get('u1')));
        await session.revoke();
        secrets.push(await client.clientToken(['accounts']));
        await client.revokeClientTokens();
        break;
      }
      default:
        return null; // each new kind gets its scenario here
    }
    await turn();
    return { events, secrets };
  }

  test('no event of any kind carries a token or a secret', async () => {
    const all = ['refresh_started', 'refreshed', 'refresh_failed', 'reauthorization_required', 'saved',
      'save_failed', 'lease_waited', 'client_token_issued', 'revoked'];
    for (const kind of all) {
      await emu.reset();
      const run = await scenario(kind);
      assert.ok(run !== null, `${kind} has a scenario`);
      assert.ok(run.events.some((e) => e.kind === kind), `the ${kind} scenario emitted ${kinds(run.events)}`);
      assert.ok(run.secrets.length >= 3 && run.secrets.every((s) => typeof s === 'string' && s.length >= 8), `${kind}: its secrets`);
      for (const event of run.events) {
        const shown = `${JSON.stringify(event)} ${inspect(event)} ${String(event)}`;
        for (const secret of run.secrets) {
          if (shown.includes(secret)) {
            assert.fail(`a ${kind}-scenario event shows a secret: ${shown.replaceAll(secret, '<the secret>')}`);
          }
        }
      }
    }
  });
});
