// Secret hygiene (issue 6, DESIGN point 10) through the npm package: with a
// sentinel client secret and the real tokens the emulator hands out, run the
// common flows and failures while capturing everything the process writes
// (console.*, process.stdout, process.stderr), then check that no secret shows
// in that output, in any error, or in how the package's objects print
// (util.inspect, String(), template literals). Failing checks name the case,
// never the text, so a failure cannot print a secret either.

import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';

import { FreshTokenError, MemoryStore, TokenClient, authorizedFetch } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const SECRET = 'secret-SENTINEL-7f3a-a b+c/=&%';

/** Everything written to the console and the standard streams while `fn` runs. */
async function captureOutput(fn) {
  const written = [];
  const saved = {};
  for (const name of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
    saved[name] = console[name];
    console[name] = (...args) => written.push(args.map((a) => inspect(a, { depth: 6 })).join(' '));
  }
  const out = process.stdout.write;
  const err = process.stderr.write;
  process.stdout.write = (chunk, ...rest) => { written.push(String(chunk)); return out.call(process.stdout, '', ...rest); };
  process.stderr.write = (chunk, ...rest) => { written.push(String(chunk)); return err.call(process.stderr, '', ...rest); };
  try {
    await fn();
  } finally {
    Object.assign(console, saved);
    process.stdout.write = out;
    process.stderr.write = err;
  }
  return written;
}

/** The ways a value can show up in text: as is, form- and percent-encoded. */
function spellings(value) {
  return [value, encodeURIComponent(value), new URLSearchParams({ v: value }).toString().slice(2)];
}

describe('no secret in output, errors or printed objects', () => {
  let emu;
  before(async () => {
    emu = await startEmulator({ extraArgs: ['--client', `sentinel-client:${SECRET}`] });
  });
  after(async () => { await emu?.stop(); });

  test('a session and client-token run with sentinels', async () => {
    const sentinels = new Set(spellings(SECRET));
    const shown = [];
    const errors = [];
    const family = await emu.seed({ clientId: 'sentinel-client' });
    for (const s of spellings(family.refresh_token)) sentinels.add(s);

    const written = await captureOutput(async () => {
      const store = new MemoryStore();
      const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'sentinel-client', clientSecret: SECRET });
      const session = client.session('user', store);
      await session.seed({ refreshToken: family.refresh_token });
      const info = await session.refresh();
      const again = await session.refresh();
      for (const t of [info, again]) {
        for (const v of [t.accessToken, t.idToken]) for (const s of spellings(v)) sentinels.add(s);
      }
      const rotated = JSON.parse(store.get('user')).refresh_token;
      assert.equal(typeof rotated, 'string', 'the record holds the rotated refresh token');
      for (const s of spellings(rotated)) sentinels.add(s);
      const clientToken = await client.clientToken(['accounts']);
      for (const s of spellings(clientToken)) sentinels.add(s);

      shown.push(inspect(info), String(info), `${again}`, inspect([info], { depth: 4 }),
        inspect(client, { showHidden: true }), inspect(session, { showHidden: true }), inspect(store, { showHidden: true }));

      // Failures: a wrong secret, a dead refresh token, a garbled answer.
      const wrong = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'sentinel-client', clientSecret: `${SECRET}-wrong` });
      for (const s of spellings(`${SECRET}-wrong`)) sentinels.add(s);
      for (const attempt of [
        () => wrong.clientToken(['accounts']),
        () => client.session('dead', new MemoryStore()).seed({ refreshToken: family.refresh_token })
          .then(() => client.session('dead', new MemoryStore()).refresh()),
        async () => {
          await emu.fault({ kind: 'body', status: 200, body: `{"access_token":"${SECRET}","token_type":"mac"}` });
          return session.refresh();
        },
        () => authorizedFetch(client.session('none', new MemoryStore()), `${emu.apiEndpoint}`),
      ]) {
        try {
          await attempt();
          errors.push(null);
        } catch (e) {
          errors.push(e);
        }
      }
    });

    assert.ok(sentinels.size >= 10, 'the sentinels were collected');
    assert.equal(errors.length, 4);
    errors.forEach((e, i) => assert.ok(e instanceof FreshTokenError, `failure ${i} is a FreshTokenError`));
    const texts = [
      ...written,
      ...shown,
      ...errors.flatMap((e) => [e.message, e.stack, String(e), JSON.stringify(e), inspect(e, { depth: 5 })]),
    ];
    texts.forEach((text, i) => {
      for (const secret of sentinels) {
        assert.ok(!text.includes(secret), `text ${i} of ${texts.length} shows a token or the client secret`);
      }
    });
    assert.match(shown[0], /^TokenInfo \{ accessToken: "[^"]{3}…" \(\d+ chars\), expiresAt: \d+/, 'inspect shows prefix and length');
  });
});
