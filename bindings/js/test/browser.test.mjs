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

import { chromiumSkip, openChromium } from '../support/chromium.mjs';
import { startEmulator } from '../support/emulator.mjs';

const PUBLIC_CLIENT = 'public-client';
const CALLERS = 50;
/** Each test's bound (a describe's timeout bounds all of its tests together). */
const TEST = { timeout: 120_000 };

// The suite's own bound only catches a hang outside the tests (Chromium's start).
describe('freshtoken in headless Chromium (web build, cross-origin token endpoint)', { skip: chromiumSkip, timeout: 15 * 60_000 }, () => {
  let emu;
  let browser;
  let site;
  let page;
  const pageErrors = [];
  const tokenRequests = []; // { origin header, body has client_secret, method }

  before(async () => {
    emu = await startEmulator();
    browser = await openChromium(pageErrors);
    ({ site, page } = browser);
    assert.notEqual(new URL(emu.tokenEndpoint).origin, site.origin, 'page and token endpoint must be different origins');
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

    await browser.load(page);
    assert.ok(site.served.includes('/dist/web/freshtoken_bg.wasm'), 'the wasm came from the static server');
  });

  after(async () => {
    await browser?.close();
    await emu?.stop();
  });

  test(`${CALLERS} concurrent accessToken() callers share one refresh, and the rotated token is stored`, TEST, async () => {
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

  test('a bogus refresh token crosses into the page as ReauthorizationRequiredError (invalid_grant)', TEST, async () => {
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

  test('EncryptedStore in the browser: the page\'s WebCrypto encrypts; the Rust build\'s envelope decrypts; tampering is a StorageError', TEST, async () => {
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
});
