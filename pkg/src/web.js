// Browser (and default) entry point: the `web` wasm-bindgen build, fetched
// and instantiated once with top-level await.

import init, * as wasm from '../dist/web/freshtoken.js';
import { bind } from './api.js';
import { encryptedStoreClass } from './encrypted-store.js';

await init({ module_or_path: new URL('../dist/web/freshtoken_bg.wasm', import.meta.url) });
const api = bind(wasm);

export const { TokenClient, UserSession, MemoryStore, refreshTokens } = api;
export const EncryptedStore = encryptedStoreClass(wasm);
export * from './common.js';
