// FileStore's fsyncs, made to fail (a failing disk cannot be made real): a
// directory fsync that fails for a reason other than "this platform cannot"
// fails the save, since the rename may not outlive a crash and the old
// record, whose refresh token is spent, come back; and recover() makes a
// killed save's temporary file durable before it renames it, leaving it be
// when it cannot. Its own process (node --test runs each file in one), as
// the patch of fs/promises must come before the package is loaded.

import assert from 'node:assert/strict';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { mkdtemp, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';

const fsp = createRequire(import.meta.url)('node:fs/promises');
const realOpen = fsp.open;
/** What a directory's or a file's fsync fails with next (null: it succeeds). */
const failing = { directory: null, file: null };
/** What the fsync of the directory at a path fails with next (before `failing`). */
const failingAt = new Map();
/** The directory whose next fsync waits: path → { reached(), gate } (one-shot). */
const holdingAt = new Map();
/** The paths of the regular files fsynced, in order. */
const synced = [];
/** The directories fsynced, in order, each with what it listed then. */
const syncedDirectories = [];
fsp.open = async (path, ...rest) => {
  const handle = await realOpen(path, ...rest);
  const kind = (await handle.stat()).isDirectory() ? 'directory' : 'file';
  const sync = handle.sync.bind(handle);
  handle.sync = async () => {
    const hold = kind === 'directory' && holdingAt.get(String(path));
    if (hold) {
      holdingAt.delete(String(path));
      hold.reached();
      await hold.gate;
    }
    const code = (kind === 'directory' && failingAt.get(String(path))) || failing[kind];
    if (code) throw Object.assign(new Error(`${code} (injected)`), { code });
    if (kind === 'file') synced.push(String(path));
    else syncedDirectories.push({ path: String(path), entries: (await readdir(path)).sort() });
    return sync();
  };
  return handle;
};
syncBuiltinESMExports();
const { FileStore } = await import('freshtoken');

describe('FileStore fsync failures', () => {
  let dir;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'freshtoken-filesync-')); });
  afterEach(async () => {
    failing.directory = null;
    failing.file = null;
    failingAt.clear();
    await rm(dir, { recursive: true, force: true });
  });

  test("a directory fsync that fails (EIO) fails the save; one the platform cannot do does not", async () => {
    const store = new FileStore(dir);
    failing.directory = 'EIO';
    await assert.rejects(store.save('u1', '{"v":1}'), /cannot write the record \(EIO\)/);
    for (const code of ['EINVAL', 'ENOTSUP']) {
      failing.directory = code;
      await store.save('u1', `{"v":"${code}"}`);
      assert.equal(await store.load('u1'), `{"v":"${code}"}`);
    }
  });

  test('a save that creates the directory fsyncs the parent of each level it created, once they exist', async () => {
    const tokens = join(dir, 'a', 'b', 'tokens');
    const store = new FileStore(tokens);
    syncedDirectories.length = 0;
    await store.save('u1', '{"v":1}');
    const parents = syncedDirectories.filter((s) => s.path !== tokens);
    parents.sort((x, y) => x.path.localeCompare(y.path));
    assert.deepEqual(parents, [
      { path: dir, entries: ['a'] },
      { path: join(dir, 'a'), entries: ['b'] },
      { path: join(dir, 'a', 'b'), entries: ['tokens'] },
    ]);
    // The directory exists now: saves (of this store or another) sync only it.
    syncedDirectories.length = 0;
    await store.save('u1', '{"v":2}');
    await new FileStore(tokens).save('u2', '{"v":1}');
    assert.deepEqual(syncedDirectories.map((s) => s.path), [tokens, tokens]);
  });

  for (const alias of [false, true]) {
    test(`a save that finds the directory another save is still creating syncs its parent too${alias ? ' (named through a link)' : ''}`, async () => {
      const made = join(dir, 'new');
      const tokens = join(made, 'tokens');
      const link = join(dir, 'link');
      await symlink(dir, link);
      let reached;
      let release;
      holdingAt.set(dir, {
        reached: () => reached(),
        gate: new Promise((resolve) => { release = resolve; }),
      });
      const atParent = new Promise((resolve) => { reached = resolve; });
      // The first save creates new/tokens and waits in the sync of `new` into dir.
      const first = new FileStore(tokens).save('u1', '{"v":1}');
      await atParent;
      syncedDirectories.length = 0;
      // The second finds the directory there: without its own sync of dir,
      // it would report a record durable whose directory is not.
      const other = alias ? join(link, 'new', 'tokens') : tokens;
      await new FileStore(other).save('u2', '{"v":2}');
      assert.deepEqual(
        syncedDirectories.map((s) => s.path),
        [other, dir],
        'its directory, then the parent of the level still unsynced',
      );
      assert.ok(syncedDirectories[1].entries.includes('new'));
      release();
      await first;
      syncedDirectories.length = 0;
      await new FileStore(other).save('u3', '{"v":3}');
      assert.deepEqual(syncedDirectories.map((s) => s.path), [other], 'synced once: no more');
    });
  }

  test("a parent's fsync that fails (EIO) fails the save and undoes the creation; one the platform cannot do does not", async () => {
    const tokens = join(dir, 'a', 'tokens');
    const store = new FileStore(tokens);
    failingAt.set(join(dir, 'a'), 'EIO');
    await assert.rejects(store.save('u1', '{"v":1}'), /cannot write the record \(EIO\)/);
    assert.deepEqual(await readdir(dir), [], 'removed, so that the retry creates and syncs it again');
    failingAt.clear();
    syncedDirectories.length = 0;
    await store.save('u1', '{"v":1}');
    assert.deepEqual(syncedDirectories.map((s) => s.path).sort(), [dir, join(dir, 'a'), tokens]);

    for (const code of ['EINVAL', 'ENOTSUP']) {
      failingAt.set(dir, code);
      const other = new FileStore(join(dir, code, 'tokens'));
      await other.save('u1', `{"v":"${code}"}`);
      assert.equal(await other.load('u1'), `{"v":"${code}"}`);
    }
  });

  test('recover() fsyncs a killed save before it renames it, and leaves it when it cannot', async () => {
    const store = new FileStore(dir);
    await store.save('u1', '{"v":1}');
    const main = store.pathFor('u1');
    const old = new Date(Date.now() - 3_600_000);
    await utimes(main, old, old);
    const killed = `${main}.1.0123456789ab.tmp`; // another namespace's tag, an hour old
    await writeFile(killed, '{"v":2}');
    await utimes(killed, new Date(Date.now() - 1_800_000), new Date(Date.now() - 1_800_000));

    failing.file = 'EIO';
    await assert.rejects(store.recover(), /cannot finish a save \(EIO\)/);
    assert.equal(await store.load('u1'), '{"v":1}');
    assert.ok((await readdir(dir)).includes(killed.slice(dir.length + 1)), 'left for a later recover()');

    failing.file = null;
    synced.length = 0;
    assert.deepEqual(await store.recover(), { completed: 1, removed: 0 });
    assert.deepEqual(synced, [killed], 'made durable first');
    assert.equal(await store.load('u1'), '{"v":2}');
  });
});
