// A TokenStore on the file system (Node only): one file per session key,
// written to a temporary file, fsynced, then renamed over the old one, so a
// crash leaves either the old record or the new one, never half of one.

import { createReadStream, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { lstat, mkdir, open, readdir, realpath, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';

import { configError, configErrorSaying } from './errors.js';

/** Longest hex stem used as is (keys up to 60 UTF-8 bytes); longer keys are hashed. */
const MAX_HEX = 120;

/** Longest base64url stem of the earlier names; longer keys were `sha256-<hex>.json`. */
const MAX_LEGACY_STEM = 120;

/**
 * The names earlier versions wrote: `<base64url of the key>.json` or
 * `sha256-<hex>.json`. No dot in the stem, so never one of today's names.
 */
const LEGACY_NAME = /^[A-Za-z0-9_-]*\.json$/;

/** A save's temporary file: `<name>.json.<pid>.<12 hex>.tmp` (the CLI writes the same). */
const TEMP_NAME = /\.json\.(\d+)\.([0-9a-f]{12})\.tmp$/;

/**
 * Where this process's pids mean something: 4 hex digits of a hash of the
 * host name and the pid namespace, which begin the random part of each of
 * its temporary files' names. A file of another tag was written by a
 * process whose pid cannot be checked from here (another container or the
 * host sharing the directory): only its age tells it is left over.
 */
const LOCAL_TAG = (() => {
  let namespace = '';
  try {
    namespace = readlinkSync('/proc/self/ns/pid'); // Linux: `pid:[<inode>]`
  } catch {
    // No procfs: the host name alone.
  }
  return createHash('sha256').update(`${hostname()}\0${namespace}`).digest('hex').slice(0, 4);
})();

/**
 * The directory levels this process created (resolved paths) whose entry in
 * their parent is not known durable yet: the creating save's sync of the
 * parent is in flight, or failed and the level could not be removed (another
 * save's record is in it). Every save whose directory lies in one syncs its
 * parent too before it reports: its record is lost with the level.
 */
const UNSYNCED = new Set();

/** The names of the temporary files this process is writing now (any FileStore's). */
const WRITING = new Set();

/**
 * Whether the writer of the temporary file `name` may still be writing it:
 * one of another pid namespace or host (by its tag) always may; here, this
 * process while it is (a process restarted under the same pid, as in a
 * container, is not), or another process that is alive (or that this one
 * may not signal). A dead writer's file is left from a crash.
 */
function mayBeWriting(name, pid, random) {
  if (!random.startsWith(LOCAL_TAG)) return true;
  if (pid === process.pid) return WRITING.has(name);
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

const sha256 = (key) => createHash('sha256').update(key, 'utf8').digest('hex');

/** Records as files in `directory` (created if missing). */
export class FileStore {
  #dir;
  /** The earlier names in the directory, exactly as listed (a promise of a Set); listed once. */
  #legacy;

  constructor(directory) {
    if (typeof directory !== 'string' || directory === '') {
      throw configErrorSaying('directory', 'FileStore needs a directory path');
    }
    this.#dir = directory;
  }

  /**
   * The file for `key`: `x.<lowercase hex of its UTF-8>.json`, or
   * `h.<SHA-256 hex of its UTF-8>.json` for keys over 60 bytes (the names of
   * the Python and Kotlin file stores). Lowercase ASCII only, so no two keys
   * share a file on a case-insensitive file system (macOS, Windows), and no
   * key can escape the directory.
   */
  pathFor(key) {
    if (typeof key !== 'string') throw new TypeError('FileStore: a key must be a string');
    if (!key.isWellFormed()) throw new TypeError('FileStore: a key must not contain a lone UTF-16 surrogate');
    const hex = Buffer.from(key, 'utf8').toString('hex');
    const stem = hex.length <= MAX_HEX ? `x.${hex}` : `h.${sha256(key)}`;
    return join(this.#dir, `${stem}.json`);
  }

  /**
   * The file earlier versions wrote `key`'s record to, if the directory
   * lists exactly that name; else null. Those names differ only in case for
   * some keys ('JoHn', 'Jobn'): opening the name directly would, on a
   * case-insensitive file system, read (and the next save delete) another
   * key's record.
   */
  async #legacyPath(key) {
    const names = await this.#legacyNames();
    if (names.size === 0) return null;
    const name = legacyName(key);
    return names.has(name) ? join(this.#dir, name) : null;
  }

  /** Lists the earlier names once (nothing creates them any more; `recover()` lists again). */
  #legacyNames() {
    if (this.#legacy === undefined) {
      const listing = listLegacy(this.#dir);
      this.#legacy = listing;
      listing.catch(() => {
        if (this.#legacy === listing) this.#legacy = undefined;
      });
    }
    return this.#legacy;
  }

  /** The record saved under `key`, or null. */
  async load(key) {
    const path = this.pathFor(key);
    const record = await readRecord(path);
    if (record !== null) return record;
    const legacy = await this.#legacyPath(key);
    if (legacy === null) return null;
    // A save that moved the record meanwhile removed the old file.
    return (await readRecord(legacy)) ?? readRecord(path);
  }

  /**
   * Saves `record` durably: temp file, fsync, rename, fsync the directory;
   * then removes the file of the earlier name, if any (the new file is
   * durable by then, so a crash at any point leaves a readable record).
   */
  async save(key, record) {
    if (typeof record !== 'string') throw new TypeError('FileStore: a record must be a string');
    const path = this.pathFor(key);
    await this.#makeDirectory();
    const tmp = `${path}.${process.pid}.${LOCAL_TAG}${randomBytes(4).toString('hex')}.tmp`;
    const tmpName = basename(tmp);
    let file;
    WRITING.add(tmpName);
    try {
      file = await open(tmp, 'w', 0o600);
      await file.writeFile(record, 'utf8');
      await file.sync();
      await file.close();
      file = undefined;
      // A temporary file the Kotlin or Python store's killed save left
      // (`.<name>.json.tmp`) is older than this record: their recover()
      // would rename it over it. Removed before the rename (whose directory
      // fsync makes it durable); one that cannot be removed fails the save,
      // unless it is a directory, which their recover() leaves alone.
      await removeSuperseded(join(this.#dir, `.${basename(path)}.tmp`));
      await rename(tmp, path).catch(async (error) => {
        // recover() in another process may have finished this very save
        // (it finishes a whole newer temp file, whoever writes it).
        if (error.code !== 'ENOENT' || (await readRecord(path).catch(() => null)) !== record) throw error;
      });
    } catch (error) {
      await file?.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw new Error(`cannot write the record (${error.code ?? 'error'})`);
    } finally {
      WRITING.delete(tmpName);
    }
    await this.#syncDirectory();
    if (UNSYNCED.size > 0) await this.#syncUnsyncedLevels();
    // The record is durable under its new name: the earlier file can go.
    const names = await this.#legacyNames().catch(() => undefined);
    const name = names?.size ? legacyName(key) : undefined;
    if (name !== undefined && names.delete(name)) {
      // The record is durable already: a failed sync here loses nothing.
      if (await unlink(join(this.#dir, name)).then(() => true, () => false)) await this.#syncDirectory().catch(() => {});
    }
  }

  /**
   * Creates the directory and its missing ancestors, then fsyncs the parent
   * of each level created: the directory's own fsync makes the files in it
   * durable, not its entry in its parent, so a power loss could drop a new
   * directory and the first record saved in it (a rotated refresh token).
   * If a sync fails, the levels created are removed again (best effort), so
   * that the retry creates and syncs them anew.
   */
  async #makeDirectory() {
    let created;
    try {
      created = await mkdir(this.#dir, { recursive: true }); // the first level created, or undefined
    } catch (error) {
      throw new Error(`cannot write the record (${error.code ?? 'error'})`);
    }
    if (created === undefined) return;
    const levels = []; // deepest first
    for (let level = resolve(this.#dir); ; level = dirname(level)) {
      levels.push(level);
      UNSYNCED.add(level);
      if (level === resolve(created) || dirname(level) === level) break;
    }
    try {
      for (const level of levels) {
        await this.#syncDirectory(dirname(level));
        UNSYNCED.delete(level);
      }
    } catch (error) {
      for (const level of levels) {
        if (!(await rmdir(level).then(() => true, () => false))) break;
        UNSYNCED.delete(level);
      }
      throw error;
    }
  }

  /**
   * Syncs into its parent each level of this store's directory still in
   * UNSYNCED. Another save of this process may have created the directory
   * a moment ago (this save's mkdir found it there) and not synced it yet,
   * or failed to: this save's record would be lost with it.
   */
  async #syncUnsyncedLevels() {
    const dir = resolve(this.#dir);
    let real; // the directory's real path, read once if needed (a link may name it)
    for (const level of [...UNSYNCED]) {
      if (!isWithin(dir, level)) {
        real ??= await realpath(dir).catch(() => dir);
        const realLevel = await realpath(level).catch(() => null);
        if (realLevel === null || !isWithin(real, realLevel)) continue;
      }
      await this.#syncDirectory(dirname(level));
      UNSYNCED.delete(level);
    }
  }

  /**
   * fsyncs the directory (`path`, by default the store's), making renames
   * and new files in it durable. Where the platform cannot (Windows opens
   * no directory; some file systems refuse a directory's fsync) there is
   * nothing more to do; any other failure (EIO, ENOSPC) fails the save: the
   * rename may not outlive a crash, and the old record, whose refresh token
   * is spent, come back.
   */
  async #syncDirectory(path = this.#dir) {
    let dir;
    try {
      dir = await open(path, 'r');
    } catch (error) {
      if (NO_DIRECTORY_SYNC.has(error.code)) return;
      throw new Error(`cannot write the record (${error.code ?? 'error'})`);
    }
    try {
      await dir.sync();
    } catch (error) {
      if (!NO_DIRECTORY_SYNC.has(error.code)) throw new Error(`cannot write the record (${error.code ?? 'error'})`);
    } finally {
      await dir.close().catch(() => {});
    }
  }

  /**
   * Finishes or removes the saves that a killed process left half done. Call
   * it at startup, before any session. Each save writes a temporary file and
   * renames it over the key's file; a process killed between the two leaves
   * the temporary file behind. The newest temporary file that holds a
   * complete record and is newer than the key's file is fsynced and renamed
   * now (the save is finished; the session keeps the refresh token it was
   * saving: the key's file holds the one it replaced, spent), whoever wrote
   * it: a writer still alive would rename the same file, and one killed in
   * a container restarted within seconds (another pid namespace) cannot be
   * told from one alive. Every other temporary file is deleted (each holds
   * a record, so a refresh token), except while its writer (the process id
   * in its name) may be alive, which leaves files younger than
   * `olderThanMs` (default 60 s) alone: it may still be writing them. A dead
   * writer's files of this host and pid namespace (LOCAL_TAG), and this
   * process's own that it is not writing (a restart under the same pid),
   * are deleted at once. Resolves to `{ completed, removed }`.
   */
  async recover(olderThanMs = 60_000) {
    if (typeof olderThanMs !== 'number' || Number.isNaN(olderThanMs)) {
      throw configError('olderThanMs', 'must be a number of milliseconds');
    }
    let names;
    try {
      names = await readdir(this.#dir);
    } catch (error) {
      if (error.code === 'ENOENT') return { completed: 0, removed: 0 };
      throw new Error(`cannot list the store (${error.code ?? 'error'})`);
    }
    const cutoff = Date.now() - olderThanMs;
    /** The key's file → its temporary files (path, mtime), old enough. */
    const byTarget = new Map();
    for (const name of names) {
      const match = TEMP_NAME.exec(name);
      if (!match) continue;
      const path = join(this.#dir, name);
      const info = await stat(path).catch(() => undefined);
      if (!info) continue;
      const live = info.mtimeMs > cutoff && mayBeWriting(name, Number(match[1]), match[2]);
      const target = join(this.#dir, name.slice(0, match.index + '.json'.length));
      if (!byTarget.has(target)) byTarget.set(target, []);
      byTarget.get(target).push({ path, mtimeMs: info.mtimeMs, live });
    }
    let completed = 0;
    let removed = 0;
    for (const [target, temps] of byTarget) {
      const current = await stat(target).catch(() => undefined);
      temps.sort((a, b) => b.mtimeMs - a.mtimeMs);
      let finished;
      for (const temp of temps) {
        if (current && temp.mtimeMs < current.mtimeMs) break;
        if (await isCompleteRecord(temp.path)) {
          finished = temp;
          break;
        }
      }
      // Its write may be in the page cache only (killed before its fsync):
      // made durable before it replaces the record.
      if (finished !== undefined && (await syncFile(finished.path))) {
        // Gone meanwhile (its writer renamed it after all): nothing to finish.
        if (await rename(finished.path, target).then(() => true, () => false)) completed += 1;
      }
      for (const temp of temps) {
        if (temp === finished || temp.live) continue;
        if (await unlink(temp.path).then(() => true, () => false)) removed += 1;
      }
    }
    if (completed > 0) await this.#syncDirectory();
    this.#legacy = undefined; // a completed save may have been one of an earlier name
    return { completed, removed };
  }
}

/**
 * What opening or fsyncing a directory fails with where the platform cannot
 * do it (Windows; file systems without a directory fsync): nothing to do.
 */
const NO_DIRECTORY_SYNC = new Set(['EISDIR', 'EPERM', 'EACCES', 'EINVAL', 'ENOTSUP', 'EOPNOTSUPP']);

/**
 * fsyncs the file at `path`: false if it is gone (its writer renamed it);
 * any other failure rejects, and the file is left as it is.
 */
/** Whether the directory `dir` is `level` or lies in it (both resolved). */
function isWithin(dir, level) {
  return dir === level || dir.startsWith(level.endsWith(sep) ? level : level + sep);
}

async function syncFile(path) {
  let file;
  try {
    file = await open(path, 'r+');
  } catch (error) {
    if (error.code === 'ENOENT') return false;
    throw new Error(`cannot finish a save (${error.code ?? 'error'})`);
  }
  try {
    await file.sync();
    return true;
  } catch (error) {
    throw new Error(`cannot finish a save (${error.code ?? 'error'})`);
  } finally {
    await file.close().catch(() => {});
  }
}

/** Removes the file at `path` if there is one; a directory there is left. */
async function removeSuperseded(path) {
  try {
    await unlink(path);
  } catch (error) {
    if (error.code === 'ENOENT') return;
    const info = await lstat(path).catch(() => undefined);
    if (info !== undefined && !info.isDirectory()) throw error;
  }
}

/** `key`'s file name in earlier versions (base64url; case matters). */
function legacyName(key) {
  const stem = Buffer.from(key, 'utf8').toString('base64url');
  return `${stem.length <= MAX_LEGACY_STEM ? stem : `sha256-${sha256(key)}`}.json`;
}

/** The earlier names in `dir`, exactly as listed; none if `dir` does not exist. */
async function listLegacy(dir) {
  try {
    return new Set((await readdir(dir)).filter((name) => LEGACY_NAME.test(name)));
  } catch (error) {
    if (error.code === 'ENOENT') return new Set();
    throw new Error(`cannot list the store (${error.code ?? 'error'})`);
  }
}

/**
 * The most of a file read: well above the largest record freshtoken writes
 * (256 KiB) and an EncryptedStore envelope of one. A bigger file is read
 * only to one byte past this, and freshtoken refuses it.
 */
const MAX_FILE_BYTES = 1024 * 1024;

/** The file's first MAX_FILE_BYTES + 1 bytes. */
async function readCapped(path) {
  const chunks = [];
  for await (const chunk of createReadStream(path, { end: MAX_FILE_BYTES })) chunks.push(chunk); // `end` is inclusive
  return Buffer.concat(chunks);
}

/**
 * The file's text, or null if there is no such file. Decoded strictly: a
 * byte that is not UTF-8 inside the refresh token would otherwise read as
 * U+FFFD, the altered token be sent once (`invalid_grant`) and the dead
 * marker saved over the bytes an operator could repair. Such a file is a
 * storage error and stays as it is; `seed()` or a code exchange replaces it
 * (this store has no versions: those save without reading it).
 */
async function readRecord(path) {
  let bytes;
  try {
    bytes = await readCapped(path);
  } catch (error) {
    if (error.code === 'ENOENT') return null;
    throw new Error(`cannot read the record (${error.code ?? 'error'})`);
  }
  try {
    // A file cut at the cap may end inside a character: `stream` keeps that
    // tail back, and freshtoken refuses the text as too large.
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
      .decode(bytes, { stream: bytes.length > MAX_FILE_BYTES });
  } catch {
    throw new Error('cannot read the record: the file is not UTF-8 (left unchanged; a re-link replaces it)');
  }
}

/**
 * Whether `path` holds a whole record (a JSON object; a cut-off write is not
 * one). Read leniently: a damaged byte does not make a write incomplete, and
 * a file renamed into place is kept (its load refuses it) where one judged
 * incomplete would be deleted.
 */
async function isCompleteRecord(path) {
  try {
    const value = JSON.parse((await readCapped(path)).toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value);
  } catch {
    return false;
  }
}
