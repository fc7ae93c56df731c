// A TokenStore on the file system (Node only): one file per session key,
// written to a temporary file, fsynced, then renamed over the old one, so a
// crash leaves either the old record or the new one, never half of one.

import { mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';

/** Longest file-name stem used as is; longer keys are hashed (names max out at 255 bytes). */
const MAX_STEM = 120;

/** A save's temporary file: `<stem>.json.<pid>.<random>.tmp`. */
const TEMP_NAME = /\.json\.\d+\.[0-9a-f]{12}\.tmp$/;

/** Records as files in `directory` (created if missing). */
export class FileStore {
  #dir;

  constructor(directory) {
    if (typeof directory !== 'string' || directory === '') {
      throw new TypeError('FileStore needs a directory path');
    }
    this.#dir = directory;
  }

  /**
   * The file for `key`: base64url (so no key can escape the directory), or
   * the SHA-256 of the key when that would make the name too long.
   */
  pathFor(key) {
    let stem = Buffer.from(key, 'utf8').toString('base64url');
    if (stem.length > MAX_STEM) stem = `sha256-${createHash('sha256').update(key, 'utf8').digest('hex')}`;
    return join(this.#dir, `${stem}.json`);
  }

  /** The record saved under `key`, or null. */
  async load(key) {
    try {
      return await readFile(this.pathFor(key), 'utf8');
    } catch (error) {
      if (error.code === 'ENOENT') return null;
      throw new Error(`cannot read the record (${error.code ?? 'error'})`);
    }
  }

  /** Saves `record` durably: temp file, fsync, rename, fsync the directory. */
  async save(key, record) {
    try {
      await mkdir(this.#dir, { recursive: true });
    } catch (error) {
      throw new Error(`cannot write the record (${error.code ?? 'error'})`);
    }
    const path = this.pathFor(key);
    const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    let file;
    try {
      file = await open(tmp, 'w', 0o600);
      await file.writeFile(record, 'utf8');
      await file.sync();
      await file.close();
      file = undefined;
      await rename(tmp, path);
    } catch (error) {
      await file?.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw new Error(`cannot write the record (${error.code ?? 'error'})`);
    }
    const dir = await open(this.#dir, 'r').catch(() => undefined);
    await dir?.sync().catch(() => {});
    await dir?.close().catch(() => {});
  }

  /**
   * Finishes or removes the saves that a killed process left half done. Call
   * it at startup, before any session. Each save writes a temporary file and
   * renames it over the key's file; a process killed between the two leaves
   * the temporary file behind. When that file holds a complete record and is
   * newer than the key's file, the rename is done now (the save is
   * finished; the session keeps the refresh token it was saving); every
   * other temporary file is deleted (each holds a record, so a refresh
   * token). Files younger than `olderThanMs` (default 60 s) are left alone:
   * another process may be saving them. Resolves to `{ completed, removed }`.
   */
  async recover(olderThanMs = 60_000) {
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
      if (!info || info.mtimeMs > cutoff) continue;
      const target = join(this.#dir, name.slice(0, match.index + '.json'.length));
      if (!byTarget.has(target)) byTarget.set(target, []);
      byTarget.get(target).push({ path, mtimeMs: info.mtimeMs });
    }
    let completed = 0;
    let removed = 0;
    for (const [target, temps] of byTarget) {
      const current = await stat(target).catch(() => undefined);
      temps.sort((a, b) => b.mtimeMs - a.mtimeMs);
      const newest = temps[0];
      if ((!current || newest.mtimeMs >= current.mtimeMs) && (await isCompleteRecord(newest.path))) {
        await rename(newest.path, target);
        completed += 1;
        temps.shift();
      }
      for (const { path } of temps) {
        if (await unlink(path).then(() => true, () => false)) removed += 1;
      }
    }
    if (completed > 0) {
      const dir = await open(this.#dir, 'r').catch(() => undefined);
      await dir?.sync().catch(() => {});
      await dir?.close().catch(() => {});
    }
    return { completed, removed };
  }
}

/** Whether `path` holds a whole record (a JSON object; a cut-off write is not one). */
async function isCompleteRecord(path) {
  try {
    const value = JSON.parse(await readFile(path, 'utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value);
  } catch {
    return false;
  }
}
