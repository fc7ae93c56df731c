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
   * Deletes temporary files that a process killed in the middle of a save
   * left behind (each holds a record, so a refresh token), when older than
   * `olderThanMs` (a save takes milliseconds). Call it at startup or now and
   * then; returns how many were removed.
   */
  async removeOrphans(olderThanMs = 60_000) {
    let names;
    try {
      names = await readdir(this.#dir);
    } catch (error) {
      if (error.code === 'ENOENT') return 0;
      throw new Error(`cannot list the store (${error.code ?? 'error'})`);
    }
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    for (const name of names.filter((n) => TEMP_NAME.test(n))) {
      const path = join(this.#dir, name);
      const info = await stat(path).catch(() => undefined);
      if (info && info.mtimeMs <= cutoff && (await unlink(path).then(() => true, () => false))) removed += 1;
    }
    return removed;
  }
}
