// private_key_jwt through the JS package (WebCrypto signs): client tokens
// from the real, independent oidc-provider (it verifies the RS256 signature
// against the registered public key and refuses a replayed jti), the
// assertion checked with node:crypto, the credentials JSON, and the errors.

import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { ConfigError, MemoryStore, TokenClient } from 'freshtoken';
import * as alias from 'freshtoken/jwt';

import { REDIRECT_URI, startOidcProvider } from '../support/oidc-provider.mjs';

const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

describe('private_key_jwt against oidc-provider', () => {
  let op;
  before(async () => { op = await startOidcProvider(); });
  after(async () => { await op?.close(); });

  const jwtClient = (extra = {}) => new TokenClient({
    tokenEndpoint: op.tokenEndpoint,
    clientId: op.clients.jwt.clientId,
    privateKeyPem: op.clients.jwt.privateKeyPem,
    keyId: 'freshtoken-test',
    ...extra,
  });

  test('a client token, and a fresh assertion for every request', async () => {
    const client = jwtClient();
    const before = op.tokenRequests();
    const first = await client.clientToken(['api:read']);
    for (let i = 0; i < 3; i += 1) {
      client.invalidateClientToken(['api:read']);
      assert.notEqual(await client.clientToken(['api:read']), first);
    }
    assert.equal(op.tokenRequests() - before, 4, 'four requests, all accepted (no replayed jti)');
  });

  test('the assertion verifies with node:crypto and carries the RFC 7523 claims', async () => {
    const bodies = [];
    const recording = (url, init) => { bodies.push(new URLSearchParams(init.body)); return fetch(url, init); };
    const client = jwtClient({ fetch: recording });
    await client.clientToken(['api:write']);
    const form = bodies[0];
    assert.equal(form.get('client_assertion_type'), 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    assert.equal(form.get('client_secret'), null);
    const jwt = form.get('client_assertion');
    const [header, claims, signature] = jwt.split('.');
    const publicKey = createPublicKey(op.clients.jwt.privateKeyPem);
    assert.ok(verify('RSA-SHA256', Buffer.from(`${header}.${claims}`), publicKey, Buffer.from(signature, 'base64url')));
    assert.deepEqual(b64json(header), { alg: 'RS256', typ: 'JWT', kid: 'freshtoken-test' });
    const c = b64json(claims);
    assert.equal(c.iss, op.clients.jwt.clientId);
    assert.equal(c.sub, op.clients.jwt.clientId);
    assert.equal(c.aud, op.tokenEndpoint);
    assert.equal(c.exp - c.iat, 60);
    assert.equal(c.nbf, c.iat);
    assert.ok(Math.abs(c.iat - Date.now() / 1000) < 30);
    assert.match(c.jti, /^[A-Za-z0-9_-]{22,}$/);
  });

  test('a PKCS#1 key (RSA PRIVATE KEY) signs the same as its PKCS#8 form', async () => {
    const pkcs1 = createPrivateKey(op.clients.jwt.privateKeyPem).export({ type: 'pkcs1', format: 'pem' });
    assert.match(pkcs1, /BEGIN RSA PRIVATE KEY/);
    const client = jwtClient({ privateKeyPem: pkcs1 });
    assert.equal(typeof await client.clientToken(['api:read']), 'string');
  });

  test('a key under 2048 bits is a ConfigError naming privateKeyPem, and nothing is sent', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const before = op.tokenRequests();
    const client = jwtClient({ privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) });
    await assert.rejects(client.clientToken(['api:read']), (e) => e instanceof ConfigError
      && /`privateKeyPem`/.test(e.message) && /2048 bits/.test(e.message));
    assert.equal(op.tokenRequests(), before);
  });

  test('the code flow, a refresh and a revocation with private_key_jwt: oidc-provider accepts every assertion', async () => {
    const metadata = await (await fetch(`${op.issuer}/.well-known/openid-configuration`)).json();
    const bodies = [];
    const recording = (url, init) => { bodies.push(new URLSearchParams(init.body)); return fetch(url, init); };
    const client = jwtClient({
      authorizationEndpoint: metadata.authorization_endpoint,
      revocationEndpoint: metadata.revocation_endpoint,
      fetch: recording,
    });
    const store = new MemoryStore();
    const request = await client.authorizationUrl({ redirectUri: REDIRECT_URI, scopes: ['openid'] });
    const params = await op.authorize(request.url);
    const session = await client.exchangeCode(
      { code: params.get('code'), codeVerifier: request.codeVerifier, redirectUri: REDIRECT_URI }, 'u1', store,
    );
    await session.refresh();
    const rotated = JSON.parse(store.get('u1')).refresh_token;
    assert.equal(await op.grantAlive(rotated), true);
    await session.revoke();
    assert.equal(await op.grantAlive(rotated), false, 'the revocation was accepted');
    const kinds = bodies.map((f) => f.get('grant_type') ?? `revoke ${f.get('token_type_hint')}`);
    assert.deepEqual(kinds.slice(0, 2), ['authorization_code', 'refresh_token']);
    assert.ok(kinds.includes('revoke refresh_token'), kinds.join());
    const jtis = bodies.map((f) => b64json(f.get('client_assertion').split('.')[1]).jti);
    assert.equal(new Set(jtis).size, bodies.length, 'a new assertion for every request');
    assert.ok(bodies.every((f) => f.get('client_secret') === null));
  });

  test('fromCredentialsJson with the certificate, as Stitch hands it out', async () => {
    const json = JSON.stringify({
      clientId: op.clients.jwt.clientId,
      certificate: op.clients.jwt.privateKeyPem,
      slidingRefreshTokenLifetime: 31536000,
      tokenEndpoint: op.tokenEndpoint,
      somethingElse: { ignored: true },
    });
    const client = TokenClient.fromCredentialsJson(json, { timeoutMs: 5000 });
    assert.equal(typeof await client.clientToken(['api:read']), 'string');
  });

  test('fromCredentialsJson with a secret', async () => {
    const json = JSON.stringify({
      clientId: op.clients.confidential.clientId,
      clientSecret: op.clients.confidential.clientSecret,
      slidingRefreshTokenLifetime: 86400,
      tokenEndpoint: op.tokenEndpoint,
    });
    const client = TokenClient.fromCredentialsJson(json);
    assert.equal(typeof await client.clientToken(['api:read']), 'string');
  });
});

describe('private_key_jwt configuration errors', () => {
  const endpoint = 'https://secure.stitch.money/connect/token';

  test('a PEM without a usable key names privateKeyPem and never echoes the PEM', () => {
    const certOnly = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const error = (() => {
      try {
        new TokenClient({ tokenEndpoint: endpoint, clientId: 'c', privateKeyPem: certOnly });
      } catch (e) { return e; }
      return null;
    })();
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /`privateKeyPem`/);
    assert.doesNotMatch(error.message, /BEGIN/);
  });

  test('a key encrypted the traditional way (Proc-Type header) is named as encrypted, its PEM never echoed', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = privateKey.export({ type: 'pkcs1', format: 'pem', cipher: 'aes-128-cbc', passphrase: 'pw' });
    assert.match(pem, /Proc-Type: 4,ENCRYPTED/);
    const body = pem.split('\n').filter((line) => /^[A-Za-z0-9+/=]{40,}$/.test(line));
    assert.ok(body.length > 0);
    const error = (() => {
      try {
        new TokenClient({ tokenEndpoint: endpoint, clientId: 'c', privateKeyPem: pem });
      } catch (e) { return e; }
      return null;
    })();
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /`privateKeyPem`/);
    assert.match(error.message, /encrypted; decrypt it first \(openssl pkcs8 -topk8 -nocrypt\)/);
    for (const line of body) assert.ok(!error.message.includes(line.slice(0, 16)), 'no key material');
  });

  test('a missing member of the credentials JSON is named', () => {
    assert.throws(
      () => TokenClient.fromCredentialsJson(JSON.stringify({ clientId: 'c', clientSecret: 's' })),
      (e) => e instanceof ConfigError && /slidingRefreshTokenLifetime/.test(e.message),
    );
    assert.throws(
      () => TokenClient.fromCredentialsJson('{"clientId":"c","clientSecret":"s","slidingRefreshTokenLifetime":1}', { clientId: 'x' }),
      (e) => e instanceof ConfigError && /clientId/.test(e.message),
      'identity options are not accepted next to the JSON',
    );
  });

  test("'freshtoken/jwt' is an alias of 'freshtoken' (one build)", () => {
    assert.equal(alias.TokenClient, TokenClient);
    assert.equal(alias.ConfigError, ConfigError);
    assert.throws(
      () => new alias.TokenClient({ tokenEndpoint: endpoint, clientId: 'c', privateKeyPem: 'x' }),
      (e) => e instanceof ConfigError && /`privateKeyPem`/.test(e.message) && /no RSA private key/.test(e.message),
    );
  });
});
