// A node-redis client in legacy (callback) mode — `client.legacy()` in v5,
// `legacyMode: true` in v4 — has a `sendCommand` that sends the command and
// returns undefined. RedisStore took that for an empty reply: a stored
// record loaded as absent (the session said "re-link the user", with its
// refresh token safe in Redis) and a save resolved though nothing was
// written. Each call now rejects with a ConfigError naming `client` and
// saying what to pass.
// Real node-redis against a real Redis (support/servers.mjs); skipped when
// redis-server is not installed, unless FRESHTOKEN_REQUIRE_SERVERS=1.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { createClient } from 'redis';
import { ConfigError, ReauthorizationRequiredError, StorageError, TokenClient } from 'freshtoken';
import { RedisStore } from 'freshtoken/redis';

import { serversInstalled, startRedis } from '../support/servers.mjs';

const installed = serversInstalled();
const skip = !installed.redis && process.env.FRESHTOKEN_REQUIRE_SERVERS !== '1' ? installed.hint : false;

const RECORD = '{"schema":"freshtoken.record/1","refresh_token":"rt-SENTINEL-legacy","updated_at":1}';
const CLIENT = { tokenEndpoint: 'http://127.0.0.1:9/connect/token', clientId: 'test-client', clientSecret: 'test-secret' };
const NO_PROMISE = /sendCommand\(\) returned no Promise/;

/** What `promise` rejected with; fails if it resolved. */
const rejection = (promise) => promise.then((value) => assert.fail(`resolved with ${value}`), (e) => e);

describe('RedisStore on a node-redis client in legacy mode', { skip }, () => {
  let server;
  let redis;
  let legacy;

  before(async () => {
    server = await startRedis();
    redis = createClient({ url: server.url });
    redis.on('error', () => {}); // legacy mode reports its commands' failures here
    await redis.connect();
    legacy = new RedisStore(redis.legacy());
    await new RedisStore(redis).saveVersioned('stored', RECORD, null);
  });

  after(async () => {
    await redis?.quit().catch(() => {});
    await server?.stop();
  });

  test('every call rejects with a ConfigError naming `client`; a stored record is never read as absent', async () => {
    for (const [what, call] of [
      ['load', () => legacy.load('stored')],
      ['loadVersioned', () => legacy.loadVersioned('stored')],
      ['save', () => legacy.save('new', RECORD)],
      ['saveVersioned', () => legacy.saveVersioned('new', RECORD, null)],
      ['acquire', () => legacy.acquire('stored', 'owner-a', 1000)],
      ['release', () => legacy.release('stored', 'owner-a')],
      ['leaseHolder', () => legacy.leaseHolder('stored')],
    ]) {
      const err = await rejection(call());
      assert.ok(err instanceof ConfigError, `${what}: ${err.name}: ${err.message}`);
      assert.equal(err.code, 'config', what);
      assert.equal(err.field, 'client', what);
      assert.match(err.message, NO_PROMISE, what);
    }
  });

  test('a session on it says StorageError, never "re-link the user"', async () => {
    const client = new TokenClient(CLIENT);
    try {
      const err = await rejection(client.session('stored', legacy).accessToken());
      assert.ok(!(err instanceof ReauthorizationRequiredError), `${err.name}: ${err.message}`);
      assert.ok(err instanceof StorageError, `${err.name}: ${err.message}`);
      assert.match(err.message, NO_PROMISE);
      assert.ok(!err.message.includes('SENTINEL'));
    } finally {
      client.free();
    }
  });
});
