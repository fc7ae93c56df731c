// fetch with the session's Bearer token; on HTTP 401, or a GraphQL answer
// whose errors[].message starts with "UNAUTHENTICATED" (Stitch's "Token is
// expired or malformed"), it refreshes once — unless another caller already
// did — and retries once. Arguments that are not what the types say are
// ConfigErrors naming them, before a token is asked for (which may cost a
// refresh) or anything is sent.

import { abortable, signalOf } from './abort.js';
import { configError } from './errors.js';
import { member } from './host-calls.js';

/** `options.fetch`, or the global fetch; a ConfigError for anything else. */
function fetchOf(options) {
  if (options === undefined) return globalThis.fetch;
  if (options === null || typeof options !== 'object') throw configError('options', 'must be an object');
  let fetchImpl;
  try {
    // A misplaced `signal` (it belongs in `init`) would be dropped unseen.
    for (const key of Object.keys(options)) {
      if (key !== 'fetch') throw configError(`options.${key}`, 'is not an option of authorizedFetch (`fetch` is; a signal goes in `init`)');
    }
    fetchImpl = member(options, 'fetch'); // never one inherited from Object.prototype
  } catch (e) {
    if (e?.code === 'config') throw e;
    throw configError('options', 'could not be read (it threw)');
  }
  if (fetchImpl === undefined) return globalThis.fetch;
  if (typeof fetchImpl !== 'function') throw configError('options.fetch', 'must be a function');
  return fetchImpl;
}

/** Whether `session` has the methods authorizedFetch calls (read once, safely). */
function isSession(session) {
  try {
    return typeof session?.accessToken === 'function' && typeof session.tokenRejected === 'function';
  } catch {
    return false;
  }
}

/**
 * Reads `init` now and returns `(token) => init` with `Authorization: Bearer
 * <token>`, keeping a Request's own headers when `init` has none, and
 * whether `init.body` can be sent only once (a stream, an async iterable).
 */
function bearerInit(input, isRequest, init) {
  const base = init?.headers ?? (isRequest ? input.headers : undefined);
  const headers = new Headers(base);
  const rest = { ...init };
  const { body } = rest;
  const once = typeof body === 'object' && body !== null
    && (Object.prototype.toString.call(body) === '[object ReadableStream]' || typeof body[Symbol.asyncIterator] === 'function');
  const bearer = (token) => {
    const own = new Headers(headers);
    own.set('Authorization', `Bearer ${token}`);
    return { ...rest, headers: own };
  };
  return { bearer, once };
}

/**
 * Whether `input` is a Request (true) or a URL string or URL (false), by
 * brand as well, so one of another realm counts; a ConfigError for anything
 * else, before a token is asked for (it may cost a refresh).
 */
function isRequestInput(input) {
  if (typeof input === 'string') return false;
  let brand;
  try {
    brand = Object.prototype.toString.call(input);
    if (input instanceof Request || brand === '[object Request]') return true;
    if (input instanceof URL || brand === '[object URL]') return false;
  } catch {
    throw configError('input', 'could not be read (it threw)');
  }
  throw configError('input', 'must be a URL string, a URL or a Request');
}

/**
 * The call options for the session's token waits: `{ signal }` with
 * `init.signal`, else a Request's own signal (as fetch picks: an
 * `init.signal` of null means none); undefined without one. An aborted
 * signal then starts no refresh, and ends the wait for one.
 */
function waitOptions(input, isRequest, init) {
  let signal;
  try {
    signal = init?.signal;
    if (signal === undefined && isRequest) signal = input.signal;
  } catch {
    throw configError('init', 'could not be read (it threw)');
  }
  if (signal === undefined || signal === null) return undefined;
  try {
    return { signal: signalOf({ signal }) };
  } catch {
    throw configError('init.signal', 'must be an AbortSignal');
  }
}

/** Whether `value` is a Response (of this realm or another: its brand, not `instanceof`). */
function isResponse(value) {
  try {
    return Object.prototype.toString.call(value) === '[object Response]'
      && typeof value.headers?.get === 'function';
  } catch {
    return false; // a revoked Proxy, a throwing getter
  }
}

/** The most of a body looked into for GraphQL errors: an answer of errors only is far smaller. */
const MAX_ERRORS_BYTES = 64 * 1024;

/**
 * Whether a Content-Type is one JSON text: application/json or a `+json`
 * type, not a stream of them (application/x-ndjson, json-seq), whose end
 * may never come.
 */
function isJsonText(type) {
  const essence = type.split(';', 1)[0].trim().toLowerCase();
  return essence === 'application/json' || essence.endsWith('+json');
}

/**
 * Whether the JSON text a body starts with (read through `reader`) is a
 * GraphQL answer whose errors[].message starts with "UNAUTHENTICATED".
 * Decided as soon as a whole JSON text has come, not at the body's end:
 * Stitch answers a rejected token with a 200 (errors in the body), so a
 * 200 is looked into too, and a 200 may be a watch stream whose end never
 * comes. More than MAX_ERRORS_BYTES is no such answer.
 */
async function saysUnauthenticated(reader) {
  const decoder = new TextDecoder();
  let text = '';
  let size = 0;
  for (;;) {
    const { done, value } = await (reader.read?.() ?? reader.next());
    if (!done) {
      size += value.byteLength;
      if (size > MAX_ERRORS_BYTES) return false;
    }
    text += decoder.decode(value, { stream: !done });
    if (/^\s*[^\s{]/.test(text)) return false; // not an object: no GraphQL answer
    // An object is whole at a closing brace: parsed there only (after every chunk would be quadratic).
    if (done || text.trimEnd().endsWith('}')) {
      let answer;
      try {
        answer = JSON.parse(text);
      } catch {
        if (done) return false;
        continue;
      }
      const errors = Array.isArray(answer?.errors) ? answer.errors : [];
      return errors.some((e) => typeof e?.message === 'string' && e.message.startsWith('UNAUTHENTICATED'));
    }
  }
}

/**
 * Whether a 401's `WWW-Authenticate` (RFC 6750 §3) leaves the token in
 * question: none, or a Bearer challenge that is not `insufficient_scope`
 * or `invalid_request`. A challenge of other schemes only (`Basic`) asked
 * for other credentials; those two errors are not cured by a new token.
 * A search for names, not a parser: anything unclear counts as a rejection.
 */
function rejectsBearer(challenge) {
  if (challenge === null) return true;
  if (!/(?:^|[\s,])bearer(?:$|[\s,])/i.test(challenge)) return false;
  return !/\berror\s*=\s*"?(?:insufficient_scope|invalid_request)\b/i.test(challenge);
}

/** Whether a `WWW-Authenticate` value carries `error="invalid_token"`. */
const saysInvalidToken = (challenge) => challenge !== null && /\berror\s*=\s*"?invalid_token\b/i.test(challenge);

/**
 * `[unauthenticated, answer]`: whether `response` says the access token was
 * not accepted, and the Response to hand on, its body unread. A body is
 * looked into through a copy (a tee), then cancelled; `wait` (the caller's
 * `{ signal }`) ends that look too, the answer then taken as fetch gave it.
 * `own`: the response is authorizedFetch's, not yet the caller's.
 */
async function inspect(response, wait, own) {
  if (!isResponse(response)) throw configError('response', 'must be a Response');
  if (response.status === 401) return [rejectsBearer(response.headers.get('www-authenticate')), response];
  // Said to be longer: not cloned at all (node-fetch's clone stalls unless both copies are read).
  if (!isJsonText(response.headers.get('content-type') ?? '')
    || Number(response.headers.get('content-length')) > MAX_ERRORS_BYTES) return [false, response];
  let reader;
  let kept = response;
  try {
    let read = response.clone();
    // Node's fetch, once aborted, cancels the body of the Response it made:
    // beside a cancelled copy, that rejects unhandled (a crash). So that
    // body is the one read here, when it is ours to read, and the copy is
    // handed on (it errors as fetch's own would). A Node stream (node-fetch)
    // is read in the copy: its abort errors only the original's.
    if (own && typeof response.body?.getReader === 'function') [read, kept] = [kept, read];
    const { body } = read;
    if (body === null || body === undefined) return [false, kept];
    reader = typeof body.getReader === 'function' ? body.getReader() : body[Symbol.asyncIterator]();
    return [await abortable(wait, () => saysUnauthenticated(reader), 'init'), kept];
  } catch {
    return [false, kept];
  } finally {
    // The copy read only: the one handed on reads on.
    if (reader !== undefined) Promise.resolve().then(() => reader.cancel?.() ?? reader.return?.()).catch(() => {});
  }
}

/** Whether `response` says the access token was not accepted (see index.d.ts). */
export async function isUnauthenticated(response) {
  return (await inspect(response))[0];
}

/** The origin of `url` (relative to the page in a browser), or undefined. */
function originOf(url) {
  try {
    return new URL(String(url), globalThis.location?.href).origin;
  } catch {
    return undefined;
  }
}

/** Whether `response` came, after a redirect, from another origin than `url`'s. */
function redirectedAway(response, url) {
  let redirected;
  let finalUrl;
  try {
    ({ redirected, url: finalUrl } = response);
  } catch {
    return false;
  }
  if (redirected !== true || typeof finalUrl !== 'string' || finalUrl === '') return false;
  const from = originOf(url);
  const to = originOf(finalUrl);
  return from !== undefined && to !== undefined && from !== to;
}

/**
 * `fetch(input, init)` with `Authorization: Bearer <fresh token>`; retried
 * once when the API rejects the token, with a token refreshed by this call
 * or by a concurrent one (never two refreshes for one rejected token). A
 * stream in `init.body` is sent once: on a rejection the session still
 * replaces the token, and the rejected response is returned. `init.signal`
 * (or a Request's signal) ends the token waits too, as fetch's own.
 */
export async function authorizedFetch(session, input, init = undefined, options = undefined) {
  const fetchImpl = fetchOf(options);
  if (!isSession(session)) throw configError('session', 'must be a UserSession (from client.session(key, store))');
  const isRequest = isRequestInput(input);
  let bearer;
  let once;
  try {
    ({ bearer, once } = bearerInit(input, isRequest, init));
  } catch {
    throw configError('init', 'could not be read (a throwing getter, a revoked Proxy, or headers that are not headers)');
  }
  let retryInput = input;
  if (isRequest) {
    let used;
    try {
      used = input.bodyUsed;
    } catch {
      throw configError('input', 'could not be read (not a real Request)');
    }
    // Checked first: clone() of a used Request throws too, without saying why.
    if (used) throw configError('input', 'is a Request whose body was already read');
    try {
      retryInput = input.clone();
    } catch {
      throw configError('input', 'could not be cloned (not a real Request)');
    }
  }
  const wait = waitOptions(input, isRequest, init);
  const token = await session.accessToken(wait);
  let first = await fetchImpl(input, bearer(token));
  // An answer from another origin after a redirect did not get the token
  // from fetch, which drops Authorization there: only a 401 that says
  // `invalid_token` (RFC 6750 §3.1 sends no error code to a request without
  // one) shows that a fetch of the caller's forwarded it after all.
  if (redirectedAway(first, isRequest ? input.url : input)) {
    if (first.status !== 401 || !saysInvalidToken(first.headers.get('www-authenticate'))) return first;
  } else {
    const [rejected, answer] = await inspect(first, wait, true);
    if (!rejected) return answer;
    first = answer;
  }
  const { accessToken } = await session.tokenRejected(token, wait);
  if (once) return first; // its body is spent: the caller sends again, with the new token
  return fetchImpl(retryInput, bearer(accessToken));
}
