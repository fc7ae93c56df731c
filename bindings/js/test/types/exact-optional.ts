// Compiled by types.test.mjs with `--strict --exactOptionalPropertyTypes`:
// every optional member of an options object may be given as `undefined`
// (the run time takes it as absent), as code that forwards its own
// optional settings does. Never run.

import { EncryptedStore, MemoryStore, TokenClient, authorizedFetch, refreshTokens } from 'freshtoken';
import type { UserSession } from 'freshtoken';
import { RedisStore } from 'freshtoken/redis';
import type { RedisCommandClient } from 'freshtoken/redis';
import { PostgresStore } from 'freshtoken/postgres';
import { IndexedDbStore } from 'freshtoken/indexeddb';
import { LocalStorageStore } from 'freshtoken/local-storage';

declare const env: Record<string, string | undefined>;
declare const redis: RedisCommandClient;
declare const session: UserSession;
const unset: undefined = undefined;

const client = new TokenClient({
  tokenEndpoint: 'https://x.example/token',
  clientId: 'c',
  clientSecret: env['SECRET'],
  clientAuth: unset, privateKeyPem: unset, keyId: unset, assertionAudience: unset, audience: unset,
  authorizationEndpoint: unset, revocationEndpoint: unset, leewaySeconds: unset,
  userTokenLifetimeSeconds: unset, clientTokenLifetimeSeconds: unset, refreshTokenLifetimeSeconds: unset,
  timeoutMs: unset, storeTimeoutMs: unset, maxSessions: unset, leaseTtlMs: unset, leaseWaitMs: unset,
  retry: { maxAttempts: unset, initialBackoffMs: unset, maxBackoffMs: unset, budgetMs: unset },
  fetch: unset, now: unset, sleep: unset, onEvent: unset, eventKeys: unset,
});
// null too, where the core reads the option (it is the default as well).
export const withNull = new TokenClient({ tokenEndpoint: 'https://x.example/token', clientId: 'c', clientSecret: null, retry: null, fetch: null });

export async function calls(): Promise<void> {
  const s = client.session('k', new MemoryStore());
  await s.seed({ refreshToken: 'r', accessToken: unset, expiresIn: unset, scope: unset, idToken: unset });
  await s.accessToken({ signal: unset });
  await client.authorizationUrl({ redirectUri: 'https://app.example/cb', scopes: unset, state: unset, nonce: unset, prompt: unset, extraParams: unset });
  await TokenClient.discover('https://issuer.example', { clientId: 'c', clientSecret: env['SECRET'] });
  await refreshTokens({ tokenEndpoint: 'https://x.example/token', clientId: 'c', refreshToken: 'r', timeoutMs: unset });
  await authorizedFetch(session, 'https://api.example', undefined, { fetch: unset });
}

export const stores = [
  new EncryptedStore(new MemoryStore(), { current: { id: 'a', key: 'k' }, old: unset, refusePlaintext: unset }),
  new RedisStore(redis, { prefix: unset }),
  new PostgresStore({ query: async () => ({ rows: [] }) }, { table: unset, leaseTable: unset }),
  new IndexedDbStore({ database: unset, indexedDB: unset, locks: unset, migrateFrom: unset, storage: unset }),
  new LocalStorageStore({ storage: unset, locks: unset, prefix: unset }),
];
