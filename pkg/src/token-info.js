// The prototypes of the objects the package returns that hold a secret
// (every TokenInfo, every authorizationUrl() result): util.inspect (so
// console.log) and toString() show the secrets redacted by the core's rule
// (a short prefix and the length). The fields themselves stay plain own
// properties: reading them, JSON.stringify and spreading are unchanged.

const inspectCustom = Symbol.for('nodejs.util.inspect.custom');

/**
 * A prototype whose hooks describe an object as `name { … }`, showing each
 * of `fields` — `[member, how, always]`, `how` one of `'secret'` (redacted
 * with `redact(secret) -> string`), `'text'` (quoted) or `'value'` — when
 * `always` or when it is not undefined.
 */
function redactingPrototype(name, fields, redact) {
  const show = { secret: (v) => redact(String(v)), text: (v) => JSON.stringify(v), value: (v) => `${v}` };
  function describe() {
    const parts = [];
    for (const [member, how, always] of fields) {
      const value = this[member];
      if (always || value !== undefined) parts.push(`${member}: ${show[how](value)}`);
    }
    return `${name} { ${parts.join(', ')} }`;
  }
  return Object.create(Object.prototype, {
    toString: { value: describe },
    [inspectCustom]: { value: describe },
  });
}

/** The prototype of every TokenInfo: its tokens redacted. */
export function tokenInfoPrototype(redact) {
  return redactingPrototype('TokenInfo', [
    ['accessToken', 'secret', true],
    ['expiresAt', 'value', true],
    ['scope', 'text'],
    ['idToken', 'secret'],
    ['refreshExpiresAt', 'value'],
  ], redact);
}

/**
 * The prototype of every `authorizationUrl()` result: its PKCE
 * `codeVerifier` redacted, as the core's Debug and the native bindings'
 * repr show it. The URL, state and nonce travel in the browser's address
 * bar anyway; the verifier never leaves the client until the exchange.
 */
export function authorizationRequestPrototype(redact) {
  return redactingPrototype('AuthorizationRequest', [
    ['url', 'text', true],
    ['codeVerifier', 'secret', true],
    ['state', 'text', true],
    ['nonce', 'text', true],
  ], redact);
}
