// The declarations of the fleet entry points (pkg/redis.d.ts,
// pkg/postgres.d.ts, pkg/local-storage.d.ts and pkg/indexeddb.d.ts, found through the exports
// map's "types" conditions): test/types/fleet-usage.ts compiles under
// `tsc --strict` (the DOM's localStorage and navigator.locks fit the
// browser store's structural types); the real node-redis client fits the
// store's structural client type; deliberate
// mistakes do not compile; and what the declarations name exists at run time.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import ts from 'typescript';
import * as redisEntry from 'freshtoken/redis';
import * as postgresEntry from 'freshtoken/postgres';
import * as localStorageEntry from 'freshtoken/local-storage';
import * as indexedDbEntry from 'freshtoken/indexeddb';

const JS_DIR = fileURLToPath(new URL('../', import.meta.url));
const TSC = join(JS_DIR, 'node_modules', 'typescript', 'bin', 'tsc');
const PKG_DIR = fileURLToPath(new URL('../../../pkg', import.meta.url));
const FLAGS = [
  '--noEmit', '--strict', '--pretty', 'false',
  '--module', 'nodenext', '--moduleResolution', 'nodenext',
  '--target', 'es2022', '--lib', 'es2022,dom',
];

function tsc(args, cwd) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TSC, ...FLAGS, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c) => { output += c; });
    child.stderr.on('data', (c) => { output += c; });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

const HEADER = "import { RedisStore } from 'freshtoken/redis';\n"
  + "import { PostgresStore } from 'freshtoken/postgres';\n"
  + "import { LocalStorageStore } from 'freshtoken/local-storage';\n"
  + "import { IndexedDbStore } from 'freshtoken/indexeddb';\n"
  + "import type { RedisCommandClient } from 'freshtoken/redis';\n"
  + 'declare const c: RedisCommandClient;\n';

/** The line each mistake sits on: the one after HEADER. */
const MISTAKE_LINE = HEADER.split('\n').length;

const WRONG = {
  'expected-version-number.ts': ["export const p = new RedisStore(c).saveVersioned('k', 'r', 3);", 'TS2345'],
  'ttl-string.ts': ["export const p = new RedisStore(c).acquire('k', 'o', '3000');", 'TS2345'],
  'not-a-client.ts': ["export const s = new RedisStore({ send: async () => 1 });", 'TS2353'],
  'pool-without-query.ts': ["export const s = new PostgresStore({ connect: async () => 1 });", 'TS2353'],
  'unknown-option.ts': ["export const s = new PostgresStore({ query: async () => ({ rows: [] }) }, { tableName: 'x' });", 'TS2353'],
  'lock-manager-misspelt.ts': ["export const s = new LocalStorageStore({ lock: navigator.locks });", 'TS2561'],
  'storage-without-setitem.ts': ["export const s = new LocalStorageStore({ storage: { getItem: (k: string) => k } });", 'TS2741'],
  'idb-database-number.ts': ["export const s = new IndexedDbStore({ database: 7 });", 'TS2322'],
  'idb-migrate-without-removeitem.ts': ["export const s = new IndexedDbStore({ migrateFrom: 'a:', storage: { getItem: (k: string) => k } });", 'TS2741'],
  'version-is-a-string.ts': ["export async function f() { const v: number | null = await new RedisStore(c).saveVersioned('k', 'r', null); return v; }", 'TS2322'],
};

describe('fleet store declarations', () => {
  let dir;
  before(async () => {
    // A scratch project that sees bindings/js/node_modules (freshtoken → pkg/, redis, pg).
    dir = await mkdtemp(join(tmpdir(), 'freshtoken-fleet-types-'));
    await writeFile(join(dir, 'package.json'), '{ "type": "module", "private": true }\n');
    await symlink(join(JS_DIR, 'node_modules'), join(dir, 'node_modules'), 'dir');
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('test/types/fleet-usage.ts compiles with tsc --strict (declarations checked too)', async () => {
    const { code, output } = await tsc([join('test', 'types', 'fleet-usage.ts')], JS_DIR);
    assert.equal(output.trim(), '', 'no diagnostics');
    assert.equal(code, 0);
  });

  test('a real node-redis client fits RedisStore (skipLibCheck: redis\'s own types need @types/node)', async () => {
    await writeFile(join(dir, 'real-redis.ts'), "import { createClient } from 'redis';\n"
      + "import { RedisStore } from 'freshtoken/redis';\n"
      + "export async function f() { const client = await createClient({ url: 'redis://127.0.0.1:6379' }).connect(); return new RedisStore(client, { prefix: 'x:' }); }\n");
    const { code, output } = await tsc(['--skipLibCheck', 'real-redis.ts'], dir);
    assert.equal(output.trim(), '');
    assert.equal(code, 0);
  });

  describe('deliberate mistakes do not compile', () => {
    let result;
    before(async () => {
      for (const [file, [line]] of Object.entries(WRONG)) await writeFile(join(dir, file), `${HEADER}${line}\n`);
      result = await tsc(Object.keys(WRONG), dir);
    });
    test('tsc fails and the entry points resolve', () => {
      assert.notEqual(result.code, 0);
      assert.ok(!result.output.includes('TS2307'), `cannot find module:\n${result.output}`);
    });
    for (const [file, [, diagnostic]] of Object.entries(WRONG)) {
      test(`${file}: ${diagnostic} on the mistake's line`, () => {
        const errors = result.output.split('\n').filter((l) => l.startsWith(`${file}(`) && l.includes(': error TS'));
        assert.ok(errors.length > 0, `no diagnostic for ${file}:\n${result.output}`);
        assert.ok(errors.every((l) => l.startsWith(`${file}(${MISTAKE_LINE},`)), `errors only on the mistake's line:\n${errors.join('\n')}`);
        assert.ok(errors.some((l) => l.includes(`error ${diagnostic}:`)), `expected ${diagnostic}:\n${errors.join('\n')}`);
      });
    }
  });

  for (const [file, runtime, className] of [
    ['redis.d.ts', redisEntry, 'RedisStore'],
    ['postgres.d.ts', postgresEntry, 'PostgresStore'],
    ['local-storage.d.ts', localStorageEntry, 'LocalStorageStore'],
    ['indexeddb.d.ts', indexedDbEntry, 'IndexedDbStore'],
  ]) {
    test(`${file} matches the run-time exports of its entry point`, () => {
      const path = join(PKG_DIR, file);
      const program = ts.createProgram([path], { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'] });
      const checker = program.getTypeChecker();
      const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      assert.deepEqual(diagnostics, [], `${file} compiles on its own`);
      const declared = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(path)));
      const values = declared.filter((s) => s.flags & ts.SymbolFlags.Value).map((s) => s.name).sort();
      assert.deepEqual(values, Object.keys(runtime).sort(), 'declared values = exported values');
      const symbol = declared.find((s) => s.name === className);
      const members = checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(symbol)).map((p) => p.name);
      for (const member of members) assert.equal(typeof runtime[className].prototype[member], 'function', `${className}.prototype.${member}`);
      const statics = checker.getPropertiesOfType(checker.getTypeOfSymbolAtLocation(symbol, symbol.valueDeclaration)).map((p) => p.name).filter((n) => n !== 'prototype');
      for (const member of statics) assert.equal(typeof runtime[className][member], 'function', `${className}.${member}`);
      const text = ts.sys.readFile(path);
      assert.ok(!/\bany\b/.test(text.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '')), `no \`any\` in ${file}`);
    });
  }
});
