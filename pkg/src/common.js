// What both entry points export besides the wasm classes.

export * from './errors.js';
export { MemoryStore } from './memory-store.js';
export { authorizedFetch, isUnauthenticated } from './authorized-fetch.js';
