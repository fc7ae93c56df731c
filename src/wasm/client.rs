//! `TokenClient` and `refreshTokens` for JavaScript.

use super::convert::{get, object, opt_function, opt_int, opt_string, string, strings};
use super::error::to_js;
use super::fetch_http::FetchHttp;
use super::js_clock::JsClock;
use super::js_store::JsStore;
use super::session::WasmUserSession;
use crate::{AuthorizationParams, ClientAuthMethod, Config, Error, RetryPolicy, TokenClient};
use js_sys::{Object, Promise};
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// The members of `options.retry`.
const RETRY_OPTIONS: &[&str] = &[
    "maxAttempts",
    "initialBackoffMs",
    "maxBackoffMs",
    "budgetMs",
];

/// Every option `new TokenClient(options)` understands; others are typos.
const OPTIONS: &[&str] = &[
    "tokenEndpoint",
    "clientId",
    "clientSecret",
    "clientAuth",
    "audience",
    "authorizationEndpoint",
    "leewaySeconds",
    "userTokenLifetimeSeconds",
    "clientTokenLifetimeSeconds",
    "refreshTokenLifetimeSeconds",
    "timeoutMs",
    "maxSessions",
    "leaseTtlMs",
    "leaseWaitMs",
    "retry",
    "fetch",
    "now",
    "sleep",
];

/// The JavaScript `TokenClient`: sessions, client tokens, the code flow.
#[wasm_bindgen(js_name = TokenClient)]
pub struct WasmTokenClient {
    inner: TokenClient,
}

#[wasm_bindgen(js_class = TokenClient)]
impl WasmTokenClient {
    /// `new TokenClient(options)`; throws a `config` error naming a bad field.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<WasmTokenClient, JsValue> {
        build(&options, OPTIONS)
            .map(|inner| WasmTokenClient { inner })
            .map_err(to_js)
    }

    /// `client.session(key, store)`: a handle sharing state with every other
    /// handle of the same key.
    pub fn session(&self, key: String, store: JsValue) -> Result<WasmUserSession, JsValue> {
        let store = JsStore::new(store).map_err(to_js)?;
        let session = self.inner.session(&key, Arc::new(store)).map_err(to_js)?;
        Ok(WasmUserSession::new(session))
    }

    /// `client.clientToken(scopes)`: a cached client-credentials token.
    #[wasm_bindgen(js_name = clientToken)]
    pub fn client_token(&self, scopes: JsValue) -> Promise {
        let client = self.inner.clone();
        super::promise(Box::pin(async move {
            let scopes = strings(&scopes, "scopes").map_err(to_js)?;
            client
                .client_token(&scopes)
                .await
                .map(JsValue::from)
                .map_err(to_js)
        }))
    }

    /// `client.invalidateClientToken(scopes)`: forget a cached client token.
    #[wasm_bindgen(js_name = invalidateClientToken)]
    pub fn invalidate_client_token(&self, scopes: JsValue) -> Result<(), JsValue> {
        let scopes = strings(&scopes, "scopes").map_err(to_js)?;
        self.inner
            .client_tokens()
            .invalidate(&scopes)
            .map_err(to_js)
    }

    /// `client.authorizationUrl({ redirectUri, scopes, state?, nonce? })`.
    #[wasm_bindgen(js_name = authorizationUrl)]
    pub fn authorization_url(&self, params: JsValue) -> Result<JsValue, JsValue> {
        let params = authorization_params(&params).map_err(to_js)?;
        let request = self.inner.authorization_url(params).map_err(to_js)?;
        Ok(object(&[
            ("url", Some(request.url.into())),
            ("codeVerifier", Some(request.code_verifier.into())),
            ("state", Some(request.state.into())),
            ("nonce", Some(request.nonce.into())),
        ]))
    }

    /// `client.exchangeCode({ code, codeVerifier, redirectUri }, key, store)`.
    #[wasm_bindgen(js_name = exchangeCode)]
    pub fn exchange_code(&self, params: JsValue, key: String, store: JsValue) -> Promise {
        let client = self.inner.clone();
        super::promise(Box::pin(async move {
            let read = || -> Result<_, Error> {
                Ok((
                    string(&params, "code")?,
                    string(&params, "codeVerifier")?,
                    string(&params, "redirectUri")?,
                    JsStore::new(store)?,
                ))
            };
            let (code, verifier, redirect_uri, store) = read().map_err(to_js)?;
            let session = client
                .exchange_code(&code, &verifier, &redirect_uri, &key, Arc::new(store))
                .await
                .map_err(to_js)?;
            Ok(WasmUserSession::new(session).into())
        }))
    }

    /// This client's name as a fleet lease owner.
    #[wasm_bindgen(getter, js_name = leaseOwner)]
    pub fn lease_owner(&self) -> String {
        self.inner.lease_owner().to_owned()
    }

    /// How many session states the client holds in memory.
    #[wasm_bindgen(getter, js_name = sessionCount)]
    pub fn session_count(&self) -> f64 {
        self.inner.session_count() as f64
    }
}

/// `refreshTokens({ tokenEndpoint, clientId, clientSecret, refreshToken })`:
/// one refresh, the typed drop-in for hand-written code. Resolves with the
/// token response (snake_case, as the server sent it, validated).
#[wasm_bindgen(js_name = refreshTokens)]
pub fn refresh_tokens(options: JsValue) -> Promise {
    super::promise(Box::pin(async move {
        let mut allowed = OPTIONS.to_vec();
        allowed.push("refreshToken");
        let client = build(&options, &allowed).map_err(to_js)?;
        let refresh_token = string(&options, "refreshToken").map_err(to_js)?;
        let response = client.refresh_once(&refresh_token).await.map_err(to_js)?;
        Ok(object(&[
            ("access_token", Some(response.access_token.expose().into())),
            ("token_type", Some("Bearer".into())),
            (
                "expires_in",
                response.expires_in.map(|s| JsValue::from_f64(s as f64)),
            ),
            (
                "refresh_token",
                response.refresh_token.map(|t| t.expose().into()),
            ),
            ("scope", response.scope.map(Into::into)),
            ("id_token", response.id_token.map(|t| t.expose().into())),
        ]))
    }))
}

fn authorization_params(params: &JsValue) -> Result<AuthorizationParams, Error> {
    let scopes = get(params, "scopes");
    Ok(AuthorizationParams {
        redirect_uri: string(params, "redirectUri")?,
        scopes: if scopes.is_undefined() {
            Vec::new()
        } else {
            strings(&scopes, "scopes")?
        },
        state: opt_string(params, "state")?,
        nonce: opt_string(params, "nonce")?,
        prompt: opt_string(params, "prompt")?,
        extra: Vec::new(),
    })
}

/// Checks that `value` is an object whose keys are all in `allowed`: a typo
/// is a `config` error naming it, never silently ignored.
fn known_keys(value: &JsValue, name: &str, prefix: &str, allowed: &[&str]) -> Result<(), Error> {
    if !value.is_object() {
        return Err(Error::config(name, "must be an object"));
    }
    for key in Object::keys(&Object::from(value.clone())).iter() {
        let key = key.as_string().unwrap_or_default();
        if !allowed.contains(&key.as_str()) {
            return Err(Error::config(
                format!("{prefix}{key}"),
                "is not a known option",
            ));
        }
    }
    Ok(())
}

/// A `ConfigBuilder` setter for a whole-number option.
type IntSetter = fn(crate::ConfigBuilder, i64) -> crate::ConfigBuilder;

/// The core client from JavaScript options; unknown keys are `config` errors.
fn build(options: &JsValue, allowed: &[&str]) -> Result<TokenClient, Error> {
    known_keys(options, "options", "", allowed)?;
    let o = options;
    let mut b = Config::builder(string(o, "tokenEndpoint")?, string(o, "clientId")?);
    if let Some(secret) = opt_string(o, "clientSecret")? {
        b = b.client_secret(secret);
    }
    if let Some(method) = opt_string(o, "clientAuth")? {
        b = b.client_auth(ClientAuthMethod::parse(&method)?);
    }
    if let Some(audience) = opt_string(o, "audience")? {
        b = b.audience(audience);
    }
    if let Some(url) = opt_string(o, "authorizationEndpoint")? {
        b = b.authorization_endpoint(url);
    }
    let ints: [(&str, IntSetter); 7] = [
        ("leewaySeconds", crate::ConfigBuilder::leeway_secs),
        (
            "userTokenLifetimeSeconds",
            crate::ConfigBuilder::user_token_lifetime_secs,
        ),
        (
            "clientTokenLifetimeSeconds",
            crate::ConfigBuilder::client_token_lifetime_secs,
        ),
        (
            "refreshTokenLifetimeSeconds",
            crate::ConfigBuilder::refresh_token_lifetime_secs,
        ),
        ("timeoutMs", crate::ConfigBuilder::timeout_ms),
        ("leaseTtlMs", crate::ConfigBuilder::lease_ttl_ms),
        ("leaseWaitMs", crate::ConfigBuilder::lease_wait_ms),
    ];
    for (name, set) in ints {
        if let Some(value) = opt_int(o, name)? {
            b = set(b, value);
        }
    }
    if let Some(max) = opt_int(o, "maxSessions")? {
        let max = usize::try_from(max)
            .map_err(|_| Error::config("maxSessions", "must not be negative"))?;
        b = b.max_sessions(max);
    }
    let retry = get(o, "retry");
    if !retry.is_undefined() && !retry.is_null() {
        known_keys(&retry, "retry", "retry.", RETRY_OPTIONS)?;
        let d = RetryPolicy::default();
        let field = |name: &str, default: u64| -> Result<u64, Error> {
            match opt_int(&retry, name)? {
                None => Ok(default),
                Some(v) => u64::try_from(v)
                    .map_err(|_| Error::config(format!("retry.{name}"), "must not be negative")),
            }
        };
        b = b.retry(RetryPolicy {
            max_attempts: u32::try_from(field("maxAttempts", u64::from(d.max_attempts))?)
                .unwrap_or(u32::MAX),
            initial_backoff_ms: field("initialBackoffMs", d.initial_backoff_ms)?,
            max_backoff_ms: field("maxBackoffMs", d.max_backoff_ms)?,
            budget_ms: field("budgetMs", d.budget_ms)?,
        });
    }
    let config = b.build()?;
    let http = FetchHttp {
        fetch: opt_function(o, "fetch")?,
    };
    let clock = JsClock {
        now: opt_function(o, "now")?,
        sleep: opt_function(o, "sleep")?,
    };
    Ok(TokenClient::new(config, Arc::new(http), Arc::new(clock)))
}
