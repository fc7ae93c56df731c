// RedisStore and PostgresStore versions on real servers (support/servers.mjs):
// a row only half there (written by another tool or by hand, or a table made
// without NOT NULL), or a Redis key of another type than the store's hash,
// never sticks a session, since a re-link (`seed()`) replaces it; and a key's versions are never reused after its record was
// deleted (a sign-out), so a process still holding a version from before
// cannot compare-and-swap over the next link's record.
// Skipped when the servers are not installed, unless FRESHTOKEN_REQUIRE_SERVERS=1.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import pg from 'pg';
import { createClient } from 'redis';
import { ConflictError, StorageError, TokenClient } from 'freshtoken';
import { RedisStore } from 'freshtoken/redis';
import { PostgresStore } from 'freshtoken/postgres';

import { startEmulator } from '../support/emulator.mjs';
import { serversInstalled, startPostgres, startRedis } from '../support/servers.mjs';

const installed = serversInstalled();
const skip = !(installed.redis && installed.postgres) && process.env.FRESHTOKEN_REQUIRE_SERVERS !== '1'
  ? installed.hint
  : false;

const CLIENT = { clientId: 'test-client', clientSecret: 'test-secret' };
const RECORD = '{"schema":"freshtoken.record/1","refresh_token":"rt-old-link","updated_at":1}';

/** A version a new record starts at: a decimal in [2^32, 2^32 + 2^52). */
function assertFreshVersion(version) {
  assert.match(version, /^[0-9]+$/);
  assert.ok(Number(version) >= 2 ** 32 && Number(version) < 2 ** 32 + 2 ** 52, `${version} is a random start`);
}

describe('fleet store versions on real servers', { skip }, () => {
  let emu;
  let redisServer;
  let redis;
  let pgServer;
  let pool;
  const stores = {};

  before(async () => {
    emu = await startEmulator();
    redisServer = await startRedis();
    redis = createClient({ url: redisServer.url });
    redis.on('error', () => {});
    await redis.connect();
    pgServer = await startPostgres();
    pool = new pg.Pool({ ...pgServer.connection, max: 4 });
    pool.on('error', () => {});
    stores.redis = new RedisStore(redis);
    stores.postgres = new PostgresStore(pool);
    await stores.postgres.migrate();
    // A table as an older deployment or a hand migration may have made it: no NOT NULL.
    await pool.query('CREATE TABLE loose_records (key text PRIMARY KEY, record text, version bigint)');
    stores.loose = new PostgresStore(pool, { table: 'loose_records', leaseTable: 'loose_leases' });
    await stores.loose.migrate();
  });

  after(async () => {
    await redis?.quit().catch(() => {});
    await pool?.end().catch(() => {});
    await redisServer?.stop();
    await pgServer?.stop();
    await emu?.stop();
  });

  /** Re-links `key` on `store` through a session; the refresh token now stored. */
  async function relink(store, key) {
    const family = await emu.seed();
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });
    try {
      await client.session(key, store).seed({ refreshToken: family.refresh_token });
    } finally {
      client.free();
    }
    const stored = JSON.parse(await store.load(key)).refresh_token;
    assert.ok(stored === family.refresh_token, 'the new link is stored');
  }

  test('Redis: a hash with a version but no record is no record: seed() creates one over it', async () => {
    const store = stores.redis;
    await redis.sendCommand(['HSET', store.recordKey('version-only'), 'version', '4']);
    assert.equal(await store.load('version-only'), null);
    assert.equal(await store.loadVersion('version-only'), null);
    assert.equal(await store.loadVersioned('version-only'), null);
    await relink(store, 'version-only');
    assert.equal((await store.loadVersioned('version-only')).version, '5', 'counted on from the stored version');
  });

  test('Redis: a hash with a record but no version reads as version "0", which seed() swaps against', async () => {
    const store = stores.redis;
    await redis.sendCommand(['HSET', store.recordKey('record-only'), 'record', RECORD]);
    assert.equal(await store.loadVersion('record-only'), '0');
    assert.deepEqual(await store.loadVersioned('record-only'), { record: RECORD, version: '0' });
    await relink(store, 'record-only');
    assertFreshVersion((await store.loadVersioned('record-only')).version);
    assert.equal(await store.saveVersioned('record-only', 'stale', '0'), null, '"0" no longer matches');
  });

  test('Redis: a version written with leading zeros (HINCRBY refuses it) is replaced by a new start', async () => {
    const store = stores.redis;
    await redis.sendCommand(['HSET', store.recordKey('padded'), 'record', RECORD, 'version', '007']);
    assert.equal(await store.loadVersion('padded'), '007');
    await relink(store, 'padded');
    assertFreshVersion((await store.loadVersioned('padded')).version);
  });

  /** What `promise` rejected with; fails if it resolved. */
  const rejection = (promise) => promise.then(() => assert.fail('resolved'), (e) => e);

  /**
   * Keys of another type than the hash the store writes (set by hand or by
   * another tool), each holding a token-like sentinel that no message may
   * quote: `write(name)` puts one at the Redis key `name`.
   */
  const wrongTypes = {
    string: (name) => redis.sendCommand(['SET', name, '{"refresh_token":"rt-SENTINEL-string"}']),
    list: (name) => redis.sendCommand(['RPUSH', name, 'rt-SENTINEL-list', 'record', 'version']),
    set: (name) => redis.sendCommand(['SADD', name, 'rt-SENTINEL-set']),
  };

  /** Checks that a read of `key` was refused with a message that names the type and quotes nothing. */
  function assertWrongTypeRefusal(err, type) {
    assert.ok(err instanceof Error, String(err));
    assert.match(err.message, new RegExp(`holds a Redis ${type}, not the hash`), err.message);
    assert.ok(!err.message.includes('SENTINEL'), 'the message quotes nothing of the key');
    assert.ok(!/WRONGTYPE/.test(err.message), 'the store says what is wrong, not Redis');
  }

  for (const type of ['string', 'list']) {
    test(`Redis: a key holding a ${type} fails reads as a StorageError, sends nothing, and seed() replaces it`, async () => {
      const store = stores.redis;
      const key = `wrong-type-${type}`;
      const name = store.recordKey(key);
      await wrongTypes[type](name);
      assertWrongTypeRefusal(await rejection(store.load(key)), type);
      assertWrongTypeRefusal(await rejection(store.loadVersioned(key)), type);
      assert.equal(await store.loadVersion(key), '0', 'a version a re-link swaps against, as a hash without one');

      const family = await emu.seed();
      const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });
      try {
        const sentBefore = (await emu.counters()).token_requests;
        const err = await rejection(client.session(key, store).accessToken());
        assert.ok(err instanceof StorageError, `${err.name}: ${err.message}`);
        assert.match(err.message, new RegExp(`holds a Redis ${type}`));
        assert.ok(!err.message.includes('SENTINEL'));
        assert.equal((await emu.counters()).token_requests, sentBefore, 'nothing was sent');
        assert.equal(await redis.sendCommand(['TYPE', name]), type, 'a failed read changes nothing');

        // A re-link replaces the key with the store's hash, at a new random version.
        await client.session(key, store).seed({ refreshToken: family.refresh_token });
        assert.equal(await redis.sendCommand(['TYPE', name]), 'hash');
        const { record, version } = await store.loadVersioned(key);
        assert.equal(JSON.parse(record).refresh_token, family.refresh_token);
        assertFreshVersion(version);
        assert.equal(await store.saveVersioned(key, 'stale', '0'), null, '"0" no longer matches');

        const refreshesBefore = await emu.refreshRequests();
        const token = await client.session(key, store).accessToken();
        assert.equal(typeof token, 'string');
        assert.equal(await emu.refreshRequests(), refreshesBefore + 1, 'one refresh');
        assert.equal(await client.session(key, store).accessToken(), token, 'and then fresh');
        assert.equal(await emu.refreshTokenState(family.refresh_token), 'consumed');
        assert.equal(await store.leaseHolder(key), null);
      } finally {
        client.free();
      }
    });
  }

  test('Redis: a stale compare-and-swap against a key of another type (one not expecting "0") is a conflict and writes nothing', async () => {
    const store = stores.redis;
    for (const type of Object.keys(wrongTypes)) {
      const key = `stale-cas-${type}`;
      const name = store.recordKey(key);
      await wrongTypes[type](name);
      assert.equal(await store.saveVersioned(key, 'stale', '5'), null, `${type}: another version`);
      assert.equal(await store.saveVersioned(key, 'stale', '4294967296'), null, `${type}: a random start`);
      assert.equal(await store.saveVersioned(key, 'stale', '00'), null, `${type}: not "0" itself`);
      assert.equal(await store.saveVersioned(key, 'new', null), null, `${type}: create-only: something is there`);
      assert.equal(await redis.sendCommand(['TYPE', name]), type, `${type}: nothing was written`);
    }
    // The key a stale writer loses to keeps its contents.
    assert.equal(await redis.sendCommand(['GET', store.recordKey('stale-cas-string')]), '{"refresh_token":"rt-SENTINEL-string"}');

    // A session whose seed() read a version, and then found the key replaced
    // by another type before its compare-and-swap: a ConflictError, and the
    // key is left as it is.
    const key = 'stale-seed';
    const name = store.recordKey(key);
    await store.save(key, RECORD);
    const interloped = {
      load: (k) => store.load(k),
      save: (k, r) => store.save(k, r),
      acquire: (k, o, t) => store.acquire(k, o, t),
      release: (k, o) => store.release(k, o),
      loadVersioned: (k) => store.loadVersioned(k),
      loadVersion: (k) => store.loadVersion(k),
      async saveVersioned(k, r, expected) {
        await wrongTypes.string(name);
        return store.saveVersioned(k, r, expected);
      },
    };
    const family = await emu.seed();
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });
    try {
      const err = await rejection(client.session(key, interloped).seed({ refreshToken: family.refresh_token }));
      assert.ok(err instanceof ConflictError, `${err.name}: ${err.message}`);
    } finally {
      client.free();
    }
    assert.equal(await redis.sendCommand(['TYPE', name]), 'string', 'not overwritten');
  });

  test('Redis: an unconditional save replaces a key of another type, at a new random version; leases are apart', async () => {
    const store = stores.redis;
    for (const type of Object.keys(wrongTypes)) {
      const key = `save-over-${type}`;
      await wrongTypes[type](store.recordKey(key));
      assert.equal(await store.acquire(key, 'owner', 10_000), true, `${type}: the lease is its own key`);
      await store.save(key, RECORD);
      const { record, version } = await store.loadVersioned(key);
      assert.equal(record, RECORD);
      assertFreshVersion(version);
      assert.equal((await store.leaseHolder(key)).owner, 'owner', `${type}: the lease is untouched`);
      await store.release(key, 'owner');
    }
  });

  test('PostgreSQL: a row whose version is NULL reads as version "0", which seed() swaps against', async () => {
    const store = stores.loose;
    await pool.query('INSERT INTO loose_records VALUES ($1, $2, NULL)', ['null-version', RECORD]);
    assert.equal(await store.loadVersion('null-version'), '0');
    assert.deepEqual(await store.loadVersioned('null-version'), { record: RECORD, version: '0' });
    await relink(store, 'null-version');
    assertFreshVersion((await store.loadVersioned('null-version')).version);
    assert.equal(await store.saveVersioned('null-version', 'stale', '0'), null);
  });

  test('PostgreSQL: a row whose record is NULL is no record: seed() creates one over it', async () => {
    const store = stores.loose;
    await pool.query('INSERT INTO loose_records VALUES ($1, NULL, 3)', ['null-record']);
    assert.equal(await store.load('null-record'), null);
    assert.equal(await store.loadVersion('null-record'), null);
    assert.equal(await store.loadVersioned('null-record'), null);
    assert.equal(await store.saveVersioned('null-record', 'x', '3'), null, 'no record: no version matches');
    await relink(store, 'null-record');
    assert.equal((await store.loadVersioned('null-record')).version, '4');
  });

  const deleters = {
    redis: (key) => redis.sendCommand(['DEL', stores.redis.recordKey(key)]),
    postgres: (key) => pool.query('DELETE FROM freshtoken_records WHERE key = $1', [key]),
  };

  for (const kind of ['redis', 'postgres']) {
    test(`${kind}: after a delete (sign-out) a stale version matches nothing; saves count on`, async () => {
      const store = stores[kind];
      const first = await store.saveVersioned('aba', 'link A', null);
      assertFreshVersion(first);
      const stale = await store.saveVersioned('aba', 'link A, rotated', first);
      assert.equal(stale, String(BigInt(first) + 1n), 'each save adds one');
      await deleters[kind]('aba');
      const created = await store.saveVersioned('aba', 'link B', null);
      assertFreshVersion(created);
      assert.equal(await store.saveVersioned('aba', 'stale write', stale), null, 'the old link\'s version');
      assert.equal(await store.saveVersioned('aba', 'stale write', first), null);
      assert.equal(await store.load('aba'), 'link B');
      // An unconditional save after a delete starts afresh too.
      await deleters[kind]('aba');
      await store.save('aba', 'link C');
      const { version } = await store.loadVersioned('aba');
      assertFreshVersion(version);
      assert.ok(![first, stale, created].includes(version));
      await store.save('aba', 'link C, saved again');
      assert.equal((await store.loadVersioned('aba')).version, String(BigInt(version) + 1n));
    });
  }

  test('records from earlier releases (versions counted from 1) still load and update', async () => {
    await redis.sendCommand(['HSET', stores.redis.recordKey('old'), 'record', RECORD, 'version', '7']);
    await pool.query('INSERT INTO freshtoken_records VALUES ($1, $2, 7)', ['old', RECORD]);
    for (const store of [stores.redis, stores.postgres]) {
      assert.deepEqual(await store.loadVersioned('old'), { record: RECORD, version: '7' });
      assert.equal(await store.saveVersioned('old', 'next', '7'), '8');
      await store.save('old', 'after');
      assert.deepEqual(await store.loadVersioned('old'), { record: 'after', version: '9' });
    }
  });

  test('Redis: a compare-and-swap answered with something other than a version (a proxy\'s) is an error, never a save', async () => {
    let answer;
    // The real server's answers, each script's replaced by `answer` when set.
    const proxy = {
      sendCommand: async (args, ...rest) => {
        const reply = await redis.sendCommand(args, ...rest);
        return answer !== undefined && /^EVAL/i.test(String(args[0])) ? answer : reply;
      },
    };
    const store = new RedisStore(proxy);
    const version = await stores.redis.saveVersioned('proxied', RECORD, null);
    for (const reply of [0, false, [], 'OK', { weird: true }, '1.5', '']) {
      answer = reply;
      const error = await store.saveVersioned('proxied', 'a conflict', 'stale').then(
        (v) => assert.fail(`${JSON.stringify(reply)} resolved as version ${JSON.stringify(v)}`),
        (e) => e,
      );
      assert.match(error.message, /not a version/, JSON.stringify(reply));
    }
    answer = undefined;
    assert.equal(await store.saveVersioned('proxied', 'a conflict', 'stale'), null, 'the real answer: a conflict');
    assert.deepEqual(await stores.redis.loadVersioned('proxied'), { record: RECORD, version });
  });

  test('PostgreSQL: a key it cannot store (a NUL, over 2,048 bytes) is refused before any query', async () => {
    let queries = 0;
    const counting = { query: (...args) => { queries += 1; return pool.query(...args); } };
    const store = new PostgresStore(counting);
    const random = Array.from({ length: 3000 }, (_, i) => String.fromCharCode(0x21 + ((i * 7919) % 90))).join('');
    for (const key of ['nul\0key', random, 'é'.repeat(1025)]) {
      for (const call of [() => store.loadVersion(key), () => store.load(key), () => store.save(key, RECORD),
        () => store.saveVersioned(key, RECORD, null), () => store.acquire(key, 'o', 1000)]) {
        await assert.rejects(call(), TypeError);
      }
    }
    assert.equal(queries, 0, 'nothing reached the server');
    const longest = 'k'.repeat(2048);
    assert.equal(await store.saveVersioned(longest, RECORD, null) !== null, true, 'a key of 2,048 bytes is stored');
    assert.equal(await store.load(longest), RECORD);
  });
});
