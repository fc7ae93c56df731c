// Connects a wasm-bindgen build to the JavaScript error classes.

import { makeError } from './errors.js';

/** Registers the error factory and returns the wasm classes and functions. */
export function bind(wasm) {
  wasm.setErrorFactory(makeError);
  return {
    TokenClient: wasm.TokenClient,
    UserSession: wasm.UserSession,
    refreshTokens: wasm.refreshTokens,
  };
}
