// fetch with the session's Bearer token; on HTTP 401, or a GraphQL answer
// whose errors[].message starts with "UNAUTHENTICATED" (Stitch's "Token is
// expired or malformed"), it refreshes once — unless another caller already
// did — and retries once.

/** `init` with `Authorization: Bearer <token>`, keeping a Request's own headers. */
const withBearer = (input, init, token) => {
  const base = init?.headers ?? (input instanceof Request ? input.headers : undefined);
  const headers = new Headers(base);
  headers.set('Authorization', `Bearer ${token}`);
  return { ...init, headers };
};

/** Whether `response` says the access token was not accepted. */
export async function isUnauthenticated(response) {
  if (response.status === 401) return true;
  const type = response.headers.get('content-type') ?? '';
  if (!type.includes('json')) return false;
  try {
    const body = await response.clone().json();
    const errors = Array.isArray(body?.errors) ? body.errors : [];
    return errors.some((e) => typeof e?.message === 'string' && e.message.startsWith('UNAUTHENTICATED'));
  } catch {
    return false;
  }
}

/**
 * `fetch(input, init)` with `Authorization: Bearer <fresh token>`; retried
 * once when the API rejects the token, with a token refreshed by this call
 * or by a concurrent one (never two refreshes for one rejected token). A
 * request body must be re-sendable (a string, Blob, FormData or a Request,
 * not a stream in `init`).
 */
export async function authorizedFetch(session, input, init = undefined, { fetch: fetchImpl = globalThis.fetch } = {}) {
  const retryInput = input instanceof Request ? input.clone() : input;
  const token = await session.accessToken();
  const first = await fetchImpl(input, withBearer(input, init, token));
  if (!(await isUnauthenticated(first))) return first;
  const { accessToken } = await session.tokenRejected(token);
  return fetchImpl(retryInput, withBearer(retryInput, init, accessToken));
}
