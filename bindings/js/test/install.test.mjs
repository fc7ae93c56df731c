// The package installs from pkg/ into a fresh Node project (copied, as
// `npm pack` would ship it, not linked) and runs the README's quick start
// against the emulator.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, readdir } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';

import { startEmulator } from '../support/emulator.mjs';

const run = promisify(execFile);
const pkgDir = fileURLToPath(new URL('../../../pkg', import.meta.url));

let emu;
let project;

before(async () => {
  emu = await startEmulator();
  project = await mkdtemp(join(tmpdir(), 'freshtoken-install-'));
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'quick-start', private: true, type: 'module' }));
  // --install-links copies the folder the way a published tarball would land.
  await run('npm', ['install', '--install-links', '--no-audit', '--no-fund', '--loglevel=error', pkgDir], { cwd: project });
});

after(async () => {
  await emu?.stop();
  if (project) await rm(project, { recursive: true, force: true });
});

test('the installed package ships only its files and has no dependencies', async () => {
  const installed = join(project, 'node_modules', 'freshtoken');
  const top = (await readdir(installed)).sort();
  assert.deepEqual(top, ['README.md', 'dist', 'index.d.ts', 'indexeddb.d.ts', 'jwt.d.ts', 'lib', 'local-storage.d.ts', 'package.json', 'postgres.d.ts', 'redis.d.ts', 'src']);
  const modules = (await readdir(join(project, 'node_modules'))).filter((name) => !name.startsWith('.'));
  assert.deepEqual(modules, ['freshtoken'], 'zero runtime dependencies: the optional peers (redis, pg) are not installed');
});

test('the shipped wasm names no folder of the machine that built it, nor a source file', async () => {
  // scripts/build-js.sh builds without source locations (-Zlocation-detail=none):
  // no panic location names a file, let alone the builder's cargo home or
  // rustup toolchain.
  const cargoHome = process.env.CARGO_HOME ?? join(homedir(), '.cargo');
  const rustupHome = process.env.RUSTUP_HOME ?? join(homedir(), '.rustup');
  for (const dir of ['node', 'web']) {
    const bytes = await readFile(join(pkgDir, 'dist', dir, 'freshtoken_bg.wasm'));
    assert.equal(bytes.subarray(0, 4).toString('latin1'), '\0asm', 'the check reads a wasm module');
    const text = bytes.toString('latin1');
    assert.ok(text.includes('tokenEndpoint'), 'the check reads the data section: an option name is there');
    for (const folder of [cargoHome, rustupHome, '/registry/src/', '/rustlib/']) {
      assert.ok(!text.includes(folder), `dist/${dir} names ${folder}`);
    }
    assert.doesNotMatch(text, /[\w/-]+\.rs\b/, `dist/${dir} names a Rust source file`);
  }
});

test('the entries load the minified lib/, whose source maps lead to the readable src/', async () => {
  // scripts/minify-js.mjs writes lib/ (names kept) with a map per file.
  const script = `
    import { TokenClient } from 'freshtoken';
    try { new TokenClient({ tokenEndpoint: 'ftp://x', clientId: 'c' }); } catch (e) { console.log(JSON.stringify({ name: e.name, stack: e.stack })); }
  `;
  await writeFile(join(project, 'stack.mjs'), script);
  const plain = JSON.parse((await run('node', ['stack.mjs'], { cwd: project })).stdout.trim());
  assert.equal(plain.name, 'ConfigError', 'error classes keep their names');
  assert.match(plain.stack, /freshtoken\/lib\/[a-z-]+\.js:1:\d+/, 'the minified file, one line');
  assert.match(plain.stack, /makeError/, 'function names kept');
  const mapped = JSON.parse((await run('node', ['--enable-source-maps', 'stack.mjs'], { cwd: project })).stdout.trim());
  assert.match(mapped.stack, /freshtoken\/src\/errors\.js:\d+:\d+/, 'mapped back to the readable source');
  const installed = join(project, 'node_modules', 'freshtoken');
  const api = await readFile(join(installed, 'lib', 'api.js'), 'utf8');
  assert.ok(!api.includes('/**'), 'no comments in what loads');
});

test('the fleet entry points load without their optional peers installed', async () => {
  // The stores take a client the application made; they never import redis or pg themselves.
  const script = `
    import { RedisStore } from 'freshtoken/redis';
    import { PostgresStore } from 'freshtoken/postgres';
    const sent = [];
    const redis = new RedisStore({ sendCommand: async (args) => { sent.push(args[0]); return 'OK'; } });
    const taken = await redis.acquire('u1', 'owner', 1000);
    const ddl = PostgresStore.schema();
    console.log(JSON.stringify({ taken, sent, ddl: ddl.includes('CREATE TABLE IF NOT EXISTS "freshtoken_records"') }));
  `;
  await writeFile(join(project, 'fleet-entry.mjs'), script);
  const { stdout } = await run('node', ['fleet-entry.mjs'], { cwd: project });
  assert.deepEqual(JSON.parse(stdout.trim()), { taken: true, sent: ['SET'], ddl: true });
});

test('the quick start runs in the fresh project', async () => {
  const family = await emu.seed();
  const script = `
    import { TokenClient, MemoryStore, ReauthorizationRequiredError } from 'freshtoken';
    const client = new TokenClient({ tokenEndpoint: process.env.EP, clientId: 'test-client', clientSecret: 'test-secret' });
    const session = client.session('user-42', new MemoryStore());
    await session.seed({ refreshToken: process.env.RT });
    const tokens = await Promise.all(Array.from({ length: 100 }, () => session.accessToken()));
    const bogus = client.session('user-43', new MemoryStore());
    await bogus.seed({ refreshToken: 'not-a-real-token' });
    const error = await bogus.accessToken().catch((e) => e);
    console.log(JSON.stringify({
      same: tokens.every((t) => t === tokens[0]),
      reauth: error instanceof ReauthorizationRequiredError && error.reason,
    }));
  `;
  await writeFile(join(project, 'quick-start.mjs'), script);
  const { stdout } = await run('node', ['quick-start.mjs'], {
    cwd: project,
    env: { ...process.env, EP: emu.tokenEndpoint, RT: family.refresh_token },
  });
  assert.deepEqual(JSON.parse(stdout.trim()), { same: true, reauth: 'invalid_grant' });
  assert.equal(await emu.refreshRequests(), 2, 'one refresh for 100 callers, one rejected');
});
