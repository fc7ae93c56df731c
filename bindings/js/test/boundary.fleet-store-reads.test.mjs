// RedisStore and PostgresStore read at most 1 MiB of a record (DESIGN point
// 16: size caps hold while reading, as the file stores' do). A bigger value
// (written by something else, or a runaway writer) is refused by the server
// side of the read: only its size crosses the wire, never its bytes, and a
// session on it gets a StorageError. Real servers (support/servers.mjs);
// skipped when they are not installed, unless FRESHTOKEN_REQUIRE_SERVERS=1.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import pg from 'pg';
import { createClient } from 'redis';
import { StorageError, TokenClient } from 'freshtoken';
import { RedisStore } from 'freshtoken/redis';
import { PostgresStore } from 'freshtoken/postgres';

import { serversInstalled, startPostgres, startRedis } from '../support/servers.mjs';

const installed = serversInstalled();
const skip = !(installed.redis && installed.postgres) && process.env.FRESHTOKEN_REQUIRE_SERVERS !== '1'
  ? installed.hint
  : false;

const MiB = 1024 * 1024;
/** A 4 MiB "record" that holds a token-like sentinel, so a message quoting it would show. */
const HUGE = `{"refresh_token":"rt-SENTINEL-huge","pad":"${'x'.repeat(4 * MiB)}"}`;
/** Exactly 1 MiB: the most that is still read. */
const AT_CAP = 'y'.repeat(MiB);
const CLIENT = { tokenEndpoint: 'http://127.0.0.1:9/connect/token', clientId: 'test-client', clientSecret: 'test-secret' };

/** What `promise` rejected with; fails if it resolved. */
const rejection = (promise) => promise.then(() => assert.fail('resolved'), (e) => e);

describe('fleet stores read at most 1 MiB of a record', { skip }, () => {
  let redisServer;
  let redis;
  let pgServer;
  let pgClient;

  before(async () => {
    redisServer = await startRedis();
    redis = createClient({ url: redisServer.url });
    redis.on('error', () => {});
    await redis.connect();
    pgServer = await startPostgres();
    pgClient = new pg.Client(pgServer.connection); // one connection, so its socket's bytes can be counted
    pgClient.on('error', () => {});
    await pgClient.connect();
    await new PostgresStore(pgClient).migrate();
  });

  after(async () => {
    await redis?.quit().catch(() => {});
    await pgClient?.end().catch(() => {});
    await redisServer?.stop();
    await pgServer?.stop();
  });

  /** Checks that a refused read said why, quoted nothing, and that the session says StorageError. */
  async function refused(store, key, bytesRead) {
    for (const read of [() => store.load(key), () => store.loadVersioned(key)]) {
      const before = bytesRead();
      const err = await rejection(read());
      assert.ok(bytesRead() - before < 64 * 1024, `${bytesRead() - before} bytes came back: the record was read`);
      assert.match(err.message, /larger than 1048576 bytes/);
      assert.ok(!err.message.includes('SENTINEL') && !err.message.includes('xxxx'), 'the message quotes no record');
    }
    const client = new TokenClient(CLIENT);
    try {
      const err = await rejection(client.session(key, store).accessToken());
      assert.ok(err instanceof StorageError, `${err.name}: ${err.message}`);
      assert.ok(!err.message.includes('SENTINEL'));
    } finally {
      client.free();
    }
  }

  test('RedisStore: a record over 1 MiB is refused in Redis; one of exactly 1 MiB is read', async () => {
    const store = new RedisStore(redis);
    const netOut = async () => Number(/total_net_output_bytes:(\d+)/.exec(await redis.sendCommand(['INFO', 'stats']))[1]);
    await store.save('huge', HUGE);
    await store.save('at-cap', AT_CAP);
    // INFO's own reply counts too; it is a few KB.
    let out = await netOut();
    const bytesRead = () => out;
    const tracked = {
      load: async (k) => { try { return await store.load(k); } finally { out = await netOut(); } },
      loadVersioned: async (k) => { try { return await store.loadVersioned(k); } finally { out = await netOut(); } },
      save: (k, r) => store.save(k, r),
      saveVersioned: (k, r, v) => store.saveVersioned(k, r, v),
      acquire: (k, o, t) => store.acquire(k, o, t),
      release: (k, o) => store.release(k, o),
    };
    out = await netOut();
    await refused(tracked, 'huge', bytesRead);
    assert.equal(await store.load('at-cap'), AT_CAP);
    assert.deepEqual(await store.loadVersioned('at-cap'), { record: AT_CAP, version: await store.loadVersion('at-cap') });
    assert.equal(await store.load('absent'), null);
    assert.equal(await store.loadVersioned('absent'), null);
  });

  /**
   * A re-link is not blocked by a record too large to read: `seed()` (as a
   * code exchange) compares and swaps against the version alone, and
   * replaces it.
   */
  async function replacedBySeed(store, key) {
    const before = await store.loadVersion(key);
    assert.match(before, /^[0-9]+$/);
    assert.equal(await store.loadVersion('absent'), null);
    const client = new TokenClient(CLIENT);
    try {
      await client.session(key, store).seed({ refreshToken: 'rt-relinked', accessToken: 'at-relinked', expiresIn: 600 });
    } finally {
      client.free();
    }
    const { record, version } = await store.loadVersioned(key);
    assert.equal(JSON.parse(record).refresh_token, 'rt-relinked');
    assert.equal(BigInt(version), BigInt(before) + 1n, 'replaced by a compare-and-swap on the version read');
  }

  test('RedisStore and PostgresStore: seed() replaces a record over 1 MiB, read by its version alone', async () => {
    const redisStore = new RedisStore(redis);
    await redisStore.save('huge-relink', HUGE);
    await replacedBySeed(redisStore, 'huge-relink');
    const pgStore = new PostgresStore(pgClient);
    await pgStore.save('huge-relink', HUGE);
    await replacedBySeed(pgStore, 'huge-relink');
    // A hash with a record and no version field is not read as absent: it is version 0.
    await redis.sendCommand(['HSET', redisStore.recordKey('no-version'), 'record', '{}']);
    assert.equal(await redisStore.loadVersion('no-version'), '0');
  });

  test('PostgresStore: a record over 1 MiB is refused in PostgreSQL; one of exactly 1 MiB is read', async () => {
    const store = new PostgresStore(pgClient);
    await store.save('huge', HUGE);
    await store.save('at-cap', AT_CAP);
    const bytesRead = () => pgClient.connection.stream.bytesRead;
    await refused(store, 'huge', bytesRead);
    assert.equal(await store.load('at-cap'), AT_CAP);
    assert.deepEqual(await store.loadVersioned('at-cap'), { record: AT_CAP, version: await store.loadVersion('at-cap') });
    assert.equal(await store.load('absent'), null);
    assert.equal(await store.loadVersioned('absent'), null);
  });
});
