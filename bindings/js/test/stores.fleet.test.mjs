// The fleet stores on real servers: RedisStore (freshtoken/redis, node-redis)
// and PostgresStore (freshtoken/postgres, pg), each against a private server
// started by support/servers.mjs. The same contract is checked on both —
// lease exclusivity, expiry, same-owner renewal, release only by the owner,
// compare-and-swap conflicts, expected-null creation, many clients racing
// (exactly one wins) — then the documented layout, and one process's
// sessions on each store against the emulator.
//
// Skipped when the servers are not installed (scripts/setup-servers.sh),
// unless FRESHTOKEN_REQUIRE_SERVERS=1.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import pg from 'pg';
import { createClient } from 'redis';
import { ConflictError, StorageError, TokenClient } from 'freshtoken';
import { RedisStore } from 'freshtoken/redis';
import { PostgresStore } from 'freshtoken/postgres';

import { configError as config } from '../support/config-error.mjs';
import { startEmulator } from '../support/emulator.mjs';
import { serversInstalled, startPostgres, startRedis } from '../support/servers.mjs';

const installed = serversInstalled();
const skip = !(installed.redis && installed.postgres) && process.env.FRESHTOKEN_REQUIRE_SERVERS !== '1'
  ? installed.hint
  : false;

const RECORD = '{"schema":"freshtoken.record/1","refresh_token":"rt-SENTINEL-record","updated_at":1}';
const RACERS = 12;
const CLIENT = { clientId: 'test-client', clientSecret: 'test-secret' };

/** The version after `version` (a decimal; new records start at a random one). */
const next = (version, by = 1) => String(BigInt(version) + BigInt(by));


const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
let unique = 0;
const freshKey = (what) => `${what}-${process.pid}-${(unique += 1)}`;

/** Polls `probe` until truthy; its value, or an error after `timeoutMs`. */
async function until(what, probe, { timeoutMs = 5_000, intervalMs = 5 } = {}) {
  const endAt = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() >= endAt) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

test('redis-server and PostgreSQL are installed (required when FRESHTOKEN_REQUIRE_SERVERS=1)', {
  skip: process.env.FRESHTOKEN_REQUIRE_SERVERS === '1' ? false : 'FRESHTOKEN_REQUIRE_SERVERS is not 1',
}, () => {
  assert.deepEqual(installed.missing, [], installed.hint);
});

describe('fleet stores on real servers', { skip }, () => {
  const kinds = {};
  let emu;

  before(async () => {
    emu = await startEmulator();
    const redisServer = await startRedis();
    const redisClients = [];
    const connectRedis = async () => {
      const c = createClient({ url: redisServer.url });
      c.on('error', () => {});
      await c.connect();
      redisClients.push(c);
      return c;
    };
    const redis = await connectRedis();
    kinds.redis = {
      server: redisServer,
      raw: redis,
      store: new RedisStore(redis),
      /** `n` stores, each on its own connection. */
      async many(n) {
        return Promise.all(Array.from({ length: n }, async () => new RedisStore(await connectRedis())));
      },
      async close() {
        await Promise.allSettled(redisClients.map((c) => c.quit()));
        await redisServer.stop();
      },
    };

    const pgServer = await startPostgres();
    const pools = [];
    const newPool = (max) => {
      const p = new pg.Pool({ ...pgServer.connection, max });
      p.on('error', () => {});
      pools.push(p);
      return p;
    };
    const pool = newPool(10);
    const store = new PostgresStore(pool);
    await store.migrate();
    kinds.postgres = {
      server: pgServer,
      pool,
      store,
      newPool,
      async many(n) {
        return Array.from({ length: n }, () => new PostgresStore(newPool(1)));
      },
      async close() {
        await Promise.allSettled(pools.map((p) => p.end()));
        await pgServer.stop();
      },
    };
  });

  after(async () => {
    await Promise.allSettled(Object.values(kinds).map((k) => k.close()));
    await emu?.stop();
  });

  for (const kind of ['redis', 'postgres']) {
    const label = kind === 'redis' ? 'RedisStore' : 'PostgresStore';

    describe(`${label}: the contract`, () => {
      test('load/save round-trip; missing keys load as null; save bumps the version', async () => {
        const { store } = kinds[kind];
        const key = freshKey('plain');
        assert.equal(await store.load(key), null);
        assert.equal(await store.loadVersioned(key), null);
        await store.save(key, RECORD);
        assert.equal(await store.load(key), RECORD);
        const { version } = await store.loadVersioned(key);
        assert.match(version, /^[0-9]+$/);
        await store.save(key, `${RECORD} `);
        assert.deepEqual(await store.loadVersioned(key), { record: `${RECORD} `, version: next(version) });
        assert.equal(await store.saveVersioned(key, RECORD, version), null, 'a plain save moved the version on');
        assert.equal(await store.load('é ünïcode 🔑 key'), null);
        await store.save('é ünïcode 🔑 key', 'ünïcode record ✓');
        assert.equal(await store.load('é ünïcode 🔑 key'), 'ünïcode record ✓');
      });

      test('compare-and-swap: create only if absent, then only from the version read', async () => {
        const { store } = kinds[kind];
        const key = freshKey('cas');
        const v1 = await store.saveVersioned(key, 'v1', null);
        assert.match(v1, /^[0-9]+$/, 'created');
        assert.equal(await store.saveVersioned(key, 'other', null), null, 'expected null but a record exists: conflict');
        assert.deepEqual(await store.loadVersioned(key), { record: 'v1', version: v1 });
        assert.equal(await store.saveVersioned(key, 'v2', v1), next(v1));
        assert.equal(await store.saveVersioned(key, 'stale', v1), null, 'stale version: conflict');
        assert.equal(await store.saveVersioned(key, 'future', next(v1, 2)), null, 'a version never written: conflict');
        assert.equal(await store.saveVersioned(key, 'junk', 'not-a-version'), null);
        assert.deepEqual(await store.loadVersioned(key), { record: 'v2', version: next(v1) }, 'conflicts overwrite nothing');
        assert.equal(await store.saveVersioned(freshKey('cas'), 'x', '1'), null, 'a version expected but nothing stored: conflict');
      });

      test('lease: exclusive; the same owner renews it; only the owner releases it', async () => {
        const { store } = kinds[kind];
        const key = freshKey('lease');
        assert.equal(await store.acquire(key, 'owner-a', 60_000), true);
        assert.equal(await store.acquire(key, 'owner-b', 10_000), false, 'held by a');
        // Renewed to 10 min: over 1 min left means it was pushed, with minutes of slack.
        assert.equal(await store.acquire(key, 'owner-a', 600_000), true, 'a again: renewed');
        const held = await store.leaseHolder(key);
        assert.equal(held.owner, 'owner-a');
        assert.ok(held.expiresInMs > 60_000 && held.expiresInMs <= 600_000, `renewed to 10 min (${held.expiresInMs} ms left)`);
        await store.release(key, 'owner-b');
        assert.equal((await store.leaseHolder(key))?.owner, 'owner-a', 'b cannot release a\'s lease');
        assert.equal(await store.acquire(key, 'owner-b', 10_000), false);
        await store.release(key, 'owner-a');
        assert.equal(await store.leaseHolder(key), null);
        assert.equal(await store.acquire(key, 'owner-b', 10_000), true, 'free again');
        await store.release(key, 'owner-b');
        assert.equal(await store.acquire(freshKey('lease'), 'owner-b', 10_000), true, 'leases are per key');
      });

      test('lease: expires after its TTL (the server\'s clock); renewal pushes the expiry', async () => {
        const { store } = kinds[kind];
        const key = freshKey('expiry');
        // Exclusivity and renewal on a long TTL: no timing involved.
        assert.equal(await store.acquire(key, 'owner-a', 60_000), true);
        assert.equal(await store.acquire(key, 'owner-b', 60_000), false);
        assert.equal(await store.acquire(key, 'owner-a', 600_000), true, 'renewed for 10 min');
        const renewed = await store.leaseHolder(key);
        assert.ok(renewed.expiresInMs > 60_000 && renewed.expiresInMs <= 600_000, `renewal pushed the expiry (${renewed.expiresInMs} ms left)`);
        await store.release(key, 'owner-a');
        // Expiry: a short lease, renewed for longer, is free again only after
        // the renewed TTL (counted from before the renewal; the upper limit
        // only turns a lease that never lapses into a failure).
        const short = freshKey('expiry');
        assert.equal(await store.acquire(short, 'owner-a', 300), true);
        const renewedAt = Date.now();
        assert.equal(await store.acquire(short, 'owner-a', 1_000), true, 'renewed for 1 s');
        await until('the lease to expire', () => store.acquire(short, 'owner-b', 60_000), { timeoutMs: 30_000, intervalMs: 20 });
        const took = Date.now() - renewedAt;
        assert.ok(took >= 1_000, `b took it ${took} ms after the renewal, before the renewed expiry (1 s)`);
        assert.equal((await store.leaseHolder(short)).owner, 'owner-b');
        await store.release(short, 'owner-b');
      });

      test(`${RACERS} clients on their own connections race: exactly one wins each time`, async () => {
        const stores = await kinds[kind].many(RACERS);
        for (let round = 0; round < 10; round += 1) {
          const key = freshKey('race');
          const created = await Promise.all(stores.map((s, i) => s.saveVersioned(key, `create-${i}`, null)));
          assert.equal(created.filter((v) => v !== null).length, 1, `round ${round}: one create`);
          const { version } = await stores[0].loadVersioned(key);
          const saved = await Promise.all(stores.map((s, i) => s.saveVersioned(key, `writer-${i}`, version)));
          const winners = saved.map((v, i) => [v, i]).filter(([v]) => v !== null);
          assert.equal(winners.length, 1, `round ${round}: one compare-and-swap wins`);
          assert.equal(winners[0][0], next(version));
          assert.deepEqual(await stores[1].loadVersioned(key), { record: `writer-${winners[0][1]}`, version: winners[0][0] });
          const leases = await Promise.all(stores.map((s, i) => s.acquire(key, `owner-${i}`, 5_000)));
          assert.equal(leases.filter(Boolean).length, 1, `round ${round}: one lease`);
        }
      });

      test('bad constructor arguments are ConfigErrors naming them; bad call arguments TypeErrors; before any I/O', async () => {
        const { store } = kinds[kind];
        const Store = kind === 'redis' ? RedisStore : PostgresStore;
        const first = kind === 'redis' ? 'client' : 'pool';
        const connection = kind === 'redis' ? kinds.redis.raw : kinds.postgres.pool;
        const name = kind === 'redis' ? 'RedisStore' : 'PostgresStore';
        assert.throws(() => new Store(null), config(first, new RegExp(`^${name}: pass a`)));
        assert.throws(() => new Store({}), config(first, new RegExp(`^${name}: pass a`)));
        assert.throws(() => new Store(connection, { bogus: 1 }), config('bogus', new RegExp(`^${name}: unknown option bogus$`)));
        for (const options of ['app:', 7, true, () => ({})]) {
          assert.throws(() => new Store(connection, options), config('options', new RegExp(`^${name}: options must be an object$`)), String(options));
        }
        // null and undefined options are the defaults.
        for (const options of [null, undefined]) {
          const fresh = new Store(connection, options);
          if (kind === 'redis') assert.equal(fresh.recordKey('u1'), 'freshtoken:record:u1');
          await fresh.save(`defaults-${kind}`, RECORD);
          assert.equal(await store.load(`defaults-${kind}`), RECORD, 'the default namespace');
        }
        if (kind === 'redis') {
          assert.throws(() => new Store(connection, { prefix: 7 }), config('prefix', /^RedisStore: prefix must be a string$/));
        } else {
          assert.throws(() => new Store(connection, { table: '' }), config('table', /^PostgresStore: table must be a non-empty string$/));
          assert.throws(() => new Store(connection, { leaseTable: 'a.b.c' }), config('leaseTable', /^PostgresStore: leaseTable must be "name" or "schema.name"$/));
        }
        await assert.rejects(store.acquire('k', '', 1000), TypeError);
        await assert.rejects(store.acquire('k', 'o', 0), TypeError);
        await assert.rejects(store.acquire('k', 'o', Number.NaN), TypeError);
        await assert.rejects(store.save('k', 42), TypeError);
        await assert.rejects(store.saveVersioned('k', 'r', 7), TypeError);
      });
    });
  }

  describe('documented layout', () => {
    test('Redis: a hash {record, version} at <prefix>record:<key>; the owner at <prefix>lease:<key> with a PX expiry', async () => {
      const { raw } = kinds.redis;
      const store = new RedisStore(raw, { prefix: 'app1:' });
      const version = await store.saveVersioned('u1', RECORD, null);
      await store.acquire('u1', 'owner-a', 600_000);
      assert.equal(store.recordKey('u1'), 'app1:record:u1');
      assert.equal(store.leaseKey('u1'), 'app1:lease:u1');
      assert.equal(await raw.sendCommand(['TYPE', 'app1:record:u1']), 'hash');
      const pairs = await raw.sendCommand(['HGETALL', 'app1:record:u1']);
      const fields = Object.fromEntries(Array.from({ length: pairs.length / 2 }, (_, i) => [pairs[2 * i], pairs[2 * i + 1]]));
      assert.deepEqual(fields, { record: RECORD, version }, 'exactly two fields');
      assert.equal(await raw.sendCommand(['GET', 'app1:lease:u1']), 'owner-a');
      const pttl = await raw.sendCommand(['PTTL', 'app1:lease:u1']);
      // A 10 min PX expiry: the lower bound leaves minutes for the commands in between.
      assert.ok(pttl > 300_000 && pttl <= 600_000, `PX expiry (${pttl} ms)`);
      assert.equal(await new RedisStore(raw).load('u1'), null, 'another prefix, another namespace');
    });

    test('Redis: a server that forgot the scripts (SCRIPT FLUSH) still works', async () => {
      const { raw, store } = kinds.redis;
      const key = freshKey('flush');
      const version = await store.saveVersioned(key, 'a', null);
      await raw.sendCommand(['SCRIPT', 'FLUSH']);
      assert.equal(await store.saveVersioned(key, 'b', version), next(version));
      assert.equal(await store.acquire(key, 'o', 1000), true);
      await raw.sendCommand(['SCRIPT', 'FLUSH']);
      assert.equal(await store.acquire(key, 'o', 1000), true, 'renewal through EVAL after NOSCRIPT');
    });

    test('PostgreSQL: schema() is the DDL migrate() runs; the tables have the documented columns', async () => {
      const { pool } = kinds.postgres;
      const ddl = PostgresStore.schema();
      assert.match(ddl, /CREATE TABLE IF NOT EXISTS "freshtoken_records" \(\s*key text PRIMARY KEY,\s*record text NOT NULL,\s*version bigint NOT NULL\s*\);/);
      assert.match(ddl, /CREATE TABLE IF NOT EXISTS "freshtoken_leases" \(\s*key text PRIMARY KEY,\s*owner text NOT NULL,\s*expires_at timestamptz NOT NULL\s*\);/);
      const { rows } = await pool.query(`SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
        WHERE table_name IN ('freshtoken_records', 'freshtoken_leases') ORDER BY table_name, ordinal_position`);
      assert.deepEqual(rows.map((r) => `${r.table_name}.${r.column_name} ${r.data_type} ${r.is_nullable}`), [
        'freshtoken_leases.key text NO',
        'freshtoken_leases.owner text NO',
        'freshtoken_leases.expires_at timestamp with time zone NO',
        'freshtoken_records.key text NO',
        'freshtoken_records.record text NO',
        'freshtoken_records.version bigint NO',
      ]);
    });

    test('PostgreSQL: custom (schema-qualified, quoted) names; migrate() from many pools at once', async () => {
      const { pool } = kinds.postgres;
      await pool.query('CREATE SCHEMA IF NOT EXISTS tokens');
      const options = { table: 'tokens.Records "x"', leaseTable: 'tokens.leases' };
      assert.match(PostgresStore.schema(options), /"tokens"\."Records ""x"""/);
      const custom = Array.from({ length: 8 }, () => new PostgresStore(kinds.postgres.newPool(1), options));
      await Promise.all(custom.map((s) => s.migrate()));
      await custom[0].migrate();
      assert.match(await custom[0].saveVersioned('u1', RECORD, null), /^[0-9]+$/);
      assert.equal(await kinds.postgres.store.load('u1'), null, 'the default tables are separate');
      assert.throws(() => PostgresStore.schema({ table: 'a.b.c' }), config('table', /^PostgresStore: table must be "name" or "schema.name"$/));
      assert.throws(() => PostgresStore.schema({ table: '' }), config('table', /^PostgresStore: table must be a non-empty string$/));
      assert.throws(() => PostgresStore.schema({ table: 'same', leaseTable: 'same' }), config('leaseTable', /^PostgresStore: table and leaseTable must differ$/));
      assert.throws(() => PostgresStore.schema('x'), config('options', /^PostgresStore: options must be an object$/));
      assert.equal(PostgresStore.schema(null), PostgresStore.schema(), 'null options are the defaults');
    });

    test('PostgreSQL: a missing table fails without the record in the error; the session says StorageError', async () => {
      const store = new PostgresStore(kinds.postgres.pool, { table: 'no_such_table' });
      const err = await store.saveVersioned('u1', RECORD, null).then(() => assert.fail('saved'), (e) => e);
      assert.match(err.message, /no_such_table/);
      assert.ok(!`${err.message} ${err.stack}`.includes('SENTINEL'));
      const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });
      const failed = await client.session('u1', store).seed({ refreshToken: 'rt-SENTINEL' }).then(() => assert.fail('seeded'), (e) => e);
      assert.ok(failed instanceof StorageError, failed.name);
      assert.ok(!failed.message.includes('SENTINEL'));
      client.free();
    });
  });

  for (const kind of ['redis', 'postgres']) {
    const label = kind === 'redis' ? 'RedisStore' : 'PostgresStore';

    describe(`${label}: sessions against the emulator (one process, two clients)`, () => {
      /** Two clients (as two processes would have) on one clock that the test can move. */
      function twoClients(extra = {}) {
        const clock = { offset: 0 };
        const now = () => Date.now() + clock.offset;
        const make = () => new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT, now, ...extra });
        return { clock, a: make(), b: make() };
      }

      test('one refresh per expiry for 2 × 50 concurrent callers; the versions move; no lease is left', async () => {
        const { store } = kinds[kind];
        const { clock, a, b } = twoClients();
        const key = freshKey('session');
        const family = await emu.seed();
        await a.session(key, store).seed({ refreshToken: family.refresh_token });
        const seeded = (await store.loadVersioned(key)).version;
        const before = await emu.refreshRequests();
        const seen = [];
        for (let window = 1; window <= 3; window += 1) {
          // The refresh is held at the server until all 100 callers are in.
          await emu.fault({ kind: 'hold', grant: 'refresh_token' });
          const calls = [];
          for (const c of [a, b]) for (let i = 0; i < 50; i += 1) calls.push(c.session(key, store).accessToken());
          assert.equal(await emu.waitHeld(1), 1);
          assert.equal(await emu.releaseHeld(), 1);
          const tokens = await Promise.all(calls);
          assert.ok(tokens.every((t) => t === tokens[0]), `window ${window}: one token for both clients`);
          assert.equal(await emu.refreshRequests(), before + window, `window ${window}: one refresh`);
          seen.push(tokens[0]);
          clock.offset += 901_000; // the next window starts stale for both
        }
        assert.equal(new Set(seen).size, 3);
        const stored = await store.loadVersioned(key);
        // The seed, then per refresh two saves: the in-doubt marker before the
        // request (a lease holder's insurance against dying mid-refresh) and
        // the rotated record after it.
        assert.equal(stored.version, next(seeded, 6), 'seed + three refreshes × (marker + rotation)');
        assert.equal(JSON.parse(stored.record).access_token, seen[2]);
        assert.equal(await emu.refreshTokenState(JSON.parse(stored.record).refresh_token), 'active');
        assert.equal(await store.leaseHolder(key), null);
        const c = await emu.counters();
        assert.equal(c.reuse_detected, 0);
        a.free();
        b.free();
      });

      test('the refresh runs under the client\'s lease; the other client re-reads and sends nothing', async () => {
        const { store } = kinds[kind];
        const { a, b } = twoClients();
        const key = freshKey('lease-session');
        const family = await emu.seed();
        await a.session(key, store).seed({ refreshToken: family.refresh_token });
        // a's refresh request is held at the server until b has tried the lease.
        await emu.fault({ kind: 'hold', grant: 'refresh_token' });
        const before = await emu.refreshRequests();
        const first = a.session(key, store).accessToken();
        assert.equal(await emu.waitHeld(1), 1, 'a\'s request is at the server');
        const holder = await store.leaseHolder(key);
        assert.ok(holder?.owner.startsWith(`${a.leaseOwner}.`), 'the lease owner is client.leaseOwner and the lease\'s own number');
        assert.notEqual(a.leaseOwner, b.leaseOwner);
        let triedLease;
        const bTriedLease = new Promise((resolve) => { triedLease = resolve; });
        const observed = {
          load: (k) => store.load(k),
          save: (k, r) => store.save(k, r),
          acquire: (k, o, t) => { triedLease(); return store.acquire(k, o, t); },
          release: (k, o) => store.release(k, o),
          loadVersioned: (k) => store.loadVersioned(k),
          saveVersioned: (k, r, v) => store.saveVersioned(k, r, v),
        };
        const second = b.session(key, observed).accessToken(); // waits for a's lease, then re-reads
        await bTriedLease;
        assert.equal(await emu.releaseHeld(), 1);
        const [ta, tb] = await Promise.all([first, second]);
        assert.equal(tb, ta);
        assert.equal(await emu.refreshRequests(), before + 1);
        assert.equal(await store.leaseHolder(key), null, 'released');
        a.free();
        b.free();
      });

      test('a holder whose write-ahead answers past its store deadline sends nothing; the other client\'s rotation survives', async () => {
        const { store } = kinds[kind];
        const key = freshKey('late-write-ahead');
        const family = await emu.seed();
        // a's write-ahead lands but answers only after its store deadline
        // (b, asked to refresh meanwhile, waits for a's refresh of the same
        // token in this process, and goes on once a gave up). A lease that
        // lapses under late store answers is tested in tests/lease_span.rs
        // and tests/fleet.rs, where the clock is the test's.
        const tight = { timeoutMs: 1_000, retry: { maxAttempts: 1, budgetMs: 0 }, leaseTtlMs: 7_000, storeTimeoutMs: 2_500 };
        const { a, b } = twoClients(tight);
        await b.session(key, store).seed({ refreshToken: family.refresh_token });
        const before = await emu.refreshRequests();
        let taker;
        const late = {
          load: (k) => store.load(k),
          save: (k, r) => store.save(k, r),
          acquire: (k, o, t) => store.acquire(k, o, t),
          release: (k, o) => store.release(k, o),
          loadVersioned: (k) => store.loadVersioned(k),
          async saveVersioned(k, r, expected) {
            const saved = await store.saveVersioned(k, r, expected);
            if (!taker && JSON.parse(r).in_doubt) {
              taker = b.session(key, store).accessToken();
              await taker.catch(() => {});
            }
            return saved;
          },
        };
        const held = await a.session(key, late).accessToken().then(() => null, (e) => e);
        assert.ok(taker, 'b ran while a\'s answer was late');
        const rotated = await taker;
        assert.ok(held instanceof StorageError, `a must not send once its write-ahead is late: ${held?.name}: ${held?.message}`);
        assert.equal(await emu.refreshRequests(), before + 1, 'the refresh token was sent once');
        const stored = JSON.parse(await store.load(key));
        assert.ok(stored.access_token === rotated, 'the store holds b\'s rotation');
        assert.equal(await emu.refreshTokenState(stored.refresh_token), 'active', 'b\'s rotated token still works');
        assert.ok(await a.session(key, store).accessToken() === rotated, 'a reads it next');
        assert.equal(await store.leaseHolder(key), null);
        a.free();
        b.free();
      });

      test('a rotation whose save failed keeps the lease: another process waits for it instead of spending the old token', async () => {
        const { store } = kinds[kind];
        const { a, b } = twoClients();
        const key = freshKey('unsaved-rotation');
        const family = await emu.seed();
        await a.session(key, store).seed({ refreshToken: family.refresh_token });
        const before = await emu.refreshRequests();
        const reuseBefore = (await emu.counters()).reuse_detected;
        // a refreshes; the save of its rotated record fails (the store blipped).
        // a's background save then renews its lease and saves again; its
        // first renewal waits until b has found the lease held, so that b
        // never finds it already released (which would leave nothing to test).
        let blip = true;
        let bRefused;
        const refused = new Promise((resolve) => { bRefused = resolve; });
        let heldBack = false;
        const flaky = {
          load: (k) => store.load(k),
          save: (k, r) => store.save(k, r),
          async acquire(k, o, t) {
            if (!blip && !heldBack) {
              heldBack = true;
              await refused;
            }
            return store.acquire(k, o, t);
          },
          release: (k, o) => store.release(k, o),
          loadVersioned: (k) => store.loadVersioned(k),
          async saveVersioned(k, r, expected) {
            if (blip && JSON.parse(r).access_token) {
              blip = false;
              throw new Error('connection reset by peer');
            }
            return store.saveVersioned(k, r, expected);
          },
        };
        const failed = await a.session(key, flaky).accessToken().then(() => null, (e) => e);
        assert.ok(failed instanceof StorageError, `${failed?.name}: ${failed?.message}`);
        // b asks for the same user at once; while it finds the lease held,
        // a's caller tries again and saves the rotation.
        let retried;
        const waiting = {
          ...flaky,
          async acquire(k, o, t) {
            const taken = await store.acquire(k, o, t);
            if (!taken && !retried) {
              bRefused();
              retried = a.session(key, flaky).accessToken();
              await retried.catch(() => {});
            }
            return taken;
          },
        };
        const served = await b.session(key, waiting).accessToken().then((t) => t, (e) => e);
        bRefused(); // should b never have been refused, a's background save goes on all the same
        assert.equal(await emu.refreshRequests(), before + 1, 'the replaced refresh token was not sent again');
        assert.equal((await emu.counters()).reuse_detected, reuseBefore, 'no reuse, no revoked family');
        assert.ok(retried, 'b found a\'s lease held');
        const saved = await retried;
        assert.ok(typeof served === 'string' && served === saved, `b is served a's saved rotation: ${served?.name ?? ''}`);
        const stored = JSON.parse(await store.load(key));
        assert.equal(await emu.refreshTokenState(stored.refresh_token), 'active');
        a.free();
        b.free();
      });

      test('a save that lost a race is a ConflictError and overwrites nothing', async () => {
        const { store } = kinds[kind];
        const key = freshKey('conflict');
        const family = await emu.seed();
        // Another writer saves between this client's read and its compare-and-swap.
        const interloped = {
          load: (k) => store.load(k),
          save: (k, r) => store.save(k, r),
          acquire: (k, o, t) => store.acquire(k, o, t),
          release: (k, o) => store.release(k, o),
          loadVersioned: (k) => store.loadVersioned(k),
          armed: false,
          async saveVersioned(k, r, expected) {
            if (this.armed) {
              this.armed = false;
              await store.save(k, RECORD);
            }
            return store.saveVersioned(k, r, expected);
          },
        };
        const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });
        await client.session(key, interloped).seed({ refreshToken: family.refresh_token });
        interloped.armed = true;
        const err = await client.session(key, interloped).accessToken().then(() => assert.fail('served'), (e) => e);
        assert.ok(err instanceof ConflictError, `${err.name}: ${err.message}`);
        assert.equal(err.code, 'conflict');
        assert.equal(await store.load(key), RECORD, 'the other writer\'s record stands');
        assert.equal(await store.leaseHolder(key), null, 'the lease is released after the conflict too');
        client.free();
      });
    });
  }
});
