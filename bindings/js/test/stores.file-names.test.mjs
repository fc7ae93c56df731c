// FileStore file names on case-insensitive file systems (issue 11 item 9):
// macOS and Windows treat names that differ only in case as one file, so
// no two keys may map to such names ('JoHn' and 'Jobn' did: base64url).
// The names are those of the Python and Kotlin file stores (pinned below).
// Files written under the earlier names are still read, only under the name
// the directory lists for exactly that key, and the next save moves the
// record to today's name without a moment where a crash loses it.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';

import { FileStore } from 'freshtoken';

const RECORD = '{"schema":"freshtoken.record/1","refresh_token":"rt-SENTINEL-record","updated_at":1}';

/** The file name earlier versions used for `key` (base64url; SHA-256 when long). */
function legacyName(key) {
  let stem = Buffer.from(key, 'utf8').toString('base64url');
  if (stem.length > 120) stem = `sha256-${createHash('sha256').update(key, 'utf8').digest('hex')}`;
  return `${stem}.json`;
}

/**
 * Key → file name, the same table in the Python (tests/test_stores.py) and
 * Kotlin (FileTokenStoreNamesTest.kt) tests: the three stores share names.
 */
const PINNED = [
  ['a', 'x.61.json'],
  ['JoHn', 'x.4a6f486e.json'],
  ['user@example', 'x.75736572406578616d706c65.json'],
  ['x\u00e9\u65e5', 'x.78c3a9e697a5.json'],
  ['\u{1F511}', 'x.f09f9491.json'],
  ['k'.repeat(60), `x.${'6b'.repeat(60)}.json`],
  ['k'.repeat(61), 'h.3828098da5bc4c86c0488c22281c78f5e6c9d9699fa18cafa31a825452859529.json'],
  ['\u00e9'.repeat(30), `x.${'c3a9'.repeat(30)}.json`],
  ['\u00e9'.repeat(31), 'h.f299f682f8ab27d5a1e24784fb220657d1d4c52e07988895131dbc1eae0e2e55.json'],
];

/** A deterministic generator (xorshift32), so a failure names a reproducible key. */
function prng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

/** Many distinct keys, rich in pairs that differ only in case or fold together. */
function generatedKeys() {
  const keys = new Set(['JoHn', 'Jobn', 'john', 'JOHN', 'user@Example.com', 'user@example.com', 'ß', 'SS', 'ss', 'ẞ',
    'K', 'k', '\u212A', 'ſ', 's', 'S', 'İ', 'i', 'I', 'ı', 'ǅ', 'ǆ', 'Ǆ', 'é', 'e\u0301', 'É', '']);
  // Every case variant of some short words.
  for (const word of ['john', 'alice', 'a1b2c3', 'user_42']) {
    const letters = [...word];
    for (let mask = 0; mask < 2 ** letters.length; mask += 1) {
      keys.add(letters.map((c, i) => ((mask >> i) & 1 ? c.toUpperCase() : c)).join(''));
    }
  }
  const random = prng(0x5eed);
  const alphabet = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@|/:+= éÉßẞİıſ\u212Aǅ🔑'];
  while (keys.size < 50_000) {
    const length = 1 + Math.floor(random() * (random() < 0.1 ? 120 : 24));
    let key = '';
    for (let i = 0; i < length; i += 1) key += alphabet[Math.floor(random() * alphabet.length)];
    keys.add(key);
    keys.add(key.toUpperCase());
    keys.add(key.toLowerCase());
  }
  return [...keys];
}

describe('FileStore file names', () => {
  let dir;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'freshtoken-filenames-')); });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  test('no two of 50,000 distinct keys map to names equal under case folding', () => {
    const store = new FileStore(dir);
    const keys = generatedKeys();
    assert.ok(keys.length >= 50_000);
    const byFolded = new Map();
    for (const key of keys) {
      const name = basename(store.pathFor(key));
      assert.match(name, /^(x\.([0-9a-f]{2})*|h\.[0-9a-f]{64})\.json$/, 'lowercase ASCII only: nothing to fold or normalise');
      assert.ok(name.length <= 140, 'well under the 255-byte limit, temp suffix included');
      const folded = name.toLowerCase();
      const other = byFolded.get(folded);
      assert.ok(other === undefined, `${JSON.stringify(key)} and ${JSON.stringify(other)} share a file`);
      byFolded.set(folded, key);
    }
    assert.notEqual(legacyName('JoHn'), legacyName('Jobn'), 'the earlier names differ in case only...');
    assert.equal(legacyName('JoHn').toLowerCase(), legacyName('Jobn').toLowerCase(), '...so they collided');
  });

  test('names are those of the Python and Kotlin stores', async () => {
    const store = new FileStore(dir);
    for (const [key, name] of PINNED) {
      assert.equal(basename(store.pathFor(key)), name, JSON.stringify(key));
      await store.save(key, RECORD);
    }
    assert.deepEqual((await readdir(dir)).sort(), PINNED.map(([, name]) => name).sort(), 'saves write those files');
  });

  test('a key with a lone surrogate has no file name', () => {
    assert.throws(() => new FileStore(dir).pathFor('x\uD800'), TypeError);
  });

  test('keys and records that are not strings are TypeErrors, before any I/O', async () => {
    const store = new FileStore(join(dir, 'never-created'));
    for (const key of [42, null, Symbol('k'), 10n, { toString: () => 'k' }]) {
      assert.throws(() => store.pathFor(key), { name: 'TypeError', message: /a key must be a string/ });
      await assert.rejects(store.load(key), { name: 'TypeError', message: /a key must be a string/ });
    }
    for (const record of [42, null, undefined, new Uint8Array(2), { toString: () => RECORD }]) {
      await assert.rejects(store.save('k', record), { name: 'TypeError', message: /a record must be a string/ });
    }
    assert.equal(await stat(join(dir, 'never-created')).then(() => true, () => false), false, 'nothing was written');
  });

  for (const [label, key] of [['a short key', 'JoHn'], ['a long (hashed) key', `tenant|${'u'.repeat(150)}`]]) {
    test(`${label}: a record under the earlier name is read, and the next save moves it`, async () => {
      const store = new FileStore(dir);
      const legacy = join(dir, legacyName(key));
      await writeFile(legacy, RECORD, { mode: 0o600 });
      assert.equal(await store.load(key), RECORD, 'read under the earlier name');
      assert.equal(await store.load('Jobn'), null, 'and only for its own key');

      // A crash after the new file was put in place and before the earlier
      // one was removed leaves both: the new one wins.
      await writeFile(store.pathFor(key), `${RECORD} `, { mode: 0o600 });
      assert.equal(await store.load(key), `${RECORD} `);

      await store.save(key, `${RECORD}  `);
      assert.equal(await store.load(key), `${RECORD}  `);
      assert.deepEqual(await readdir(dir), [basename(store.pathFor(key))], 'one file, under today\'s name');
    });
  }

  test('a file under the earlier name that is not UTF-8 is refused, kept, and replaced by the next save', async () => {
    const store = new FileStore(dir);
    const legacy = join(dir, legacyName('JoHn'));
    const bytes = Buffer.from(RECORD.replace('SENTINEL', 'SENT\u00ffNEL'), 'latin1'); // a lone 0xff
    await writeFile(legacy, bytes, { mode: 0o600 });
    await assert.rejects(store.load('JoHn'), (e) => /not UTF-8/.test(e.message) && !e.message.includes('SENT'));
    assert.deepEqual(await readFile(legacy), bytes, 'left as it was');
    await store.save('JoHn', RECORD);
    assert.equal(await store.load('JoHn'), RECORD);
    assert.deepEqual(await readdir(dir), [basename(store.pathFor('JoHn'))], 'the save moved the key to today\'s name');
  });

  test('an earlier file is read only for the key whose name the directory lists exactly', async () => {
    // 'JoHn' and 'Jobn' had names differing only in case (Sm9Ibg, Sm9ibg): on
    // a case-insensitive disk opening Jobn's name opens JoHn's file. Only a
    // name listed exactly as Jobn's earlier name may be read for Jobn.
    assert.equal(legacyName('Jobn').toLowerCase(), legacyName('JoHn').toLowerCase());
    const johns = join(dir, legacyName('JoHn'));
    await writeFile(johns, RECORD, { mode: 0o600 });
    const store = new FileStore(dir);
    for (const other of ['Jobn', 'john', 'JOHN']) {
      assert.equal(await store.load(other), null, `${other} reads nothing`);
      await store.save(other, `{"key":"${other}"}`);
      assert.equal(await store.load(other), `{"key":"${other}"}`);
    }
    assert.equal(await readFile(johns, 'utf8'), RECORD, 'JoHn\'s earlier file is untouched by the others\' saves');
    assert.equal(await store.load('JoHn'), RECORD, 'and still read for JoHn');
    await store.save('JoHn', `${RECORD} `);
    assert.equal(await new FileStore(dir).load('JoHn'), `${RECORD} `);
    assert.deepEqual((await readdir(dir)).sort(), ['Jobn', 'john', 'JOHN', 'JoHn'].map((k) => basename(store.pathFor(k))).sort(),
      'JoHn\'s record moved to its new name; no earlier file left');
  });

  test('recover() finishes a save that an earlier version left half done', async () => {
    const store = new FileStore(dir);
    const legacy = join(dir, legacyName('u1'));
    await writeFile(legacy, '{"v":1}');
    await writeFile(`${legacy}.4242.0123456789ab.tmp`, '{"v":2}');
    const hourAgo = new Date(Date.now() - 3_600_000);
    await utimes(legacy, hourAgo, hourAgo);
    await utimes(`${legacy}.4242.0123456789ab.tmp`, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    assert.deepEqual(await store.recover(), { completed: 1, removed: 0 });
    assert.equal(await store.load('u1'), '{"v":2}');
    await store.save('u1', '{"v":3}');
    assert.deepEqual(await readdir(dir), [basename(store.pathFor('u1'))]);
  });

  test('recover() completes an earlier-name file the store had not listed yet', async () => {
    // The earlier version was killed during the key's first save: only its
    // temporary file exists when the store first lists the directory.
    const store = new FileStore(dir);
    assert.equal(await store.load('u1'), null);
    const temp = join(dir, `${legacyName('u1')}.4242.0123456789ab.tmp`);
    await writeFile(temp, '{"v":2}');
    await utimes(temp, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    assert.deepEqual(await store.recover(), { completed: 1, removed: 0 });
    assert.equal(await store.load('u1'), '{"v":2}', 'recover() lists the earlier names again');
    await store.save('u1', '{"v":3}');
    assert.deepEqual(await readdir(dir), [basename(store.pathFor('u1'))]);
  });
});
