// A TokenStore in memory: for tests, demos, and processes that need nothing
// to survive a restart. It is the core's MemoryStore (src/memory_store.rs):
// a session on it shares its record with the store instead of the store
// keeping a second copy as text, which halves the memory of 100,000
// sessions (bench/run.mjs, the heap row).

/**
 * The MemoryStore class of one wasm build, and `coreOf(store)`: the core
 * store that sessions use directly. Only a plain MemoryStore is used that
 * way, as it is when its first session opens; a subclass, or an instance
 * given methods of its own before then, is called through its methods like
 * any other store.
 */
export function memoryStoreClass(wasm) {
  /** Instances of MemoryStore itself (not of a subclass) -> their core store, made on first use. */
  const plain = new WeakMap();

  /** Records in memory, keyed by session key. */
  class MemoryStore {
    /** The core store, created on first use: an unused MemoryStore holds no wasm memory. */
    #store = null;

    constructor() {
      if (new.target === MemoryStore) plain.set(this, () => this.#core());
    }

    #core() {
      this.#store ??= new wasm.CoreMemoryStore();
      return this.#store;
    }

    /** The record saved under `key`, or null. */
    async load(key) {
      return this.#core().get(key) ?? null;
    }

    /** Saves the record text `record` under `key`. */
    async save(key, record) {
      this.#core().put(key, record);
    }

    /** The record under `key`, synchronously (for tests), or null. */
    get(key) {
      return this.#core().get(key) ?? null;
    }
  }

  /** The core store of a plain, unmodified MemoryStore, else undefined. */
  function coreOf(store) {
    const core = plain.get(store);
    return core !== undefined && Reflect.ownKeys(store).length === 0 ? core() : undefined;
  }

  return { MemoryStore, coreOf };
}
