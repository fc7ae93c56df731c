//! Core errors as JavaScript values: the package registers a factory that
//! builds its `FreshTokenError` subclasses from the fields set here.

use super::options::UNKNOWN_OPTION;
use crate::Error;
use js_sys::{Function, Object, Reflect};
use std::cell::RefCell;
use wasm_bindgen::prelude::*;

thread_local! {
    static FACTORY: RefCell<Option<Function>> = const { RefCell::new(None) };
}

/// Registers `factory(fields) -> Error`, called for every error the core
/// returns. `fields` has `code`, `message` and, when known, `reason`,
/// `status`, `oauthError`, `description`, `retryAfterMs`.
#[wasm_bindgen(js_name = setErrorFactory)]
pub fn set_error_factory(factory: Function) {
    FACTORY.with(|f| *f.borrow_mut() = Some(factory));
}

/// Core field names as JavaScript callers spell them.
const JS_FIELDS: &[(&str, &str)] = &[
    ("token_endpoint", "tokenEndpoint"),
    ("authorization_endpoint", "authorizationEndpoint"),
    ("revocation_endpoint", "revocationEndpoint"),
    ("client_id", "clientId"),
    ("client_secret", "clientSecret"),
    ("client_auth", "clientAuth"),
    ("leeway_secs", "leewaySeconds"),
    ("user_token_lifetime_secs", "userTokenLifetimeSeconds"),
    ("client_token_lifetime_secs", "clientTokenLifetimeSeconds"),
    ("refresh_token_lifetime_secs", "refreshTokenLifetimeSeconds"),
    ("timeout_ms", "timeoutMs"),
    ("store_timeout_ms", "storeTimeoutMs"),
    ("max_sessions", "maxSessions"),
    ("lease_ttl_ms", "leaseTtlMs"),
    ("lease_wait_ms", "leaseWaitMs"),
    ("retry.max_attempts", "retry.maxAttempts"),
    ("retry.max_backoff_ms", "retry.maxBackoffMs"),
    ("retry.budget_ms", "retry.budgetMs"),
    ("refresh_token", "refreshToken"),
    ("expires_in", "expiresIn"),
    ("redirect_uri", "redirectUri"),
    ("code_verifier", "codeVerifier"),
    ("private_key", "privateKeyPem"),
    ("assertion_audience", "assertionAudience"),
    ("expected_state", "expectedState"),
    ("event_keys", "eventKeys"),
    ("extra", "extraParams"),
];

/// `error` with its config field (its cause's, for a revocation) as
/// JavaScript callers spell it.
fn js_named(error: Error) -> Error {
    match error {
        Error::Config { field, message } if message != UNKNOWN_OPTION => Error::Config {
            field: JS_FIELDS
                .iter()
                .find(|(core, _)| *core == field)
                .map_or(field, |(_, js)| (*js).to_owned()),
            message,
        },
        Error::RevocationIncomplete { cause } => Error::RevocationIncomplete {
            cause: Box::new(js_named(*cause)),
        },
        other => other,
    }
}

/// The field a `config` error names (a revocation's cause's too): every
/// ConfigError has one.
fn config_field(error: &Error) -> Option<&str> {
    match error {
        Error::Config { field, .. } => Some(field),
        Error::RevocationIncomplete { cause } => config_field(cause),
        _ => None,
    }
}

/// The JavaScript value thrown for `error`.
pub(crate) fn to_js(error: Error) -> JsValue {
    let error = js_named(error);
    let fields = Object::new();
    let set = |name: &str, value: JsValue| {
        let _ = Reflect::set(&fields, &JsValue::from_str(name), &value);
    };
    set("code", error.code().as_str().into());
    set("message", error.to_string().into());
    if let Some(field) = config_field(&error) {
        set("field", field.into());
    }
    if let Some(reason) = error.reason() {
        set("reason", reason.as_str().into());
    }
    if let Some(status) = error.status() {
        set("status", status.into());
    }
    if let Some(oauth) = error.oauth_error() {
        set("oauthError", oauth.into());
    }
    if let Some(description) = error.description() {
        set("description", description.into());
    }
    if error.server_may_hold_token() {
        set("serverMayHoldToken", true.into());
    }
    if let Error::Transient {
        retry_after_ms: Some(ms),
        ..
    } = &error
    {
        set("retryAfterMs", (*ms as f64).into());
    }
    // Cloned out first: the factory runs JavaScript, which must never find
    // the cell borrowed.
    let factory = FACTORY.with(|f| f.borrow().clone());
    if let Some(token) = error.rotated_refresh_token() {
        // The package's error keeps it out of the object's own properties
        // (errors.js): only its factory gets it.
        set("rotatedRefreshToken", token.expose().into());
    }
    let built = factory.and_then(|factory| factory.call1(&JsValue::NULL, &fields).ok());
    built.unwrap_or_else(|| {
        let _ = Reflect::delete_property(&fields, &"rotatedRefreshToken".into());
        let plain = js_sys::Error::new(&error.to_string());
        let _ = Object::assign(&plain, &fields);
        plain.into()
    })
}
