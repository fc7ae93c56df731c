// One authorization code handled by two processes of a fleet at the same
// moment (a double submit load-balanced to two instances), on the fleet
// stores against real servers: RedisStore (freshtoken/redis) and
// PostgresStore (freshtoken/postgres), each on a private server started by
// support/servers.mjs. Mirrors
// `the_same_code_at_the_same_moment_is_sent_once_*` in
// tests/code_exchange_repeat.rs.
//
// Process A's exchange takes the key's lease and its code is held at the
// emulator; process B's exchange of the same code waits for that lease (its
// first refused acquire is held until A has linked), then reads the record
// A saved (it carries the code's fingerprint) and adopts it: the code was
// sent once, both hand out the same access token, the stored refresh token
// is still active, and the lease was given back. Unfixed, B read the store
// before A had saved and sent the code too; the test then still ends (B's
// exchange is raced against its refusal) and fails on the count.
//
// The two clients stand for two processes: within one Node process the core
// remembers redemptions by token endpoint + client id + code, so B's token
// endpoint carries a query (`?other-process`, as the Rust tests' other
// process does), which the emulator ignores. Each has its own store object
// on its own connection to the shared server.
//
// Skipped when the servers are not installed (scripts/setup-servers.sh),
// unless FRESHTOKEN_REQUIRE_SERVERS=1. No sleeps: every wait is on a promise
// or on the emulator's held count.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import pg from 'pg';
import { createClient } from 'redis';
import { TokenClient } from 'freshtoken';
import { RedisStore } from 'freshtoken/redis';
import { PostgresStore } from 'freshtoken/postgres';

import { startEmulator } from '../support/emulator.mjs';
import { approve, REDIRECT } from '../support/authorize.mjs';
import { serversInstalled, startPostgres, startRedis } from '../support/servers.mjs';

const installed = serversInstalled();
const skip = !(installed.redis && installed.postgres) && process.env.FRESHTOKEN_REQUIRE_SERVERS !== '1'
  ? installed.hint
  : false;

const CLIENT = { clientId: 'test-client', clientSecret: 'test-secret' };
/** The members JsStore (src/wasm/js_store.rs) looks for: a wrapper must offer exactly the ones the store does. */
const STORE_MEMBERS = ['load', 'save', 'acquire', 'release', 'loadVersioned', 'saveVersioned', 'loadVersion'];

let unique = 0;
const freshKey = (what) => `${what}-${process.pid}-${(unique += 1)}`;

/** Every method of `object` (own and inherited, `constructor` aside; private `#` ones are not reachable). */
function methodNames(object) {
  const names = new Set();
  for (let o = object; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const name of Object.getOwnPropertyNames(o)) {
      const d = Object.getOwnPropertyDescriptor(o, name);
      if (name !== 'constructor' && typeof d.value === 'function') names.add(name);
    }
  }
  return names;
}

/**
 * A plain object delegating every method of `store` to it (a class
 * instance's methods live on its prototype and use private fields, so each
 * is forwarded with `store` as `this`), except `acquire`: its first answer
 * `false` (another owner holds the lease) resolves `refused` and is
 * returned only once `goAhead()` is called.
 */
function holdingFirstRefusal(store) {
  let noteRefused;
  const refused = new Promise((resolve) => { noteRefused = resolve; });
  let goAhead;
  const go = new Promise((resolve) => { goAhead = resolve; });
  let seen = false;
  const wrapper = {};
  for (const name of methodNames(store)) wrapper[name] = (...args) => store[name](...args);
  wrapper.acquire = async (...args) => {
    const taken = await store.acquire(...args);
    if (taken === false && !seen) {
      seen = true;
      noteRefused();
      await go;
    }
    return taken;
  };
  for (const name of STORE_MEMBERS) {
    assert.equal(typeof wrapper[name], typeof store[name], `the wrapper offers ${name} as the store does`);
  }
  return { store: wrapper, refused, goAhead };
}

describe('one code exchanged by two processes at the same moment, on fleet stores on real servers', { skip }, () => {
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
    kinds.redis = {
      /** A store on a connection of its own (as a process would have). */
      async store() { return new RedisStore(await connectRedis()); },
      async close() {
        await Promise.allSettled(redisClients.map((c) => c.quit()));
        await redisServer.stop();
      },
    };

    const pgServer = await startPostgres();
    const pools = [];
    const newPool = () => {
      const p = new pg.Pool({ ...pgServer.connection, max: 4 });
      p.on('error', () => {});
      pools.push(p);
      return p;
    };
    await new PostgresStore(newPool()).migrate();
    kinds.postgres = {
      async store() { return new PostgresStore(newPool()); },
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

  beforeEach(async () => { await emu.reset(); });

  for (const kind of ['redis', 'postgres']) {
    const label = kind === 'redis' ? 'RedisStore' : 'PostgresStore';

    test(`${label}: the second waits for the first's lease, then adopts its record; the code is sent once`, { timeout: 60_000 }, async () => {
      const [aStore, bRaw] = [await kinds[kind].store(), await kinds[kind].store()];
      const b = holdingFirstRefusal(bRaw);
      const clientA = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, ...CLIENT });
      // B's store deadline outlasts the hold of its refused acquire on a
      // loaded machine (the default is 5 s).
      const clientB = new TokenClient({ tokenEndpoint: `${emu.tokenEndpoint}?other-process`, ...CLIENT, storeTimeoutMs: 60_000 });
      try {
        const key = freshKey('double-submit');
        const request = await clientA.authorizationUrl({ redirectUri: REDIRECT, scopes: ['openid', 'accounts'] });
        const params = await approve(request.url);
        const exchange = { code: params.get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT };

        // A's code is held at the server (under A's lease, with the fix).
        await emu.fault({ kind: 'hold', grant: 'authorization_code' });
        const first = clientA.exchangeCode({ ...exchange }, key, aStore);
        const firstSettled = first.then((s) => ({ ok: s }), (e) => ({ error: e }));
        assert.equal(await emu.waitHeld(1), 1, 'A\'s code is at the server');

        // B handles the same callback: it waits for the lease, or, unfixed,
        // sends the code at once and ends first.
        const second = clientB.exchangeCode({ ...exchange }, key, b.store);
        const secondSettled = second.then((s) => ({ ok: s }), (e) => ({ error: e }));
        const bEndedUnleased = await Promise.race([
          b.refused.then(() => false),
          secondSettled.then(() => true),
        ]);

        assert.equal(await emu.releaseHeld(), 1);
        const a = await firstSettled;
        b.goAhead();
        const bOutcome = await secondSettled;

        assert.equal(await emu.grantRequests('authorization_code'), 1, 'the code was sent once');
        assert.equal(bEndedUnleased, false, 'B asked for the lease A held and was refused before it ended');
        assert.ok(a.ok, `the first exchange links: ${a.error?.name}: ${a.error?.message}`);
        assert.ok(bOutcome.ok, `the second adopts the first's record: ${bOutcome.error?.name}: ${bOutcome.error?.message}`);
        const token = await a.ok.accessToken();
        assert.ok(await bOutcome.ok.accessToken() === token, 'both sessions hand out the same access token');
        assert.equal(await emu.grantRequests('refresh_token'), 0, 'nothing refreshed meanwhile');

        const stored = JSON.parse(await aStore.load(key));
        assert.ok(stored.access_token === token, 'the store holds the first exchange\'s tokens');
        assert.equal(await emu.refreshTokenState(stored.refresh_token), 'active', 'the stored refresh token is still good');
        assert.equal((await emu.counters()).reuse_detected, 0);

        assert.equal(await aStore.leaseHolder(key), null, 'no lease is left');
        assert.equal(await aStore.acquire(key, 'probe', 1_000), true, 'the lease was given back');
        await aStore.release(key, 'probe');
      } finally {
        b.goAhead();
        clientA.free();
        clientB.free();
      }
    });
  }
});
