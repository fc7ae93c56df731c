// Error classes: one per stable code of the Rust core (DESIGN.md), all
// subclasses of FreshTokenError. The wasm module builds them through
// `makeError`, registered with `setErrorFactory` at load time.

/**
 * The rotated refresh token an InvalidResponseError carries (refreshTokens),
 * by error: held here, not as a property of the error, so that no way of
 * printing an error (`util.inspect` with `showHidden`, `JSON.stringify` of
 * its own property names) shows it.
 */
const ROTATED = new WeakMap();

/** Any error from freshtoken; `code` is one of the stable codes. */
export class FreshTokenError extends Error {
  constructor(fields) {
    super(fields.message);
    this.name = new.target.name;
    this.code = fields.code;
    if (fields.field !== undefined) this.field = fields.field;
    if (fields.reason !== undefined) this.reason = fields.reason;
    if (fields.status !== undefined) this.status = fields.status;
    if (fields.oauthError !== undefined) this.oauthError = fields.oauthError;
    if (fields.description !== undefined) this.description = fields.description;
    if (fields.retryAfterMs !== undefined) this.retryAfterMs = fields.retryAfterMs;
    if (fields.serverMayHoldToken) this.serverMayHoldToken = true;
    if (typeof fields.rotatedRefreshToken === 'string') ROTATED.set(this, fields.rotatedRefreshToken);
  }
}

/** The user must authorize again (re-link); `reason` says why. */
export class ReauthorizationRequiredError extends FreshTokenError {}
/** The server rejected the client credentials. */
export class InvalidClientError extends FreshTokenError {}
/** Another RFC 6749 error; `oauthError` holds its code. */
export class OAuthError extends FreshTokenError {}
/** 5xx or 429 after every retry. */
export class TransientError extends FreshTokenError {}
/** A transport failure. */
export class NetworkError extends FreshTokenError {}
/** The token request timed out. */
export class TimeoutError extends FreshTokenError {}
/** The token endpoint's answer could not be understood. */
export class InvalidResponseError extends FreshTokenError {
  /** From refreshTokens(): the new refresh token a 2xx answer carried although the rest could not be used. */
  get rotatedRefreshToken() {
    return ROTATED.get(this);
  }
}
/** The store failed; anything renewed is kept and saved on the next call. */
export class StorageError extends FreshTokenError {}
/** A compare-and-swap save lost to a newer version. */
export class ConflictError extends FreshTokenError {}
/** Invalid configuration or argument; `field` and the message name it. */
export class ConfigError extends FreshTokenError {}

const BY_CODE = {
  reauthorization_required: ReauthorizationRequiredError,
  invalid_client: InvalidClientError,
  oauth: OAuthError,
  transient: TransientError,
  network: NetworkError,
  timeout: TimeoutError,
  invalid_response: InvalidResponseError,
  storage: StorageError,
  conflict: ConflictError,
  config: ConfigError,
};

/** A ConfigError naming `name`, worded as the core words them. */
export function configError(name, problem) {
  return new ConfigError({ code: 'config', field: name, message: `invalid configuration \`${name}\`: ${problem}` });
}

/**
 * A ConfigError naming `field` with `message` as written: the stores'
 * constructors (FileStore, RedisStore…) keep their own words ("RedisStore:
 * prefix must be a string") and name the parameter or option in `field`.
 */
export function configErrorSaying(field, message) {
  return new ConfigError({ code: 'config', field, message });
}

/**
 * The options of `store`'s constructor: null and undefined are the
 * defaults (`{}`); anything but an object is a ConfigError naming `options`.
 */
export function storeOptions(options, store) {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object') throw configErrorSaying('options', `${store}: options must be an object`);
  return options;
}

// The options the core's messages name beside the one at fault, as Rust
// spells them ("must be longer than timeout_ms + retry.budget_ms + …").
// Rewritten here rather than in the wasm, where a second table of names
// would cost bytes. Only these names: a wire field (`expires_in`) or a
// host store's own words stay as written.
const RUST_OPTION =
  /\b(?:(?:store_)?timeout_ms|lease_(?:ttl|wait)_ms|retry\.(?:budget_ms|max_backoff_ms|max_attempts)|leeway_secs|(?:user|client|refresh)_token_lifetime_secs|max_sessions)\b/g;

/** `name` as a JavaScript caller spells the option (`leaseTtlMs`). */
const jsOption = (name) => name.replace(/_secs$/, '_seconds').replace(/_([a-z])/g, (_, c) => c.toUpperCase());

/** Builds the error class for `fields.code` (called from wasm). */
export function makeError(fields) {
  const Class = BY_CODE[fields.code] ?? FreshTokenError;
  if (typeof fields.message === 'string') {
    // An unknown option stays as the caller wrote it (`timeout_ms` is not
    // `timeoutMs`'s spelling to them: it is the mistake).
    fields.message = fields.message.replace(RUST_OPTION, (name) => (name === fields.field ? name : jsOption(name)));
  }
  return new Class(fields);
}
