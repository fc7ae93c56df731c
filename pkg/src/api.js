// Connects a wasm-bindgen build to the JavaScript error classes and the
// TokenInfo prototype, and guards its classes against freed handles.

import { ConfigError, makeError } from './errors.js';
import { hostCalls } from './host-calls.js';
import { tokenInfoPrototype } from './token-info.js';

/** The methods that return a Promise: a freed handle rejects instead of throwing. */
const ASYNC = new Set(['accessToken', 'tokens', 'refresh', 'tokenRejected', 'seed', 'status', 'clientToken', 'exchangeCode', 'authorizationUrl']);

/**
 * Makes every method and getter of a wasm class check its handle first. A
 * freed handle (or a foreign `this`) would otherwise reach wasm as a null
 * pointer, whose error unwinds through wasm and, repeated, poisons the
 * instance. `free()` on a freed handle does nothing.
 */
function guardHandles(Class) {
  const proto = Class.prototype;
  const freed = () => new ConfigError({
    code: 'config',
    message: `invalid configuration \`this\`: not a live ${Class.name} (free() was called, or it is another object)`,
  });
  const live = (self) => self instanceof Class && typeof self.__wbg_ptr === 'number' && self.__wbg_ptr !== 0;
  for (const name of Object.getOwnPropertyNames(proto)) {
    if (name === 'constructor' || name.startsWith('__')) continue;
    const desc = Object.getOwnPropertyDescriptor(proto, name);
    if (name === 'free') {
      const free = desc.value;
      desc.value = function free_() { if (live(this)) free.call(this); };
      Object.defineProperty(desc.value, 'name', { value: name });
    } else if (typeof desc.value === 'function') {
      const f = desc.value;
      const rejects = ASYNC.has(name);
      desc.value = function method(a, b, c) {
        if (!live(this)) {
          if (rejects) return Promise.reject(freed());
          throw freed();
        }
        return f.call(this, a, b, c);
      };
      Object.defineProperty(desc.value, 'name', { value: name });
    } else if (desc.get) {
      const get = desc.get;
      desc.get = function getter() {
        if (!live(this)) throw freed();
        return get.call(this);
      };
    }
    Object.defineProperty(proto, name, desc);
  }
}

/** Registers the error factory and returns the wasm classes and functions. */
export function bind(wasm) {
  wasm.setHostCalls(hostCalls);
  wasm.setErrorFactory(makeError);
  wasm.setTokenInfoPrototype(tokenInfoPrototype(wasm.redactSecret));
  guardHandles(wasm.TokenClient);
  guardHandles(wasm.UserSession);
  return {
    TokenClient: wasm.TokenClient,
    UserSession: wasm.UserSession,
    refreshTokens: wasm.refreshTokens,
  };
}
