// Compiled by types.test.mjs with `--strict --skipLibCheck` (node-fetch's own
// declarations need @types/node, which this project does not install):
// the fetches people pass fit the `fetch` option and authorizedFetch's.
// node-fetch v3 is the real package; node-fetch v2 (@types/node-fetch) and
// undici are their published declarations, cut to what decides the fit.
// Never run.

import nodeFetch from 'node-fetch';
import { TokenClient, authorizedFetch, isUnauthenticated } from 'freshtoken';
import type { FetchLike, UserSession } from 'freshtoken';

declare const session: UserSession;

// --- @types/node-fetch 2.6: its own Headers (with raw()), no DOM types --------
declare namespace NodeFetch2 {
  type HeadersInit = Headers | string[][] | { [key: string]: string | string[] };
  class Headers implements Iterable<[string, string]> {
    constructor(init?: HeadersInit);
    forEach(callback: (value: string, name: string) => void): void;
    append(name: string, value: string): void;
    delete(name: string): void;
    get(name: string): string | null;
    has(name: string): boolean;
    raw(): { [k: string]: string[] };
    set(name: string, value: string): void;
    entries(): IterableIterator<[string, string]>;
    keys(): IterableIterator<string>;
    values(): IterableIterator<string>;
    [Symbol.iterator](): Iterator<[string, string]>;
  }
  // As published (`any` there, not `unknown`: it decides what fits).
  interface AbortSignal {
    aborted: boolean;
    reason: any;
    addEventListener: (type: 'abort', listener: (this: AbortSignal, event: any) => any, options?: boolean | { capture?: boolean | undefined; once?: boolean | undefined; passive?: boolean | undefined }) => void;
    removeEventListener: (type: 'abort', listener: (this: AbortSignal, event: any) => any, options?: boolean | { capture?: boolean | undefined }) => void;
    dispatchEvent: (event: any) => boolean;
    onabort: null | ((this: AbortSignal, event: any) => any);
    throwIfAborted(): void;
  }
  interface RequestInit {
    body?: ArrayBuffer | ArrayBufferView | string | URLSearchParams | undefined;
    headers?: HeadersInit | undefined;
    method?: string | undefined;
    redirect?: 'error' | 'follow' | 'manual' | undefined;
    signal?: AbortSignal | null | undefined;
    compress?: boolean | undefined;
    follow?: number | undefined;
    size?: number | undefined;
    timeout?: number | undefined;
  }
  class Request {
    constructor(input: string | Request, init?: RequestInit);
    headers: Headers;
    url: string;
    size: number;
    clone(): Request;
  }
  class Response {
    headers: Headers;
    ok: boolean;
    redirected: boolean;
    status: number;
    url: string;
    body: { pipe(destination: unknown): unknown };
    clone(): Response;
    arrayBuffer(): Promise<ArrayBuffer>;
    text(): Promise<string>;
  }
}
declare function nodeFetch2(url: string | { href?: string } | NodeFetch2.Request, init?: NodeFetch2.RequestInit): Promise<NodeFetch2.Response>;

// --- undici 7: its own Headers, Request and Response classes ---------------------
declare namespace Undici {
  type HeadersInit = [string, string][] | Record<string, string | ReadonlyArray<string>> | Headers;
  class Headers implements Iterable<[string, string]> {
    constructor(init?: HeadersInit);
    append(name: string, value: string): void;
    delete(name: string): void;
    get(name: string): string | null;
    has(name: string): boolean;
    set(name: string, value: string): void;
    getSetCookie(): string[];
    forEach(callbackfn: (value: string, key: string, iterable: Headers) => void, thisArg?: unknown): void;
    keys(): IterableIterator<string>;
    values(): IterableIterator<string>;
    entries(): IterableIterator<[string, string]>;
    [Symbol.iterator](): IterableIterator<[string, string]>;
  }
  interface RequestInit {
    body?: string | ArrayBuffer | Uint8Array | null;
    headers?: HeadersInit;
    method?: string;
    redirect?: 'error' | 'follow' | 'manual';
    credentials?: 'omit' | 'include' | 'same-origin';
    signal?: AbortSignal | null;
    keepalive?: boolean;
  }
  class Request {
    constructor(input: string | URL | Request, init?: RequestInit);
    readonly headers: Headers;
    readonly url: string;
    readonly duplex: 'half';
  }
  class Response {
    readonly headers: Headers;
    readonly status: number;
    readonly redirected: boolean;
    readonly url: string;
    readonly body: ReadableStream<Uint8Array> | null;
    clone(): Response;
    arrayBuffer(): Promise<ArrayBuffer>;
    json(): Promise<unknown>;
  }
}
declare function undiciFetch(input: string | URL | Undici.Request, init?: Undici.RequestInit): Promise<Undici.Response>;

const base = { tokenEndpoint: 'https://x.example/token', clientId: 'c' };

export const clients: TokenClient[] = [
  new TokenClient({ ...base, fetch: nodeFetch }),
  new TokenClient({ ...base, fetch: nodeFetch2 }),
  new TokenClient({ ...base, fetch: undiciFetch }),
  new TokenClient({ ...base, fetch }),
  new TokenClient({ ...base, fetch: (input, init) => nodeFetch2(input, init) }),
];
export const asFetchLike: FetchLike[] = [nodeFetch, nodeFetch2, undiciFetch, fetch];

export async function apis(): Promise<unknown[]> {
  const v3 = await authorizedFetch(session, 'https://api.example', undefined, { fetch: nodeFetch });
  const v2: NodeFetch2.Response = await authorizedFetch(session, 'https://api.example', { method: 'POST', body: '{}' }, { fetch: nodeFetch2 });
  const undici: Undici.Response = await authorizedFetch(session, new URL('https://api.example'), { headers: { accept: 'application/json' } }, { fetch: undiciFetch });
  return [await v3.text(), await v2.text(), await undici.json(), await isUnauthenticated(v3), await isUnauthenticated(v2), await isUnauthenticated(undici)];
}
