// Node entry point: the `nodejs` wasm-bindgen build (CommonJS, loads the
// wasm synchronously from disk) plus the Node-only FileStore.

import { createRequire } from 'node:module';
import { bind } from './api.js';

const require = createRequire(import.meta.url);
const api = bind(require('../dist/node/freshtoken.js'));

export const { TokenClient, UserSession, refreshTokens } = api;
export * from './common.js';
export { FileStore } from './file-store.js';
