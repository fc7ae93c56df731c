// A typed tour of the public API of `freshtoken`, compiled by types.test.mjs
// with `tsc --noEmit --strict` (never run). It uses only ES and DOM types, so
// no @types/node is needed.

import {
  ConfigError,
  ConflictError,
  EVENT_CHANNEL,
  FileStore,
  FreshTokenError,
  InvalidClientError,
  InvalidResponseError,
  MemoryStore,
  NetworkError,
  OAuthError,
  ReauthorizationRequiredError,
  StorageError,
  TimeoutError,
  TokenClient,
  TransientError,
  UserSession,
  authorizedFetch,
  isUnauthenticated,
  refreshTokens,
} from 'freshtoken';
import { EncryptedStore } from 'freshtoken';
import type { EncryptionKeys } from 'freshtoken';
import type {
  AuthorizationRequest,
  FetchInit,
  FetchResponseLike,
  ResponseLike,
  MaybePromise,
  CallOptions,
  ClientAuth,
  ErrorCode,
  EventKeys,
  EventKind,
  FetchLike,
  ReauthorizationReason,
  RefreshTokensOptions,
  RetryOptions,
  SeedOptions,
  SessionStatus,
  TokenClientOptions,
  TokenEvent,
  TokenInfo,
  TokenResponse,
  TokenStore,
} from 'freshtoken';

// --- a custom store -------------------------------------------------------

/** Records in a key-value database (here: a Map standing in for one). */
class DatabaseStore implements TokenStore {
  readonly #rows = new Map<string, string>();

  async load(key: string): Promise<string | null> {
    return this.#rows.get(key) ?? null;
  }

  async save(key: string, record: string): Promise<void> {
    this.#rows.set(key, record);
  }
}

// --- quick start ------------------------------------------------------------

const retry: RetryOptions = { maxAttempts: 3, initialBackoffMs: 100, maxBackoffMs: 2_000, budgetMs: 10_000 };
const auth: ClientAuth = 'client_secret_post';
const myFetch: FetchLike = (input, init) => fetch(input, init);

const options: TokenClientOptions = {
  tokenEndpoint: 'https://secure.stitch.money/connect/token',
  clientId: 'my-client',
  clientSecret: 'from-a-vault',
  clientAuth: auth,
  audience: 'https://secure.stitch.money/connect/token',
  authorizationEndpoint: 'https://secure.stitch.money/connect/authorize',
  leewaySeconds: 60,
  userTokenLifetimeSeconds: 900,
  clientTokenLifetimeSeconds: 3600,
  refreshTokenLifetimeSeconds: 365 * 24 * 3600,
  timeoutMs: 10_000,
  storeTimeoutMs: 5_000,
  maxSessions: 100_000,
  retry,
  fetch: myFetch,
  now: () => Date.now(),
  sleep: (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
  onEvent: (event: TokenEvent) => { recordEvent(event); },
  eventKeys: 'hidden',
};

// --- events ---------------------------------------------------------------

const eventCounts = new Map<EventKind, number>();
const keys: EventKeys = 'full';
const channel: 'freshtoken:event' = EVENT_CHANNEL;

/** Counts events by kind and keeps the failures' codes, as a metrics exporter would. */
function recordEvent(event: TokenEvent): void {
  eventCounts.set(event.kind, (eventCounts.get(event.kind) ?? 0) + 1);
  const code: ErrorCode | undefined = event.errorCode;
  const reason: ReauthorizationReason | undefined = event.reason;
  const ms: number | undefined = event.durationMs;
  const attempts: number | undefined = event.attempts;
  const key: string | undefined = event.key;
  const at: number = event.at;
  void [code, reason, ms, attempts, key, at, keys, channel];
}

/** An async handler is fine too: its rejection is ignored. */
export const asyncHandler: TokenClientOptions['onEvent'] = async (event) => { await Promise.resolve(event.kind); };

const client = new TokenClient(options);
const count: number = client.sessionCount;

export async function quickStart(userId: string, refreshToken: string): Promise<string> {
  const session: UserSession = client.session(userId, new DatabaseStore());
  const seed: SeedOptions = { refreshToken, accessToken: 'at', expiresIn: 900, scope: 'openid offline_access', idToken: 'id' };
  await session.seed(seed);
  await session.seed({ refreshToken });
  const key: string = session.key;
  const token: string = await session.accessToken();
  const info: TokenInfo = await session.tokens();
  const expiresAt: number = info.expiresAt;
  const scope: string | undefined = info.scope;
  const idToken: string | undefined = info.idToken;
  const refreshExpiresAt: number | undefined = info.refreshExpiresAt;
  const forced: TokenInfo = await session.refresh();
  const status: SessionStatus = await session.status();
  const flags: boolean[] = [status.hasRecord, status.unpersisted, status.inDoubt];
  const reason: ReauthorizationReason | undefined = status.reauthorizationReason;
  const times: Array<number | undefined> = [status.accessExpiresAt, status.refreshExpiresAt, expiresAt, refreshExpiresAt];
  session.free();
  return [key, token, scope, idToken, forced.accessToken, String(flags), String(reason), String(times), String(count)].join();
}

// --- calling an API -----------------------------------------------------------

export async function callApi(session: UserSession): Promise<unknown> {
  const response: Response = await authorizedFetch(session, 'https://api.stitch.money/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: '{ viewer { user { name } } }' }),
  });
  const again = await authorizedFetch(session, new URL('https://api.example/rest'), undefined, { fetch: (i, init) => fetch(i, init) });
  const unauthenticated: boolean = await isUnauthenticated(again);
  return unauthenticated ? null : response.json();
}

// --- a caller that stops waiting ------------------------------------------------

export async function withDeadline(session: UserSession, request: Request): Promise<string> {
  const options: CallOptions = { signal: AbortSignal.timeout(2_000) };
  const token: string = await session.accessToken(options);
  const info: TokenInfo = await session.tokenRejected(token, options);
  await session.seed({ refreshToken: 'rt' }, { signal: request.signal });
  const scoped: string = await client.clientToken(['accounts'], options);
  await authorizedFetch(session, request, { signal: request.signal });
  await client.revokeClientTokens(options);
  const saved: void = await client.saveUnsaved(options);
  const discovered: TokenClient = await TokenClient.discover('https://issuer.example', { clientId: 'id' }, options);
  discovered.free();
  return [info.accessToken, scoped].join();
}

// --- client tokens and the code flow ------------------------------------------

export async function clientTokens(): Promise<string> {
  const token: string = await client.clientToken(['accounts', 'balances']);
  client.invalidateClientToken(['accounts', 'balances']);
  return token;
}

export async function codeFlow(code: string, verifier: string): Promise<UserSession> {
  const request: AuthorizationRequest = await client.authorizationUrl({
    redirectUri: 'https://app.example/callback',
    scopes: ['openid', 'accounts'],
    state: 'opaque',
    nonce: 'nonce',
    extraParams: { provider: 'fnb', login_hint: 'user@example.com' },
  });
  const minimal = await client.authorizationUrl({ redirectUri: 'https://app.example/callback' });
  const kept: string[] = [request.url, request.codeVerifier, request.state, request.nonce, minimal.url];
  return client.exchangeCode({ code, codeVerifier: verifier || kept[1], redirectUri: 'https://app.example/callback' }, 'user-1', new MemoryStore());
}

// --- the drop-in refresh -------------------------------------------------------

export async function dropIn(refreshToken: string): Promise<string | undefined> {
  const opts: RefreshTokensOptions = { ...options, refreshToken };
  const answer: TokenResponse = await refreshTokens(opts);
  const bearer: 'Bearer' = answer.token_type;
  const lifetime: number | undefined = answer.expires_in;
  const parts: Array<string | undefined> = [answer.access_token, answer.scope, answer.id_token, bearer, String(lifetime)];
  return parts.join() && answer.refresh_token;
}

// --- stores ----------------------------------------------------------------------

export async function stores(): Promise<void> {
  const memory = new MemoryStore();
  await memory.save('k', 'v');
  const direct: string | null = memory.get('k');
  const loaded: string | null = await memory.load('k');
  const files = new FileStore('/var/lib/app/tokens');
  const path: string = files.pathFor('k');
  const asStore: TokenStore = files;
  await asStore.save('k', String(direct) + String(loaded) + path);
}

// --- errors: narrowing with instanceof and code -------------------------------------

export function describeError(err: unknown): string {
  if (err instanceof ReauthorizationRequiredError) {
    const reason: ReauthorizationReason = err.reason; // not optional here
    const code: 'reauthorization_required' = err.code;
    return `${code}: re-link the account (${reason})`;
  }
  if (err instanceof OAuthError) {
    const oauth: string = err.oauthError; // not optional here
    return `${oauth}: ${err.description ?? ''} (${err.status ?? 0})`;
  }
  if (err instanceof TransientError) return `retry in ${err.retryAfterMs ?? 1000} ms`;
  if (err instanceof StorageError) return 'the store failed; the renewed tokens are kept';
  if (err instanceof ConfigError) {
    const field: string = err.field; // not optional here
    const code: 'config' = err.code;
    return `${code}: fix \`${field}\``;
  }
  if (
    err instanceof InvalidClientError || err instanceof NetworkError || err instanceof TimeoutError
    || err instanceof InvalidResponseError || err instanceof ConflictError || err instanceof ConfigError
  ) {
    return err.message;
  }
  if (err instanceof FreshTokenError) {
    const code: ErrorCode = err.code;
    switch (code) {
      case 'reauthorization_required':
      case 'invalid_client':
      case 'oauth':
      case 'transient':
      case 'network':
      case 'timeout':
      case 'invalid_response':
      case 'storage':
      case 'conflict':
      case 'config':
        return code;
      default: {
        const unreachable: never = code;
        return unreachable;
      }
    }
  }
  return err instanceof Error ? err.name : 'unknown';
}

// Records encrypted at rest: keys as bytes or base64; the inner store stays reachable.
export async function encryptedAtRest(client: TokenClient, current: Uint8Array, old: string): Promise<string> {
  const keys: EncryptionKeys = { current: { id: '2026-11', key: current }, old: [{ id: '2025-11', key: old }], refusePlaintext: false };
  const store = new EncryptedStore(new MemoryStore(), keys);
  const raw: string | null = store.inner.get('user-1');
  const fleet: boolean = typeof store.acquire === 'function';
  return `${raw ?? ''}${fleet}${await client.session('user-1', store).accessToken()}`;
}

// --- what the review found: construction, sync stores, custom fetches ------------

/** A synchronous store: plain values are accepted where Promises are. */
export const syncStore: TokenStore = {
  load: (key: string) => (key === 'k' ? 'record' : null),
  save: (_key: string, _record: string) => {},
  acquire: () => true,
  release: () => {},
  loadVersioned: () => null,
  saveVersioned: (): MaybePromise<string | null> => Promise.resolve('1'),
};

/** Errors made by a test, as the package makes them; each class narrows `code`. */
export function madeErrors(): FreshTokenError[] {
  const storage = new StorageError({ code: 'storage', message: 'store down' });
  const storageCode: 'storage' = storage.code;
  const relink = new ReauthorizationRequiredError({ code: 'reauthorization_required', message: 'x', reason: 'revoked' });
  const config = new ConfigError({ code: 'config', message: 'bad', field: 'clientId' });
  const oauth = new OAuthError({ code: 'oauth', message: 'x', oauthError: 'invalid_scope', status: 400 });
  const codes: ['transient', 'network', 'timeout', 'conflict', 'invalid_client', 'invalid_response'] = [
    new TransientError({ code: 'transient', message: 'x', retryAfterMs: 1 }).code,
    new NetworkError({ code: 'network', message: 'x' }).code,
    new TimeoutError({ code: 'timeout', message: 'x' }).code,
    new ConflictError({ code: 'conflict', message: 'x' }).code,
    new InvalidClientError({ code: 'invalid_client', message: 'x' }).code,
    new InvalidResponseError({ code: 'invalid_response', message: 'x', rotatedRefreshToken: 'rt' }).code,
  ];
  void [storageCode, codes];
  return [storage, relink, config, oauth];
}

/** A custom fetch reads what the client passes, and answers with any Response-like object. */
export const loggingFetch: FetchLike = async (input: string, init: FetchInit) => {
  const type: string | null = init.headers.get('content-type');
  const parts: Array<string | null | undefined> = [init.method, init.body, init.redirect, init.credentials, type];
  void parts;
  const answer: FetchResponseLike = await fetch(input, init);
  return answer;
};

/** A spread copy of a TokenInfo is a plain object with the same fields. */
export async function plainInfo(session: UserSession): Promise<TokenInfo> {
  const info = await session.tokens();
  return { ...info };
}

/** isUnauthenticated takes any fetch's Response; authorizedFetch returns its fetch's. */
export async function otherResponses(session: UserSession, response: ResponseLike): Promise<boolean> {
  const viaOwn: Response = await authorizedFetch(session, 'https://api.example', { method: 'POST', body: '{}' }, {
    fetch: (input, init) => fetch(input, init),
  });
  return (await isUnauthenticated(response)) || (await isUnauthenticated(viaOwn));
}
