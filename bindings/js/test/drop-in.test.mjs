// refreshTokens() as a drop-in for a hand-written refresh function: against a
// tiny recording token endpoint (node:http on 127.0.0.1) both send the same
// request; refreshTokens() answers a typed object and turns invalid_grant into
// a ReauthorizationRequiredError where the hand-written one returns the body.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { inspect } from 'node:util';
import { after, before, beforeEach, describe, test } from 'node:test';

import { FreshTokenError, InvalidResponseError, ReauthorizationRequiredError, refreshTokens } from 'freshtoken';

const CLIENT_ID = 'drop-in client';
const CLIENT_SECRET = 'se cret a b+c/=&%é';
const REFRESH_TOKEN = 'rt a b+c/=&%?#é~*';

/** A token endpoint that records each request and answers `mode`. */
async function startRecordingEndpoint() {
  const requests = [];
  let mode = 'ok';
  let issued = 0;
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({
        method: req.method,
        path: req.url,
        contentType: req.headers['content-type'],
        authorization: req.headers.authorization,
        params: [...new URLSearchParams(body).entries()],
      });
      issued += 1;
      const [status, answer] = mode === 'invalid_grant'
        ? [400, { error: 'invalid_grant', error_description: 'refresh token revoked' }]
        : [200, {
          access_token: `at-${issued}`,
          refresh_token: `rt-${issued}`,
          expires_in: 900,
          token_type: 'bearer',
          scope: 'openid offline_access accounts',
          id_token: 'h.p.s',
        }];
      // 'unusable': the server rotated, but the access token cannot go in a header.
      if (mode === 'unusable') answer.access_token = 'a t';
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      // 'bom': a byte order mark first, which fetch's Response.json() skips too.
      res.end((mode === 'bom' ? '\uFEFF' : '') + JSON.stringify(answer));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    tokenEndpoint: `http://127.0.0.1:${server.address().port}/connect/token`,
    requests,
    setMode: (m) => { mode = m; },
    resetCount: () => { issued = 0; },
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

describe('refreshTokens() as a drop-in for a hand-written refresh', () => {
  let endpoint;
  let tokenEndpoint;

  // The hand-written function being replaced, as found in an application.
  async function retrieveTokenUsingRefreshToken(clientId, clientSecret, refreshToken) {
    const body = { grant_type: 'refresh_token', client_id: clientId, refresh_token: refreshToken, client_secret: clientSecret };
    const response = await fetch(tokenEndpoint, {
      method: 'post',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: Object.entries(body).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&'),
    });
    return response.json();
  }

  before(async () => {
    endpoint = await startRecordingEndpoint();
    tokenEndpoint = endpoint.tokenEndpoint;
  });
  after(async () => { await endpoint?.close(); });
  beforeEach(() => {
    endpoint.requests.length = 0;
    endpoint.setMode('ok');
    endpoint.resetCount();
  });

  const viaLibrary = () => refreshTokens({
    tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, refreshToken: REFRESH_TOKEN,
  });

  test('sends the same method, content type and parameters (names, order, decoded values)', async () => {
    await retrieveTokenUsingRefreshToken(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN);
    await viaLibrary();
    assert.equal(endpoint.requests.length, 2);
    const [hand, lib] = endpoint.requests;

    assert.equal(hand.method, 'POST');
    assert.equal(lib.method, hand.method);
    assert.equal(lib.path, hand.path);
    assert.equal(lib.contentType, hand.contentType);
    assert.equal(lib.contentType, 'application/x-www-form-urlencoded');
    assert.equal(lib.authorization, undefined, 'client_secret_post: no Authorization header');
    assert.deepEqual(lib.params.map(([k]) => k), ['grant_type', 'client_id', 'refresh_token', 'client_secret']);
    // Decoded values must match exactly (compared without printing the secrets).
    assert.equal(lib.params.length, hand.params.length);
    lib.params.forEach(([name, value], i) => {
      assert.equal(name, hand.params[i][0]);
      assert.ok(value === hand.params[i][1], `parameter ${name} decodes to the same value`);
    });
    assert.ok(lib.params[3][1] === CLIENT_SECRET && lib.params[2][1] === REFRESH_TOKEN, 'values survive encoding');
  });

  test('resolves to a typed token response', async () => {
    const answer = await viaLibrary();
    assert.deepEqual(Object.keys(answer).sort(), ['access_token', 'expires_in', 'id_token', 'refresh_token', 'scope', 'token_type']);
    assert.equal(answer.access_token, 'at-1');
    assert.equal(answer.refresh_token, 'rt-1');
    assert.equal(answer.expires_in, 900);
    assert.equal(answer.token_type, 'Bearer', 'normalised from "bearer"');
    assert.equal(answer.scope, 'openid offline_access accounts');
  });

  test('an answer after a byte order mark is read, as the hand-written one reads it', async () => {
    endpoint.setMode('bom');
    const hand = await retrieveTokenUsingRefreshToken(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN);
    assert.equal(hand.access_token, 'at-1');
    const answer = await viaLibrary();
    assert.equal(answer.access_token, 'at-2');
    assert.equal(answer.refresh_token, 'rt-2');
  });

  test('an unusable 2xx answer rejects with the rotated refresh token on the error, never shown', async () => {
    // The server rotated: the token sent is spent, and losing the new one costs a re-link.
    endpoint.setMode('unusable');
    const err = await viaLibrary().then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof InvalidResponseError);
    assert.equal(err.code, 'invalid_response');
    assert.equal(err.status, 200);
    assert.equal(err.rotatedRefreshToken, 'rt-1');
    assert.ok(!Object.getOwnPropertyNames(err).includes('rotatedRefreshToken'), 'not an own property');
    for (const shown of [
      inspect(err), inspect(err, { showHidden: true }), JSON.stringify(err),
      JSON.stringify(err, Object.getOwnPropertyNames(err)), String(err), err.stack,
    ]) {
      assert.ok(!shown.includes('rt-1'), `not shown: ${shown}`);
    }
    assert.equal(endpoint.requests.length, 1, 'not retried');
    // An error with nothing rotated carries nothing.
    endpoint.setMode('invalid_grant');
    const plain = await viaLibrary().then(() => assert.fail('resolved'), (e) => e);
    assert.equal(plain.rotatedRefreshToken, undefined);
  });

  test('invalid_grant rejects with ReauthorizationRequiredError where the hand-written one returns the body', async () => {
    endpoint.setMode('invalid_grant');
    const hand = await retrieveTokenUsingRefreshToken(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN);
    assert.equal(hand.error, 'invalid_grant');
    assert.equal(hand.access_token, undefined);

    const err = await viaLibrary().then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof ReauthorizationRequiredError);
    assert.ok(err instanceof FreshTokenError);
    assert.equal(err.code, 'reauthorization_required');
    assert.equal(err.reason, 'invalid_grant');
    assert.equal(err.oauthError, 'invalid_grant');
    assert.equal(err.description, 'refresh token revoked');
    assert.equal(endpoint.requests.length, 2, 'one request each, no retry');
  });

  test('client_secret_basic moves the credentials into an RFC 6749 §2.3.1 Authorization header', async () => {
    await refreshTokens({
      tokenEndpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, clientAuth: 'client_secret_basic', refreshToken: REFRESH_TOKEN,
    });
    const [req] = endpoint.requests;
    assert.deepEqual(req.params.map(([k]) => k), ['grant_type', 'refresh_token']);
    assert.match(req.authorization, /^Basic /);
    const decoded = Buffer.from(req.authorization.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const form = (s) => new URLSearchParams(`x=${s}`).get('x');
    assert.ok(form(decoded.slice(0, colon)) === CLIENT_ID, 'id form-encoded, then base64');
    assert.ok(form(decoded.slice(colon + 1)) === CLIENT_SECRET, 'secret form-encoded, then base64');
  });
});
