// Web-runtime entry point 'freshtoken/jwt' (workers, edge servers — never
// put a private key in a page): the `web` build made with the
// private-key-jwt feature, fetched and instantiated with top-level await.

import init, * as wasm from '../dist/web-jwt/freshtoken.js';
import { bind } from './api.js';

await init({ module_or_path: new URL('../dist/web-jwt/freshtoken_bg.wasm', import.meta.url) });
const api = bind(wasm);

export const { TokenClient, UserSession, refreshTokens } = api;
export * from './common.js';
