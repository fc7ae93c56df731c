//! `TokenClient` options from JavaScript objects: every key known (a typo
//! is a `config` error naming it), every value checked.

use super::convert::{get, opt_function, opt_int, opt_string, string};
use super::fetch_http::FetchHttp;
use super::host;
use super::js_clock::{JsClock, LocalSpawner};
use crate::{ClientAuthMethod, Config, ConfigBuilder, Error, RetryPolicy, TokenClient};
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
/// The event options come last (see [`EVENT_OPTIONS`]).
pub(crate) const OPTIONS: &[&str] = &[
    "tokenEndpoint",
    "clientId",
    "clientSecret",
    "clientAuth",
    "audience",
    "authorizationEndpoint",
    "revocationEndpoint",
    "privateKeyPem",
    "keyId",
    "assertionAudience",
    "leewaySeconds",
    "userTokenLifetimeSeconds",
    "clientTokenLifetimeSeconds",
    "refreshTokenLifetimeSeconds",
    "timeoutMs",
    "storeTimeoutMs",
    "maxSessions",
    "leaseTtlMs",
    "leaseWaitMs",
    "retry",
    "fetch",
    "now",
    "sleep",
    "onEvent",
    "eventKeys",
];

/// How many of the last [`OPTIONS`] configure events (`onEvent`, `eventKeys`).
pub(crate) const EVENT_OPTIONS: usize = 2;

/// The options that name the client; `fromCredentialsJson` takes them
/// from the JSON instead.
const IDENTITY: &[&str] = &[
    "tokenEndpoint",
    "clientId",
    "clientSecret",
    "clientAuth",
    "privateKeyPem",
    "keyId",
];

/// The message of a key that is no option: its name is the caller's own
/// spelling, never renamed like a core field (`client_id` is not `clientId`).
pub(crate) const UNKNOWN_OPTION: &str = "is not a known option";

/// The longest option name an error quotes whole (every option's is shorter).
const MAX_KEY_CHARS: usize = 64;

/// Checks that `value` is an object whose keys are all in `allowed`: a typo
/// is a `config` error naming it, never silently ignored.
pub(crate) fn known_keys(
    value: &JsValue,
    name: &str,
    prefix: &str,
    allowed: &[&str],
) -> Result<(), Error> {
    if !value.is_object() {
        return Err(Error::config(name, "must be an object"));
    }
    let keys =
        host::keys(value).map_err(|_| Error::config(name, "could not be read (it threw)"))?;
    for key in keys.iter() {
        // Cut before the copy: an option's name is short, and a key of any
        // length would otherwise be copied into wasm memory whole (which
        // never shrinks) only to be named in the error.
        let key = host::text_cut(&key, MAX_KEY_CHARS).unwrap_or_default();
        if !allowed.contains(&key.as_str()) {
            return Err(Error::config(format!("{prefix}{key}"), UNKNOWN_OPTION));
        }
    }
    Ok(())
}

/// A `ConfigBuilder` setter for a whole-number option.
type IntSetter = fn(ConfigBuilder, i64) -> ConfigBuilder;

/// The core client from JavaScript options; unknown keys are `config` errors.
pub(crate) fn build(options: &JsValue, allowed: &[&str]) -> Result<TokenClient, Error> {
    known_keys(options, "options", "", allowed)?;
    let o = options;
    let b = Config::builder(string(o, "tokenEndpoint")?, string(o, "clientId")?);
    finish(identity(b, o)?, o)
}

/// `TokenClient.discover(issuer, options)`: the constructor's options but
/// `tokenEndpoint`, the endpoints read from the issuer's discovery document.
pub(crate) async fn discover(issuer: &str, options: &JsValue) -> Result<TokenClient, Error> {
    known_keys(options, "options", "", &options_but(&["tokenEndpoint"]))?;
    let b = Config::for_client(string(options, "clientId")?);
    let b = configure(identity(b, options)?, options)?;
    let (http, clock) = host_parts(options)?;
    TokenClient::discover(issuer, b, http, clock, Some(Arc::new(LocalSpawner))).await
}

/// The options that say who the client is and how it authenticates.
fn identity(mut b: ConfigBuilder, o: &JsValue) -> Result<ConfigBuilder, Error> {
    if let Some(secret) = opt_string(o, "clientSecret")? {
        b = b.client_secret(secret);
    }
    if let Some(method) = opt_string(o, "clientAuth")? {
        b = b.client_auth(ClientAuthMethod::parse(&method)?);
    }
    if let Some(pem) = opt_string(o, "privateKeyPem")? {
        b = b.private_key_pem(pem);
    }
    if let Some(kid) = opt_string(o, "keyId")? {
        b = b.key_id(kid);
    }
    Ok(b)
}

/// A client from the provider's credentials JSON plus optional `options`.
pub(crate) fn from_credentials(json: &str, options: &JsValue) -> Result<TokenClient, Error> {
    let b = Config::from_credentials_json(json)?;
    if options.is_undefined() || options.is_null() {
        return finish(b, &JsValue::UNDEFINED);
    }
    known_keys(options, "options", "", &options_but(IDENTITY))?;
    finish(b, options)
}

/// [`OPTIONS`] but `left_out`, in their order (one loop for both callers:
/// a filtered iterator each cost wasm bytes).
fn options_but(left_out: &[&str]) -> Vec<&'static str> {
    let mut names = Vec::with_capacity(OPTIONS.len());
    for &name in OPTIONS {
        if !left_out.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Applies the options every client may take, and builds the client.
fn finish(b: ConfigBuilder, o: &JsValue) -> Result<TokenClient, Error> {
    let config = configure(b, o)?.build()?;
    let (http, clock) = host_parts(o)?;
    Ok(TokenClient::with_spawner(
        config,
        http,
        clock,
        Arc::new(LocalSpawner),
    ))
}

/// The host's fetch and clock from the options.
fn host_parts(o: &JsValue) -> Result<(Arc<FetchHttp>, Arc<JsClock>), Error> {
    let http = FetchHttp {
        fetch: opt_function(o, "fetch")?,
    };
    let clock = JsClock {
        now: opt_function(o, "now")?,
        sleep: opt_function(o, "sleep")?,
    };
    Ok((Arc::new(http), Arc::new(clock)))
}

/// Applies the options every client may take.
fn configure(mut b: ConfigBuilder, o: &JsValue) -> Result<ConfigBuilder, Error> {
    if let Some(audience) = opt_string(o, "assertionAudience")? {
        b = b.assertion_audience(audience);
    }
    if let Some(audience) = opt_string(o, "audience")? {
        b = b.audience(audience);
    }
    if let Some(url) = opt_string(o, "authorizationEndpoint")? {
        b = b.authorization_endpoint(url);
    }
    if let Some(url) = opt_string(o, "revocationEndpoint")? {
        b = b.revocation_endpoint(url);
    }
    let ints: [(&str, IntSetter); 8] = [
        ("leewaySeconds", ConfigBuilder::leeway_secs),
        (
            "userTokenLifetimeSeconds",
            ConfigBuilder::user_token_lifetime_secs,
        ),
        (
            "clientTokenLifetimeSeconds",
            ConfigBuilder::client_token_lifetime_secs,
        ),
        (
            "refreshTokenLifetimeSeconds",
            ConfigBuilder::refresh_token_lifetime_secs,
        ),
        ("timeoutMs", ConfigBuilder::timeout_ms),
        ("storeTimeoutMs", ConfigBuilder::store_timeout_ms),
        ("leaseTtlMs", ConfigBuilder::lease_ttl_ms),
        ("leaseWaitMs", ConfigBuilder::lease_wait_ms),
    ];
    for (name, set) in ints {
        if let Some(value) = opt_int(o, name)? {
            b = set(b, value);
        }
    }
    if let Some(max) = opt_int(o, "maxSessions")? {
        if max < 0 {
            return Err(Error::config("maxSessions", "must not be negative"));
        }
        // Past 2^32 - 1 on wasm32: no bound anyway, as natively.
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        b = b.max_sessions(max);
    }
    let retry = get(o, "retry")?;
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
    if let Some(keys) = opt_string(o, "eventKeys")? {
        b = b.event_keys(crate::EventKeys::parse(&keys)?);
    }
    if let Some(sink) = super::events::sink(opt_function(o, "onEvent")?) {
        b = b.on_event(Arc::new(sink));
    }
    Ok(b)
}
