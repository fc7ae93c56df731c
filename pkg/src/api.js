// Connects a wasm-bindgen build to the JavaScript error classes and the
// TokenInfo prototype.

import { makeError } from './errors.js';
import { tokenInfoPrototype } from './token-info.js';

/** Registers the error factory and returns the wasm classes and functions. */
export function bind(wasm) {
  wasm.setErrorFactory(makeError);
  wasm.setTokenInfoPrototype(tokenInfoPrototype(wasm.redactSecret));
  return {
    TokenClient: wasm.TokenClient,
    UserSession: wasm.UserSession,
    refreshTokens: wasm.refreshTokens,
  };
}
