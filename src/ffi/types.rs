//! Records and enums crossing the FFI, and their conversions.

use crate::{Error, ReauthReason, RetryPolicy};

/// Why the user must authorize again (same strings as the core's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ReauthorizationReason {
    /// The server rejected the refresh token.
    InvalidGrant,
    /// The sliding lifetime passed; nothing was sent.
    RefreshExpired,
    /// An answer was lost after the server may have rotated the token.
    LostRotation,
    /// No refresh token is stored.
    NoRefreshToken,
    /// The session was revoked (`revoke()`).
    Revoked,
}

impl From<ReauthReason> for ReauthorizationReason {
    fn from(reason: ReauthReason) -> Self {
        match reason {
            ReauthReason::InvalidGrant => ReauthorizationReason::InvalidGrant,
            ReauthReason::RefreshExpired => ReauthorizationReason::RefreshExpired,
            ReauthReason::LostRotation => ReauthorizationReason::LostRotation,
            ReauthReason::NoRefreshToken => ReauthorizationReason::NoRefreshToken,
            ReauthReason::Revoked => ReauthorizationReason::Revoked,
        }
    }
}

/// Retry policy for 5xx, 429 and unsent requests (unset fields keep defaults).
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct RetryOptions {
    /// Requests sent at most, the first included (default 4).
    #[uniffi(default = None)]
    pub max_attempts: Option<i32>,
    /// Backoff before the first retry in ms; doubles each time (default 250).
    #[uniffi(default = None)]
    pub initial_backoff_ms: Option<i64>,
    /// Largest backoff in ms, unless Retry-After asks more (default 5000).
    #[uniffi(default = None)]
    pub max_backoff_ms: Option<i64>,
    /// No retry starts after this many ms from the first request (default 20000).
    #[uniffi(default = None)]
    pub budget_ms: Option<i64>,
}

impl TryFrom<RetryOptions> for RetryPolicy {
    type Error = Error;

    fn try_from(o: RetryOptions) -> Result<Self, Error> {
        let d = RetryPolicy::default();
        Ok(RetryPolicy {
            max_attempts: unsigned("retry.max_attempts", o.max_attempts, d.max_attempts)?,
            initial_backoff_ms: unsigned(
                "retry.initial_backoff_ms",
                o.initial_backoff_ms,
                d.initial_backoff_ms,
            )?,
            max_backoff_ms: unsigned("retry.max_backoff_ms", o.max_backoff_ms, d.max_backoff_ms)?,
            budget_ms: unsigned("retry.budget_ms", o.budget_ms, d.budget_ms)?,
        })
    }
}

/// A signed option from the host as the core's unsigned value (`default`
/// when unset); a negative value is a `Config` error naming `field`.
pub(crate) fn unsigned<S, U>(field: &str, value: Option<S>, default: U) -> Result<U, Error>
where
    S: Copy,
    U: TryFrom<S>,
{
    match value {
        None => Ok(default),
        Some(v) => U::try_from(v).map_err(|_| Error::config(field, "must not be negative")),
    }
}

/// The core's unsigned milliseconds or counts as the signed integers every
/// binding language has (saturating: no real value comes near `i64::MAX`).
pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A fresh access token mirrored on the host's side: serve `token` without
/// calling freshtoken while the client's clock reads less than
/// `fresh_until_ms`. Drop it when anything else is called on the session.
#[derive(Clone, uniffi::Record)]
#[uniffi::export(Debug, Display)]
pub struct CachedToken {
    /// The access token. Secret.
    pub token: String,
    /// Fresh while the client's clock reads less than this (Unix ms).
    pub fresh_until_ms: i64,
}

/// A session's fresh tokens, as returned by `tokens`, `refresh` and
/// `token_rejected`.
#[derive(Clone, uniffi::Record)]
#[uniffi::export(Debug, Display)]
pub struct TokenInfo {
    /// The fresh access token. Secret.
    pub access_token: String,
    /// When it expires, in Unix ms (computed from the time the request was
    /// sent, so it errs early).
    pub expires_at_ms: i64,
    /// The granted scope, if the server said.
    pub scope: Option<String>,
    /// The OpenID Connect ID token, if any. Secret.
    pub id_token: Option<String>,
    /// When the refresh token's sliding lifetime ends, in Unix ms.
    pub refresh_expires_at_ms: Option<i64>,
}

impl From<crate::TokenInfo> for TokenInfo {
    fn from(t: crate::TokenInfo) -> Self {
        TokenInfo {
            access_token: t.access_token,
            expires_at_ms: signed(t.expires_at_ms),
            scope: t.scope,
            id_token: t.id_token,
            refresh_expires_at_ms: t.refresh_expires_at_ms.map(signed),
        }
    }
}

impl From<crate::CachedToken> for CachedToken {
    fn from(c: crate::CachedToken) -> Self {
        CachedToken {
            fresh_until_ms: signed(c.fresh_until_ms),
            token: c.token,
        }
    }
}

/// Options of a `TokenClient` (the same names as JavaScript's, snake_case).
#[derive(Clone, uniffi::Record)]
#[uniffi::export(Debug, Display)]
pub struct TokenClientOptions {
    /// `https://…/connect/token`; plain http only for loopback hosts. Left
    /// empty for `discover_client`, which reads it from the issuer.
    #[uniffi(default = "")]
    pub token_endpoint: String,
    /// The client id.
    pub client_id: String,
    /// The client secret (never in an app a user can inspect: use a public client with PKCE there).
    #[uniffi(default = None)]
    pub client_secret: Option<String>,
    /// `client_secret_post` (default with a secret; `client_secret_basic`
    /// for a discovered provider that does not list it),
    /// `client_secret_basic`, `private_key_jwt` (default with a private
    /// key) or `none`.
    #[uniffi(default = None)]
    pub client_auth: Option<String>,
    /// The RSA private key in PEM for `private_key_jwt` (PKCS#1 or PKCS#8; a
    /// certificate alongside is fine).
    #[uniffi(default = None)]
    pub private_key_pem: Option<String>,
    /// The `kid` header of client assertions.
    #[uniffi(default = None)]
    pub key_id: Option<String>,
    /// The `aud` of client assertions (default: the token endpoint).
    #[uniffi(default = None)]
    pub assertion_audience: Option<String>,
    /// `audience` of client-credentials requests (default: the token endpoint).
    #[uniffi(default = None)]
    pub audience: Option<String>,
    /// Default: the discovered one, else the token endpoint with `/token`
    /// replaced by `/authorize`; with neither, `authorization_url` is a
    /// `Config` error naming it.
    #[uniffi(default = None)]
    pub authorization_endpoint: Option<String>,
    /// The RFC 7009 revocation endpoint. Default: the discovered one, else
    /// the token endpoint with `/token` replaced by `/revocation`
    /// (Stitch's); with neither, `revoke` and `revoke_client_tokens` are a
    /// `Config` error naming it, and change nothing.
    #[uniffi(default = None)]
    pub revocation_endpoint: Option<String>,
    /// Refresh this many seconds before expiry (default 60, at most half a token's life).
    #[uniffi(default = None)]
    pub leeway_seconds: Option<i64>,
    /// Assumed user-token lifetime when `expires_in` is missing (default 900).
    #[uniffi(default = None)]
    pub user_token_lifetime_seconds: Option<i64>,
    /// Assumed client-token lifetime when `expires_in` is missing (default 3600).
    #[uniffi(default = None)]
    pub client_token_lifetime_seconds: Option<i64>,
    /// Sliding refresh-token lifetime (default 365 days).
    #[uniffi(default = None)]
    pub refresh_token_lifetime_seconds: Option<i64>,
    /// Timeout of one request in ms.
    #[uniffi(default = None)]
    pub timeout_ms: Option<i64>,
    /// Deadline of every call into the host's store in ms (default 5000);
    /// a call that has not answered by then is reported as `Storage`.
    #[uniffi(default = None)]
    pub store_timeout_ms: Option<i64>,
    /// Idle sessions kept in memory (default 100000).
    #[uniffi(default = None)]
    pub max_sessions: Option<i64>,
    /// Fleet stores: how long a refresh lease lasts (ms; default timeout +
    /// retry budget + the larger of 10 s and twice `store_timeout_ms` + 5 s,
    /// at least three times `store_timeout_ms` + 5 s; must exceed
    /// `timeout_ms` + retry budget + 1 s + `store_timeout_ms`).
    #[uniffi(default = None)]
    pub lease_ttl_ms: Option<i64>,
    /// Fleet stores: how long to wait for another process's lease (ms).
    #[uniffi(default = None)]
    pub lease_wait_ms: Option<i64>,
    /// Retry policy; unset keeps the defaults.
    #[uniffi(default = None)]
    pub retry: Option<RetryOptions>,
    /// Receives refreshes, failures, re-links, saves and lease waits (on a
    /// thread of its own; see `EventListener`).
    #[uniffi(default = None)]
    pub on_event: Option<std::sync::Arc<dyn super::events::EventListener>>,
    /// What events show of session keys: `full` (default) or `hidden`.
    #[uniffi(default = None)]
    pub event_keys: Option<String>,
}

/// What is known about a session without sending anything.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SessionStatus {
    /// A record exists for this key.
    pub has_record: bool,
    /// Set when the user must authorize again.
    pub reauthorization_reason: Option<ReauthorizationReason>,
    /// Expiry of the current access token (Unix ms).
    pub access_expires_at_ms: Option<i64>,
    /// When the refresh token's sliding lifetime ends (Unix ms).
    pub refresh_expires_at_ms: Option<i64>,
    /// A renewed record could not be saved yet.
    pub unpersisted: bool,
    /// The last refresh answer was lost (on a revoked session: the server
    /// may hold a successor token this client never received).
    pub in_doubt: bool,
    /// `revoke()` marked the session revoked, but the server may still hold
    /// its token (the revocation failed for good): `revoke()` again retries.
    pub revocation_pending: bool,
}

impl From<crate::SessionStatus> for SessionStatus {
    fn from(s: crate::SessionStatus) -> Self {
        SessionStatus {
            has_record: s.has_record,
            reauthorization_reason: s.reauth.map(Into::into),
            access_expires_at_ms: s.access_expires_at_ms.map(signed),
            refresh_expires_at_ms: s.refresh_expires_at_ms.map(signed),
            unpersisted: s.unpersisted,
            in_doubt: s.in_doubt,
            revocation_pending: s.revocation_pending,
        }
    }
}

/// Adopting an existing refresh token.
#[derive(Clone, uniffi::Record)]
#[uniffi::export(Debug, Display)]
pub struct SeedOptions {
    /// The refresh token to adopt.
    pub refresh_token: String,
    /// The access token.
    #[uniffi(default = None)]
    pub access_token: Option<String>,
    /// Seconds the access token stays valid from now; without it the access
    /// token is treated as expired.
    #[uniffi(default = None)]
    pub expires_in: Option<i64>,
    /// The granted scope.
    #[uniffi(default = None)]
    pub scope: Option<String>,
    /// The OpenID Connect ID token.
    #[uniffi(default = None)]
    pub id_token: Option<String>,
}

impl From<SeedOptions> for crate::Seed {
    fn from(s: SeedOptions) -> Self {
        crate::Seed {
            refresh_token: s.refresh_token.into(),
            access_token: s.access_token.map(Into::into),
            expires_in: s.expires_in,
            scope: s.scope,
            id_token: s.id_token.map(Into::into),
        }
    }
}

/// What to ask the authorization server for.
#[derive(Debug, Clone, uniffi::Record)]
pub struct AuthorizationUrlOptions {
    /// Where the server sends the user back.
    pub redirect_uri: String,
    /// `offline_access` is added when missing.
    #[uniffi(default = [])]
    pub scopes: Vec<String>,
    /// CSRF state (random when unset).
    #[uniffi(default = None)]
    pub state: Option<String>,
    /// OpenID Connect nonce (random when unset).
    #[uniffi(default = None)]
    pub nonce: Option<String>,
    /// `prompt`: unset sends `consent` (needed for `offline_access`); "" sends none.
    #[uniffi(default = None)]
    pub prompt: Option<String>,
    /// Further query parameters (e.g. Stitch's `provider`, `login_hint`),
    /// sent after the others in name order, so the URL is reproducible. One
    /// the URL sets itself (`state`, `scope`, ...) is a Config error naming
    /// `extra_params`.
    #[uniffi(default)]
    pub extra_params: std::collections::HashMap<String, String>,
}

/// The URL to open and what to keep until the user comes back.
#[derive(Clone, uniffi::Record)]
#[uniffi::export(Debug, Display)]
pub struct AuthorizationRequest {
    /// The URL.
    pub url: String,
    /// The PKCE verifier: keep it until the user comes back. Secret.
    pub code_verifier: String,
    /// CSRF state (random when unset).
    pub state: String,
    /// OpenID Connect nonce (random when unset).
    pub nonce: String,
}

/// The code exchange's inputs.
#[derive(Clone, uniffi::Record)]
#[uniffi::export(Debug, Display)]
pub struct ExchangeCodeOptions {
    /// The authorization code.
    pub code: String,
    /// The PKCE verifier: keep it until the user comes back. Secret.
    pub code_verifier: String,
    /// Where the server sends the user back.
    pub redirect_uri: String,
}

/// One HTTP header.
#[derive(Clone, uniffi::Record)]
#[uniffi::export(Debug, Display)]
pub struct HttpHeader {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// A request for the host's HTTP client (always a form POST today). Do not
/// follow redirects; give up after `timeout_ms`; read at most
/// `max_response_bytes + 1` bytes of the body (one more than the cap, so
/// that an oversize answer is reported as such) and return what was read.
#[derive(Clone, uniffi::Record)]
#[uniffi::export(Debug, Display)]
pub struct HttpRequest {
    /// The HTTP method (`POST`).
    pub method: String,
    /// The URL.
    pub url: String,
    /// Headers, in order.
    pub headers: Vec<HttpHeader>,
    /// The form body. Holds secrets: never log it.
    pub body: String,
    /// Timeout of one request in ms.
    pub timeout_ms: i64,
    /// The body-size cap (read at most one byte more).
    pub max_response_bytes: i64,
}

/// The host's answer: status, headers and body.
#[derive(Clone, uniffi::Record)]
#[uniffi::export(Debug, Display)]
pub struct HttpResponse {
    /// HTTP status of the answer.
    pub status: i32,
    /// Headers, in order.
    pub headers: Vec<HttpHeader>,
    /// The body.
    pub body: Vec<u8>,
}

/// A stored record and its version (compare-and-swap stores).
#[derive(Clone, uniffi::Record)]
#[uniffi::export(Debug, Display)]
pub struct VersionedRecord {
    /// The record, as freshtoken wrote it.
    pub record: String,
    /// An opaque version chosen by the store.
    pub version: String,
}

/// The result of a compare-and-swap save.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum CasResult {
    /// Saved; the new version.
    Saved {
        /// The new version.
        version: String,
    },
    /// Someone saved a newer version first; nothing was written.
    Conflict,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_numbers_are_config_errors_naming_the_field() {
        let retry = RetryOptions {
            budget_ms: Some(-1),
            ..RetryOptions::default()
        };
        match RetryPolicy::try_from(retry) {
            Err(Error::Config { field, .. }) => assert_eq!(field, "retry.budget_ms"),
            other => panic!("{other:?}"),
        }
        let policy = RetryPolicy::try_from(RetryOptions {
            max_attempts: Some(2),
            ..RetryOptions::default()
        })
        .unwrap();
        assert_eq!(policy.max_attempts, 2);
        assert_eq!(policy.budget_ms, RetryPolicy::default().budget_ms);
    }

    #[test]
    fn times_past_i64_saturate() {
        assert_eq!(signed(u64::MAX), i64::MAX);
        assert_eq!(signed(1_700_000_000_000), 1_700_000_000_000);
    }
}

/// What was read from a provider's discovery document.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProviderMetadata {
    /// The issuer.
    pub issuer: String,
    /// The token endpoint.
    pub token_endpoint: String,
    /// The authorization endpoint, when published.
    pub authorization_endpoint: Option<String>,
    /// The revocation endpoint, when published.
    pub revocation_endpoint: Option<String>,
    /// `token_endpoint_auth_methods_supported`.
    pub token_endpoint_auth_methods: Vec<String>,
    /// `revocation_endpoint_auth_methods_supported`.
    pub revocation_endpoint_auth_methods: Vec<String>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207): refuse
    /// an authorization response without `iss` when true.
    pub authorization_response_iss_parameter_supported: bool,
}
