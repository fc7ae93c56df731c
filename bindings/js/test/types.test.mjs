// The package's TypeScript declarations (pkg/index.d.ts, found through the
// "types" condition of its exports map): test/types/usage.ts, a tour of the
// whole public API, compiles under `tsc --strict`; test/types/exact-optional.ts
// under `--exactOptionalPropertyTypes` too; test/types/fetch-implementations.ts
// shows node-fetch (v2, v3) and undici fit the `fetch` options; files with
// deliberate mistakes do not compile, each with the expected diagnostic; and
// what index.d.ts declares is what the module exports at run time.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import ts from 'typescript';
import * as runtime from 'freshtoken';

const JS_DIR = fileURLToPath(new URL('../', import.meta.url));
const TSC = join(JS_DIR, 'node_modules', 'typescript', 'bin', 'tsc');
const PKG_DIR = fileURLToPath(new URL('../../../pkg', import.meta.url));
const FLAGS = [
  '--noEmit', '--strict', '--pretty', 'false',
  '--module', 'nodenext', '--moduleResolution', 'nodenext',
  '--target', 'es2022', '--lib', 'es2022,dom',
];

/** Runs tsc on `files` from `cwd`; resolves with its exit code and output. */
function tsc(files, cwd) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TSC, ...FLAGS, ...files], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c) => { output += c; });
    child.stderr.on('data', (c) => { output += c; });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

const HEADER = "import { TokenClient, UserSession, MemoryStore, FreshTokenError, ReauthorizationRequiredError, StorageError, ConfigError, refreshTokens, authorizedFetch, isUnauthenticated } from 'freshtoken';\n"
  + "import type { TokenStore, TokenInfo, SessionStatus } from 'freshtoken';\n"
  + "declare const session: UserSession;\ndeclare const err: unknown;\n";

// Each wrong file has one mistake and the diagnostic tsc must report for it.
const WRONG = {
  'number-client-id.ts': ["new TokenClient({ tokenEndpoint: 'https://x.example/token', clientId: 5 });", 'TS2322'],
  'missing-token-endpoint.ts': ["new TokenClient({ clientId: 'c' });", 'TS2345'],
  'unknown-option.ts': ["new TokenClient({ tokenEndpoint: 'https://x.example/token', clientId: 'c', leeway: 60 });", 'TS2353'],
  'bad-client-auth.ts': ["new TokenClient({ tokenEndpoint: 'https://x.example/token', clientId: 'c', clientAuth: 'basic' });", 'TS2322'],
  'missing-property.ts': ['export async function f() { const s: SessionStatus = await session.status(); return s.lastError; }', 'TS2339'],
  'token-info-typo.ts': ['export async function f() { const i: TokenInfo = await session.tokens(); const n: string = i.expiresAt; return n; }', 'TS2322'],
  'private-constructor.ts': ['export const s = new UserSession();', 'TS2673'],
  'store-load-returns-a-number.ts': ['export const s: TokenStore = { load: async () => 1, save: async () => {} };', 'TS2322'],
  'store-without-save.ts': ['export const s: TokenStore = { load: async () => null };', 'TS2741'],
  'reason-not-narrowed.ts': ["export const r: 'invalid_grant' | 'refresh_expired' | 'lost_rotation' | 'no_refresh_token' = (err as FreshTokenError).reason;", 'TS2322'],
  'access-token-is-a-promise.ts': ['export const t: string = session.accessToken();', 'TS2322'],
  'bad-event-keys.ts': ["new TokenClient({ tokenEndpoint: 'https://x.example/token', clientId: 'c', eventKeys: 'hashed' });", 'TS2322'],
  'event-kind-typo.ts': ["new TokenClient({ tokenEndpoint: 'https://x.example/token', clientId: 'c', onEvent: (e) => { if (e.kind === 'refresh_succeeded') throw e; } });", 'TS2367'],
  'narrowed-code.ts': ["export function f() { if (err instanceof ReauthorizationRequiredError) { const c: 'storage' = err.code; return c; } return null; }", 'TS2322'],
  // Errors are made from their fields (errors.js reads them), never from a message alone.
  'error-from-a-message.ts': ["export const e = new StorageError('store down');", 'TS2345'],
  'error-of-another-code.ts': ["export const e = new StorageError({ code: 'config', message: 'm' });", 'TS2322'],
  'config-error-without-field.ts': ["export const e = new ConfigError({ code: 'config', message: 'm' });", 'TS2345'],
  'storage-code-narrowed.ts': ["export function f() { if (err instanceof StorageError) { const c: 'config' = err.code; return c; } return null; }", 'TS2322'],
  'refresh-tokens-lease-option.ts': ["export const p = refreshTokens({ tokenEndpoint: 'https://x.example/token', clientId: 'c', refreshToken: 'r', leaseTtlMs: 60000 });", 'TS2353'],
  'refresh-tokens-max-sessions.ts': ["export const p = refreshTokens({ tokenEndpoint: 'https://x.example/token', clientId: 'c', refreshToken: 'r', maxSessions: 5 });", 'TS2353'],
  'authorized-fetch-init-typo.ts': ["export const p = authorizedFetch(session, 'https://api.example', { methd: 'POST' });", 'TS2345'],
  'store-load-number-sync.ts': ['export const s: TokenStore = { load: () => 1, save: () => {} };', 'TS2322'],
  // The run time checks for a Response by brand: a look-alike object is refused.
  'unauthenticated-plain-object.ts': ["export const p = isUnauthenticated({ status: 401, headers: { get: () => null }, arrayBuffer: async () => new ArrayBuffer(0) });", 'TS2345'],
  'extra-param-not-a-string.ts': ["export const p = new TokenClient({ tokenEndpoint: 'https://x.example/token', clientId: 'c' }).authorizationUrl({ redirectUri: 'https://a.example/cb', extraParams: { provider: 1 } });", 'TS2322'],
  'fetch-without-response.ts': ["new TokenClient({ tokenEndpoint: 'https://x.example/token', clientId: 'c', fetch: async () => 'body' });", 'TS2322'],
};

describe('TypeScript declarations', () => {
  let dir;
  before(async () => {
    // A scratch project that resolves 'freshtoken' to the real package.
    dir = await mkdtemp(join(tmpdir(), 'freshtoken-types-'));
    await writeFile(join(dir, 'package.json'), '{ "type": "module", "private": true }\n');
    await mkdir(join(dir, 'node_modules'));
    await symlink(PKG_DIR, join(dir, 'node_modules', 'freshtoken'), 'dir');
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('test/types/usage.ts compiles with tsc --strict (declarations checked too)', async () => {
    const { code, output } = await tsc([join('test', 'types', 'usage.ts')], JS_DIR);
    assert.equal(output.trim(), '', 'no diagnostics');
    assert.equal(code, 0);
  });

  test('test/types/exact-optional.ts compiles with --exactOptionalPropertyTypes (an option given as undefined)', async () => {
    const { code, output } = await tsc(['--exactOptionalPropertyTypes', join('test', 'types', 'exact-optional.ts')], JS_DIR);
    assert.equal(output.trim(), '', 'no diagnostics');
    assert.equal(code, 0);
  });

  test('test/types/fetch-implementations.ts: node-fetch v2 and v3 and undici fit the fetch options (skipLibCheck: node-fetch\'s types need @types/node)', async () => {
    const { code, output } = await tsc(['--skipLibCheck', join('test', 'types', 'fetch-implementations.ts')], JS_DIR);
    assert.equal(output.trim(), '', 'no diagnostics');
    assert.equal(code, 0);
  });

  test('the scratch project resolves the package: a correct file compiles there', async () => {
    await writeFile(join(dir, 'ok.ts'), `${HEADER}export const c = new TokenClient({ tokenEndpoint: 'https://x.example/token', clientId: 'c' });\n`
      + 'export const e = err instanceof ReauthorizationRequiredError ? err.reason : undefined;\n'
      + 'export const m = new MemoryStore(); export const k: string = session.key;\n'
      + 'export const t: Promise<TokenInfo> = session.tokens();\n');
    const { code, output } = await tsc(['ok.ts'], dir);
    assert.equal(output.trim(), '');
    assert.equal(code, 0);
  });

  describe('deliberate mistakes do not compile', () => {
    // One tsc run over every wrong file (tsc starts slowly); each test reads its file's diagnostics.
    let result;
    before(async () => {
      for (const [file, [line]] of Object.entries(WRONG)) await writeFile(join(dir, file), `${HEADER}${line}\n`);
      result = await tsc(Object.keys(WRONG), dir);
    });

    test('tsc fails and the package resolves', () => {
      assert.notEqual(result.code, 0);
      assert.ok(!result.output.includes('TS2307'), `cannot find module:\n${result.output}`);
    });

    for (const [file, [, diagnostic]] of Object.entries(WRONG)) {
      test(`${file}: ${diagnostic} on the mistake's line`, () => {
        const errors = result.output.split('\n').filter((l) => l.startsWith(`${file}(`) && l.includes(': error TS'));
        assert.ok(errors.length > 0, `no diagnostic for ${file}:\n${result.output}`);
        assert.ok(errors.every((l) => l.startsWith(`${file}(5,`)), `errors only on the mistake's line:\n${errors.join('\n')}`);
        assert.ok(errors.some((l) => l.includes(`error ${diagnostic}:`)), `expected ${diagnostic}:\n${errors.join('\n')}`);
      });
    }
  });
});

describe('index.d.ts matches the run-time exports', () => {
  const file = join(PKG_DIR, 'index.d.ts');
  const program = ts.createProgram([file], { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'] });
  const checker = program.getTypeChecker();
  const declared = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(file)));
  const declaredSymbols = declared.filter((s) => s.flags & ts.SymbolFlags.Value);
  const declaredValues = declaredSymbols.map((s) => s.name).sort();

  test('every declared value exists at run time with the declared kind', () => {
    assert.ok(declaredValues.length >= 18);
    for (const symbol of declaredSymbols) {
      const { name } = symbol;
      const type = checker.getTypeOfSymbol(symbol);
      if (symbol.flags & ts.SymbolFlags.Variable && type.isStringLiteral()) {
        assert.equal(runtime[name], type.value, `${name} is exported with its declared value`);
      } else {
        assert.equal(typeof runtime[name], 'function', `${name} is exported`);
      }
    }
  });

  test('every declared class member exists at run time', () => {
    for (const name of ['TokenClient', 'UserSession', 'MemoryStore', 'FileStore']) {
      const type = checker.getDeclaredTypeOfSymbol(declared.find((s) => s.name === name));
      const members = checker.getPropertiesOfType(type).map((p) => p.name);
      for (const member of members) {
        assert.ok(member in runtime[name].prototype, `${name}.prototype.${member}`);
      }
    }
  });

  test('an error made as its declared constructor says has its message, code and fields', () => {
    const storage = new runtime.StorageError({ code: 'storage', message: 'store down' });
    assert.deepEqual([storage.name, storage.message, storage.code], ['StorageError', 'store down', 'storage']);
    const config = new runtime.ConfigError({ code: 'config', message: 'bad', field: 'clientId' });
    assert.equal(config.field, 'clientId');
    const relink = new runtime.ReauthorizationRequiredError({ code: 'reauthorization_required', message: 'x', reason: 'revoked' });
    assert.equal(relink.reason, 'revoked');
    assert.ok(relink instanceof runtime.FreshTokenError);
  });

  test('every run-time export is declared', () => {
    assert.deepEqual(Object.keys(runtime).filter((n) => !declaredValues.includes(n)), []);
  });
});
