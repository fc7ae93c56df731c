// A typed tour of `freshtoken/redis`, `freshtoken/postgres` and
// `freshtoken/local-storage`, compiled by
// types.fleet.test.mjs with `tsc --noEmit --strict` (never run). The clients
// are declared structurally, as the declarations type them, so neither
// @types/node nor @types/pg is needed.

import { TokenClient } from 'freshtoken';
import type { TokenStore, VersionedRecord } from 'freshtoken';
import { RedisStore } from 'freshtoken/redis';
import type { LeaseHolder, RedisCommandClient, RedisStoreOptions } from 'freshtoken/redis';
import { PostgresStore } from 'freshtoken/postgres';
import type { PgQueryable, PostgresStoreOptions } from 'freshtoken/postgres';
import { LocalStorageStore } from 'freshtoken/local-storage';
import type { LocalStorageStoreOptions } from 'freshtoken/local-storage';
import { IndexedDbStore } from 'freshtoken/indexeddb';
import type { IndexedDbStoreOptions } from 'freshtoken/indexeddb';

declare const redisClient: RedisCommandClient;
declare const pool: PgQueryable;

const redisOptions: RedisStoreOptions = { prefix: 'app:' };
const pgOptions: PostgresStoreOptions = { table: 'auth.records', leaseTable: 'auth.leases' };

export const redis: TokenStore = new RedisStore(redisClient, redisOptions);
export const postgres: TokenStore = new PostgresStore(pool, pgOptions);
export const ddl: string = PostgresStore.schema(pgOptions) + PostgresStore.schema();

// A pg.Pool-shaped object: query(text, values) resolving to { rows }.
export const handMade = new PostgresStore({
  query: async (text: string, values?: unknown[]) => ({ rows: [{ text, n: values?.length ?? 0 }], rowCount: 1 }),
});

export async function tour(): Promise<void> {
  const r = new RedisStore(redisClient);
  const p = new PostgresStore(pool);
  await p.migrate();
  const keys: string[] = [r.recordKey('u1'), r.leaseKey('u1')];
  const taken: boolean = await r.acquire('u1', 'owner', 3_000);
  await p.release('u1', 'owner');
  const found: VersionedRecord | null = await p.loadVersioned('u1');
  const next: string | null = await r.saveVersioned('u1', '{}', found ? found.version : null);
  const holder: LeaseHolder | null = await p.leaseHolder('u1');
  const ms: number | undefined = holder?.expiresInMs;
  const record: string | null = await r.load('u1');
  await r.save('u1', record ?? '{}');
  // Fleet members are present, so the client takes leases and compare-and-swaps.
  const client = new TokenClient({ tokenEndpoint: 'https://bank.example/connect/token', clientId: 'c', leaseTtlMs: 60_000, leaseWaitMs: 65_000 });
  const owner: string = client.leaseOwner;
  const token: string = await client.session('u1', r).accessToken();
  void [keys, taken, next, ms, owner, token];
}

// The page's own localStorage and navigator.locks fit the browser store.
const tabOptions: LocalStorageStoreOptions = { storage: localStorage, locks: navigator.locks, prefix: 'app:' };
export const tabs: TokenStore = new LocalStorageStore(tabOptions);

// The page's own indexedDB, navigator.locks and localStorage fit IndexedDbStore.
const idbOptions: IndexedDbStoreOptions = { database: 'app', indexedDB, locks: navigator.locks, migrateFrom: 'app:', storage: localStorage };
export const idbTabs: TokenStore = new IndexedDbStore(idbOptions);

export async function indexedDbTour(): Promise<void> {
  const store = new IndexedDbStore();
  const name: string = store.leaseName('u1');
  const taken: boolean = await store.acquire('u1', 'owner', 3_000);
  await store.release('u1', 'owner');
  const record: string | null = await store.load('u1');
  await store.save('u1', record ?? '{}');
  const next: string | null = await store.saveVersioned('u1', '{}', await store.loadVersion('u1'));
  void [name, taken, next];
}

export async function browserTour(): Promise<void> {
  const store = new LocalStorageStore();
  const names: string[] = [store.recordKey('u1'), store.leaseName('u1')];
  const taken: boolean = await store.acquire('u1', 'owner', 3_000);
  await store.release('u1', 'owner');
  const record: string | null = await store.load('u1');
  await store.save('u1', record ?? '{}');
  const version: string | null = await store.loadVersion('u1');
  void [names, taken, version];
}
