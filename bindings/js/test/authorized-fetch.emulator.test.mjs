// authorizedFetch() against the emulator's protected resources: the Bearer
// header, one forced refresh and one retry when the API rejects the token
// (GraphQL "UNAUTHENTICATED: Token is expired or malformed", or HTTP 401 from
// /api/…), single flight across concurrent calls, no retry loop.
//
// The server-side expiry is made with the emulator's clock (advanceClock):
// the client still thinks its token fresh, the API does not.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, beforeEach, describe, test } from 'node:test';

import { MemoryStore, TokenClient, authorizedFetch, isUnauthenticated } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const QUERY = JSON.stringify({ query: '{ viewer { clientId scope } }' });

function deferred() {
  let resolve;
  const promise = new Promise((res) => { resolve = res; });
  return { promise, resolve };
}

describe('authorizedFetch() against the emulator', () => {
  let emu;
  before(async () => { emu = await startEmulator(); });
  after(async () => { await emu?.stop(); });
  beforeEach(async () => { await emu.reset(); });

  /** A session holding a fresh (900 s) access token from a new emulator family. */
  async function freshSession() {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });
    const store = new MemoryStore();
    const family = await emu.seed();
    const session = client.session('u1', store);
    await session.seed({ refreshToken: family.refresh_token, accessToken: family.access_token, expiresIn: 900 });
    return { client, store, session, family };
  }

  /** The server now considers the seeded access token expired; the client does not. */
  const expireOnServer = () => emu.advanceClock(1000);

  const graphql = (session, options) => authorizedFetch(session, emu.apiEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: QUERY,
  }, options);

  test('adds the Bearer header and keeps the caller\'s request as it was', async () => {
    const { session } = await freshSession();
    const init = { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'r1' }, body: QUERY };
    const response = await authorizedFetch(session, emu.apiEndpoint, init);
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.data.viewer.clientId, 'test-client', 'the API accepted the Bearer token');
    assert.deepEqual(init.headers, { 'content-type': 'application/json', 'x-request-id': 'r1' }, 'init not mutated');
    const counters = await emu.counters();
    assert.equal(counters.api_requests, 1);
    assert.equal(counters.api_unauthenticated, 0);
    assert.equal(await emu.refreshRequests(), 0);
  });

  test('GraphQL UNAUTHENTICATED: exactly one forced refresh and one retry, returning data', async () => {
    const { session, store, family } = await freshSession();
    await expireOnServer();
    const response = await graphql(session);
    const body = await response.json();
    assert.equal(body.errors, undefined);
    assert.equal(body.data.viewer.clientId, 'test-client');
    assert.equal(await emu.refreshRequests(), 1);
    const counters = await emu.counters();
    assert.equal(counters.api_requests, 2);
    assert.equal(counters.api_unauthenticated, 1);
    assert.ok(JSON.parse(store.get('u1')).refresh_token !== family.refresh_token, 'the rotation was stored');
  });

  test('a 401 that is not about the token costs no refresh: another origin after a redirect, another scheme, insufficient_scope', async () => {
    // Two loopback servers, two origins: the API, and where it redirects.
    const listen = (handler) => new Promise((resolve) => {
      const server = createServer(handler).listen(0, '127.0.0.1', () => resolve(server));
    });
    const seen = [];
    const elsewhere = await listen((req, res) => {
      seen.push(req.headers.authorization);
      // As RFC 6750 answers a request without a token; one with a token is judged by it.
      const challenge = req.headers.authorization ? 'Bearer error="invalid_token"' : 'Bearer realm="login"';
      res.writeHead(401, { 'www-authenticate': challenge }).end();
    });
    const api = await listen((req, res) => {
      const answers = {
        '/moved': [302, { location: `http://127.0.0.1:${elsewhere.address().port}/login` }],
        '/basic': [401, { 'www-authenticate': 'Basic realm="admin"' }],
        '/scope': [401, { 'www-authenticate': 'Bearer realm="api", error="insufficient_scope", scope="payments"' }],
        '/expired': [401, { 'www-authenticate': 'Bearer realm="api", error="invalid_token"' }],
      };
      const [status, headers] = answers[req.url];
      res.writeHead(status, headers).end();
    });
    try {
      const { session } = await freshSession();
      const base = `http://127.0.0.1:${api.address().port}`;
      for (const path of ['/moved', '/basic', '/scope']) {
        for (let i = 0; i < 3; i += 1) {
          const response = await authorizedFetch(session, `${base}${path}`);
          assert.equal(response.status, 401, path);
        }
      }
      assert.equal(await emu.refreshRequests(), 0, 'no refresh for a rejection that is not the token\'s');
      assert.deepEqual(seen, [undefined, undefined, undefined], 'the other origin never got the token');
      // A Bearer invalid_token from the API itself is the token's: one refresh, one retry.
      assert.equal((await authorizedFetch(session, `${base}/expired`)).status, 401);
      assert.equal(await emu.refreshRequests(), 1);
      // A fetch that forwards the token across origins: the other origin's invalid_token counts.
      const forwarding = async (url, init) => {
        const answer = await fetch(url, { ...init, redirect: 'manual' });
        if (answer.status !== 302) return answer;
        const moved = await fetch(answer.headers.get('location'), init);
        Object.defineProperties(moved, { redirected: { value: true }, url: { value: answer.headers.get('location') } });
        return moved;
      };
      assert.equal((await authorizedFetch(session, `${base}/moved`, undefined, { fetch: forwarding })).status, 401);
      assert.equal(await emu.refreshRequests(), 2, 'the forwarded token was rejected: one refresh');
      assert.equal(seen.length, 5, 'the first try and its retry reached the other origin with a token');
      assert.ok(seen.slice(3).every(Boolean));
    } finally {
      api.close();
      elsewhere.close();
    }
  });

  test('HTTP 401 from /api/rest: exactly one forced refresh and one retry', async () => {
    const { session } = await freshSession();
    await expireOnServer();
    const response = await authorizedFetch(session, `${emu.issuer}/api/rest`, { method: 'POST', body: '{}' });
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.client_id, 'test-client');
    assert.equal(body.path, '/api/rest');
    assert.equal(await emu.refreshRequests(), 1);
    assert.equal((await emu.counters()).api_unauthenticated, 1);
  });

  test('100 concurrent calls hitting UNAUTHENTICATED cause one refresh', async () => {
    // Once armed, the refresh's save waits until all 100 calls have asked for
    // a refresh, so every one of them asks while the one refresh is in flight.
    const allAsked = deferred();
    let gate = null;
    const inner = new MemoryStore();
    const store = {
      load: (key) => inner.load(key),
      save: async (key, record) => { await gate; return inner.save(key, record); },
    };
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });
    const family = await emu.seed();
    const real = client.session('u1', store);
    await real.seed({ refreshToken: family.refresh_token, accessToken: family.access_token, expiresIn: 900 });
    await expireOnServer();
    gate = allAsked.promise;
    // The real session, observed: counts tokenRejected() calls on their way through.
    let asked = 0;
    const session = {
      accessToken: () => real.accessToken(),
      tokenRejected: (token) => {
        const result = real.tokenRejected(token);
        asked += 1;
        if (asked === 100) allAsked.resolve();
        return result;
      },
    };

    const responses = await Promise.all(Array.from({ length: 100 }, () => graphql(session)));
    const bodies = await Promise.all(responses.map((r) => r.json()));
    assert.equal(asked, 100, 'every call was rejected once and asked for a refresh');
    assert.ok(bodies.every((b) => b.data?.viewer?.clientId === 'test-client'), 'every call got data');
    assert.equal(await emu.refreshRequests(), 1);
    const counters = await emu.counters();
    assert.equal(counters.api_requests, 200);
    assert.equal(counters.api_unauthenticated, 100);
    assert.equal(counters.reuse_detected, 0);
  });

  test('a retry that is rejected again is returned as is (no loop)', async () => {
    const { session } = await freshSession();
    await expireOnServer();
    // Both refreshes below "succeed" with a token the API does not know.
    await emu.fault({
      kind: 'body', status: 200, grant: 'refresh_token', count: 2,
      body: '{"access_token":"not-a-token-the-api-knows","token_type":"Bearer","expires_in":900}',
    });
    const response = await graphql(session);
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.errors[0].message, 'UNAUTHENTICATED: Token is expired or malformed');
    assert.equal(await emu.refreshRequests(), 1);
    const counters = await emu.counters();
    assert.equal(counters.api_requests, 2, 'one request and one retry');
    assert.equal(counters.api_unauthenticated, 2);

    const rest = await authorizedFetch(session, `${emu.issuer}/api/rest`);
    assert.equal(rest.status, 401, 'a 401 retry is returned as is too');
    assert.equal(await emu.refreshRequests(), 2);
    assert.equal((await emu.counters()).api_requests, 4);
  });

  // A rejection that arrives after another call already refreshed retries
  // with the new token instead of forcing a second refresh (each refresh may
  // open a banking session or ask the user for 2FA: DESIGN "never refresh
  // more often than needed"): authorizedFetch reports the rejected token
  // through session.tokenRejected().
  test('a rejection that arrives after another call refreshed does not refresh again', async () => {
    const { session } = await freshSession();
    await expireOnServer();
    const hold = deferred();
    let held = false;
    // Real fetch; only the hand-back of B's first response waits for the test.
    const slowFetch = async (input, init) => {
      const response = await fetch(input, init);
      if (!held) {
        held = true;
        await hold.promise;
      }
      return response;
    };
    const b = graphql(session, { fetch: slowFetch });
    const a = await graphql(session);
    assert.ok((await a.json()).data, 'A got data after one refresh');
    assert.equal(await emu.refreshRequests(), 1);
    hold.resolve();
    assert.ok((await (await b).json()).data, 'B got data');
    assert.equal(await emu.refreshRequests(), 1, 'B retried with the token A already obtained');
  });
});

describe('authorizedFetch() with a Request object', () => {
  let emu;
  let api;
  const seen = [];
  before(async () => {
    emu = await startEmulator();
    // A recording API on loopback that accepts any token.
    api = createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        seen.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"data":{"ok":true}}');
      });
    });
    await new Promise((resolve) => api.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    await emu?.stop();
    api?.closeAllConnections();
    await new Promise((resolve) => (api ? api.close(resolve) : resolve()));
  });

  test('keeps the Request\'s own headers and adds the Bearer header', async () => {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });
    const family = await emu.seed();
    const session = client.session('u1', new MemoryStore());
    await session.seed({ refreshToken: family.refresh_token, accessToken: family.access_token, expiresIn: 900 });
    const url = `http://127.0.0.1:${api.address().port}/graphql`;
    const request = new Request(url, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'r1' }, body: QUERY,
    });
    const response = await authorizedFetch(session, request);
    assert.equal(response.status, 200);
    assert.equal(seen.length, 1);
    assert.ok(seen[0].headers.authorization === `Bearer ${family.access_token}`, 'the Bearer header was added');
    assert.equal(seen[0].body, QUERY);
    assert.equal(seen[0].headers['content-type'], 'application/json');
    assert.equal(seen[0].headers['x-request-id'], 'r1');
  });
});

describe('isUnauthenticated()', () => {
  const json = (status, body) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

  test('401, or a GraphQL error starting with UNAUTHENTICATED; nothing else', async () => {
    assert.equal(await isUnauthenticated(new Response('', { status: 401 })), true);
    const challenged = (value) => isUnauthenticated(new Response('', { status: 401, headers: { 'www-authenticate': value } }));
    assert.equal(await challenged('Bearer'), true);
    assert.equal(await challenged('Bearer realm="api", error="invalid_token", error_description="expired"'), true);
    assert.equal(await challenged('bearer error=invalid_token'), true);
    assert.equal(await challenged('Basic realm="x", Bearer realm="y"'), true, 'a Bearer challenge among others');
    assert.equal(await challenged('Basic realm="x"'), false, 'other credentials asked for');
    assert.equal(await challenged('Bearer error="insufficient_scope", scope="payments"'), false);
    assert.equal(await challenged('Bearer error="invalid_request"'), false);
    assert.equal(await isUnauthenticated(json(200, { errors: [{ message: 'UNAUTHENTICATED: Token is expired or malformed' }] })), true);
    assert.equal(await isUnauthenticated(json(200, { errors: [{ message: 'FORBIDDEN' }] })), false);
    assert.equal(await isUnauthenticated(json(200, { data: { viewer: null } })), false);
    assert.equal(await isUnauthenticated(json(403, { errors: 'UNAUTHENTICATED' })), false);
    assert.equal(await isUnauthenticated(new Response('UNAUTHENTICATED', { status: 200, headers: { 'content-type': 'text/plain' } })), false);
    assert.equal(await isUnauthenticated(new Response('{not json', { status: 200, headers: { 'content-type': 'application/json' } })), false);
  });

  test('leaves the body readable', async () => {
    const response = json(200, { errors: [{ message: 'UNAUTHENTICATED: x' }] });
    assert.equal(await isUnauthenticated(response), true);
    assert.equal((await response.json()).errors[0].message, 'UNAUTHENTICATED: x');
  });
});
