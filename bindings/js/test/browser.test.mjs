// The browser build of the npm package (pkg/lib/web.js over pkg/dist/web/) in
// a real headless Chromium, driven by playwright-core. The package is served
// from a node:http static server on one loopback origin and talks to the token
// emulator on another, so every token request is a real cross-origin (CORS)
// fetch. The client is the emulator's PUBLIC client: no secret in a browser.
//
// Needs: /usr/bin/chromium (Debian's `chromium`; without it the tests are
// skipped), the built package (`bash scripts/build-js.sh`) and the emulator
// (`cargo build -p freshtoken-emulator`).
//
// Nothing here prints a token: assertions compare tokens without putting them
// in messages.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import { startEmulator } from '../support/emulator.mjs';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];
const PKG_DIR = fileURLToPath(new URL('../../../pkg/', import.meta.url));
const PUBLIC_CLIENT = 'public-client';
const CALLERS = 50;

const skip = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser tests`;

const MIME = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
};

// The test page: loads the browser entry as a module and reports how that went.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>freshtoken browser test</title></head>
<body>
<script type="module">
  import('/lib/web.js').then(
    (ft) => { window.ft = ft; window.__ftLoaded = 'ok'; },
    (err) => { window.__ftLoaded = 'error: ' + (err && err.stack || err); },
  );
</script>
</body></html>`;

/** Serves pkg/lib/ and pkg/dist/web/ plus the test page on 127.0.0.1:0. */
async function startStaticServer() {
  const served = [];
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const path = decodeURIComponent(url.pathname);
    served.push(path);
    const send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed');
    if (path === '/' || path === '/index.html') return send(200, MIME['.html'], PAGE);
    if (path === '/favicon.ico') return send(204, 'text/plain', '');
    if (!path.startsWith('/lib/') && !path.startsWith('/dist/web/')) return send(404, 'text/plain', 'not found');
    const file = normalize(join(PKG_DIR, path));
    if (!file.startsWith(PKG_DIR) || file.includes(`${sep}..${sep}`)) return send(403, 'text/plain', 'forbidden');
    const type = MIME[extname(file)];
    if (!type) return send(404, 'text/plain', 'not found');
    try {
      return send(200, type, await readFile(file));
    } catch {
      return send(404, 'text/plain', 'not found');
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    served,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}

describe('freshtoken in headless Chromium (web build, cross-origin token endpoint)', { skip, timeout: 120_000 }, () => {
  let emu;
  let site;
  let context;
  let page;
  let userDataDir;
  const pageErrors = [];
  const tokenRequests = []; // { origin header, body has client_secret, method }

  before(async () => {
    emu = await startEmulator();
    site = await startStaticServer();
    assert.notEqual(new URL(emu.tokenEndpoint).origin, site.origin, 'page and token endpoint must be different origins');

    const { chromium } = await import('playwright-core');
    userDataDir = await mkdtemp(join(tmpdir(), 'freshtoken-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    page = context.pages()[0] ?? await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(String(err?.message ?? err)));
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      // Chromium logs every non-2xx fetch ("Failed to load resource: … 400");
      // the token endpoint's RFC 6749 error answers are expected, not page errors.
      if (msg.location()?.url === emu.tokenEndpoint && msg.text().startsWith('Failed to load resource')) return;
      pageErrors.push(msg.text());
    });
    page.on('request', async (request) => {
      if (request.url() !== emu.tokenEndpoint) return;
      const entry = { method: request.method(), origin: undefined, secretSent: false };
      tokenRequests.push(entry);
      entry.secretSent = /(^|&)client_secret=/.test(request.postData() ?? '');
      try {
        entry.origin = (await request.allHeaders()).origin;
      } catch { /* page gone */ }
    });

    await load(page);
    assert.ok(site.served.includes('/dist/web/freshtoken_bg.wasm'), 'the wasm came from the static server');
  });

  /** Opens the test page in `tab` and waits until the package loaded there. */
  async function load(tab) {
    await tab.goto(`${site.origin}/`);
    await tab.waitForFunction(() => window.__ftLoaded !== undefined, null, { timeout: 30_000 });
    const loaded = await tab.evaluate(() => window.__ftLoaded);
    assert.equal(loaded, 'ok', `pkg/lib/web.js did not load in Chromium: ${loaded}; page errors: ${pageErrors.join(' | ')}`);
  }

  /** A second tab of the same origin (same localStorage, same Web Locks). */
  async function openTab() {
    const tab = await context.newPage();
    tab.on('pageerror', (err) => pageErrors.push(String(err?.message ?? err)));
    await load(tab);
    return tab;
  }

  after(async () => {
    const steps = [
      () => context?.close(),
      () => site?.close(),
      () => emu?.stop(),
      () => userDataDir && rm(userDataDir, { recursive: true, force: true }),
    ];
    for (const step of steps) {
      try { await step(); } catch (err) { console.error(`cleanup: ${err?.message ?? err}`); }
    }
  });

  test(`${CALLERS} concurrent accessToken() callers share one refresh, and the rotated token is stored`, async () => {
    const seeded = await emu.seed({ clientId: PUBLIC_CLIENT });
    const before = await emu.refreshRequests();
    const requestsBefore = tokenRequests.length;

    const result = await page.evaluate(async ({ tokenEndpoint, refreshToken, callers }) => {
      const { TokenClient, MemoryStore } = window.ft;
      const client = new TokenClient({ tokenEndpoint, clientId: 'public-client' });
      const store = new MemoryStore();
      const session = client.session('browser-user', store);
      await session.seed({ refreshToken });
      const tokens = await Promise.all(Array.from({ length: callers }, () => session.accessToken()));
      const status = await session.status();
      const record = store.get('browser-user');
      window.__session = session;
      return { tokens, record, status, sessionCount: client.sessionCount };
    }, { tokenEndpoint: emu.tokenEndpoint, refreshToken: seeded.refresh_token, callers: CALLERS });

    assert.equal(await emu.refreshRequests() - before, 1, 'exactly one refresh request reached the emulator');
    assert.equal(result.tokens.length, CALLERS);
    assert.ok(result.tokens.every((t) => typeof t === 'string' && t.length > 0), 'every caller got a token');
    assert.equal(new Set(result.tokens).size, 1, 'all callers got the same access token');
    assert.ok(result.tokens[0] !== seeded.access_token, 'the token came from the refresh, not the seed');

    assert.equal(typeof result.record, 'string', 'the store holds a record');
    const record = JSON.parse(result.record);
    assert.equal(record.schema, 'freshtoken.record/1');
    assert.equal(typeof record.refresh_token, 'string');
    assert.ok(record.refresh_token !== seeded.refresh_token, 'the stored refresh token is the rotated one');
    assert.ok(record.access_token === result.tokens[0], 'the stored access token is the one handed out');
    assert.equal(await emu.refreshTokenState(seeded.refresh_token), 'consumed');
    assert.equal(await emu.refreshTokenState(record.refresh_token), 'active');
    assert.equal(result.status.hasRecord, true);
    assert.equal(result.status.unpersisted, false);
    assert.equal(result.status.inDoubt, false);

    // The browser saw one cross-origin POST from the page's origin, with no secret.
    const mine = tokenRequests.slice(requestsBefore);
    assert.equal(mine.length, 1, 'the page sent one token request');
    assert.equal(mine[0].method, 'POST');
    assert.equal(mine[0].origin, site.origin, 'the token request was a cross-origin fetch from the page origin');
    assert.equal(mine[0].secretSent, false, 'no client_secret in a browser');

    // A second round is served from memory: the same token, no new request.
    const again = await page.evaluate(
      (callers) => Promise.all(Array.from({ length: callers }, () => window.__session.accessToken())),
      CALLERS,
    );
    assert.ok(again.every((t) => t === result.tokens[0]), 'later callers get the cached token');
    assert.equal(await emu.refreshRequests() - before, 1, 'the cached token needed no request');
    assert.equal(tokenRequests.length - requestsBefore, 1);
    assert.deepEqual(pageErrors, [], 'no page errors');
  });

  test('a bogus refresh token crosses into the page as ReauthorizationRequiredError (invalid_grant)', async () => {
    const before = await emu.refreshRequests();
    const result = await page.evaluate(async ({ tokenEndpoint }) => {
      const ft = window.ft;
      const client = new ft.TokenClient({ tokenEndpoint, clientId: 'public-client' });
      const session = client.session('bogus-user', new ft.MemoryStore());
      await session.seed({ refreshToken: 'not-a-real-refresh-token' });
      const describe = (e) => ({
        name: e?.name,
        ctor: e?.constructor?.name,
        isReauth: e instanceof ft.ReauthorizationRequiredError,
        isFreshTokenError: e instanceof ft.FreshTokenError,
        isError: e instanceof Error,
        code: e?.code,
        reason: e?.reason,
        message: String(e?.message ?? ''),
        hasStack: typeof e?.stack === 'string' && e.stack.length > 0,
      });
      const outcomes = [];
      for (let i = 0; i < 2; i++) {
        try {
          await session.accessToken();
          outcomes.push({ resolved: true });
        } catch (e) {
          outcomes.push(describe(e));
        }
      }
      const status = await session.status();
      return { outcomes, status };
    }, { tokenEndpoint: emu.tokenEndpoint });

    for (const [i, out] of result.outcomes.entries()) {
      assert.notEqual(out.resolved, true, `call ${i + 1} must reject`);
      assert.equal(out.ctor, 'ReauthorizationRequiredError', `call ${i + 1}: class`);
      assert.equal(out.name, 'ReauthorizationRequiredError', `call ${i + 1}: name`);
      assert.equal(out.isReauth, true, `call ${i + 1}: instanceof ReauthorizationRequiredError`);
      assert.equal(out.isFreshTokenError, true, `call ${i + 1}: instanceof FreshTokenError`);
      assert.equal(out.isError, true, `call ${i + 1}: instanceof Error`);
      assert.equal(out.code, 'reauthorization_required', `call ${i + 1}: code`);
      assert.equal(out.reason, 'invalid_grant', `call ${i + 1}: reason`);
      assert.equal(out.hasStack, true, `call ${i + 1}: has a stack`);
      assert.ok(!out.message.includes('not-a-real-refresh-token'), `call ${i + 1}: the message holds no token`);
    }
    // The dead token was sent once; the second call failed fast (DESIGN point 13).
    assert.equal(await emu.refreshRequests() - before, 1, 'the dead refresh token was sent once');
    assert.equal(result.status.reauthorizationReason, 'invalid_grant');
    assert.deepEqual(pageErrors, [], 'no page errors');
  });

  test('EncryptedStore in the browser: the page\'s WebCrypto encrypts; the Rust build\'s envelope decrypts; tampering is a StorageError', async () => {
    const seeded = await emu.seed({ clientId: PUBLIC_CLIENT });
    const before = await emu.refreshRequests();
    // The envelope src/encrypted_store.rs pins (FROZEN_V1): key 32 × 0x42, session key `user-42`.
    const frozen = '{"schema":"freshtoken.encrypted/1","kid":"2026-11","nonce":"2-uqFOs9KQa__xFw","ciphertext":"h_EdT1HjmXKYom8z0O-qz76aoPcHB59Ei_xAeNVCCP7SYJdAeVceCmgJJbIYN0ePFl8H0gBMObYXbsc6fwNFtbROy5we8g5XPOJk_0FwBHIokaUXhq2r-_8FIQ"}';
    const result = await page.evaluate(async ({ tokenEndpoint, refreshToken, frozen }) => {
      const { TokenClient, MemoryStore, EncryptedStore, StorageError } = window.ft;
      const key = new Uint8Array(32).fill(0x42);
      const inner = new MemoryStore();
      const store = new EncryptedStore(inner, { current: { id: '2026-11', key } });
      const client = new TokenClient({ tokenEndpoint, clientId: 'public-client' });
      const session = client.session('browser-enc', store);
      await session.seed({ refreshToken });
      const token = await session.accessToken();
      const raw = inner.get('browser-enc');
      const decrypted = await store.load('browser-enc');
      await inner.save('user-42', frozen);
      const frozenRecord = await store.load('user-42');
      const envelope = JSON.parse(raw);
      envelope.ciphertext = (envelope.ciphertext[0] === 'A' ? 'B' : 'A') + envelope.ciphertext.slice(1);
      await inner.save('browser-enc', JSON.stringify(envelope));
      let failure;
      try {
        await store.load('browser-enc');
      } catch (e) {
        failure = { storage: e instanceof StorageError, message: String(e.message) };
      }
      client.free();
      return { token, raw, decrypted, frozenRecord, failure };
    }, { tokenEndpoint: emu.tokenEndpoint, refreshToken: seeded.refresh_token, frozen });

    assert.equal(await emu.refreshRequests() - before, 1);
    const envelope = JSON.parse(result.raw);
    assert.equal(envelope.schema, 'freshtoken.encrypted/1');
    assert.equal(envelope.kid, '2026-11');
    assert.ok(!result.raw.includes(result.token) && !result.raw.includes(seeded.refresh_token), 'no token in the raw record');
    assert.ok(JSON.parse(result.decrypted).access_token === result.token, 'the decrypted record holds the token served');
    assert.equal(result.frozenRecord, '{"schema":"freshtoken.record/1","refresh_token":"rt-frozen","updated_at":1}');
    assert.equal(result.failure?.storage, true, 'a tampered record is a StorageError');
    assert.match(result.failure.message, /key id "2026-11"/);
    assert.deepEqual(pageErrors, [], 'no page errors');
  });

  // Tabs share localStorage, so to the core they are a fleet. Each tab's
  // session sits on a LocalStorageStore; the first tab's refresh is held at
  // the emulator until the second tab has been refused the lease at least
  // once, so "the other tab waited" is certain, not timed.
  /** In `tab`: a client and a session on `store` ('lease': LocalStorageStore; 'lease-only': the same without its versioned saves; 'plain': localStorage without a lease), seeded with `refreshToken` when given. Counts refused acquires in window.__refused. */
  const tabSession = (tab, { store, refreshToken, prefix }) => tab.evaluate(async ({ tokenEndpoint, store, refreshToken, prefix }) => {
    const { LocalStorageStore } = await import('/lib/local-storage-store.js');
    let chosen;
    if (store === 'lease') {
      chosen = new LocalStorageStore({ prefix });
      const acquire = chosen.acquire.bind(chosen);
      window.__refused = 0;
      chosen.acquire = async (...args) => {
        const got = await acquire(...args);
        if (!got) window.__refused += 1;
        return got;
      };
    } else if (store === 'lease-only') {
      const full = new LocalStorageStore({ prefix });
      chosen = {
        load: (key) => full.load(key),
        save: (key, record) => full.save(key, record),
        acquire: (...args) => full.acquire(...args),
        release: (...args) => full.release(...args),
      };
    } else {
      chosen = {
        load: async (key) => localStorage.getItem(prefix + key),
        save: async (key, record) => localStorage.setItem(prefix + key, record),
      };
    }
    const client = new window.ft.TokenClient({ tokenEndpoint, clientId: 'public-client' });
    window.__tabSession = client.session('tab-user', chosen);
    if (refreshToken) await window.__tabSession.seed({ refreshToken });
  }, { tokenEndpoint: emu.tokenEndpoint, store, refreshToken, prefix });

  /** Starts accessToken() in `tab`; the outcome waits in window.__tabCall. */
  const startCall = (tab) => tab.evaluate(() => {
    window.__tabCall = window.__tabSession.accessToken().then(
      (token) => ({ token }),
      (e) => ({ error: e?.name, reason: e?.reason }),
    );
  });
  const outcome = (tab) => tab.evaluate(() => window.__tabCall);

  /** Both tabs on `store` at expiry: the first tab's refresh is held at the emulator, then `other` calls too. */
  const bothCall = async (other, store, prefix) => {
    const seeded = await emu.seed({ clientId: PUBLIC_CLIENT });
    const before = await emu.refreshRequests();
    await tabSession(page, { store, refreshToken: seeded.refresh_token, prefix });
    await tabSession(other, { store, prefix });
    await emu.fault({ kind: 'hold' });
    await startCall(page);
    await emu.waitHeld(1);
    await startCall(other);
    return { seeded, before };
  };

  test('two tabs on a LocalStorageStore at expiry: one refresh; the other tab waits on the Web Lock and uses the rotated record', async () => {
    const other = await openTab();
    try {
      const { seeded, before } = await bothCall(other, 'lease', 'tabs-lease:');
      await other.waitForFunction(() => window.__refused > 0, null, { timeout: 30_000 });
      await emu.releaseHeld();
      const [first, second] = [await outcome(page), await outcome(other)];

      assert.equal(await emu.refreshRequests() - before, 1, 'one refresh request for both tabs');
      assert.equal(typeof first.token, 'string', `the first tab got a token (${first.error})`);
      assert.ok(second.token === first.token, `the second tab got the token the first one saved (${second.error})`);
      const record = JSON.parse(JSON.parse(await other.evaluate(() => localStorage.getItem('tabs-lease:tab-user'))).record);
      assert.ok(record.access_token === first.token, 'localStorage holds the rotated record');
      assert.equal(await emu.refreshTokenState(seeded.refresh_token), 'consumed');
      assert.equal(await emu.refreshTokenState(record.refresh_token), 'active', 'the rotated refresh token is alive');
      assert.deepEqual(pageErrors, [], 'no page errors');
    } finally {
      await other.close();
    }
  });

  test('the same two tabs on localStorage without a lease spend the refresh token twice, and the user must re-link (why LocalStorageStore holds one)', async () => {
    const other = await openTab();
    try {
      const { seeded, before } = await bothCall(other, 'plain', 'tabs-plain:');
      const second = await outcome(other); // not held: the emulator rotates for it
      await emu.releaseHeld();
      const first = await outcome(page);

      assert.equal(await emu.refreshRequests() - before, 2, 'each tab sent the same refresh token');
      assert.equal(typeof second.token, 'string', 'the second tab\'s request rotated the token');
      assert.equal(first.error, 'ReauthorizationRequiredError', 'the first tab\'s request met a consumed token');
      assert.equal(await emu.refreshTokenState(seeded.refresh_token), 'consumed');
    } finally {
      await other.close();
    }
  });

  test('a LocalStorageStore lease: refused to another owner, renewed for its own, given back when its tab closes or its TTL lapses', async () => {
    const other = await openTab();
    const lease = (tab, ...args) => tab.evaluate(async ([method, ...rest]) => {
      const { LocalStorageStore } = await import('/lib/local-storage-store.js');
      return new LocalStorageStore({ prefix: 'lease-test:' })[method](...rest);
    }, args);
    // Resolves once nobody holds the lock (a plain, waiting Web Lock request).
    const freed = (tab, name) => tab.evaluate((n) => navigator.locks.request(n, () => true), name);
    try {
      assert.equal(await lease(page, 'acquire', 'k', 'a', 60_000), true);
      assert.equal(await lease(page, 'acquire', 'k', 'b', 60_000), false, 'another owner in the same tab');
      assert.equal(await lease(other, 'acquire', 'k', 'b', 60_000), false, 'another owner in another tab');
      assert.equal(await lease(page, 'acquire', 'k', 'a', 60_000), true, 'the holder renews');
      await lease(page, 'release', 'k', 'b');
      assert.equal(await lease(other, 'acquire', 'k', 'b', 60_000), false, 'a release by another owner gives nothing back');

      // A closed tab's locks go back at once.
      const third = await openTab();
      assert.equal(await lease(third, 'acquire', 'closing', 'c', 60_000), true);
      assert.equal(await lease(other, 'acquire', 'closing', 'b', 60_000), false);
      await third.close();
      await freed(other, 'lease-test:lease:closing');
      assert.equal(await lease(other, 'acquire', 'closing', 'b', 60_000), true, 'the closed tab\'s lease is free');

      // A lease lapses after its TTL, like a Redis lease.
      assert.equal(await lease(page, 'acquire', 'ttl', 'a', 50), true);
      await freed(other, 'lease-test:lease:ttl');
      assert.equal(await lease(other, 'acquire', 'ttl', 'b', 60_000), true, 'the lapsed lease is free');
      await lease(page, 'release', 'k', 'a');
      assert.equal(await lease(other, 'acquire', 'k', 'b', 60_000), true, 'the holder\'s release gives it back');
      assert.deepEqual(pageErrors, [], 'no page errors');
    } finally {
      await other.close();
    }
  });

  // The user re-links in one tab (a new seed) while the other tab's refresh
  // of the old link is held at the emulator: the versioned saves keep the
  // new link; without them the refreshing tab's save overwrites it.
  const relinkDuringRefresh = async (store, prefix) => {
    const old = await emu.seed({ clientId: PUBLIC_CLIENT });
    const relinked = await emu.seed({ clientId: PUBLIC_CLIENT });
    const other = await openTab();
    try {
      await tabSession(page, { store, refreshToken: old.refresh_token, prefix });
      await tabSession(other, { store, prefix });
      await emu.fault({ kind: 'hold' });
      await startCall(page);
      await emu.waitHeld(1);
      await other.evaluate((refreshToken) => window.__tabSession.seed({ refreshToken }), relinked.refresh_token);
      await emu.releaseHeld();
      const refreshing = await outcome(page);
      const stored = JSON.parse(JSON.parse(await other.evaluate((p) => localStorage.getItem(`${p}tab-user`), prefix)).record);
      return { old, relinked, refreshing, stored };
    } finally {
      await other.close();
    }
  };

  test('a re-link in one tab while another refreshes: the refreshing tab\'s save is a conflict, and the new link stays', async () => {
    const { old, relinked, refreshing, stored } = await relinkDuringRefresh('lease', 'relink-cas:');
    assert.ok(stored.refresh_token === relinked.refresh_token, 'the stored record is the new link');
    assert.equal(refreshing.error, 'ConflictError', 'the refreshing tab learns that the record moved on');
    assert.equal(await emu.refreshTokenState(old.refresh_token), 'consumed', 'the old link was refreshed at the server');
    assert.equal(await emu.refreshTokenState(relinked.refresh_token), 'active');
    assert.deepEqual(pageErrors, [], 'no page errors');
  });

  test('the same re-link on a store with the lease but no versioned saves: the refreshing tab overwrites the new link (why LocalStorageStore versions its saves)', async () => {
    const { relinked, refreshing, stored } = await relinkDuringRefresh('lease-only', 'relink-plain:');
    assert.equal(typeof refreshing.token, 'string', 'the refreshing tab saved its rotated record');
    assert.ok(stored.refresh_token !== relinked.refresh_token, 'the new link was overwritten');
  });
});
