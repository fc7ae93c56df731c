//! Configuration: endpoint, client authentication, leeways and defaults.

use crate::endpoint;
use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::secret::Secret;

/// Stitch's default user access-token lifetime (seconds).
pub const DEFAULT_USER_TOKEN_LIFETIME_SECS: i64 = 900;
/// Stitch's default client-token lifetime (seconds).
pub const DEFAULT_CLIENT_TOKEN_LIFETIME_SECS: i64 = 3600;
/// Stitch's default sliding refresh-token lifetime: 365 days (seconds).
pub const DEFAULT_REFRESH_TOKEN_LIFETIME_SECS: i64 = 365 * 24 * 3600;
/// Default freshness leeway (seconds).
pub const DEFAULT_LEEWAY_SECS: i64 = 60;
/// Default timeout of one token request (milliseconds).
pub const DEFAULT_TIMEOUT_MS: i64 = 30_000;
/// Largest token-endpoint answer accepted (bytes).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Default deadline of one call into the host's store (milliseconds).
pub const DEFAULT_STORE_TIMEOUT_MS: i64 = 5_000;
/// Default number of idle sessions kept in memory per client.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// How the client authenticates at the token endpoint (RFC 6749 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClientAuthMethod {
    /// `client_id` and `client_secret` in the form body (Stitch's way).
    #[default]
    ClientSecretPost,
    /// HTTP Basic with the form-encoded id and secret.
    ClientSecretBasic,
    /// A public client: `client_id` only (use with PKCE).
    None,
    /// A signed RS256 client assertion per request (RFC 7523), from an RSA
    /// key in PEM (Stitch's certificate clients). Needs the
    /// `private-key-jwt` feature.
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    /// Parses `client_secret_post`, `client_secret_basic` or `none`.
    pub fn parse(value: &str) -> Result<Self, Error> {
        match value {
            "client_secret_post" => Ok(ClientAuthMethod::ClientSecretPost),
            "client_secret_basic" => Ok(ClientAuthMethod::ClientSecretBasic),
            "none" => Ok(ClientAuthMethod::None),
            "private_key_jwt" => Ok(ClientAuthMethod::PrivateKeyJwt),
            _ => Err(Error::config(
                "client_auth",
                "must be client_secret_post, client_secret_basic, private_key_jwt or none",
            )),
        }
    }
}

/// Validated configuration of a [`crate::TokenClient`].
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) token_endpoint: String,
    pub(crate) authorization_endpoint: Option<String>,
    pub(crate) revocation_endpoint: Option<String>,
    /// The endpoints came from a discovery document: none is guessed.
    pub(crate) discovered: bool,
    pub(crate) client_id: String,
    pub(crate) client_auth: ClientAuthMethod,
    pub(crate) client_secret: Option<Secret>,
    pub(crate) audience: String,
    pub(crate) leeway_ms: u64,
    pub(crate) user_token_lifetime_secs: u64,
    pub(crate) client_token_lifetime_secs: u64,
    pub(crate) refresh_token_lifetime_ms: u64,
    pub(crate) timeout_ms: u64,
    pub(crate) store_timeout_ms: u64,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_sessions: usize,
    pub(crate) lease_ttl_ms: u64,
    pub(crate) lease_wait_ms: u64,
    #[cfg(any(feature = "private-key-jwt", target_arch = "wasm32"))]
    pub(crate) assertion_key: Option<std::sync::Arc<crate::jwt::AssertionKey>>,
    pub(crate) assertion_audience: String,
    /// Where events go, and what they show of session keys.
    pub(crate) events: crate::events::Events,
}

impl Config {
    /// Starts a configuration for `client_id` at `token_endpoint`.
    pub fn builder(
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
    ) -> ConfigBuilder {
        ConfigBuilder {
            token_endpoint: token_endpoint.into(),
            client_id: client_id.into(),
            ..ConfigBuilder::default()
        }
    }

    /// Starts a configuration for `client_id` whose endpoints come from a
    /// discovery document ([`crate::TokenClient::discover`]).
    pub fn for_client(client_id: impl Into<String>) -> ConfigBuilder {
        Self::builder(String::new(), client_id)
    }

    /// The token endpoint URL.
    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The `audience` sent with client-credentials requests.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The freshness leeway in milliseconds.
    pub fn leeway_ms(&self) -> u64 {
        self.leeway_ms
    }

    /// How the client authenticates at the token endpoint.
    pub fn client_auth_method(&self) -> ClientAuthMethod {
        self.client_auth
    }

    /// The `aud` of client assertions (`private_key_jwt`).
    pub fn assertion_audience(&self) -> &str {
        &self.assertion_audience
    }

    /// The sliding refresh-token lifetime in milliseconds.
    pub fn refresh_token_lifetime_ms(&self) -> u64 {
        self.refresh_token_lifetime_ms
    }

    /// The authorization endpoint: as configured or discovered, or else
    /// derived from a token endpoint ending in `/token` (Stitch's
    /// `/connect/token` → `/connect/authorize`).
    pub fn authorization_endpoint(&self) -> Result<String, Error> {
        self.endpoint(
            "authorization_endpoint",
            &self.authorization_endpoint,
            "authorize",
        )
    }

    /// The revocation endpoint (RFC 7009): as configured or discovered, or
    /// else derived from a token endpoint ending in `/token` (Stitch's
    /// `/connect/token` → `/connect/revocation`).
    pub fn revocation_endpoint(&self) -> Result<String, Error> {
        self.endpoint(
            "revocation_endpoint",
            &self.revocation_endpoint,
            "revocation",
        )
    }

    fn endpoint(&self, field: &str, set: &Option<String>, sibling: &str) -> Result<String, Error> {
        if let Some(url) = set {
            return Ok(url.clone());
        }
        if self.discovered {
            return Err(Error::config(
                field,
                "the provider's discovery document does not publish it",
            ));
        }
        let (path, query) = match self.token_endpoint.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.token_endpoint.as_str(), None),
        };
        let base = path.strip_suffix("/token").ok_or_else(|| {
            Error::config(
                field,
                "is required when the token endpoint does not end in /token",
            )
        })?;
        Ok(match query {
            Some(q) => format!("{base}/{sibling}?{q}"),
            None => format!("{base}/{sibling}"),
        })
    }
}

/// Builds a [`Config`]; [`ConfigBuilder::build`] validates every field.
///
/// Durations are signed so that a negative value from any language reaches
/// one validation and becomes a `config` error naming the field.
#[derive(Clone, Debug, Default)]
pub struct ConfigBuilder {
    token_endpoint: String,
    /// `token_endpoint` is Stitch's, filled in by a credentials JSON that
    /// names none: a discovery document replaces it, as an unset one.
    token_endpoint_defaulted: bool,
    client_id: String,
    authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    /// Set from a discovery document: endpoints are never guessed, and the
    /// default client authentication is one the provider supports.
    discovered_auth_methods: Option<Vec<String>>,
    client_auth: Option<ClientAuthMethod>,
    client_secret: Option<Secret>,
    audience: Option<String>,
    leeway_secs: Option<i64>,
    user_token_lifetime_secs: Option<i64>,
    client_token_lifetime_secs: Option<i64>,
    refresh_token_lifetime_secs: Option<i64>,
    /// The credentials JSON member the lifetime came from, to name in its
    /// error (none once the setter replaced it).
    refresh_token_lifetime_member: Option<&'static str>,
    timeout_ms: Option<i64>,
    store_timeout_ms: Option<i64>,
    retry: Option<RetryPolicy>,
    max_sessions: Option<usize>,
    lease_ttl_ms: Option<i64>,
    lease_wait_ms: Option<i64>,
    private_key: Option<Secret>,
    key_id: Option<String>,
    assertion_audience: Option<String>,
    events: crate::events::Events,
}

impl ConfigBuilder {
    /// The client secret (for `client_secret_post` / `client_secret_basic`).
    pub fn client_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// The client authentication method (default `client_secret_post`, or
    /// `none` when no secret is given).
    pub fn client_auth(mut self, method: ClientAuthMethod) -> Self {
        self.client_auth = Some(method);
        self
    }

    /// The RSA private key (PEM: PKCS#1 or PKCS#8, certificates alongside
    /// are fine) for `private_key_jwt`; sets that method when none is given.
    pub fn private_key_pem(mut self, pem: impl Into<Secret>) -> Self {
        self.private_key = Some(pem.into());
        self
    }

    /// The `kid` header of client assertions, when the server wants one.
    pub fn key_id(mut self, kid: impl Into<String>) -> Self {
        self.key_id = Some(kid.into());
        self
    }

    /// The `aud` of client assertions (default: the token endpoint).
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion_audience = Some(audience.into());
        self
    }

    /// The authorization endpoint for the code flow.
    pub fn authorization_endpoint(mut self, url: impl Into<String>) -> Self {
        self.authorization_endpoint = Some(url.into());
        self
    }

    /// The revocation endpoint (RFC 7009) for `revoke()`.
    pub fn revocation_endpoint(mut self, url: impl Into<String>) -> Self {
        self.revocation_endpoint = Some(url.into());
        self
    }

    /// Marks the token endpoint as the default a credentials JSON filled in.
    pub(crate) fn token_endpoint_defaulted(mut self) -> Self {
        self.token_endpoint_defaulted = true;
        self
    }

    /// Takes the endpoints from a discovery document (those set explicitly
    /// win), and picks a client authentication the provider supports when
    /// none is given.
    pub fn provider(mut self, metadata: &crate::ProviderMetadata) -> Self {
        if self.token_endpoint.is_empty() || self.token_endpoint_defaulted {
            self.token_endpoint = metadata.token_endpoint.clone();
            self.token_endpoint_defaulted = false;
        }
        self.authorization_endpoint = self
            .authorization_endpoint
            .or_else(|| metadata.authorization_endpoint.clone());
        self.revocation_endpoint = self
            .revocation_endpoint
            .or_else(|| metadata.revocation_endpoint.clone());
        self.discovered_auth_methods = Some(metadata.token_endpoint_auth_methods.clone());
        self
    }

    /// The `audience` of client-credentials requests (default: the token endpoint).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Refresh this many seconds before expiry (default 60, capped per token
    /// at half its lifetime).
    pub fn leeway_secs(mut self, secs: i64) -> Self {
        self.leeway_secs = Some(secs);
        self
    }

    /// Lifetime assumed for user tokens without `expires_in` (default 900 s).
    pub fn user_token_lifetime_secs(mut self, secs: i64) -> Self {
        self.user_token_lifetime_secs = Some(secs);
        self
    }

    /// Lifetime assumed for client tokens without `expires_in` (default 3600 s).
    pub fn client_token_lifetime_secs(mut self, secs: i64) -> Self {
        self.client_token_lifetime_secs = Some(secs);
        self
    }

    /// Sliding refresh-token lifetime (default 365 days).
    pub fn refresh_token_lifetime_secs(mut self, secs: i64) -> Self {
        self.refresh_token_lifetime_secs = Some(secs);
        self.refresh_token_lifetime_member = None;
        self
    }

    /// The lifetime read from the credentials JSON's `member`: an error in
    /// it names that member, unless the setter replaces it first.
    pub(crate) fn refresh_token_lifetime_from(mut self, member: &'static str, secs: i64) -> Self {
        self.refresh_token_lifetime_secs = Some(secs);
        self.refresh_token_lifetime_member = Some(member);
        self
    }

    /// Timeout of one token request in milliseconds (default 30 000).
    pub fn timeout_ms(mut self, ms: i64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Deadline of every call into the host's store (load, save, lease,
    /// compare-and-swap) in milliseconds (default 5 000). A call that has
    /// not answered by then is abandoned and reported as `storage`.
    pub fn store_timeout_ms(mut self, ms: i64) -> Self {
        self.store_timeout_ms = Some(ms);
        self
    }

    /// The retry policy for 5xx, 429 and unsent requests.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// How many idle sessions the client keeps in memory (default 100 000).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = Some(max);
        self
    }

    /// How long a fleet refresh lease lasts (ms; default: request timeout +
    /// retry budget + the larger of 10 s and twice `store_timeout_ms` + 5
    /// s, and at least three times `store_timeout_ms` + 5 s). It must be
    /// longer than `timeout_ms` + the retry budget + 1 s (the HTTP grace) +
    /// `store_timeout_ms`: a whole refresh with its retries and the save of
    /// the rotated record, so that no other process refreshes while the
    /// holder's request may still land or its save is under way. The
    /// default also covers the renewals around a rotated save that fails at
    /// its deadline; a shorter TTL leaves them to luck.
    pub fn lease_ttl_ms(mut self, ms: i64) -> Self {
        self.lease_ttl_ms = Some(ms);
        self
    }

    /// How long a process waits for another's refresh lease before giving
    /// up with `conflict` (ms; default: the lease TTL + 5 s).
    pub fn lease_wait_ms(mut self, ms: i64) -> Self {
        self.lease_wait_ms = Some(ms);
        self
    }

    /// Where events go (refreshes, failures, re-links, saves, lease waits):
    /// see [`crate::Event`]. The sink runs inline and must return quickly;
    /// a panic in it never affects the refresh.
    pub fn on_event(mut self, sink: std::sync::Arc<dyn crate::EventSink>) -> Self {
        self.events.sink = Some(sink);
        self
    }

    /// What events show of session keys (default [`crate::EventKeys::Full`]).
    pub fn event_keys(mut self, keys: crate::EventKeys) -> Self {
        self.events.keys = keys;
        self
    }

    /// The timeout of one request as configured so far (for discovery,
    /// before the configuration is built).
    pub(crate) fn request_timeout_ms(&self) -> u64 {
        self.timeout_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .filter(|ms| (1..=600_000).contains(ms))
            .unwrap_or(DEFAULT_TIMEOUT_MS as u64)
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config, Error> {
        endpoint::validate("token_endpoint", &self.token_endpoint)?;
        if let Some(url) = &self.authorization_endpoint {
            endpoint::validate("authorization_endpoint", url)?;
        }
        if let Some(url) = &self.revocation_endpoint {
            endpoint::validate("revocation_endpoint", url)?;
        }
        if self.client_id.is_empty() {
            return Err(Error::config("client_id", "must not be empty"));
        }
        let secret = self.client_secret.filter(|s| !s.is_empty());
        let private_key = self.private_key.filter(|s| !s.is_empty());
        let client_auth = match (self.client_auth, &secret, &private_key) {
            (_, Some(_), Some(_)) => {
                return Err(Error::config(
                    "private_key",
                    "give either a client secret or a private key, not both",
                ))
            }
            (None | Some(ClientAuthMethod::PrivateKeyJwt), None, Some(_)) => {
                ClientAuthMethod::PrivateKeyJwt
            }
            (Some(ClientAuthMethod::PrivateKeyJwt), _, None) => {
                return Err(Error::config(
                    "private_key",
                    "is required for private_key_jwt",
                ))
            }
            (Some(_), None, Some(_)) => {
                return Err(Error::config(
                    "client_auth",
                    "a private key goes with private_key_jwt",
                ))
            }
            (Some(ClientAuthMethod::None), Some(_), None) => {
                return Err(Error::config(
                    "client_secret",
                    "must not be set when client_auth is none",
                ))
            }
            (Some(ClientAuthMethod::None), None, None) | (None, None, None) => {
                ClientAuthMethod::None
            }
            (Some(method), Some(_), None) => method,
            (None, Some(_), None) => match &self.discovered_auth_methods {
                // Discovery's default is client_secret_basic (RFC 8414 §2).
                Some(m) if !m.iter().any(|m| m == "client_secret_post") => {
                    ClientAuthMethod::ClientSecretBasic
                }
                _ => ClientAuthMethod::ClientSecretPost,
            },
            (Some(_), None, None) => {
                return Err(Error::config(
                    "client_secret",
                    "is required for client_secret_post and client_secret_basic",
                ))
            }
        };
        #[cfg(any(feature = "private-key-jwt", target_arch = "wasm32"))]
        let assertion_key = match &private_key {
            Some(pem) => Some(std::sync::Arc::new(crate::jwt::AssertionKey::from_pem(
                pem.expose(),
                self.key_id.clone(),
            )?)),
            None => None,
        };
        #[cfg(not(any(feature = "private-key-jwt", target_arch = "wasm32")))]
        if private_key.is_some() {
            return Err(Error::config(
                "client_auth",
                "private_key_jwt is not in this build (Rust: the private-key-jwt feature)",
            ));
        }
        let assertion_audience = self
            .assertion_audience
            .unwrap_or_else(|| self.token_endpoint.clone());
        // An empty `aud` is a client assertion no server accepts, refused
        // only at the first request (the write-ahead saved for nothing).
        if assertion_audience.is_empty() {
            return Err(Error::config("assertion_audience", "must not be empty"));
        }
        let audience = self.audience.unwrap_or_else(|| self.token_endpoint.clone());
        if audience.is_empty() {
            return Err(Error::config("audience", "must not be empty"));
        }
        let leeway = non_negative("leeway_secs", self.leeway_secs, DEFAULT_LEEWAY_SECS)?;
        if leeway > TEN_YEARS_SECS {
            return Err(Error::config("leeway_secs", "must be at most ten years"));
        }
        let user = lifetime_secs(
            "user_token_lifetime_secs",
            self.user_token_lifetime_secs
                .unwrap_or(DEFAULT_USER_TOKEN_LIFETIME_SECS),
        )?;
        let client = lifetime_secs(
            "client_token_lifetime_secs",
            self.client_token_lifetime_secs
                .unwrap_or(DEFAULT_CLIENT_TOKEN_LIFETIME_SECS),
        )?;
        let refresh = lifetime_secs(
            (self.refresh_token_lifetime_member).unwrap_or("refresh_token_lifetime_secs"),
            self.refresh_token_lifetime_secs
                .unwrap_or(DEFAULT_REFRESH_TOKEN_LIFETIME_SECS),
        )?;
        let timeout = positive("timeout_ms", self.timeout_ms, DEFAULT_TIMEOUT_MS)?;
        if timeout > 600_000 {
            return Err(Error::config(
                "timeout_ms",
                "must be at most 600000 (10 minutes)",
            ));
        }
        let store_timeout = positive(
            "store_timeout_ms",
            self.store_timeout_ms,
            DEFAULT_STORE_TIMEOUT_MS,
        )?;
        if store_timeout > 600_000 {
            return Err(Error::config(
                "store_timeout_ms",
                "must be at most 600000 (10 minutes)",
            ));
        }
        let retry = self.retry.unwrap_or_default();
        retry.validate()?;
        let held = lease_held_ms(timeout, retry.budget_ms, store_timeout);
        let lease_ttl = positive(
            "lease_ttl_ms",
            self.lease_ttl_ms,
            default_lease_ttl_ms(timeout, retry.budget_ms, store_timeout) as i64,
        )?;
        if lease_ttl <= held {
            return Err(Error::config(
                "lease_ttl_ms",
                format!(
                    "must be longer than timeout_ms + retry.budget_ms + {} ms (the grace of an \
                     HTTP request past its timeout) + store_timeout_ms, here {held} ms: the \
                     lease must outlive a whole refresh with its retries and the save of the \
                     rotated refresh token",
                    crate::exchange::HTTP_GRACE_MS
                ),
            ));
        }
        if lease_ttl > MAX_LEASE_MS {
            return Err(Error::config(
                "lease_ttl_ms",
                "must be at most 3600000 (one hour)",
            ));
        }
        let lease_wait = positive(
            "lease_wait_ms",
            self.lease_wait_ms,
            (lease_ttl + 5_000) as i64,
        )?;
        if lease_wait > MAX_LEASE_MS + 5_000 {
            return Err(Error::config(
                "lease_wait_ms",
                "must be at most 3605000 (one hour and 5 s)",
            ));
        }
        let max_sessions = self.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
        if max_sessions == 0 {
            return Err(Error::config("max_sessions", "must be at least 1"));
        }
        Ok(Config {
            token_endpoint: self.token_endpoint,
            authorization_endpoint: self.authorization_endpoint,
            revocation_endpoint: self.revocation_endpoint,
            discovered: self.discovered_auth_methods.is_some(),
            client_id: self.client_id,
            client_auth,
            client_secret: secret,
            audience,
            leeway_ms: leeway * 1000,
            user_token_lifetime_secs: user,
            client_token_lifetime_secs: client,
            refresh_token_lifetime_ms: refresh * 1000,
            timeout_ms: timeout,
            store_timeout_ms: store_timeout,
            retry,
            max_sessions,
            lease_ttl_ms: lease_ttl,
            lease_wait_ms: lease_wait,
            #[cfg(any(feature = "private-key-jwt", target_arch = "wasm32"))]
            assertion_key,
            assertion_audience,
            events: self.events,
        })
    }
}

/// How long a lease holder may still need the lease once it is about to
/// send (ms): the last attempt may start just before the retry budget ends
/// and run for a whole timeout plus the HTTP grace, and the rotated record
/// is saved after the answer, within one store deadline. Another process
/// that takes the lease before that save lands would send the spent
/// refresh token (a revoked grant).
pub(crate) fn lease_held_ms(timeout_ms: u64, budget_ms: u64, store_timeout_ms: u64) -> u64 {
    timeout_ms + budget_ms + crate::exchange::HTTP_GRACE_MS + store_timeout_ms
}

/// The lease TTL when none is set (ms): timeout + retry budget + the
/// larger of 10 s and twice the store deadline + 5 s. That is 65 s with the
/// defaults, and always a few seconds more than [`lease_held_ms`] plus one
/// store deadline: should the rotated record's save fail at its deadline,
/// the renewal that keeps the lease while it is saved again
/// ([`crate::fleet::keep_stranded`]) may take one more deadline to land,
/// and a lease lapsed by then lets another process send the spent refresh
/// token. It is also longer than three store deadlines and 5 s: each later
/// save of that record is a renewal, the save and the next renewal, each up
/// to a deadline (this decides when the store deadline is longer than the
/// request's timeout and retry budget). A user who only raises
/// `store_timeout_ms` gets a longer lease, not an error.
fn default_lease_ttl_ms(timeout_ms: u64, budget_ms: u64, store_timeout_ms: u64) -> u64 {
    let refresh = timeout_ms + budget_ms + 10_000u64.max(2 * store_timeout_ms + 5_000);
    refresh.max(3 * store_timeout_ms + 5_000)
}

fn non_negative(field: &str, value: Option<i64>, default: i64) -> Result<u64, Error> {
    let value = value.unwrap_or(default);
    u64::try_from(value).map_err(|_| Error::config(field, "must not be negative"))
}

/// The longest fleet lease: a process that dies holding one keeps the
/// others from refreshing that user for this long.
const MAX_LEASE_MS: u64 = 3_600_000;

fn positive(field: &str, value: Option<i64>, default: i64) -> Result<u64, Error> {
    match non_negative(field, value, default)? {
        0 => Err(Error::config(field, "must be greater than zero")),
        v => Ok(v),
    }
}

/// The longest lifetime or leeway accepted.
const TEN_YEARS_SECS: u64 = 10 * 366 * 24 * 3600;

/// A token lifetime in seconds: more than zero, at most ten years; a
/// `config` error naming `field` otherwise.
pub(crate) fn lifetime_secs(field: &str, secs: i64) -> Result<u64, Error> {
    match positive(field, Some(secs), 0)? {
        secs if secs > TEN_YEARS_SECS => Err(Error::config(field, "must be at most ten years")),
        secs => Ok(secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "https://secure.stitch.money/connect/token";

    fn field_of(result: Result<Config, Error>) -> String {
        match result.unwrap_err() {
            Error::Config { field, .. } => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn stitch_defaults() {
        let c = Config::builder(EP, "client")
            .client_secret("s")
            .build()
            .unwrap();
        assert_eq!(c.client_auth, ClientAuthMethod::ClientSecretPost);
        assert_eq!(c.audience(), EP);
        assert_eq!(c.leeway_ms(), 60_000);
        assert_eq!(c.user_token_lifetime_secs, 900);
        assert_eq!(c.client_token_lifetime_secs, 3600);
        assert_eq!(c.refresh_token_lifetime_ms(), 365 * 24 * 3600 * 1000);
        assert_eq!(c.lease_ttl_ms, 30_000 + 20_000 + 15_000);
        assert_eq!(c.lease_wait_ms, 70_000);
        assert_eq!(
            c.authorization_endpoint().unwrap(),
            "https://secure.stitch.money/connect/authorize"
        );
    }

    #[test]
    fn no_secret_means_a_public_client() {
        let c = Config::builder(EP, "client").build().unwrap();
        assert_eq!(c.client_auth, ClientAuthMethod::None);
    }

    #[test]
    fn invalid_values_name_their_field() {
        let b = || Config::builder(EP, "client").client_secret("s");
        assert_eq!(field_of(b().leeway_secs(-1).build()), "leeway_secs");
        assert_eq!(field_of(b().timeout_ms(0).build()), "timeout_ms");
        assert_eq!(
            field_of(b().store_timeout_ms(0).build()),
            "store_timeout_ms"
        );
        assert_eq!(
            field_of(b().store_timeout_ms(600_001).build()),
            "store_timeout_ms"
        );
        assert_eq!(
            field_of(b().user_token_lifetime_secs(-5).build()),
            "user_token_lifetime_secs"
        );
        assert_eq!(
            field_of(b().refresh_token_lifetime_secs(0).build()),
            "refresh_token_lifetime_secs"
        );
        assert_eq!(field_of(b().audience("").build()), "audience");
        assert_eq!(
            field_of(b().assertion_audience("").build()),
            "assertion_audience"
        );
        assert_eq!(field_of(b().max_sessions(0).build()), "max_sessions");
        assert_eq!(field_of(b().lease_ttl_ms(30_000).build()), "lease_ttl_ms");
        // timeout 30 s + budget 20 s + HTTP grace 1 s + store deadline 5 s.
        assert_eq!(field_of(b().lease_ttl_ms(56_000).build()), "lease_ttl_ms");
        assert!(b().lease_ttl_ms(56_001).build().is_ok());
        assert_eq!(field_of(b().lease_wait_ms(-1).build()), "lease_wait_ms");
        // The largest values are refused naming the field that was set.
        assert_eq!(field_of(b().lease_ttl_ms(i64::MAX).build()), "lease_ttl_ms");
        assert_eq!(
            field_of(b().lease_ttl_ms(3_600_001).build()),
            "lease_ttl_ms"
        );
        assert!(b().lease_ttl_ms(3_600_000).build().is_ok());
        assert_eq!(
            field_of(b().lease_wait_ms(i64::MAX).build()),
            "lease_wait_ms"
        );
        assert!(b().lease_wait_ms(3_605_000).build().is_ok());
        assert_eq!(
            field_of(Config::builder("http://example.com/t", "c").build()),
            "token_endpoint"
        );
        assert_eq!(field_of(Config::builder(EP, "").build()), "client_id");
        assert_eq!(
            field_of(
                Config::builder(EP, "c")
                    .client_auth(ClientAuthMethod::ClientSecretBasic)
                    .build()
            ),
            "client_secret"
        );
        assert_eq!(
            field_of(
                Config::builder(EP, "c")
                    .client_secret("s")
                    .client_auth(ClientAuthMethod::None)
                    .build()
            ),
            "client_secret"
        );
    }

    #[test]
    fn the_lease_must_outlive_the_request_and_the_rotated_save() {
        let b = || Config::builder(EP, "client").client_secret("s");
        let error = b()
            .store_timeout_ms(10_000)
            .lease_ttl_ms(60_000)
            .build()
            .unwrap_err();
        let text = error.to_string();
        for field in [
            "lease_ttl_ms",
            "timeout_ms",
            "retry.budget_ms",
            "store_timeout_ms",
        ] {
            assert!(text.contains(field), "{field} named in: {text}");
        }
        assert!(text.contains("61000 ms"), "{text}");
        assert!(b()
            .store_timeout_ms(10_000)
            .lease_ttl_ms(61_001)
            .build()
            .is_ok());
    }

    #[test]
    fn a_defaulted_lease_grows_with_the_store_deadline() {
        let b = || Config::builder(EP, "client").client_secret("s");
        // Raising only the store deadline lengthens the default lease.
        let c = b().store_timeout_ms(10_000).build().unwrap();
        assert_eq!(c.lease_ttl_ms, 30_000 + 20_000 + 25_000);
        // It covers the save of the rotated record and a renewal after it.
        assert!(c.lease_ttl_ms > lease_held_ms(30_000, 20_000, 10_000) + 10_000);
        assert_eq!(c.lease_wait_ms, c.lease_ttl_ms + 5_000);
        // The largest deadlines still give a valid default.
        let c = b()
            .timeout_ms(600_000)
            .store_timeout_ms(600_000)
            .retry(RetryPolicy {
                budget_ms: 600_000,
                ..RetryPolicy::default()
            })
            .build()
            .unwrap();
        assert!(c.lease_ttl_ms > lease_held_ms(600_000, 600_000, 600_000) + 600_000);
        // A store deadline longer than the request's timeout and budget:
        // three deadlines (a renewal, a save, the next renewal) and 5 s.
        let c = b()
            .timeout_ms(1_000)
            .retry(RetryPolicy {
                budget_ms: 0,
                ..RetryPolicy::default()
            })
            .store_timeout_ms(60_000)
            .build()
            .unwrap();
        assert_eq!(c.lease_ttl_ms, 185_000);
        // A short store deadline keeps the 10 s margin.
        let c = b().store_timeout_ms(100).build().unwrap();
        assert_eq!(c.lease_ttl_ms, 60_000);
    }

    #[test]
    fn auth_methods_parse_from_their_names() {
        assert_eq!(
            ClientAuthMethod::parse("client_secret_basic").unwrap(),
            ClientAuthMethod::ClientSecretBasic
        );
        assert_eq!(
            ClientAuthMethod::parse("bogus")
                .unwrap_err()
                .code()
                .as_str(),
            "config"
        );
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let c = Config::builder(EP, "client")
            .client_secret("SENTINEL-client-secret-123")
            .build()
            .unwrap();
        assert!(!format!("{c:?}").contains("SENTINEL"));
    }
}
