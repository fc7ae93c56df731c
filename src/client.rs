//! `TokenClient`: one per OAuth client; hands out sessions and client tokens.

use crate::authorize::{self, AuthorizationParams, AuthorizationRequest};
use crate::client_token::ClientTokens;
use crate::clock::Clock;
use crate::code_exchange;
use crate::config::{Config, ConfigBuilder};
use crate::discovery::ProviderMetadata;
use crate::error::{Error, ReauthReason};
use crate::exchange::{self, CallFailure, Context, Failure};
use crate::grant::Grant;
use crate::http::HttpClient;
use crate::registry::Registry;
use crate::response::TokenResponse;
use crate::session::UserSession;
use crate::session_state::Replacing;
use crate::spawn::{detached, Spawn};
use crate::store::TokenStore;
use std::sync::Arc;

/// The entry point: configuration, HTTP and clock, the shared session
/// states (one per key, DESIGN point 11), and the client-token cache.
#[derive(Clone)]
pub struct TokenClient {
    ctx: Arc<Context>,
    sessions: Arc<Registry>,
    client_tokens: Arc<ClientTokens>,
    /// The provider's discovery document, when the client was discovered.
    provider: Option<Arc<ProviderMetadata>>,
}

impl std::fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenClient")
            .field("config", &self.ctx.config)
            .finish()
    }
}

impl TokenClient {
    /// A client sending requests through `http` and reading time from
    /// `clock`. Its refreshes are driven by their callers: one that every
    /// caller stopped waiting for pauses until the next call. Use
    /// [`TokenClient::with_spawner`] to run them on their own.
    pub fn new(config: Config, http: Arc<dyn HttpClient>, clock: Arc<dyn Clock>) -> Self {
        Self::build(config, http, clock, None)
    }

    /// A client whose refreshes run as tasks of `spawn`, so that a caller
    /// that gives up never stops a refresh (and its save) that others need
    /// (DESIGN point 15).
    pub fn with_spawner(
        config: Config,
        http: Arc<dyn HttpClient>,
        clock: Arc<dyn Clock>,
        spawn: Arc<dyn Spawn>,
    ) -> Self {
        Self::build(config, http, clock, Some(spawn))
    }

    fn build(
        config: Config,
        http: Arc<dyn HttpClient>,
        clock: Arc<dyn Clock>,
        spawn: Option<Arc<dyn Spawn>>,
    ) -> Self {
        let sessions = Arc::new(Registry::new(config.max_sessions));
        let owner = crate::random::random_url_safe(12)
            .unwrap_or_else(|_| format!("client-{}", clock.now_ms()));
        let ctx = Arc::new(Context {
            config,
            http,
            clock,
            owner,
            made_by: crate::started_by::StartedBy::this(),
            spawn,
            abandoned_saves: Default::default(),
        });
        TokenClient {
            client_tokens: Arc::new(ClientTokens::new(ctx.clone())),
            ctx,
            sessions,
            provider: None,
        }
    }

    /// A client for the provider `issuer`: reads its discovery document
    /// (`/.well-known/openid-configuration`) through `http`, checks it (the
    /// issuer matches, the endpoints are https), and configures the token,
    /// authorization and revocation endpoints from it. `options` is a
    /// builder from [`Config::for_client`]; endpoints set on it explicitly
    /// win. The document is kept: [`TokenClient::provider_metadata`].
    pub async fn discover(
        issuer: &str,
        options: ConfigBuilder,
        http: Arc<dyn HttpClient>,
        clock: Arc<dyn Clock>,
        spawn: Option<Arc<dyn Spawn>>,
    ) -> Result<Self, Error> {
        let timeout_ms = options.request_timeout_ms();
        let metadata =
            crate::discovery::discover(http.as_ref(), clock.as_ref(), issuer, timeout_ms).await?;
        let config = options.provider(&metadata).build()?;
        let mut client = Self::build(config, http, clock, spawn);
        client.provider = Some(Arc::new(metadata));
        Ok(client)
    }

    /// [`TokenClient::discover`] with [`crate::NativeHttp`], the system
    /// clock and the current tokio runtime (call it inside one).
    #[cfg(feature = "native-http")]
    pub async fn discover_native(issuer: &str, options: ConfigBuilder) -> Result<Self, Error> {
        let http = Arc::new(crate::NativeHttp::for_timeout(
            options.request_timeout_ms(),
        )?);
        let spawn: Arc<dyn Spawn> = Arc::new(crate::TokioSpawner::current()?);
        Self::discover(
            issuer,
            options,
            http,
            Arc::new(crate::SystemClock),
            Some(spawn),
        )
        .await
    }

    /// The provider's discovery document, when this client was made by
    /// [`TokenClient::discover`].
    pub fn provider_metadata(&self) -> Option<&ProviderMetadata> {
        self.provider.as_deref()
    }

    /// A client using [`crate::NativeHttp`] and the system clock, its
    /// refreshes spawned on the current tokio runtime (call it inside one).
    #[cfg(feature = "native-http")]
    pub fn native(config: Config) -> Result<Self, Error> {
        let http = Arc::new(crate::NativeHttp::for_timeout(config.timeout_ms)?);
        let spawn = Arc::new(crate::TokioSpawner::current()?);
        Ok(TokenClient::with_spawner(
            config,
            http,
            Arc::new(crate::SystemClock),
            spawn,
        ))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// A handle on the session `key`, persisted through `store`. Create one
    /// per request if convenient: handles with the same key share state.
    pub fn session(&self, key: &str, store: Arc<dyn TokenStore>) -> Result<UserSession, Error> {
        if key.is_empty() {
            return Err(Error::config("key", "must not be empty"));
        }
        let (key, cell) = self.sessions.cell(key);
        Ok(UserSession::new(
            key,
            &cell,
            self.sessions.clone(),
            store,
            self.ctx.clone(),
        ))
    }

    /// `error` with a storage message scrubbed of the client secret: for a
    /// store that failed while a binding read it, before any session state
    /// (whose tokens the session's own scrubbing covers) was involved.
    #[cfg(any(feature = "ffi", target_arch = "wasm32"))]
    pub(crate) fn scrub_storage(&self, error: Error) -> Error {
        match error {
            Error::Storage { message } => {
                let secrets = crate::grant::client_secret_spellings(&self.ctx.config);
                Error::storage(crate::secret::scrub_secrets(&message, &secrets))
            }
            other => other,
        }
    }

    /// This client's name as a fleet lease owner (random, unique per
    /// client and process: a forked child has its own). A store's lease
    /// holds it followed by `.` and a random number of that lease, new each
    /// time the lease is taken anew: a release that reaches the store late
    /// (after its deadline) then never ends a lease taken since.
    pub fn lease_owner(&self) -> String {
        self.ctx.owner().into_owned()
    }

    /// How many session states this client holds in memory.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Saves every session record this client holds only in memory (a
    /// rotation or a new link whose save failed; the next call on the
    /// session would save it first), after waiting for refreshes running.
    /// Call it before dropping the client: a record dropped unsaved takes
    /// the session's newest refresh token with it, and the stored one was
    /// already spent. A `storage` error says how many are still unsaved
    /// (the client keeps them; calling again retries). Seeds and code
    /// exchanges running (their caller gone or not) are waited for too. The
    /// client keeps each such record's store alive until it is saved.
    pub async fn save_unsaved(&self) -> Result<(), Error> {
        crate::unsaved::save_all(&self.sessions, &self.ctx).await
    }

    /// A fresh client-credentials token for `scopes`.
    pub async fn client_token<S: AsRef<str>>(&self, scopes: &[S]) -> Result<String, Error> {
        self.client_tokens.token(scopes).await
    }

    /// Revokes every cached client token at the server (RFC 7009) and
    /// forgets it: the next `client_token` call requests a new one. With
    /// no revocation endpoint, a `config` error naming it, the tokens kept.
    pub async fn revoke_client_tokens(&self) -> Result<(), Error> {
        self.client_tokens.revoke_all().await
    }

    /// The client-token cache.
    pub fn client_tokens(&self) -> &ClientTokens {
        &self.client_tokens
    }

    /// The authorization code of `redirect`, the URL the server sent the
    /// user back to (or its query), for [`TokenClient::exchange_code`].
    /// Checked first, nothing sent: its `state` must be `expected_state`
    /// (the [`AuthorizationRequest`]'s, kept for this user; RFC 6749
    /// §10.12), and, for a client made by discovery, its `iss` the
    /// provider's issuer, and present when the provider announces it (RFC
    /// 9207). An error redirect with the right state is its `oauth` error
    /// (`access_denied` when the user said no); any other mismatch,
    /// repeated parameter or missing code is `invalid_response`, naming
    /// what, never a value.
    pub fn code_from_redirect(
        &self,
        redirect: &str,
        expected_state: &str,
    ) -> Result<String, Error> {
        let provider = crate::callback::Issuer {
            issuer: self.provider_metadata().map(|m| m.issuer.as_str()),
            announces_iss: self
                .provider_metadata()
                .is_some_and(|m| m.authorization_response_iss_parameter_supported),
        };
        let code = crate::callback::code_from_redirect(redirect, expected_state, provider)?;
        Ok(code.expose().to_owned())
    }

    /// The authorize URL (PKCE S256, state, nonce, `offline_access`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn authorization_url(
        &self,
        params: AuthorizationParams,
    ) -> Result<AuthorizationRequest, Error> {
        authorize::authorization_url(&self.ctx.config, params)
    }

    /// The authorize URL (PKCE S256, state, nonce, `offline_access`); the
    /// host's WebCrypto hashes the verifier.
    #[cfg(target_arch = "wasm32")]
    pub async fn authorization_url(
        &self,
        params: AuthorizationParams,
    ) -> Result<AuthorizationRequest, Error> {
        authorize::authorization_url(&self.ctx.config, self.ctx.clock.as_ref(), params).await
    }

    /// One refresh with no session, cache or store: the drop-in for
    /// hand-written refresh functions. Retries like every request; the
    /// caller must store the returned refresh token (if any) itself, and
    /// also the one an `invalid_response` error may carry
    /// ([`Error::rotated_refresh_token`]): the server rotated, so the token
    /// sent is spent.
    pub async fn refresh_once(&self, refresh_token: &str) -> Result<TokenResponse, Error> {
        if refresh_token.is_empty() {
            return Err(Error::config("refresh_token", "must not be empty"));
        }
        let grant = Grant::Refresh {
            refresh_token,
            known: &[],
        };
        match exchange::call(&self.ctx, &grant).await {
            Ok(issued) => Ok(issued.response),
            Err(CallFailure {
                failure: Failure::OAuth { body, .. },
                maybe_processed,
                ..
            }) if body.error == "invalid_grant" => Err(Error::ReauthorizationRequired {
                reason: if maybe_processed {
                    ReauthReason::LostRotation
                } else {
                    ReauthReason::InvalidGrant
                },
                description: body.description,
            }),
            Err(mut failure) => {
                let salvaged = failure.salvaged.take();
                let mut error = failure.into_error();
                if let Error::InvalidResponse {
                    rotated_refresh_token,
                    ..
                } = &mut error
                {
                    *rotated_refresh_token = salvaged;
                }
                Err(error)
            }
        }
    }

    /// Exchanges an authorization code for the first tokens, stores them
    /// under `key`, and returns the session. Check the returned `state`
    /// against the one you sent before calling this.
    ///
    /// A code is sent once (servers refuse a second use and revoke what
    /// the first issued). In a process, a repeat for the same key while the
    /// first runs or within 10 minutes after (a reloaded or double-submitted
    /// callback, or two at once) joins the first or gets its outcome; for
    /// another key, or with another verifier, it is a `config` error naming
    /// `code`, nothing sent. A code that may have reached the server (an
    /// answer lost or not understood, a 5xx, which is not retried for a
    /// code) counts as redeemed: a repeat in that time gets the same error
    /// and sends nothing, and the user logs in again. A repeat after the
    /// issued record's save failed saves it (however late: the record held
    /// unsaved carries the code's fingerprint); one through another client of
    /// the process reads the record (or its refreshed successor) from its
    /// store (`conflict` when that store does not hold it).
    ///
    /// Across processes and later than that, the store tells: the record
    /// an exchange saves carries a fingerprint of its code, verifier and
    /// redirect URI (`from_code`, a truncated SHA-256, never the code), and
    /// every exchange reads the stored record before sending. A repeat
    /// (another process of the fleet handling the same callback, a tab
    /// restored an hour later) that finds its fingerprint there sends
    /// nothing and returns the session for that record (rotated since or
    /// not: refreshes keep the fingerprint; a seed or another code's
    /// exchange replaces it), or its `reauthorization_required` when that
    /// session has ended since. With a store that offers the fleet lease,
    /// the exchange reads, sends and saves under the key's lease: two
    /// processes exchanging the same code at the very same moment send it
    /// once (the second waits, then adopts), and a lease not had within the
    /// lease wait is `conflict`, with nothing sent. Without a lease that
    /// window remains: both may read the store before the other saved and
    /// send the code; the second is refused, and may revoke what the first
    /// saved.
    ///
    /// An answer that is unusable (no access token, say) but carries a
    /// refresh token links the session: the refresh token is saved and this
    /// returns the session, whose first call refreshes. Should that save
    /// fail, the caller gets `storage`, the token waits in memory, and a
    /// repeat saves it, as for any issued record.
    ///
    /// A store that cannot tell its stored version fails the exchange
    /// before the code is sent, as does a `redirect_uri` that is not an
    /// absolute URI of URI characters without a fragment (`config`, RFC
    /// 6749 §3.1.2).
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        key: &str,
        store: Arc<dyn TokenStore>,
    ) -> Result<UserSession, Error> {
        for (field, value) in [("code", code), ("code_verifier", code_verifier)] {
            if value.is_empty() {
                return Err(Error::config(field, "must not be empty"));
            }
        }
        crate::authorize::check_redirect_uri(redirect_uri)?;
        let session = self.session(key, store)?;
        let attached = session.attach();
        // Counted until the exchange ends, not until its caller leaves.
        let replacing = Replacing::start(attached.cell.clone());
        // Before the code is redeemed: the tokens it brings must be saved.
        attached.abandoned_save_ended().await?;
        // The code is single use: once it is sent, redeeming it and saving
        // what it brings runs to its end even if the caller stops waiting
        // (DESIGN point 15), or the user would have to log in again.
        let redeem = code_exchange::redeem(
            self.ctx.clone(),
            attached,
            code_exchange::Code {
                code: code.into(),
                code_verifier: code_verifier.into(),
                redirect_uri: redirect_uri.into(),
            },
            replacing,
        );
        detached(self.ctx.spawn.as_ref(), Box::pin(redeem)).await?;
        Ok(session)
    }
}
