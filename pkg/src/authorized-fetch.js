// fetch with the session's Bearer token; on HTTP 401, or a GraphQL answer
// whose errors[].message starts with "UNAUTHENTICATED" (Stitch's "Token is
// expired or malformed"), it forces one refresh and retries once.

const withBearer = (init, token) => {
  const headers = new Headers(init?.headers);
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
 * once after a forced refresh when the API rejects the token. A request body
 * must be re-sendable (a string, Blob, FormData, …, not a stream).
 */
export async function authorizedFetch(session, input, init = undefined, { fetch: fetchImpl = globalThis.fetch } = {}) {
  const first = await fetchImpl(input, withBearer(init, await session.accessToken()));
  if (!(await isUnauthenticated(first))) return first;
  const { accessToken } = await session.refresh();
  return fetchImpl(input, withBearer(init, accessToken));
}
