// refreshTokens() as a drop-in for a hand-written refresh function, against
// oidc-provider 9.x with rotation ON (mirrors drop-in.test.mjs, which uses a
// recording endpoint): it resolves to the rotated tokens; the old refresh
// token, used again, rejects with ReauthorizationRequiredError — and, being a
// reuse, makes oidc-provider revoke the grant, the rotated token included.
// A hand-written function gets the same answers as plain JSON.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { FreshTokenError, ReauthorizationRequiredError, refreshTokens } from 'freshtoken';
import { startOidcProvider } from '../support/oidc-provider.mjs';

const differ = (a, b, message) => assert.ok(typeof a === 'string' && typeof b === 'string' && a !== b, message);

describe('refreshTokens() against oidc-provider (rotation on, reuse revokes the grant)', () => {
  let op;
  before(async () => { op = await startOidcProvider(); });
  after(async () => { await op?.close(); });

  const refreshesAtServer = () => op.tokenRequestsByGrant().refresh_token ?? 0;

  function options(kind, refreshToken) {
    const creds = op.clients[kind];
    return {
      tokenEndpoint: op.tokenEndpoint,
      clientId: creds.clientId,
      ...(creds.clientSecret ? { clientSecret: creds.clientSecret } : {}),
      ...(kind === 'basic' ? { clientAuth: 'client_secret_basic' } : {}),
      refreshToken,
    };
  }

  // The hand-written function being replaced, as found in an application.
  async function retrieveTokenUsingRefreshToken(clientId, clientSecret, refreshToken) {
    const body = { grant_type: 'refresh_token', client_id: clientId, refresh_token: refreshToken, client_secret: clientSecret };
    const response = await fetch(op.tokenEndpoint, {
      method: 'post',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: Object.entries(body).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&'),
    });
    return response.json();
  }

  for (const kind of ['confidential', 'basic', 'public']) {
    test(`${kind} client: resolves to the rotated tokens; the old refresh token again rejects and kills the grant`, async () => {
      const tokens = await op.obtainTokens({ client: kind });
      const refresh0 = refreshesAtServer();

      const answer = await refreshTokens(options(kind, tokens.refresh_token));
      assert.deepEqual(Object.keys(answer).sort(), ['access_token', 'expires_in', 'id_token', 'refresh_token', 'scope', 'token_type']);
      assert.equal(answer.token_type, 'Bearer');
      assert.equal(answer.expires_in, 900);
      assert.deepEqual(answer.scope.split(' ').sort(), ['api', 'offline_access', 'openid']);
      differ(answer.access_token, tokens.access_token, 'a new access token');
      differ(answer.refresh_token, tokens.refresh_token, 'oidc-provider rotated the refresh token');
      assert.equal(await op.grantAlive(answer.refresh_token), true);
      assert.equal(refreshesAtServer(), refresh0 + 1);

      const err = await refreshTokens(options(kind, tokens.refresh_token)).then(() => assert.fail('resolved'), (e) => e);
      assert.ok(err instanceof ReauthorizationRequiredError);
      assert.ok(err instanceof FreshTokenError);
      assert.equal(err.code, 'reauthorization_required');
      assert.equal(err.reason, 'invalid_grant', 'refreshTokens() keeps no state: it cannot know the token was rotated');
      assert.equal(err.oauthError, 'invalid_grant');
      assert.equal(typeof err.description, 'string');
      assert.equal(refreshesAtServer(), refresh0 + 2, 'one request each, no retry');
      assert.equal(await op.grantAlive(answer.refresh_token), false, 'the reuse revoked the grant, the rotated token included');

      const dead = await refreshTokens(options(kind, answer.refresh_token)).then(() => assert.fail('resolved'), (e) => e);
      assert.ok(dead instanceof ReauthorizationRequiredError);
      assert.equal(dead.reason, 'invalid_grant');
    });
  }

  test('the hand-written function and refreshTokens() get the same answers from oidc-provider', async () => {
    const { clientId, clientSecret } = op.clients.confidential;
    const first = await op.obtainTokens();
    const hand = await retrieveTokenUsingRefreshToken(clientId, clientSecret, first.refresh_token);
    assert.equal(typeof hand.refresh_token, 'string');
    const lib = await refreshTokens(options('confidential', hand.refresh_token));
    assert.deepEqual(Object.keys(lib).sort(), Object.keys(hand).sort(), 'the same fields');
    assert.equal(lib.token_type, hand.token_type);
    assert.equal(lib.scope, hand.scope);
    assert.equal(await op.grantAlive(lib.refresh_token), true, 'alternating the two keeps one live chain');

    // Where the hand-written one returns the error body, refreshTokens() rejects.
    const second = await op.obtainTokens();
    const handDead = await retrieveTokenUsingRefreshToken(clientId, clientSecret, 'not-a-refresh-token-oidc-provider-issued');
    assert.equal(handDead.error, 'invalid_grant');
    assert.equal(handDead.access_token, undefined);
    const err = await refreshTokens(options('confidential', 'not-a-refresh-token-oidc-provider-issued')).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof ReauthorizationRequiredError);
    assert.equal(err.description, handDead.error_description);
    assert.equal(await op.grantAlive(second.refresh_token), true, 'an unknown token harms no other grant');
  });
});
