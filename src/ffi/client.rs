//! `TokenClient` and `ClientTokens` for Kotlin, Swift and Python.

use super::error::FreshTokenError;
use super::executor::FlightThread;
use super::host::{Clock, ClockAdapter, HttpAdapter, HttpClient, StoreAdapter, TokenStore};
use super::host_exit::woken;
use super::session::UserSession;
use super::types::{
    signed, unsigned, AuthorizationRequest, AuthorizationUrlOptions, ExchangeCodeOptions,
    ProviderMetadata, TokenClientOptions,
};
use crate::{AuthorizationParams, ClientAuthMethod, Config, ConfigBuilder, Error, SystemClock};
use std::sync::Arc;

/// One OAuth client: sessions, client tokens, the code flow.
#[derive(uniffi::Object)]
pub struct TokenClient {
    inner: crate::TokenClient,
}

fn config(o: TokenClientOptions) -> Result<Config, Error> {
    builder(o)?.build()
}

/// The core builder from the options (all but the endpoint checked later).
fn builder(mut o: TokenClientOptions) -> Result<ConfigBuilder, Error> {
    let endpoint = std::mem::take(&mut o.token_endpoint);
    let mut b = Config::builder(endpoint, std::mem::take(&mut o.client_id));
    if let Some(secret) = o.client_secret.take() {
        b = b.client_secret(secret);
    }
    if let Some(method) = o.client_auth.take() {
        b = b.client_auth(ClientAuthMethod::parse(&method)?);
    }
    if let Some(pem) = o.private_key_pem.take() {
        b = b.private_key_pem(pem);
    }
    if let Some(kid) = o.key_id.take() {
        b = b.key_id(kid);
    }
    configure(b, o)
}

/// The builder of a client from the provider's credentials JSON, with the
/// options it does not set; an identity member set in the options (the
/// JSON's to set) is a `Config` error naming it.
fn credentials_builder(json: &str, o: TokenClientOptions) -> Result<ConfigBuilder, Error> {
    let identity = [
        ("token_endpoint", !o.token_endpoint.is_empty()),
        ("client_id", !o.client_id.is_empty()),
        ("client_secret", o.client_secret.is_some()),
        ("client_auth", o.client_auth.is_some()),
        ("private_key_pem", o.private_key_pem.is_some()),
        ("key_id", o.key_id.is_some()),
    ];
    if let Some((name, _)) = identity.iter().find(|(_, set)| *set) {
        return Err(Error::config(
            *name,
            "comes from the credentials JSON: leave it unset",
        ));
    }
    configure(Config::from_credentials_json(json)?, o)
}

/// Applies the options every client may take (all but the identity).
fn configure(mut b: ConfigBuilder, o: TokenClientOptions) -> Result<ConfigBuilder, Error> {
    if let Some(audience) = o.assertion_audience {
        b = b.assertion_audience(audience);
    }
    if let Some(audience) = o.audience {
        b = b.audience(audience);
    }
    if let Some(url) = o.authorization_endpoint {
        b = b.authorization_endpoint(url);
    }
    if let Some(url) = o.revocation_endpoint {
        b = b.revocation_endpoint(url);
    }
    if let Some(v) = o.leeway_seconds {
        b = b.leeway_secs(v);
    }
    if let Some(v) = o.user_token_lifetime_seconds {
        b = b.user_token_lifetime_secs(v);
    }
    if let Some(v) = o.client_token_lifetime_seconds {
        b = b.client_token_lifetime_secs(v);
    }
    if let Some(v) = o.refresh_token_lifetime_seconds {
        b = b.refresh_token_lifetime_secs(v);
    }
    if let Some(v) = o.timeout_ms {
        b = b.timeout_ms(v);
    }
    if let Some(v) = o.store_timeout_ms {
        b = b.store_timeout_ms(v);
    }
    if let Some(v) = o.max_sessions {
        b = b.max_sessions(unsigned("max_sessions", Some(v), 0usize)?);
    }
    if let Some(v) = o.lease_ttl_ms {
        b = b.lease_ttl_ms(v);
    }
    if let Some(v) = o.lease_wait_ms {
        b = b.lease_wait_ms(v);
    }
    if let Some(retry) = o.retry {
        b = b.retry(retry.try_into()?);
    }
    if let Some(keys) = o.event_keys {
        b = b.event_keys(crate::EventKeys::parse(&keys)?);
    }
    if let Some(listener) = o.on_event {
        b = b.on_event(Arc::new(super::events::ListenerSink::new(listener)));
    }
    Ok(b)
}

/// The host's clock, or the system's.
fn clock_or_system(clock: Option<Arc<dyn Clock>>) -> Arc<dyn crate::Clock> {
    match clock {
        Some(clock) => Arc::new(ClockAdapter::new(clock)),
        None => Arc::new(SystemClock),
    }
}

/// A client for the provider `issuer`: its token, authorization and
/// revocation endpoints are read from its discovery document
/// (`/.well-known/openid-configuration`), checked (the issuer matches, the
/// endpoints are https). `options.token_endpoint` stays empty; endpoints set
/// in `options` win. `clock` is for tests with fake time (default: the system's).
#[uniffi::export]
pub async fn discover_client(
    issuer: String,
    options: TokenClientOptions,
    http: Arc<dyn HttpClient>,
    clock: Option<Arc<dyn Clock>>,
) -> Result<Arc<TokenClient>, FreshTokenError> {
    let inner = woken(crate::TokenClient::discover(
        &issuer,
        builder(options)?,
        Arc::new(HttpAdapter::new(http)),
        clock_or_system(clock),
        Some(Arc::new(FlightThread)),
    ))
    .await?;
    Ok(Arc::new(TokenClient { inner }))
}

#[uniffi::export]
impl TokenClient {
    /// A client sending requests through the host's `http`, on the system clock.
    #[uniffi::constructor]
    pub fn new(
        options: TokenClientOptions,
        http: Arc<dyn HttpClient>,
    ) -> Result<Arc<Self>, FreshTokenError> {
        let inner = crate::TokenClient::with_spawner(
            config(options)?,
            Arc::new(HttpAdapter::new(http)),
            Arc::new(SystemClock),
            Arc::new(FlightThread),
        );
        Ok(Arc::new(TokenClient { inner }))
    }

    /// A client from the provider's client-credentials JSON (`clientId`,
    /// `clientSecret` or `certificate`, `slidingRefreshTokenLifetime`,
    /// optionally `tokenEndpoint`, default Stitch's); a missing member is a
    /// `Config` error naming it.
    #[uniffi::constructor]
    pub fn from_credentials_json(
        json: String,
        http: Arc<dyn HttpClient>,
    ) -> Result<Arc<Self>, FreshTokenError> {
        let config = Config::from_credentials_json(&json)?.build()?;
        let inner = crate::TokenClient::with_spawner(
            config,
            Arc::new(HttpAdapter::new(http)),
            Arc::new(SystemClock),
            Arc::new(FlightThread),
        );
        Ok(Arc::new(TokenClient { inner }))
    }

    /// A client from the provider's client-credentials JSON, with `options`
    /// for what the JSON does not say (leeway, timeouts, retries, sessions
    /// kept, events, endpoints other than the token endpoint). The identity
    /// members of `options` (`token_endpoint`, `client_id`, `client_secret`,
    /// `client_auth`, `private_key_pem`, `key_id`) stay empty: the JSON sets
    /// them, and one set there is a `Config` error naming it. `clock` is for
    /// tests with fake time (default: the system's).
    #[uniffi::constructor]
    pub fn from_credentials_json_with(
        json: String,
        options: TokenClientOptions,
        http: Arc<dyn HttpClient>,
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<Arc<Self>, FreshTokenError> {
        let config = credentials_builder(&json, options)?.build()?;
        let inner = crate::TokenClient::with_spawner(
            config,
            Arc::new(HttpAdapter::new(http)),
            clock_or_system(clock),
            Arc::new(FlightThread),
        );
        Ok(Arc::new(TokenClient { inner }))
    }

    /// The same, on the host's `clock` (for tests with fake time).
    #[uniffi::constructor]
    pub fn with_clock(
        options: TokenClientOptions,
        http: Arc<dyn HttpClient>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, FreshTokenError> {
        let inner = crate::TokenClient::with_spawner(
            config(options)?,
            Arc::new(HttpAdapter::new(http)),
            Arc::new(ClockAdapter::new(clock)),
            Arc::new(FlightThread),
        );
        Ok(Arc::new(TokenClient { inner }))
    }

    /// A handle on the session `key`, persisted through `store`.
    pub fn session(
        &self,
        key: String,
        store: Arc<dyn TokenStore>,
    ) -> Result<Arc<UserSession>, FreshTokenError> {
        let store = StoreAdapter::new(store).map_err(|e| self.inner.scrub_storage(e))?;
        let inner = self.inner.session(&key, Arc::new(store))?;
        Ok(Arc::new(UserSession { inner }))
    }

    /// Revokes every cached client token at the server and forgets it.
    pub async fn revoke_client_tokens(&self) -> Result<(), FreshTokenError> {
        Ok(woken(self.inner.revoke_client_tokens()).await?)
    }

    /// The discovery document the client was made from (`discover_client`).
    pub fn provider_metadata(&self) -> Option<ProviderMetadata> {
        self.inner.provider_metadata().map(|m| ProviderMetadata {
            issuer: m.issuer.clone(),
            token_endpoint: m.token_endpoint.clone(),
            authorization_endpoint: m.authorization_endpoint.clone(),
            revocation_endpoint: m.revocation_endpoint.clone(),
            token_endpoint_auth_methods: m.token_endpoint_auth_methods.clone(),
            revocation_endpoint_auth_methods: m.revocation_endpoint_auth_methods.clone(),
            authorization_response_iss_parameter_supported: m
                .authorization_response_iss_parameter_supported,
        })
    }

    /// This client's name as a fleet lease owner: a lease holds it
    /// followed by `.` and a random number, new for each lease taken.
    pub fn lease_owner(&self) -> String {
        self.inner.lease_owner()
    }

    /// Saves every session record held only in memory (a rotation whose
    /// save failed), waiting for refreshes running first; call it before
    /// closing the client (see `TokenClient::save_unsaved`).
    pub async fn save_unsaved(&self) -> Result<(), FreshTokenError> {
        Ok(woken(self.inner.save_unsaved()).await?)
    }

    /// How many session states the client holds in memory.
    pub fn session_count(&self) -> i64 {
        signed(self.inner.session_count() as u64)
    }

    /// A fresh client-credentials token for `scopes`.
    pub async fn client_token(&self, scopes: Vec<String>) -> Result<String, FreshTokenError> {
        Ok(woken(self.inner.client_token(&scopes)).await?)
    }

    /// The client-token cache.
    pub fn client_tokens(&self) -> Arc<ClientTokens> {
        Arc::new(ClientTokens {
            client: self.inner.clone(),
        })
    }

    /// The authorize URL (PKCE S256, state, nonce, `offline_access`, then
    /// `extra_params` in name order).
    pub fn authorization_url(
        &self,
        options: AuthorizationUrlOptions,
    ) -> Result<AuthorizationRequest, FreshTokenError> {
        // A map has no order of its own: by name, the same options make
        // the same URL on every call and platform.
        let mut extra: Vec<(String, String)> = options.extra_params.into_iter().collect();
        extra.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let request = self.inner.authorization_url(AuthorizationParams {
            redirect_uri: options.redirect_uri,
            scopes: options.scopes,
            state: options.state,
            nonce: options.nonce,
            prompt: options.prompt,
            extra,
        })?;
        Ok(AuthorizationRequest {
            url: request.url,
            code_verifier: request.code_verifier,
            state: request.state,
            nonce: request.nonce,
        })
    }

    /// The authorization code of `redirect`, the URL the server sent the
    /// user back to (or its query), its `state` checked against
    /// `expected_state` and its issuer (RFC 9207) against the provider's.
    pub fn code_from_redirect(
        &self,
        redirect: String,
        expected_state: String,
    ) -> Result<String, FreshTokenError> {
        Ok(self.inner.code_from_redirect(&redirect, &expected_state)?)
    }

    /// Exchanges an authorization code, stores the first record under `key`,
    /// and returns the session.
    pub async fn exchange_code(
        &self,
        options: ExchangeCodeOptions,
        key: String,
        store: Arc<dyn TokenStore>,
    ) -> Result<Arc<UserSession>, FreshTokenError> {
        let store = StoreAdapter::new(store).map_err(|e| self.inner.scrub_storage(e))?;
        let inner = woken(self.inner.exchange_code(
            &options.code,
            &options.code_verifier,
            &options.redirect_uri,
            &key,
            Arc::new(store),
        ))
        .await?;
        Ok(Arc::new(UserSession { inner }))
    }
}

/// The client's own tokens (`client_credentials`), cached per scope set.
#[derive(uniffi::Object)]
pub struct ClientTokens {
    client: crate::TokenClient,
}

#[uniffi::export]
impl ClientTokens {
    /// A fresh client token for `scopes` (order and duplicates ignored).
    pub async fn token(&self, scopes: Vec<String>) -> Result<String, FreshTokenError> {
        Ok(woken(self.client.client_tokens().token(&scopes)).await?)
    }

    /// Forgets the cached token for `scopes`, whichever it is.
    pub fn invalidate(&self, scopes: Vec<String>) -> Result<(), FreshTokenError> {
        Ok(self.client.client_tokens().invalidate(&scopes)?)
    }

    /// The API rejected `token`, a client token for `scopes`: forgets it if
    /// it is still the cached one (not a replacement another caller fetched).
    pub fn token_rejected(
        &self,
        scopes: Vec<String>,
        token: String,
    ) -> Result<(), FreshTokenError> {
        Ok(self
            .client
            .client_tokens()
            .token_rejected(&scopes, &token)?)
    }
}
