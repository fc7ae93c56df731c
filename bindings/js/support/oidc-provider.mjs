// A real, independently written OAuth 2.0 / OpenID Connect server for interop
// tests: npm `oidc-provider` 9.x on 127.0.0.1 (a free port), plain http.
//
// What matters for freshtoken:
// - refresh-token rotation is ON (`rotateRefreshToken: true`): every refresh
//   consumes the refresh token and issues a new one; presenting a consumed one
//   again answers 400 invalid_grant AND revokes the whole grant (its access
//   tokens, its live refresh token, the grant itself);
// - refresh tokens are issued for `offline_access` (requested with
//   `prompt=consent`, as oidc-provider requires) to all three clients;
// - PKCE (S256) is required for every client;
// - client_credentials is enabled for the two confidential clients, scopes
//   `api:read api:write`. An `audience` parameter (Stitch sends one) is
//   accepted: oidc-provider keeps only the parameters it knows for a grant and
//   drops the rest without an error, so no configuration is needed. The
//   counting middleware records the last one seen (`lastAudience()`);
// - logins are scripted through oidc-provider's own dev interactions (login
//   form with any account id, then the consent form) over HTTP with a small
//   cookie jar; no browser. `authorize(url)` does the same for an
//   authorization URL built elsewhere (e.g. by the client under test).
//
// Nothing here prints a token.

import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

export const REDIRECT_URI = 'http://127.0.0.1/callback';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/**
 * A per-provider, unbounded in-memory adapter (oidc-provider's own in-memory
 * adapter is an LRU of 1000 entries, which a long suite could overflow and so
 * silently lose grants).
 */
function createAdapterFactory() {
  const store = new Map(); // `${model}:${id}` -> { payload, expiresAt }
  const grantIndex = new Map(); // grantId -> Set of store keys
  const uidIndex = new Map(); // session uid -> id
  const userCodeIndex = new Map(); // user code -> id
  const grantable = new Set([
    'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
    'BackchannelAuthenticationRequest', 'PreAuthorizedCode',
  ]);

  const live = (key) => {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  };

  return class MapAdapter {
    constructor(model) {
      this.model = model;
    }

    key(id) {
      return `${this.model}:${id}`;
    }

    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
      store.set(key, { payload, expiresAt });
      if (this.model === 'Session' && payload.uid) uidIndex.set(payload.uid, id);
      if (payload.userCode) userCodeIndex.set(payload.userCode, id);
      if (grantable.has(this.model) && payload.grantId) {
        if (!grantIndex.has(payload.grantId)) grantIndex.set(payload.grantId, new Set());
        grantIndex.get(payload.grantId).add(key);
      }
    }

    async find(id) {
      return live(this.key(id));
    }

    async findByUid(uid) {
      const id = uidIndex.get(uid);
      return id === undefined ? undefined : this.find(id);
    }

    async findByUserCode(userCode) {
      const id = userCodeIndex.get(userCode);
      return id === undefined ? undefined : this.find(id);
    }

    async consume(id) {
      const payload = live(this.key(id));
      if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    }

    async destroy(id) {
      const key = this.key(id);
      const payload = store.get(key)?.payload;
      store.delete(key);
      if (payload?.grantId) grantIndex.get(payload.grantId)?.delete(key);
    }

    async revokeByGrantId(grantId) {
      for (const key of grantIndex.get(grantId) ?? []) store.delete(key);
      grantIndex.delete(grantId);
    }
  };
}

function pkcePair() {
  const verifier = b64url(randomBytes(32)); // 43 chars
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  return { verifier, challenge };
}

/** A tiny cookie jar for one host: honours Path and deletion, ignores Domain/Secure. */
class CookieJar {
  #cookies = new Map(); // `${name}\0${path}` -> { name, value, path }

  store(response) {
    for (const header of response.headers.getSetCookie()) {
      const [pair, ...attrs] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = '/';
      let expired = value === '';
      for (const attr of attrs) {
        const [k, v = ''] = attr.split('=');
        const key = k.trim().toLowerCase();
        if (key === 'path') path = v.trim() || '/';
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
      }
      const id = `${name}\0${path}`;
      if (expired) this.#cookies.delete(id);
      else this.#cookies.set(id, { name, value, path });
    }
  }

  header(url) {
    const { pathname } = new URL(url);
    const matching = [...this.#cookies.values()].filter(({ path }) => (
      pathname === path
      || (pathname.startsWith(path) && (path.endsWith('/') || pathname[path.length] === '/'))
    ));
    // Longer paths first (RFC 6265 §5.4).
    matching.sort((a, b) => b.path.length - a.path.length);
    return matching.map(({ name, value }) => `${name}=${value}`).join('; ');
  }
}

/**
 * Starts oidc-provider on 127.0.0.1 and resolves once it listens.
 *
 * @param {object} [options]
 * @param {number} [options.accessTokenTtl=900]        user access-token lifetime (s)
 * @param {number} [options.clientCredentialsTtl=3600] client-credentials token lifetime (s)
 */
export async function startOidcProvider({ accessTokenTtl = 900, clientCredentialsTtl = 3600 } = {}) {
  // Listen first so the issuer can carry the real port; the provider answers once built.
  let handler = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = createServer((req, res) => handler(req, res));
  // Koa keeps sockets alive: make sure close() does not wait on idle ones.
  server.keepAliveTimeout = 1000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const clients = {
    confidential: {
      clientId: 'confidential-client',
      // Characters that must be form-urlencoded in a body.
      clientSecret: `post-${b64url(randomBytes(12))}+/=&%:`,
    },
    basic: {
      clientId: 'basic-client',
      // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64; a
      // client that skips that turns '+' into ' ' and '%..' into garbage here.
      clientSecret: `basic-${b64url(randomBytes(12))}+/=&%:`,
    },
    public: {
      clientId: 'public-client',
    },
    // private_key_jwt with the repository's throwaway test key
    // (tests/fixtures/client-cert-and-key.pem holds the private half).
    jwt: {
      clientId: 'jwt-client',
      privateKeyPem: readFileSync(new URL('../../../tests/fixtures/client-cert-and-key.pem', import.meta.url), 'utf8'),
    },
  };

  const userScopes = 'openid offline_access api';
  const clientScopes = 'api:read api:write';
  const registered = [
    {
      client_id: clients.confidential.clientId,
      client_secret: clients.confidential.clientSecret,
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
      scope: `${userScopes} ${clientScopes}`,
    },
    {
      client_id: clients.basic.clientId,
      client_secret: clients.basic.clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
      scope: `${userScopes} ${clientScopes}`,
    },
    {
      client_id: clients.jwt.clientId,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'RS256',
      jwks: {
        keys: [{
          ...createPublicKey(clients.jwt.privateKeyPem).export({ format: 'jwk' }),
          kid: 'freshtoken-test', alg: 'RS256', use: 'sig',
        }],
      },
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
      scope: `${userScopes} ${clientScopes}`,
    },
    {
      client_id: clients.public.clientId,
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
      scope: userScopes,
    },
  ];

  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

  const provider = new Provider(issuer, {
    adapter: createAdapterFactory(),
    clients: registered,
    jwks: { keys: [signingKey] },
    cookies: { keys: [b64url(randomBytes(32))] },
    scopes: ['openid', 'offline_access', 'api', 'api:read', 'api:write'],
    claims: { openid: ['sub'] },
    findAccount: async (_ctx, accountId) => ({
      accountId,
      claims: async () => ({ sub: accountId }),
    }),
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
    },
    // Single-use refresh tokens; reuse of a consumed one revokes the grant.
    rotateRefreshToken: true,
    // A refresh token whenever the client may use the refresh_token grant and
    // offline_access was granted (oidc-provider drops offline_access from an
    // authorization request unless it carries prompt=consent).
    issueRefreshToken: async (_ctx, client, code) => (
      client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access')
    ),
    pkce: { required: () => true },
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: clientCredentialsTtl,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 365 * 24 * 60 * 60,
      Grant: 365 * 24 * 60 * 60,
      Session: 24 * 60 * 60,
      Interaction: 60 * 60,
    },
  });

  const tokenPath = new URL(provider.urlFor('token')).pathname;
  let tokenRequests = 0;
  const byGrant = {};
  let lastAudience = null;
  provider.use(async (ctx, next) => {
    if (ctx.method !== 'POST' || ctx.path !== tokenPath) {
      await next();
      return;
    }
    tokenRequests += 1;
    try {
      await next();
    } finally {
      // oidc-provider has parsed the form body by now (unless it was unparseable).
      const body = ctx.oidc?.body;
      const grant = typeof body?.grant_type === 'string' ? body.grant_type : '(none)';
      byGrant[grant] = (byGrant[grant] ?? 0) + 1;
      if (grant === 'client_credentials') {
        lastAudience = typeof body?.audience === 'string' ? body.audience : null;
      }
    }
  });

  handler = provider.callback();

  const tokenEndpoint = provider.urlFor('token');
  const authorizationEndpoint = provider.urlFor('authorization');

  /**
   * Drives an authorization request URL (built here or by the code under
   * test) through oidc-provider's dev interactions — login as `accountId`,
   * then consent — and resolves to the parameters of the redirect back to
   * REDIRECT_URI (`code` and `state`, or `error` and `error_description`).
   */
  async function authorize(authorizationUrl, { accountId = 'test-user' } = {}) {
    const jar = new CookieJar();
    const request = async (url, init = {}) => {
      const headers = { ...(init.headers ?? {}) };
      const cookie = jar.header(url);
      if (cookie) headers.cookie = cookie;
      const res = await fetch(url, { ...init, headers, redirect: 'manual' });
      jar.store(res);
      return res;
    };

    // Follow redirects by hand; fill in each dev-interaction form on the way.
    let url = String(authorizationUrl);
    const submitted = [];
    for (let step = 0; step < 20; step += 1) {
      const res = await request(url);
      if (res.status >= 300 && res.status < 400) {
        await res.arrayBuffer();
        const next = new URL(res.headers.get('location'), url);
        if (next.href.startsWith(REDIRECT_URI)) return next.searchParams;
        url = next.href;
        continue;
      }
      const html = await res.text();
      if (res.status !== 200) {
        throw new Error(`authorization step ${new URL(url).pathname} answered HTTP ${res.status}`);
      }
      const action = html.match(/<form[^>]*action="([^"]+)"/)?.[1];
      const prompt = html.match(/name="prompt" value="([^"]+)"/)?.[1];
      if (!action || !prompt) throw new Error(`no dev-interaction form at ${new URL(url).pathname}`);
      const form = prompt === 'login'
        ? { prompt, login: accountId, password: 'any' }
        : { prompt };
      submitted.push(prompt);
      const post = await request(new URL(action.replace(/&amp;/g, '&'), url).href, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form).toString(),
      });
      await post.arrayBuffer();
      if (post.status < 300 || post.status >= 400) {
        throw new Error(`dev interaction ${prompt} answered HTTP ${post.status}`);
      }
      url = new URL(post.headers.get('location'), url).href;
    }
    throw new Error(`authorization did not finish (interactions: ${submitted.join(', ')})`);
  }

  async function obtainTokens({ client = 'confidential', scope = userScopes, accountId = 'test-user' } = {}) {
    const creds = clients[client];
    if (!creds) throw new TypeError(`obtainTokens: unknown client kind ${client}`);
    const { verifier, challenge } = pkcePair();
    const state = b64url(randomBytes(12));
    const nonce = b64url(randomBytes(12));

    const auth = new URL(authorizationEndpoint);
    auth.search = new URLSearchParams({
      client_id: creds.clientId,
      response_type: 'code',
      redirect_uri: REDIRECT_URI,
      scope,
      state,
      nonce,
      prompt: 'consent',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    }).toString();

    const params = await authorize(auth, { accountId });
    const error = params.get('error');
    if (error) throw new Error(`authorization failed: ${error} (${params.get('error_description')})`);
    if (params.get('state') !== state) throw new Error('authorization response state mismatch');
    const code = params.get('code');
    if (!code) throw new Error('authorization response carries no code');

    const body = new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: verifier,
    });
    const headers = { 'content-type': 'application/x-www-form-urlencoded' };
    if (client === 'basic') {
      headers.authorization = basicAuthorization(creds.clientId, creds.clientSecret);
    } else {
      body.set('client_id', creds.clientId);
      if (creds.clientSecret) body.set('client_secret', creds.clientSecret);
    }
    const res = await fetch(tokenEndpoint, { method: 'POST', headers, body: body.toString() });
    const json = await res.json();
    if (res.status !== 200) {
      throw new Error(`code exchange answered HTTP ${res.status}: ${json.error} (${json.error_description})`);
    }
    return json;
  }

  async function grantAlive(refreshToken) {
    // Looks the token up in storage; never sends it to the token endpoint.
    const rt = await provider.RefreshToken.find(refreshToken, { ignoreExpiration: true });
    if (!rt?.grantId) return false;
    const grant = await provider.Grant.find(rt.grantId, { ignoreExpiration: true });
    return Boolean(grant);
  }

  return {
    issuer,
    tokenEndpoint,
    authorizationEndpoint,
    port,
    clients,
    /** The oidc-provider instance itself, for tests that need more. */
    provider,
    /** The userinfo endpoint (`/me`; needs an access token with the `openid` scope). */
    userinfoEndpoint: provider.urlFor('userinfo'),
    authorize,
    obtainTokens,
    tokenRequests: () => tokenRequests,
    tokenRequestsByGrant: () => ({ ...byGrant }),
    /** The `audience` form parameter of the last client_credentials request, or null. */
    lastAudience: () => lastAudience,
    grantAlive,
    close() {
      return new Promise((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}

/** `Authorization: Basic` per RFC 6749 §2.3.1: id and secret form-urlencoded, then base64. */
export function basicAuthorization(clientId, clientSecret) {
  const enc = (s) => new URLSearchParams({ s }).toString().slice(2);
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString('base64')}`;
}
