// Node entry point: the `nodejs` wasm-bindgen build (CommonJS, loads the
// wasm synchronously from disk) plus the Node-only FileStore, and every
// event published on diagnostics_channel `freshtoken:event`.

import diagnosticsChannel from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import { bind } from './api.js';
import { encryptedStoreClass } from './encrypted-store.js';
import { EVENT_CHANNEL } from './events.js';

const require = createRequire(import.meta.url);
const wasm = require('../dist/node/freshtoken.js');
const api = bind(wasm, diagnosticsChannel.channel(EVENT_CHANNEL));

export const { TokenClient, UserSession, MemoryStore, refreshTokens } = api;
export const EncryptedStore = encryptedStoreClass(wasm);
export * from './common.js';
export { FileStore } from './file-store.js';
