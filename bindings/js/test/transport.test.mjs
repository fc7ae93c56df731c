// Transport rules (issue 6, DESIGN point 10) through the npm package: plain
// http only on loopback hosts, and a redirect from the token endpoint is never
// followed (fetch runs with redirect: 'manual'), so the credentials in the
// form body never reach the Location's server.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';

import { ConfigError, FreshTokenError, MemoryStore, TokenClient, refreshTokens } from 'freshtoken';

/** A loopback server answering every request with `status` and `headers`. */
async function answerAll(status, headers = {}) {
  let hits = 0;
  const server = createServer((req, res) => {
    hits += 1;
    req.resume();
    req.on('end', () => { res.writeHead(status, headers); res.end(); });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    hits: () => hits,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

describe('transport rules', () => {
  test('plain http is a config error except on loopback hosts', () => {
    for (const tokenEndpoint of ['http://bank.example/connect/token', 'http://10.0.0.1/connect/token']) {
      assert.throws(() => new TokenClient({ tokenEndpoint, clientId: 'c', clientSecret: 's' }),
        (err) => err instanceof ConfigError && err.code === 'config' && /tokenEndpoint/.test(err.message), tokenEndpoint);
    }
    for (const tokenEndpoint of ['https://bank.example/connect/token', 'http://127.0.0.1:9/t', 'http://localhost:9/t', 'http://[::1]:9/t']) {
      assert.ok(new TokenClient({ tokenEndpoint, clientId: 'c', clientSecret: 's' }), tokenEndpoint);
    }
  });

  test('endpoints are read by the URL parser fetch sends with', () => {
    // Not a URL to fetch either: refused when configured, not when sent.
    for (const tokenEndpoint of ['https://bank.example:SECRET/token', 'https://[SECRET]/token',
      'https://bank.example:99999/token', 'https:///token', 'http://[::ffff:127.0.0.1]/token',
      // Read another way by RFC 3986 parsers (the mobile hosts' HTTP clients): refused everywhere.
      'http://localhost\\@evil.example/token', 'https://@bank.example/token', 'https:/token']) {
      assert.throws(() => new TokenClient({ tokenEndpoint, clientId: 'c', clientSecret: 's' }),
        (err) => err instanceof ConfigError && /tokenEndpoint/.test(err.message) && !err.message.includes('SECRET'),
        tokenEndpoint);
    }
    // Loopback as fetch reads it: the host URL normalises the address.
    for (const tokenEndpoint of ['http://0x7f.1:9/t', 'http://LOCALHOST:9/t', 'http://[0:0:0:0:0:0:0:1]:9/t']) {
      assert.ok(new TokenClient({ tokenEndpoint, clientId: 'c', clientSecret: 's' }), tokenEndpoint);
    }
  });

  describe('redirects are not followed', () => {
    let elsewhere;
    before(async () => { elsewhere = await answerAll(200, { 'content-type': 'application/json' }); });
    after(async () => { await elsewhere.close(); });

    for (const status of [301, 302, 307, 308]) {
      test(`HTTP ${status} from the token endpoint`, async () => {
        const endpoint = await answerAll(status, { location: `${elsewhere.url}/connect/token` });
        try {
          const options = { tokenEndpoint: `${endpoint.url}/connect/token`, clientId: 'c', clientSecret: 'secret-SENTINEL-0123' };
          const session = new TokenClient(options).session('u', new MemoryStore());
          await session.seed({ refreshToken: 'rt-SENTINEL-0123456789' });
          for (const attempt of [() => session.refresh(), () => refreshTokens({ ...options, refreshToken: 'rt-SENTINEL-0123456789' })]) {
            await assert.rejects(attempt(), (err) => err instanceof FreshTokenError && err.code === 'invalid_response'
              && !err.message.includes('SENTINEL'));
          }
          assert.equal(endpoint.hits(), 2, 'one request each, no retry');
          assert.equal(elsewhere.hits(), 0, 'nothing reached the Location');
        } finally {
          await endpoint.close();
        }
      });
    }
  });
});
