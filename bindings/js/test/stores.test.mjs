// The package's stores: FileStore (Node only: one file per key, temp file +
// fsync + rename) and MemoryStore, alone and under a session against the
// emulator. Each test works in its own temporary directory.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile, chmod } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';

import { ConfigError, FileStore, MemoryStore, StorageError, TokenClient } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const RECORD = '{"schema":"freshtoken.record/1","refresh_token":"rt-SENTINEL-record","updated_at":1}';

describe('FileStore', () => {
  let dir;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'freshtoken-filestore-')); });
  afterEach(async () => {
    await chmod(dir, 0o700).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });

  test('save then load round-trips; a missing key loads as null', async () => {
    const store = new FileStore(join(dir, 'records'));
    assert.equal(await store.load('nobody'), null, 'missing directory: null');
    await store.save('u1', RECORD);
    assert.equal(await store.load('u1'), RECORD);
    assert.equal(await store.load('u2'), null);
    await store.save('u1', `${RECORD} `);
    assert.equal(await store.load('u1'), `${RECORD} `, 'a second save replaces the record');
    assert.equal(await new FileStore(join(dir, 'records')).load('u1'), `${RECORD} `, 'another instance reads it');
  });

  test('keys that look like paths stay inside the directory', async () => {
    const inner = join(dir, 'a', 'b');
    const store = new FileStore(inner);
    const keys = ['../../etc/passwd', '../escape', '/abs/olute', 'C:\\windows', '.', '..', 'é ünïcode 🔑', ''];
    for (const [i, key] of keys.entries()) {
      assert.equal(dirname(store.pathFor(key)), inner, `key ${i}: the file is directly in the directory`);
      await store.save(key, `${RECORD}${i}`);
    }
    for (const [i, key] of keys.entries()) {
      assert.equal(await store.load(key), `${RECORD}${i}`, `key ${i} round-trips`);
    }
    assert.equal((await readdir(inner)).length, keys.length, 'one file per key');
    assert.deepEqual(await readdir(dir), ['a']);
    assert.deepEqual(await readdir(join(dir, 'a')), ['b'], 'nothing written above the directory');
  });

  test('no temporary files are left behind, even after concurrent saves', async () => {
    const store = new FileStore(dir);
    for (let i = 0; i < 10; i += 1) await store.save('seq', `${RECORD}${i}`);
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.save('par', `${RECORD}${i}`)));
    const files = await readdir(dir);
    assert.deepEqual(files.sort(), [store.pathFor('par'), store.pathFor('seq')].map((p) => p.slice(dir.length + 1)).sort());
    assert.match(await store.load('par'), /^\{"schema".*\}\d+$/, 'a whole record, never half of one');
    assert.equal((await stat(store.pathFor('seq'))).mode & 0o777, 0o600, 'readable by the owner only');
  });

  test('a save removes the temp file a killed Kotlin or Python save left, which their recover() would put back', async () => {
    const store = new FileStore(dir);
    await store.save('u1', '{"refresh_token":"rt-0"}');
    const path = store.pathFor('u1');
    const leftover = join(dirname(path), `.${path.slice(dirname(path).length + 1)}.tmp`);
    await writeFile(leftover, '{"refresh_token":"rt-0","in_doubt":true}');
    await store.save('u1', '{"refresh_token":"rt-1"}');
    await assert.rejects(stat(leftover), { code: 'ENOENT' }, 'the older save is gone');
    assert.equal(await store.load('u1'), '{"refresh_token":"rt-1"}');
    // A directory at the name is no save's leftover: the save goes on.
    await mkdir(leftover);
    await store.save('u1', '{"refresh_token":"rt-2"}');
    assert.equal(await store.load('u1'), '{"refresh_token":"rt-2"}');
  });

  test('recover() finishes a save cut off before its rename and deletes other temp files', async () => {
    const records = join(dir, 'recover');
    const store = new FileStore(records);
    assert.deepEqual(await store.recover(), { completed: 0, removed: 0 }, 'a missing directory has none');
    await store.save('u1', '{"v":1}');
    await store.save('u2', '{"v":1}');
    const at = (secondsAgo) => new Date(Date.now() - secondsAgo * 1000);
    const main1 = store.pathFor('u1');
    const main2 = store.pathFor('u2');
    await utimes(main1, at(7200), at(7200));
    await utimes(main2, at(60), at(60));
    const temp = (main, pid) => `${main}.${pid}.0123456789ab.tmp`;
    // u1: a killed save wrote its whole record (newer than the file), and an
    // older one was cut off mid-write; a third save is still in progress
    // (its writer, a live process, is still writing it: not whole yet).
    await writeFile(temp(main1, 1), '{"v":2}');
    await utimes(temp(main1, 1), at(3600), at(3600));
    await writeFile(temp(main1, 2), '{"v":');
    await utimes(temp(main1, 2), at(5400), at(5400));
    await writeFile(temp(main1, process.ppid), '{"v":');
    // u2: a complete record older than the file (a later save won).
    await writeFile(temp(main2, 4), '{"v":0}');
    await utimes(temp(main2, 4), at(3600), at(3600));

    assert.deepEqual(await store.recover(), { completed: 1, removed: 2 });
    assert.equal(await store.load('u1'), '{"v":2}', 'the newest whole save is finished');
    assert.equal(await store.load('u2'), '{"v":1}', 'a newer file is never replaced');
    assert.deepEqual((await readdir(records)).filter((n) => n.endsWith('.tmp')), [temp(main1, process.ppid).slice(records.length + 1)],
      'a temp file younger than the cutoff is left to its writer');
    // Its writer finishes writing it: whole and newer, it is finished as the writer would.
    await writeFile(temp(main1, process.ppid), '{"v":3}');
    assert.deepEqual(await store.recover(), { completed: 1, removed: 0 });
    assert.equal(await store.load('u1'), '{"v":3}');
    assert.deepEqual(await store.recover(0), { completed: 0, removed: 0 });
  });

  test('recover() finishes a whole save a container killed seconds before its restart left (another pid namespace)', async () => {
    // The restarted container has another pid namespace, so the killed
    // save's writer cannot be checked. The file holds the rotated refresh
    // token, the record the spent one (in doubt): left alone, the session
    // would send the spent token and the server revoke the grant.
    const records = join(dir, 'recover-restart');
    const store = new FileStore(records);
    await store.save('u1', '{"refresh_token":"rt-1","in_doubt":true}');
    const main = store.pathFor('u1');
    const at = (secondsAgo) => new Date(Date.now() - secondsAgo * 1000);
    await utimes(main, at(10), at(10));
    let namespace = '';
    try { namespace = readlinkSync('/proc/self/ns/pid'); } catch { /* no procfs */ }
    const tag = createHash('sha256').update(`${hostname()}\0${namespace}`).digest('hex').slice(0, 4);
    const foreign = tag === 'ffff' ? '0000' : 'ffff';
    const killed = `${main}.1.${foreign}01234567.tmp`;
    await writeFile(killed, '{"refresh_token":"rt-2"}');
    await utimes(killed, at(5), at(5));
    const stillWriting = `${main}.2.${foreign}89abcdef.tmp`;
    await writeFile(stillWriting, '{"refresh_token":"rt-');
    assert.deepEqual(await store.recover(), { completed: 1, removed: 0 });
    assert.equal(await store.load('u1'), '{"refresh_token":"rt-2"}');
    assert.deepEqual((await readdir(records)).filter((n) => n.endsWith('.tmp')), [basename(stillWriting)],
      'a young file that is not whole may still be written: left');
  });

  test("recover() at once finishes a young save whose writer is dead, or was this process's pid before a restart", async () => {
    const records = join(dir, 'recover-dead');
    const store = new FileStore(records);
    await store.save('u1', '{"v":1}');
    await store.save('u2', '{"v":1}');
    const main1 = store.pathFor('u1');
    const main2 = store.pathFor('u2');
    const old = new Date(Date.now() - 3_600_000);
    await utimes(main1, old, old);
    await utimes(main2, old, old);
    // A process that has ended: its pid names a writer that is gone.
    const child = spawn(process.execPath, ['-e', '']);
    const deadPid = await new Promise((resolve) => child.on('exit', () => resolve(child.pid)));
    // The writer tag FileStore puts first in its temp names' random part:
    // this host and pid namespace, whose pids this process can check.
    let namespace = '';
    try { namespace = readlinkSync('/proc/self/ns/pid'); } catch { /* no procfs */ }
    const tag = createHash('sha256').update(`${hostname()}\0${namespace}`).digest('hex').slice(0, 4);
    // Killed after the fsync of its temp file, seconds ago (a restart well within the cutoff).
    await writeFile(`${main1}.${deadPid}.${tag}01234567.tmp`, '{"v":2}');
    // A process restarted under the same pid (pid 1 in a container) finds its predecessor's file.
    await writeFile(`${main2}.${process.pid}.${tag}01234567.tmp`, '{"v":2}');
    // Written from another pid namespace or host sharing the directory (the
    // CLI on the host, another container): its pid means nothing here, so it
    // is left to its age, whatever that pid is here.
    const foreign = tag === 'ffff' ? '0000' : 'ffff';
    const elsewhere = [`${main1}.${deadPid}.${foreign}01234567.tmp`, `${main2}.${process.pid}.${foreign}01234567.tmp`];
    // Older than the dead writers' saves (so not the newest whole one), but within the cutoff.
    for (const path of elsewhere) {
      await writeFile(path, '{"v":3}');
      await utimes(path, new Date(Date.now() - 5_000), new Date(Date.now() - 5_000));
    }
    assert.deepEqual(await store.recover(), { completed: 2, removed: 0 });
    assert.equal(await store.load('u1'), '{"v":2}');
    assert.equal(await store.load('u2'), '{"v":2}');
    const left = (await readdir(records)).filter((n) => n.endsWith('.tmp')).sort();
    assert.deepEqual(left, elsewhere.map((p) => p.slice(records.length + 1)).sort(), 'the other namespace\'s young files are left');
  });

  test('an unwritable location rejects without the record in the message', async () => {
    await writeFile(join(dir, 'plain-file'), 'x');
    const errors = [];
    // A "directory" below a regular file (fails for root too).
    const underFile = new FileStore(join(dir, 'plain-file', 'records'));
    errors.push(await underFile.save('u1', RECORD).then(() => assert.fail('saved'), (e) => e));
    // The record's path is taken by a directory: the rename fails, the temp file is cleaned up.
    const blocked = new FileStore(dir);
    await mkdir(blocked.pathFor('u1'));
    errors.push(await blocked.save('u1', RECORD).then(() => assert.fail('saved'), (e) => e));
    errors.push(await blocked.load('u1').then(() => assert.fail('loaded'), (e) => e));
    for (const err of errors) {
      assert.ok(err instanceof Error);
      assert.ok(!`${err.message} ${err.stack}`.includes('SENTINEL'), 'the record is not in the error');
    }
    assert.match(errors[1].message, /cannot write the record/);
    assert.match(errors[2].message, /cannot read the record/);
    assert.deepEqual((await readdir(dir)).sort(), ['plain-file', blocked.pathFor('u1').slice(dir.length + 1)].sort(),
      'no temp file left after a failed save');
  });

  test('a read-only directory rejects the save', {
    skip: process.getuid?.() === 0 ? 'running as root: permissions do not stop root' : false,
  }, async () => {
    const store = new FileStore(dir);
    await chmod(dir, 0o500);
    const err = await store.save('u1', RECORD).then(() => assert.fail('saved'), (e) => e);
    assert.match(err.message, /cannot write the record \(EACCES\)/);
    assert.ok(!err.message.includes('SENTINEL'));
  });

  test('a key of 200 bytes can be stored', async () => {
    const store = new FileStore(dir);
    const key = `https://issuer.example/tenants/1234|${'s'.repeat(164)}`;
    assert.equal(Buffer.byteLength(key), 200);
    await store.save(key, RECORD);
    assert.equal(await store.load(key), RECORD);
  });

  test('a record file over the cap is read only to one byte past it', async () => {
    const MAX_FILE_BYTES = 1024 * 1024; // file-store.js
    const store = new FileStore(dir);
    await writeFile(store.pathFor('big'), 'x'.repeat(3 * MAX_FILE_BYTES));
    assert.equal((await store.load('big')).length, MAX_FILE_BYTES + 1);
  });

  test('a record file that is not UTF-8 is refused, and left as it is', async () => {
    // Read as U+FFFD, a damaged refresh token would be sent once and the
    // dead marker saved over the bytes an operator could repair.
    const store = new FileStore(dir);
    const bytes = Buffer.concat([Buffer.from('{"refresh_token":"rt-SEN'), Buffer.from([0xff]), Buffer.from('TINEL"}')]);
    await writeFile(store.pathFor('bytes'), bytes);
    const err = await store.load('bytes').then(() => assert.fail('loaded'), (e) => e);
    assert.match(err.message, /not UTF-8/);
    assert.ok(!err.message.includes('SEN') && !err.message.includes('TINEL'), 'nothing of the file in the message');
    assert.deepEqual(await readFile(store.pathFor('bytes')), bytes, 'the file is unchanged');
    for (const other of [[0xc3], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]]) { // cut, a surrogate, 5 bytes
      await writeFile(store.pathFor('bytes'), Buffer.from([0x7b, ...other, 0x7d]));
      await assert.rejects(store.load('bytes'), /not UTF-8/);
    }
    await writeFile(store.pathFor('bom'), `\ufeff${RECORD}`);
    assert.equal(await store.load('bom'), `\ufeff${RECORD}`, 'a BOM is text like any other (freshtoken refuses it)');
  });

  test('a file over the cap cut inside a character reads to the last whole one (freshtoken then refuses its size)', async () => {
    const MAX_FILE_BYTES = 1024 * 1024; // file-store.js
    const store = new FileStore(dir);
    await writeFile(store.pathFor('big'), '\u00e9'.repeat(MAX_FILE_BYTES)); // 2 bytes each: the cap + 1 cuts one
    assert.equal(await store.load('big'), '\u00e9'.repeat(MAX_FILE_BYTES / 2), 'the half character past the cap is dropped');
  });

  test('the constructor wants a directory path: a ConfigError naming `directory`', () => {
    for (const bad of [[''], [], [undefined], [null], [42], [{ dir }]]) {
      assert.throws(() => new FileStore(...bad), (e) => {
        assert.ok(e instanceof ConfigError, `${e.name}: ${e.message}`);
        assert.equal(e.code, 'config');
        assert.equal(e.field, 'directory');
        assert.equal(e.message, 'FileStore needs a directory path');
        return true;
      }, JSON.stringify(bad));
    }
  });
});

describe('MemoryStore', () => {
  test('load/save/get per key', async () => {
    const store = new MemoryStore();
    const pending = store.load('u1');
    assert.ok(pending instanceof Promise);
    assert.equal(await pending, null);
    assert.equal(store.get('u1'), null);
    assert.equal(await store.save('u1', 'a'), undefined);
    await store.save('u2', 'b');
    assert.equal(await store.load('u1'), 'a');
    assert.equal(store.get('u2'), 'b');
    await store.save('u1', 'c');
    assert.equal(store.get('u1'), 'c');
    assert.equal(new MemoryStore().get('u1'), null, 'instances do not share records');
  });
});

describe('MemoryStore arguments', () => {
  test('a key or record that is not a string is a ConfigError naming it, and nothing is stored', async () => {
    const store = new MemoryStore();
    for (const bad of [42, null, undefined, {}, Symbol('s')]) {
      await assert.rejects(store.save('u1', bad), (e) => e instanceof ConfigError && /`record`/.test(e.message), `record ${String(bad)}`);
      await assert.rejects(store.save(bad, '{}'), (e) => e instanceof ConfigError && /`key`/.test(e.message), `key ${String(bad)}`);
      assert.throws(() => store.get(bad), ConfigError);
    }
    assert.equal(store.get('u1'), null);
  });
});

describe('stores under a session against the emulator', () => {
  let emu;
  let dir;
  before(async () => {
    emu = await startEmulator();
    dir = await mkdtemp(join(tmpdir(), 'freshtoken-filestore-e2e-'));
  });
  after(async () => {
    await emu?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const clientAt = (now) => new TokenClient({
    tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret', now: () => now,
  });

  test('FileStore keeps the rotated record for the next process', async () => {
    const now = Date.now();
    const family = await emu.seed();
    const first = clientAt(now).session('user@example.com', new FileStore(dir));
    await first.seed({ refreshToken: family.refresh_token });
    const token = await first.accessToken();
    assert.equal(await emu.refreshRequests(), 1);

    const onDisk = JSON.parse(await new FileStore(dir).load('user@example.com'));
    assert.ok(onDisk.refresh_token !== family.refresh_token, 'the rotated refresh token is on disk');
    assert.equal(await emu.refreshTokenState(onDisk.refresh_token), 'active');

    // A new process with a new FileStore over the same directory.
    const second = clientAt(now).session('user@example.com', new FileStore(dir));
    assert.ok((await second.accessToken()) === token, 'served from the file, no request');
    assert.equal(await emu.refreshRequests(), 1);
    // Later, it refreshes with the rotated token from the file.
    const later = clientAt(now + 900_000).session('user@example.com', new FileStore(dir));
    await later.accessToken();
    assert.equal(await emu.refreshRequests(), 2);
    assert.equal((await emu.counters()).reuse_detected, 0);
  });

  test('a plain MemoryStore is the core\'s: its methods are not called, and get() shows the stored format', async () => {
    const calls = [];
    const proto = MemoryStore.prototype;
    const originals = { load: proto.load, save: proto.save };
    proto.load = function load(...args) { calls.push('load'); return originals.load.apply(this, args); };
    proto.save = function save(...args) { calls.push('save'); return originals.save.apply(this, args); };
    try {
      const store = new MemoryStore();
      const family = await emu.seed();
      const before = await emu.refreshRequests();
      const session = clientAt(Date.now()).session('u1', store);
      await session.seed({ refreshToken: family.refresh_token });
      const token = await session.accessToken();
      assert.equal(await emu.refreshRequests(), before + 1);
      assert.deepEqual(calls, [], 'sessions share the record with the core store, no JS call');
      const stored = JSON.parse(store.get('u1'));
      assert.equal(stored.schema, 'freshtoken.record/1');
      assert.equal(stored.access_token, token);
      assert.equal(await emu.refreshTokenState(stored.refresh_token), 'active', 'the rotated token is stored');
      assert.equal(await store.load('u1'), store.get('u1'), 'load() reads the same text');
    } finally {
      Object.assign(proto, originals);
    }
  });

  test('a MemoryStore given a method of its own before its first session is called through it', async () => {
    const store = new MemoryStore();
    const saved = [];
    const save = store.save.bind(store);
    store.save = async (key, text) => { saved.push(key); return save(key, text); };
    const family = await emu.seed();
    await clientAt(Date.now()).session('u1', store).seed({ refreshToken: family.refresh_token });
    assert.deepEqual(saved, ['u1']);
  });

  test('a record saved as text through save() is read by sessions', async () => {
    const now = Date.now();
    const family = await emu.seed();
    const first = new MemoryStore();
    await clientAt(now).session('u1', first).seed({ refreshToken: family.refresh_token });
    const token = await clientAt(now).session('u1', first).accessToken();
    const before = await emu.refreshRequests();

    const copy = new MemoryStore();
    await copy.save('u1', first.get('u1'));
    assert.ok((await clientAt(now).session('u1', copy).accessToken()) === token, 'served from the copied record');
    assert.equal(await emu.refreshRequests(), before, 'no request');
    await copy.save('u2', '{"not":"a record"}');
    const err = await clientAt(now).session('u2', copy).accessToken().then(() => assert.fail('served'), (e) => e);
    assert.ok(err instanceof StorageError, `${err.name}: ${err.message}`);
  });

  test('two clients on one MemoryStore: the second is answered by the first one\'s rotation', async () => {
    const now = Date.now();
    const family = await emu.seed();
    const store = new MemoryStore();
    const a = clientAt(now);
    const b = clientAt(now);
    await a.session('u1', store).seed({ refreshToken: family.refresh_token });
    await b.session('u1', store).status(); // b has read the seeded record
    const before = await emu.refreshRequests();
    const fromA = await a.session('u1', store).refresh(); // a rotates
    const rotated = JSON.parse(store.get('u1')).refresh_token;
    assert.notEqual(rotated, family.refresh_token);

    // b asked for a new token after a's arrived: it reads the store again
    // and is answered by it, sending nothing (and never the consumed token).
    const fromB = await b.session('u1', store).refresh();
    assert.ok(fromB.accessToken === fromA.accessToken, 'b got the token a refreshed');
    assert.equal(await emu.refreshRequests(), before + 1);
    assert.equal(await emu.refreshTokenState(rotated), 'active');
    assert.equal((await emu.counters()).reuse_detected, 0);
  });

  test('a FileStore record not UTF-8 inside its refresh token: StorageError, nothing sent, the file kept until a re-link', async () => {
    const now = Date.now();
    const family = await emu.seed();
    const store = new FileStore(dir);
    const token = Buffer.from(family.refresh_token, 'utf8');
    token[3] = 0xff; // one damaged byte
    const bytes = Buffer.concat([Buffer.from('{"schema":"freshtoken.record/1","refresh_token":"'), token,
      Buffer.from('","updated_at":1}')]);
    await writeFile(store.pathFor('damaged'), bytes, { mode: 0o600 });
    const before = await emu.refreshRequests();

    const session = clientAt(now).session('damaged', store);
    for (const call of [() => session.accessToken(), () => session.refresh(), () => session.status()]) {
      const err = await call().then(() => assert.fail('served'), (e) => e);
      assert.ok(err instanceof StorageError, `${err.name}: ${err.message}`);
      assert.equal(err.code, 'storage');
      assert.match(err.message, /not UTF-8/);
      assert.ok(!err.message.includes(family.refresh_token.slice(4)), 'nothing of the token in the message');
    }
    assert.equal(await emu.refreshRequests(), before, 'no refresh request was sent');
    assert.equal(await emu.refreshTokenState(family.refresh_token), 'active', 'the real token is still good');
    assert.deepEqual(await readFile(store.pathFor('damaged')), bytes, 'the file is byte for byte as it was');

    // A re-link replaces it, and the session goes on from the new record.
    const relinked = await emu.seed();
    await session.seed({ refreshToken: relinked.refresh_token });
    assert.equal(JSON.parse(await store.load('damaged')).refresh_token, relinked.refresh_token);
    await clientAt(now).session('damaged', new FileStore(dir)).accessToken();
    assert.equal(await emu.refreshRequests(), before + 1);
    assert.equal((await emu.counters()).reuse_detected, 0);
  });

  test('a FileStore that cannot write turns into a StorageError without secrets', async () => {
    await writeFile(join(dir, 'not-a-dir'), 'x');
    const family = await emu.seed();
    const session = clientAt(Date.now()).session('u1', new FileStore(join(dir, 'not-a-dir', 'sub')));
    const err = await session.seed({ refreshToken: family.refresh_token }).then(() => assert.fail('saved'), (e) => e);
    assert.ok(err instanceof StorageError);
    assert.equal(err.code, 'storage');
    assert.ok(!err.message.includes(family.refresh_token), 'no refresh token in the message');
  });
});
