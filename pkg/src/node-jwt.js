// Node entry point 'freshtoken/jwt': the same API as node.js, on a
// `nodejs` build made with the private-key-jwt feature (RSA client
// assertions; it adds to the wasm, see the bench), plus the FileStore.

import { createRequire } from 'node:module';
import { bind } from './api.js';

const require = createRequire(import.meta.url);
const api = bind(require('../dist/node-jwt/freshtoken.js'));

export const { TokenClient, UserSession, refreshTokens } = api;
export * from './common.js';
export { FileStore } from './file-store.js';
