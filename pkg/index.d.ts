// Type declarations for the freshtoken npm package (Node and browser builds
// share this public surface; FileStore exists only in the Node build: the
// browser entry does not export it).

/** A value, or a Promise of it: what a store callback may return. */
export type MaybePromise<T> = T | Promise<T>;

/** How the client authenticates at the token endpoint. */
export type ClientAuth = 'client_secret_post' | 'client_secret_basic' | 'none' | 'private_key_jwt';

/** Retry policy for 5xx, 429 and requests that never left. */
export interface RetryOptions {
  /** Requests sent at most, the first included (default 4; 1 to 20). */
  maxAttempts?: number | null | undefined;
  /** Backoff before the first retry in ms; doubles each time (default 250). */
  initialBackoffMs?: number | null | undefined;
  /** Largest backoff in ms, unless Retry-After asks more (default 5000). */
  maxBackoffMs?: number | null | undefined;
  /** No retry starts after this many ms from the first request (default 20000). */
  budgetMs?: number | null | undefined;
}

/**
 * The `init` the client passes its `fetch`: an object without a prototype
 * (so that no setter of Object.prototype runs inside the wasm): read its
 * members, not `init.hasOwnProperty(…)`. `headers` is a `Headers`; it is
 * typed as a string record too only so that fetches whose types omit the
 * platform's Headers (node-fetch v2) accept it: read it with `get()` or by
 * iterating it, not by indexing. `body` (a form) is absent on a GET.
 */
export interface FetchInit {
  method: string;
  headers: Headers & Record<string, string>;
  body?: string;
  redirect: 'manual';
  credentials: 'omit';
  /** Aborted at the request's timeout, or when the client stops waiting. */
  signal: AbortSignal;
}

/**
 * An answer as freshtoken reads it: any fetch's `Response` (the platform's,
 * undici's, node-fetch's). The client reads a `body` that is a
 * ReadableStream, else calls `arrayBuffer()`.
 */
export interface FetchResponseLike {
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  arrayBuffer(): Promise<ArrayBuffer>;
}

/**
 * A Response by brand (`Object.prototype.toString` says `[object Response]`):
 * the platform's, undici's or node-fetch's. What isUnauthenticated and
 * authorizedFetch read; a plain object with these members is refused at
 * run time with a ConfigError naming `response`.
 */
export interface ResponseLike extends FetchResponseLike {
  clone(): ResponseLike;
}

/**
 * The `fetch` the client uses (the global one by default; node-fetch v2 and
 * v3 and undici's `fetch` fit), called with the URL as a string.
 *
 * Failures: a request that never left (retried, even with a single-use
 * refresh token) must reject with an `Error` whose `cause.code` (Node's
 * fetch) or, when its cause has no code, whose own `code` (node-fetch) is
 * `ECONNREFUSED`, `ENOTFOUND`, `EAI_AGAIN`, `EHOSTUNREACH`, `ENETUNREACH`
 * or `UND_ERR_CONNECT_TIMEOUT`. An `Error` named `AbortError` or `TimeoutError` is a timeout. Any
 * other rejection, or a throw, means the request may have been sent: the
 * refresh token is then in doubt and never sent again by a retry.
 */
export type FetchLike = (input: string, init: FetchInit) => Promise<FetchResponseLike>;

/**
 * Options of `new TokenClient(…)`. Unknown keys throw a ConfigError; an
 * optional one given as `undefined` or `null` takes its default.
 */
export interface TokenClientOptions {
  /** `https://…/connect/token`; plain http only for loopback hosts. */
  tokenEndpoint: string;
  clientId: string;
  /** Never ship a client secret to a browser. */
  clientSecret?: string | null | undefined;
  /**
   * Default `client_secret_post` with a secret, `private_key_jwt` with a
   * private key, `none` without either. A discovered client with a secret
   * gets `client_secret_basic` when the provider does not list
   * `client_secret_post`.
   */
  clientAuth?: ClientAuth | null | undefined;
  /**
   * `private_key_jwt`: the RSA private key (signed with the platform's
   * WebCrypto) in PEM (PKCS#1 or PKCS#8; a certificate in the same PEM is fine). Every
   * token request then carries a fresh RS256 client assertion. Its PEM
   * form is checked when the client is made; the key itself by WebCrypto
   * when the first assertion is signed: a key it cannot use for RS256 (an
   * EC or RSA-PSS key, or one under 2048 bits) fails that first token
   * request with a ConfigError naming `privateKeyPem`, before anything is
   * sent (the other languages check it when the client is made).
   */
  privateKeyPem?: string | null | undefined;
  /** The `kid` header of client assertions. */
  keyId?: string | null | undefined;
  /** The `aud` of client assertions (default: the token endpoint). */
  assertionAudience?: string | null | undefined;
  /** `audience` of client-credentials requests (default: the token endpoint). */
  audience?: string | null | undefined;
  /**
   * Default: from discovery, else the token endpoint with `/token`
   * replaced by `/authorize`. A discovered client guesses none, nor does
   * one whose token endpoint does not end in `/token`: then
   * `authorizationUrl()` rejects with a ConfigError naming it.
   */
  authorizationEndpoint?: string | null | undefined;
  /**
   * The RFC 7009 revocation endpoint for `revoke()`. Default: from
   * discovery, else the token endpoint with `/token` replaced by
   * `/revocation` (Stitch's `…/connect/revocation`). A discovered client
   * guesses none, nor does one whose token endpoint does not end in
   * `/token`: then `revoke()` and `revokeClientTokens()` reject with a
   * ConfigError naming it, and change nothing; give it here.
   */
  revocationEndpoint?: string | null | undefined;
  /** Refresh this many seconds before expiry (default 60, at most half a token's life). */
  leewaySeconds?: number | null | undefined;
  /** Assumed user-token lifetime when `expires_in` is missing (default 900). */
  userTokenLifetimeSeconds?: number | null | undefined;
  /** Assumed client-token lifetime when `expires_in` is missing (default 3600). */
  clientTokenLifetimeSeconds?: number | null | undefined;
  /** Sliding refresh-token lifetime (default 365 days). */
  refreshTokenLifetimeSeconds?: number | null | undefined;
  /** Timeout of one token request in ms (default 30000). */
  timeoutMs?: number | null | undefined;
  /**
   * Deadline of every store call in ms (default 5000): past it the callers
   * get a StorageError saying the store did not answer, and a renewed
   * record stays in memory, saved first on the next call.
   */
  storeTimeoutMs?: number | null | undefined;
  /** Idle sessions kept in memory (default 100000). */
  maxSessions?: number | null | undefined;
  /** Fleet stores: how long a refresh lease lasts (ms; default timeout + retry budget + the larger of 10 s and twice storeTimeoutMs + 5 s, and at least three times storeTimeoutMs + 5 s, which also covers the renewals around a rotated save that failed at its deadline; must exceed timeoutMs + retry budget + 1 s (HTTP grace) + storeTimeoutMs, which covers the request with its retries and the save of the rotated token; at most one hour). */
  leaseTtlMs?: number | null | undefined;
  /** Fleet stores: how long to wait for another process's lease before a ConflictError (ms; default lease TTL + 5 s; at most one hour and 5 s). */
  leaseWaitMs?: number | null | undefined;
  retry?: RetryOptions | null | undefined;
  /** HTTP override (default `globalThis.fetch`). */
  fetch?: FetchLike | null | undefined;
  /** Clock override in Unix ms (default `Date.now`), for tests. Durations (the retry budget, a lease's age) are also measured on `performance.now()`, and the longer counts: this clock can lengthen them, never shorten them. */
  now?: (() => number) | null | undefined;
  /**
   * Sleep override (default `setTimeout`), for tests: the pauses between
   * retries, between looks at another process's fleet lease, and between
   * background saves of a stranded record. One that does not settle ends
   * 1 s after `ms`.
   */
  sleep?: ((ms: number) => Promise<void>) | null | undefined;
  /**
   * Receives every event (refreshes, failures, saves, lease waits, client
   * tokens, revocations), after the current turn; what it throws or
   * rejects with is ignored. A re-link has no kind of its own: a code
   * exchange or `seed()` emits `saved` once its record is saved (or
   * `save_failed`, then `saved` when a later call saves it), and an
   * exchange the server refuses, or that fails before it is sent, emits
   * nothing. It runs on the event loop: keep it quick. In
   * Node every event is also published on diagnostics_channel
   * `freshtoken:event`, with or without this option; a subscriber that
   * throws there is an `uncaughtException` (Node's rule), which by default
   * ends the process: wrap its body in `try`/`catch`.
   */
  onEvent?: ((event: TokenEvent) => void | Promise<void>) | null | undefined;
  /** What events show of session keys: `'full'` (default) or `'hidden'` (no `key`). */
  eventKeys?: EventKeys | null | undefined;
}

/** What events show of session keys. */
export type EventKeys = 'full' | 'hidden';

/** What happened (the same names in every language). */
export type EventKind =
  | 'refresh_started'
  | 'refreshed'
  | 'refresh_failed'
  | 'reauthorization_required'
  | 'saved'
  | 'save_failed'
  | 'lease_waited'
  | 'client_token_issued'
  | 'client_token_failed'
  | 'revoked';

/** One event: never a token, a secret or a message. Frozen. */
export interface TokenEvent {
  readonly kind: EventKind;
  /** The session key (absent with `eventKeys: 'hidden'`, and for client tokens). */
  readonly key?: string;
  /** The scope set of a client token (sorted, space-separated): `client_token_issued`, `client_token_failed`, `revoked`. */
  readonly scope?: string;
  /** How long it took, in ms (every kind but `refresh_started` and `reauthorization_required`). */
  readonly durationMs?: number;
  /** Token requests sent, retries included (`refreshed`, `refresh_failed`, `client_token_issued`, `client_token_failed`). */
  readonly attempts?: number;
  /** The failure's code (`refresh_failed`, `client_token_failed`, `save_failed`, a `lease_waited` that ended in an error — `conflict` when it gave up —, a `revoked` the server could not take). */
  readonly errorCode?: ErrorCode;
  /** Why the user must authorize again (`reauthorization_required`). */
  readonly reason?: ReauthorizationReason;
  /** When it happened, on the client's clock (Unix ms). */
  readonly at: number;
}

/** The diagnostics_channel name the Node build publishes every event on: `'freshtoken:event'`. */
export const EVENT_CHANNEL: 'freshtoken:event';

/** A stored record and its version (compare-and-swap stores). */
export interface VersionedRecord {
  record: string;
  version: string;
}

/**
 * Where records live. `load` resolves to the saved string or null. Every
 * member may answer with a plain value instead of a Promise (a synchronous
 * store works). A store shared by several processes adds the lease and the
 * versioned members (all four): then one process at a time refreshes a session, and a save
 * whose version no longer matches is a ConflictError, never an overwrite.
 * Every call must settle within `storeTimeoutMs`; a thrown or rejected
 * error becomes a StorageError whose message has every token removed.
 * The members are looked up once, by `client.session()` and
 * `exchangeCode()`: a store with one member of a pair (`acquire` without
 * `release`, `loadVersioned` without `saveVersioned`) is a ConfigError, and
 * a fleet member whose lookup throws a StorageError, before anything is
 * sent: read as absent, a fleet store would refresh without its lease. (A
 * `load` or `save` whose lookup throws counts as missing: a ConfigError.)
 */
export interface TokenStore {
  load(key: string): MaybePromise<string | null>;
  /**
   * Must resolve only once the record is durable, and reject when it
   * cannot be written. Resolving `false` (a client's "not written" answer
   * returned as is) is read as a failed save: a `StorageError`.
   */
  save(key: string, record: string): MaybePromise<void>;
  /** Take the refresh lease on `key` for `owner` for `ttlMs`; false if another owner holds it. */
  acquire?(key: string, owner: string, ttlMs: number): MaybePromise<boolean>;
  /** Give the lease back, if `owner` still holds it. */
  release?(key: string, owner: string): MaybePromise<void>;
  /** The record and its version, or null. */
  loadVersioned?(key: string): MaybePromise<VersionedRecord | null>;
  /** Optional, with the versioned members: the stored version without the record, or null; `seed()` and a code exchange compare against it (default: `loadVersioned`'s). */
  loadVersion?(key: string): MaybePromise<string | null>;
  /** Save only if the stored version is still `expectedVersion` (null: only if nothing is stored); the new version, or null on a conflict. */
  saveVersioned?(key: string, record: string, expectedVersion: string | null): MaybePromise<string | null>;
}

/**
 * A fresh access token and what goes with it. Times are Unix ms.
 *
 * Not a plain object: its prototype redacts the tokens in `toString()` and
 * `util.inspect` (so `console.log`). The fields are own enumerable
 * properties, so `JSON.stringify` and a spread read them, but a deep
 * equality that compares prototypes (`assert.deepStrictEqual`) fails
 * against an object literal: compare `{ ...info }`, and pass `{ ...info }`
 * where plain objects are required (React Server Components props, for
 * instance).
 */
export interface TokenInfo {
  accessToken: string;
  expiresAt: number;
  scope?: string;
  idToken?: string;
  refreshExpiresAt?: number;
}

/** What is known about a session without sending anything. */
export interface SessionStatus {
  hasRecord: boolean;
  reauthorizationReason?: ReauthorizationReason;
  accessExpiresAt?: number;
  refreshExpiresAt?: number;
  /** A renewed record could not be saved yet. */
  unpersisted: boolean;
  /**
   * The last refresh answer was lost. On a revoked session: the server may
   * hold a successor token this client never received.
   */
  inDoubt: boolean;
  /**
   * `revoke()` marked the session revoked, but its revocation failed for
   * good: the server may still hold its token. `revoke()` again retries.
   */
  revocationPending: boolean;
}

/**
 * Adopting an existing refresh token (migrating from hand-written code): the
 * argument of `session.seed(…)`. Unknown keys reject with a ConfigError
 * naming them (`expires_in` is not `expiresIn`).
 */
export interface SeedOptions {
  refreshToken: string;
  accessToken?: string | null | undefined;
  /** Seconds the access token stays valid from now; without it the access token is treated as expired. */
  expiresIn?: number | null | undefined;
  scope?: string | null | undefined;
  idToken?: string | null | undefined;
}

/** Options of `client.authorizationUrl(…)`. Unknown keys reject with a ConfigError naming them (`scope` is not `scopes`). */
export interface AuthorizationUrlOptions {
  /** An absolute URI without a fragment (RFC 6749 §3.1.2), else a ConfigError naming it. */
  redirectUri: string;
  /** `offline_access` is added when missing. */
  scopes?: string[] | undefined;
  state?: string | null | undefined;
  nonce?: string | null | undefined;
  /**
   * `prompt`: unset sends `consent`, which OpenID Connect requires for
   * `offline_access` (without it some servers issue no refresh token);
   * `''` sends none.
   */
  prompt?: string | null | undefined;
  /**
   * Further query parameters (e.g. Stitch's `{ provider: 'fnb' }`,
   * `login_hint`, `ui_locales`), sent after the others in the object's own
   * key order. Not a plain object (an array, a `Map`, `URLSearchParams`:
   * `Object.fromEntries()` makes one), a value that is not a string, or a
   * name the URL sets itself (`state`, `scope`, …): a ConfigError naming
   * `extraParams`.
   */
  extraParams?: Readonly<Record<string, string>> | null | undefined;
}

/**
 * What `client.authorizationUrl()` resolves with: send the user to `url`,
 * keep the rest until the callback.
 *
 * Not a plain object: its prototype redacts `codeVerifier` in `toString()`
 * and `util.inspect` (so `console.log`). The fields are own enumerable
 * properties, so reading them, a spread and `JSON.stringify` (to keep the
 * request in a server-side session) see the verifier; a deep equality that
 * compares prototypes fails against an object literal (compare
 * `{ ...request }`).
 */
export interface AuthorizationRequest {
  url: string;
  /**
   * The PKCE secret. Keep it until the user comes back (server side, or
   * session storage), never in the URL or a log.
   */
  codeVerifier: string;
  /** Compare the callback's `state` with it before `exchangeCode()`. */
  state: string;
  nonce: string;
}

/**
 * Options of `client.exchangeCode(…)`. Unknown keys reject with a
 * ConfigError naming them, with nothing sent (`state` is not one: compare
 * it yourself first; nor are the other members of an AuthorizationRequest,
 * so pass these three, not a spread of it).
 */
export interface ExchangeCodeOptions {
  code: string;
  codeVerifier: string;
  /** The authorize request's, exactly; one with a fragment, without a scheme or with a character no URI has (a space, a control character, non-ASCII) is a ConfigError, and the code is not sent. */
  redirectUri: string;
}

/**
 * Options of a session call, `clientToken`, `revokeClientTokens`, `saveUnsaved`,
 * `exchangeCode` and `TokenClient.discover`: `signal` ends this caller's
 * wait, as fetch's does (`refreshTokens` takes none: its caller must store
 * what it returns). The call then rejects with `signal.reason` (an `AbortError`
 * DOMException, or `AbortSignal.timeout()`'s `TimeoutError`); a refresh it
 * started or joined still finishes and saves the rotated token for every
 * other caller. A signal already aborted starts nothing (no refresh is
 * sent). Another key, or a `signal` that is not an AbortSignal, rejects
 * with a ConfigError naming it.
 */
export interface CallOptions {
  signal?: AbortSignal | undefined;
}

/**
 * One user's tokens. Handles with the same key in one client share state;
 * create one per request and drop it (a handle is a small JS object; after
 * `free()`, or its client's `free()`, every method throws, or rejects with,
 * a ConfigError).
 */
export class UserSession {
  private constructor();
  readonly key: string;
  /** A fresh access token: from memory, or through one shared refresh. */
  accessToken(options?: CallOptions): Promise<string>;
  tokens(options?: CallOptions): Promise<TokenInfo>;
  /** A forced refresh, shared with concurrent callers. */
  refresh(options?: CallOptions): Promise<TokenInfo>;
  /**
   * The API rejected `token`: refresh, unless another caller already did
   * (then its token is returned without a request). `token` is not handed
   * out again: `accessToken()` meanwhile joins the refresh.
   */
  tokenRejected(token: string, options?: CallOptions): Promise<TokenInfo>;
  seed(seed: SeedOptions, options?: CallOptions): Promise<void>;
  /** What is known without sending anything (a record not saved yet is saved first, as by every call). */
  status(options?: CallOptions): Promise<SessionStatus>;
  /**
   * Revokes the session (RFC 7009) when the user unlinks or leaves: waits
   * for a refresh in flight, marks the record dead (reason `revoked`) and
   * saves it, then revokes the refresh token and a live access token. Every
   * later call rejects with ReauthorizationRequiredError (`revoked`), here
   * and, through the store, in other processes, until `seed()` or a code
   * exchange; except `status()` (reason `revoked`) and `revoke()`, which
   * resolves (or retries a revocation still pending). If the server could
   * not be told, the error has `serverMayHoldToken: true` (the session is
   * dead all the same; call `revoke()` again to retry). A session whose last
   * refresh lost its answer (`inDoubt`, or dead since of `lost_rotation`) may have a successor token at the
   * server that this client never received: `revoke()` revokes what it holds,
   * then rejects with `serverMayHoldToken: true` and reason `lost_rotation`
   * (again at every later call, sending nothing): end that grant at the
   * provider.
   */
  revoke(options?: CallOptions): Promise<void>;
  free(): void;
}

/** What `TokenClient.discover` read from the provider's discovery document. */
export interface ProviderMetadata {
  issuer: string;
  tokenEndpoint: string;
  authorizationEndpoint?: string;
  revocationEndpoint?: string;
  tokenEndpointAuthMethods: string[];
  revocationEndpointAuthMethods: string[];
  /**
   * `authorization_response_iss_parameter_supported` (RFC 9207): the
   * provider names itself (`iss`) in every authorization response; when
   * true, refuse a redirect without `iss` or with another one.
   */
  authorizationResponseIssParameterSupported: boolean;
}

/** Options of `TokenClient.discover`: the endpoints come from the issuer. */
export type DiscoverOptions = Omit<TokenClientOptions, 'tokenEndpoint'>;

/** Options of `TokenClient.fromCredentialsJson`: everything but the client's identity. */
export type CredentialsJsonOptions = Omit<
  TokenClientOptions,
  'tokenEndpoint' | 'clientId' | 'clientSecret' | 'clientAuth' | 'privateKeyPem' | 'keyId'
>;

export class TokenClient {
  constructor(options: TokenClientOptions);
  /**
   * A client from the provider's client-credentials JSON: `clientId`, and
   * `clientSecret` or `certificate` (PEM, for private_key_jwt),
   * `slidingRefreshTokenLifetime` (seconds; overridden by
   * `options.refreshTokenLifetimeSeconds`), optionally `tokenEndpoint`
   * (default Stitch's) and `keyId`.
   * Unknown keys are ignored; a missing one is a ConfigError naming it. A
   * key given twice keeps its last value, as `JSON.parse` reads it (the
   * Kotlin, Swift, Python and Rust clients refuse it as a ConfigError).
   */
  static fromCredentialsJson(json: string, options?: CredentialsJsonOptions): TokenClient;
  /**
   * A client for the provider `issuer`: reads and checks
   * `{issuer}/.well-known/openid-configuration` (the issuer matches, the
   * endpoints are https when the issuer is) and takes the token,
   * authorization and revocation endpoints from it, in one request (no
   * retry) within `timeoutMs`. A missing or bad document rejects with
   * InvalidResponseError; an unreachable provider with NetworkError or
   * TimeoutError; a 429 or 5xx with TransientError.
   * `callOptions.signal` ends the wait (a client made after it is freed).
   */
  static discover(issuer: string, options: DiscoverOptions, callOptions?: CallOptions): Promise<TokenClient>;
  /** The discovery document the client was made from, if it was discovered. */
  readonly providerMetadata: ProviderMetadata | undefined;
  /**
   * Revokes every cached client token at the server and forgets it.
   * `options.signal` ends only the wait: the tokens are forgotten and their
   * revocation is sent all the same. Every scope set is tried; the call
   * rejects with the first failure, and a token whose revocation failed is
   * kept and revoked again by the next call. A `clientToken()` already
   * waiting for a request in flight still gets that request's token, which
   * is revoked right after.
   */
  revokeClientTokens(options?: CallOptions): Promise<void>;
  /**
   * Saves every session record this client holds only in memory: a rotation
   * (or a new link) whose save the store refused, which the session's next
   * call would otherwise save first. Refreshes running are waited for. Await
   * it before `free()` (at shutdown): a record freed unsaved takes the
   * session's newest refresh token with it, and the stored one is spent.
   * Rejects with a StorageError saying how many are still unsaved (they are
   * kept; calling again retries). Seeds and code exchanges running (even
   * ones whose caller stopped waiting) are waited for too. `options.signal`
   * ends only the wait.
   */
  saveUnsaved(options?: CallOptions): Promise<void>;
  /**
   * A handle on `key`'s session. Throws a ConfigError for a key that is not
   * a non-empty string or holds a lone UTF-16 surrogate, and for a store
   * without `load` and `save` methods.
   */
  session(key: string, store: TokenStore): UserSession;
  clientToken(scopes: string[], options?: CallOptions): Promise<string>;
  /**
   * Forgets the cached client token for `scopes`, whichever it is. After the
   * API rejected a token, prefer `clientTokenRejected`.
   */
  invalidateClientToken(scopes: string[]): void;
  /**
   * The API rejected `token`, a client token for `scopes` (a 401): forgets
   * it if it is still the cached one, so the next `clientToken()` requests a
   * new one. When another caller has already replaced it, nothing changes:
   * many workers that saw one revoked token cause one request, not one each.
   * A forgotten token that still lives is revoked by `revokeClientTokens()`.
   */
  clientTokenRejected(scopes: string[], token: string): void;
  /**
   * The authorization URL (PKCE S256, state, nonce). The host's WebCrypto
   * hashes the verifier: a hash not made within `timeoutMs` rejects with a
   * TimeoutError.
   */
  authorizationUrl(options: AuthorizationUrlOptions): Promise<AuthorizationRequest>;
  /**
   * The authorization code of `redirect`, the URL the server sent the user
   * back to (or its query string), for `exchangeCode`. Checked first,
   * nothing sent: its `state` must be `expectedState` (the kept
   * `authorizationUrl()` result's `state`, RFC 6749 §10.12); for a client
   * made by `discover`, its `iss` must be the provider's issuer, and be
   * there when the provider announces it (RFC 9207, a mix-up between
   * providers). An error redirect with the right state throws its
   * OAuthError (`oauthError === 'access_denied'` when the user said no);
   * any other mismatch, a repeated parameter or a missing code throws
   * InvalidResponseError naming what (never a value).
   */
  codeFromRedirect(redirect: string, expectedState: string): string;
  /**
   * The first tokens for `options.code`, stored under `key`.
   *
   * Check the callback first: `codeFromRedirect(callbackUrl, kept.state)`
   * reads the code once the redirect's `state` is the one of the
   * `authorizationUrl()` result kept for this user (what stops another
   * site from sending your user back with a code of its own, RFC 6749
   * §10.12) and its issuer the provider's.
   *
   * A StorageError (`code === 'storage'`) means the server issued the
   * tokens and only the store's save failed: this client holds the record
   * in memory. Do not send the user through authorization again: any call
   * on `client.session(key, store)` (`accessToken()`, `status()`, …),
   * `client.saveUnsaved()`, or repeating this call on this client (the
   * code is not sent again) saves it first. Until it is saved the record
   * lives only in this client (`free()` drops it).
   *
   * A code is sent once per process: a repeat for the same key while the
   * first runs or within 10 minutes after (a reloaded or double-submitted
   * callback) joins the first call or gets its outcome; for another key,
   * verifier or redirect URI it is a ConfigError naming `code`, with
   * nothing sent. Elsewhere and later, the store tells: the record an
   * exchange saves carries the code's fingerprint (a truncated SHA-256),
   * and a repeat that finds it adopts that record, refreshed since or not,
   * and sends nothing. With a fleet-lease store the exchange runs under the
   * key's lease, so two processes exchanging one code at the very same
   * moment send it once (the second waits, then adopts); without one both
   * may send it. A lease not had within `leaseWaitMs` is a ConflictError,
   * with nothing sent. A code that may have reached the server (a lost answer,
   * a 5xx: not retried) counts as redeemed: a repeat then gets the same
   * error and sends nothing, and the user logs in again. A `codeVerifier`
   * that is not 43 to 128 RFC 7636 characters, or an unknown member of
   * `options`, is a ConfigError naming it, with nothing sent. A store that
   * cannot tell its stored version fails it before the code is sent.
   */
  exchangeCode(options: ExchangeCodeOptions, key: string, store: TokenStore, callOptions?: CallOptions): Promise<UserSession>;
  readonly sessionCount: number;
  /** This client's name as a fleet lease owner (random, unique per client): a store's lease holds it followed by `.` and a random number, new for each lease taken (so a release that lands late never ends a later lease). */
  readonly leaseOwner: string;
  /** Retires the client at once (it and its sessions then refuse every call); its memory is freed once the calls on the stack return. A record its store refused goes with it: await `saveUnsaved()` first. */
  free(): void;
}

/** The token endpoint's answer, validated (RFC 6749 §5.1). */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in?: number;
  /** Store it: the old one is now consumed. */
  refresh_token?: string;
  scope?: string;
  id_token?: string;
}

/**
 * The client options that mean something for one refresh with no session
 * or store: no events (`onEvent`, `eventKeys`), leases, store deadline,
 * session cache or authorization and revocation endpoints. (The runtime
 * still checks those if given, and ignores them.)
 */
export interface RefreshTokensOptions extends Omit<
  TokenClientOptions,
  | 'onEvent'
  | 'eventKeys'
  | 'maxSessions'
  | 'leaseTtlMs'
  | 'leaseWaitMs'
  | 'storeTimeoutMs'
  | 'authorizationEndpoint'
  | 'revocationEndpoint'
> {
  refreshToken: string;
}

/**
 * One refresh: the typed drop-in for a hand-written refresh function. Store
 * the answer's `refresh_token`, and on an `InvalidResponseError` its
 * `rotatedRefreshToken` if set: either way the one sent is then spent.
 */
export function refreshTokens(options: RefreshTokensOptions): Promise<TokenResponse>;

export type ErrorCode =
  | 'reauthorization_required'
  | 'invalid_client'
  | 'oauth'
  | 'transient'
  | 'network'
  | 'timeout'
  | 'invalid_response'
  | 'storage'
  | 'conflict'
  | 'config';

export type ReauthorizationReason =
  | 'invalid_grant'
  | 'refresh_expired'
  | 'lost_rotation'
  | 'no_refresh_token'
  | 'revoked';

/**
 * What an error is made from. The package makes every error it throws; a
 * test may make one too: `new StorageError({ code: 'storage', message })`.
 * A constructor sets no `code` of its own, so the class's code is required.
 */
export interface FreshTokenErrorFields<C extends ErrorCode = ErrorCode> {
  code: C;
  message: string;
  reason?: ReauthorizationReason | undefined;
  status?: number | undefined;
  oauthError?: string | undefined;
  description?: string | undefined;
  retryAfterMs?: number | undefined;
  serverMayHoldToken?: boolean | undefined;
}

/** Any error from freshtoken; `code` is one of the stable codes, and each subclass narrows it. */
export class FreshTokenError extends Error {
  constructor(fields: FreshTokenErrorFields);
  readonly code: ErrorCode;
  readonly reason?: ReauthorizationReason;
  readonly status?: number;
  readonly oauthError?: string;
  readonly description?: string;
  readonly retryAfterMs?: number;
  /**
   * Set by `revoke()` when the server could not be told, or when the
   * session's last refresh lost its answer (reason `lost_rotation`): it may
   * still hold a token.
   */
  readonly serverMayHoldToken?: boolean;
}
/** The user must authorize again (re-link); `reason` says why. */
export class ReauthorizationRequiredError extends FreshTokenError {
  constructor(fields: FreshTokenErrorFields<'reauthorization_required'> & { reason: ReauthorizationReason });
  readonly code: 'reauthorization_required';
  readonly reason: ReauthorizationReason;
}
/** The server rejected the client credentials. */
export class InvalidClientError extends FreshTokenError {
  constructor(fields: FreshTokenErrorFields<'invalid_client'>);
  readonly code: 'invalid_client';
}
/** Another RFC 6749 error; `oauthError` holds its code. */
export class OAuthError extends FreshTokenError {
  constructor(fields: FreshTokenErrorFields<'oauth'> & { oauthError: string });
  readonly code: 'oauth';
  readonly oauthError: string;
}
/** 5xx or 429 after every retry. */
export class TransientError extends FreshTokenError {
  constructor(fields: FreshTokenErrorFields<'transient'>);
  readonly code: 'transient';
}
/** A transport failure. */
export class NetworkError extends FreshTokenError {
  constructor(fields: FreshTokenErrorFields<'network'>);
  readonly code: 'network';
}
/** The request timed out. */
export class TimeoutError extends FreshTokenError {
  constructor(fields: FreshTokenErrorFields<'timeout'>);
  readonly code: 'timeout';
}
/** The token endpoint's answer could not be understood. */
export class InvalidResponseError extends FreshTokenError {
  constructor(fields: FreshTokenErrorFields<'invalid_response'> & { rotatedRefreshToken?: string | undefined });
  readonly code: 'invalid_response';
  /**
   * From `refreshTokens()` only: the new refresh token a 2xx answer carried
   * although the rest of it could not be used. The server rotated, so the
   * token sent is spent: store this one in its place. A getter, not a
   * property of the error object, so no way of printing the error shows
   * it. (A session keeps it itself.)
   */
  readonly rotatedRefreshToken?: string;
}
/** The store failed; anything renewed is kept and saved on the next call. */
export class StorageError extends FreshTokenError {
  constructor(fields: FreshTokenErrorFields<'storage'>);
  readonly code: 'storage';
}
/** A compare-and-swap save lost to a newer version, or the wait for another process's lease gave up. */
export class ConflictError extends FreshTokenError {
  constructor(fields: FreshTokenErrorFields<'conflict'>);
  readonly code: 'conflict';
}
/** Invalid configuration or argument; `field` and the message name it. */
export class ConfigError extends FreshTokenError {
  constructor(fields: FreshTokenErrorFields<'config'> & { field: string });
  readonly code: 'config';
  /**
   * The option or argument, as the caller spells it (`clientSecret`,
   * `store`, `expiresIn`; `this` for a freed handle; an unknown option's
   * own name, cut to 64 characters).
   */
  readonly field: string;
}

/**
 * Records in memory (nothing survives a restart). A session on a plain
 * MemoryStore shares its record with the store (no second copy as text) and
 * saves with compare-and-swap, so two clients on one store never overwrite
 * each other's rotation; a subclass is called through its methods like any
 * store.
 */
export class MemoryStore implements TokenStore {
  load(key: string): Promise<string | null>;
  save(key: string, record: string): Promise<void>;
  get(key: string): string | null;
}

/**
 * Node only: the browser entry does not export it (an import of it fails
 * there, or in a bundle built for browsers).
 *
 * Records as files: temp file, fsync, rename. One process: it
 * has no lease, so processes sharing its directory (cluster workers, PM2)
 * could both spend one refresh token; give those a fleet store
 * (`freshtoken/redis`, `freshtoken/postgres`).
 */
export class FileStore implements TokenStore {
  constructor(directory: string);
  /**
   * The file for `key`: `x.<lowercase hex of its UTF-8>.json`, or
   * `h.<SHA-256 hex>.json` for keys over 60 bytes (the Python and Kotlin
   * stores' names). Lowercase only, so safe on case-insensitive file systems.
   * Files of the earlier base64url names are still read (under the exact name
   * the directory lists), and the next save moves the record to this name.
   * Throws a TypeError for a key that is not a string or has a lone UTF-16
   * surrogate (and `save` rejects with one for a record that is not a
   * string), before any I/O.
   */
  pathFor(key: string): string;
  load(key: string): Promise<string | null>;
  save(key: string, record: string): Promise<void>;
  /**
   * At startup: finishes the saves a killed process left half done (the
   * newest complete temporary record newer than the key's file is fsynced
   * and replaces it, whoever wrote it: a container restarted within
   * seconds cannot tell its killed predecessor's file from a live writer's,
   * which would rename the same file) and deletes the other temporary
   * files. A file younger than `olderThanMs` (default 60 s) is never
   * deleted while the process that writes it (the pid in its name) may be
   * alive; a file written on this host and in this pid namespace by a dead
   * process, or by this process's pid but not by this process (a restart
   * under the same pid), is deleted at once. Rejects, leaving the file, when
   * a temporary record cannot be made durable.
   */
  recover(olderThanMs?: number): Promise<{ completed: number; removed: number }>;
}

/**
 * One AES-256 key of an EncryptedStore: `id` names it in every record it
 * encrypts (1 to 64 printable ASCII characters, no spaces, e.g. "2026-11");
 * `key` is its 32 bytes, as a Uint8Array (a Buffer is one) or in base64
 * (standard or URL-safe alphabet, padding optional: `openssl rand -base64 32`).
 */
export interface EncryptionKey {
  id: string;
  key: Uint8Array | string;
}

/** The keys of an EncryptedStore. */
export interface EncryptionKeys {
  /** Encrypts every save. */
  current: EncryptionKey;
  /** Only decrypt: records written under them are rewritten under `current` by their next save. */
  old?: EncryptionKey[] | null | undefined;
  /**
   * A stored record that is not encrypted is a StorageError instead of being
   * read (and encrypted by its next save). Default false; switch it on once
   * every record has been rewritten.
   */
  refusePlaintext?: boolean | undefined;
}

/**
 * A store whose records `inner` keeps encrypted (AES-256-GCM by the host's
 * WebCrypto, a random 96-bit nonce per save). `inner` holds a JSON envelope
 * `{"schema":"freshtoken.encrypted/1","kid","nonce","ciphertext"}` whose
 * associated data binds the session key and the key id: a record copied
 * under another key, or altered, fails to decrypt. An unknown key id or a
 * failed decryption is a StorageError naming the key id, never a fallback.
 * The fleet members (lease, compare-and-swap) exist when `inner` has them;
 * leases pass through unchanged. Throws a ConfigError naming a bad
 * argument (`inner`, `keys.current.key`, …; `inner` with one member of a
 * fleet pair), and a StorageError if reading a member of `inner` throws.
 * Each member rejects a bad argument (`key`, `owner`, `ttlMs`,
 * `expectedVersion`) with a ConfigError naming it before `inner` is called.
 */
export class EncryptedStore<S extends TokenStore = TokenStore> implements TokenStore {
  constructor(inner: S, keys: EncryptionKeys);
  /** The store underneath (it holds the envelopes). */
  readonly inner: S;
  /** The record under `key`, decrypted (a plain record as it is), or null. */
  load(key: string): Promise<string | null>;
  /**
   * Encrypts `record` with the current key and saves it under `key`; resolves
   * to what the inner store's `save` resolves to (its `false`, a write
   * refused, reaches the core as a failed save).
   */
  save(key: string, record: string): Promise<void>;
  acquire?(key: string, owner: string, ttlMs: number): Promise<boolean>;
  release?(key: string, owner: string): Promise<void>;
  loadVersioned?(key: string): Promise<VersionedRecord | null>;
  /** The inner store's version, the envelope unopened: a re-link replaces a record no key opens. */
  loadVersion?(key: string): Promise<string | null>;
  saveVersioned?(key: string, record: string, expectedVersion: string | null): Promise<string | null>;
}

/**
 * Whether a response says the access token was not accepted: HTTP 401
 * (unless its `WWW-Authenticate` challenges only other schemes, such as
 * `Basic`, or says `Bearer error="insufficient_scope"` or
 * `"invalid_request"`, which a new token does not cure), or a GraphQL
 * answer whose `errors[].message` starts with "UNAUTHENTICATED".
 * Only a body of one JSON text (`application/json` or a `+json` type), of
 * any status (Stitch's comes with a 200), is looked into, through a clone,
 * and only until a whole JSON text or 64 KiB of it has come: a stream of
 * JSON texts (NDJSON), the rest of a JSON stream (a watch) or a bigger
 * body is not read, and `response` stays unread.
 * Rejects with a ConfigError naming `response` when it is not a Response.
 */
export function isUnauthenticated(response: ResponseLike): Promise<boolean>;

/**
 * fetch with the session's Bearer token; on 401 or a GraphQL
 * "UNAUTHENTICATED" error (see isUnauthenticated), `tokenRejected()` (one
 * refresh, unless another caller already replaced the token) and one
 * retry. An answer from another origin after a redirect is returned as it
 * is (fetch sent it no token, so its rejection costs no refresh), unless it
 * is a 401 saying `error="invalid_token"`: then the fetch in use forwarded
 * the token, and it counts. A stream in `init.body` (a ReadableStream, an async iterable)
 * can be sent only once: on a rejection the token is still replaced and
 * the rejected response is returned, for the caller to send again.
 * `init.signal` (or a Request's signal) ends the token waits as well as the
 * request; an aborted one asks for no token. A JSON answer is returned once
 * its first JSON text has come (see isUnauthenticated), not at its body's
 * end; the signal ends that wait too, the answer then returned as fetch
 * gave it. A `session`,
 * `input` (a Request whose body was read included), `init` or `options`
 * (whose only key is `fetch`) that is not what the types say rejects with a
 * ConfigError naming it before a token is asked for. Resolves with what
 * `options.fetch` resolves with (node-fetch's Response with node-fetch).
 */
export function authorizedFetch<
  Input extends string | URL | Request,
  Init extends object = {},
  Answer extends ResponseLike = Response,
>(
  session: UserSession,
  input: Input,
  init?: Init & RequestInit & { [K in Exclude<keyof Init, keyof RequestInit>]?: never },
  options?: AuthorizedFetchOptions<Input, Init, Answer>,
): Promise<Answer>;

/**
 * The `init` authorizedFetch passes its `fetch`: the caller's, `headers`
 * replaced by a `Headers` holding the Bearer token (typed as a string
 * record too: see FetchInit).
 */
export type AuthorizedInit<Init> = Omit<Init, 'headers'> & { headers: Headers & Record<string, string> };

/** `T`, not inferred from here (TypeScript's NoInfer, for releases before 5.4). */
type Uninferred<T> = [T][T extends unknown ? 0 : never];

/** The options of authorizedFetch: its only one is `fetch` (default: the global one). */
export interface AuthorizedFetchOptions<Input, Init, Answer extends ResponseLike> {
  /** Any fetch whose answer is a Response by brand: the platform's, undici's, node-fetch v2 or v3. */
  fetch?: ((input: Input, init: AuthorizedInit<Uninferred<Init>>) => Promise<Answer>) | undefined;
}
