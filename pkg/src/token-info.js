// The prototype of every TokenInfo the package returns: util.inspect (so
// console.log) and toString() show the tokens redacted by the core's rule
// (a short prefix and the length). The fields themselves stay plain own
// properties: reading them, JSON.stringify and spreading are unchanged.

const inspectCustom = Symbol.for('nodejs.util.inspect.custom');

/** A prototype whose hooks redact with `redact(secret) -> string`. */
export function tokenInfoPrototype(redact) {
  function describe() {
    const parts = [`accessToken: ${redact(String(this.accessToken))}`, `expiresAt: ${this.expiresAt}`];
    if (this.scope !== undefined) parts.push(`scope: ${JSON.stringify(this.scope)}`);
    if (this.idToken !== undefined) parts.push(`idToken: ${redact(String(this.idToken))}`);
    if (this.refreshExpiresAt !== undefined) parts.push(`refreshExpiresAt: ${this.refreshExpiresAt}`);
    return `TokenInfo { ${parts.join(', ')} }`;
  }
  return Object.create(Object.prototype, {
    toString: { value: describe },
    [inspectCustom]: { value: describe },
  });
}
