// A TokenStore in a Map: for tests, demos, and processes that need nothing
// to survive a restart.

/** Records in memory, keyed by session key. */
export class MemoryStore {
  #records = new Map();

  /** The record saved under `key`, or null. */
  async load(key) {
    return this.#records.get(key) ?? null;
  }

  /** Saves `record` under `key`. */
  async save(key, record) {
    this.#records.set(key, record);
  }

  /** The record under `key`, synchronously (for tests). */
  get(key) {
    return this.#records.get(key) ?? null;
  }
}
