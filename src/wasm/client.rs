//! `TokenClient` and `refreshTokens` for JavaScript.

use super::convert::{
    as_text, get, object, opt_string, string, string_arg, string_arg_within, strings,
    MAX_ARRAY_ITEMS,
};
use super::error::to_js;
use super::host;
use super::js_store::JsStore;
use super::options::{build, discover, from_credentials, known_keys, EVENT_OPTIONS, OPTIONS};
use crate::{AuthorizationParams, Error, TokenClient};
use js_sys::Promise;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// The JavaScript `TokenClient`: sessions, client tokens, the code flow.
#[wasm_bindgen(js_name = TokenClient)]
pub struct WasmTokenClient {
    inner: TokenClient,
}

impl WasmTokenClient {
    fn wrap(inner: TokenClient) -> Self {
        WasmTokenClient { inner }
    }

    /// The core client.
    pub(crate) fn inner(&self) -> &TokenClient {
        &self.inner
    }
}

#[wasm_bindgen(js_class = TokenClient)]
impl WasmTokenClient {
    /// `new TokenClient(options)`; throws a `config` error naming a bad field.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<WasmTokenClient, JsValue> {
        build(&options, OPTIONS)
            .map(WasmTokenClient::wrap)
            .map_err(to_js)
    }

    /// `TokenClient.fromCredentialsJson(json, options?)`: the client id, the
    /// secret or certificate and the sliding lifetime from the provider's
    /// credentials JSON; `options` adds the rest (no identity options).
    #[wasm_bindgen(js_name = fromCredentialsJson)]
    pub fn from_credentials_json(
        json: JsValue,
        options: JsValue,
    ) -> Result<WasmTokenClient, JsValue> {
        string_arg_within(&json, "json", crate::credentials::MAX_CREDENTIALS_BYTES)
            .and_then(|json| from_credentials(&json, &options))
            .map(WasmTokenClient::wrap)
            .map_err(to_js)
    }

    /// `await TokenClient.discover(issuer, options)`: the endpoints from the
    /// issuer's discovery document; `options` as the constructor's, without
    /// `tokenEndpoint`.
    pub fn discover(issuer: JsValue, options: JsValue) -> Promise {
        super::promise(Box::pin(async move {
            let issuer = string_arg(&issuer, "issuer").map_err(to_js)?;
            let client = discover(&issuer, &options).await.map_err(to_js)?;
            Ok(WasmTokenClient::wrap(client).into())
        }))
    }

    /// The discovery document the client was made from, or `undefined`.
    #[wasm_bindgen(getter, js_name = providerMetadata)]
    pub fn provider_metadata(&self) -> JsValue {
        let Some(m) = self.inner.provider_metadata() else {
            return JsValue::UNDEFINED;
        };
        let list = |names: &[String]| -> JsValue {
            names
                .iter()
                .map(|n| JsValue::from_str(n))
                .collect::<js_sys::Array>()
                .into()
        };
        object(&[
            ("issuer", Some(m.issuer.as_str().into())),
            ("tokenEndpoint", Some(m.token_endpoint.as_str().into())),
            (
                "authorizationEndpoint",
                m.authorization_endpoint.as_deref().map(Into::into),
            ),
            (
                "revocationEndpoint",
                m.revocation_endpoint.as_deref().map(Into::into),
            ),
            (
                "tokenEndpointAuthMethods",
                Some(list(&m.token_endpoint_auth_methods)),
            ),
            (
                "revocationEndpointAuthMethods",
                Some(list(&m.revocation_endpoint_auth_methods)),
            ),
            (
                "authorizationResponseIssParameterSupported",
                Some(m.authorization_response_iss_parameter_supported.into()),
            ),
        ])
    }

    /// `client.revokeClientTokens()`: revoke and forget every cached client token.
    #[wasm_bindgen(js_name = revokeClientTokens)]
    pub fn revoke_client_tokens(&self) -> Promise {
        let client = self.inner.clone();
        super::promise(Box::pin(async move {
            client.revoke_client_tokens().await.map_err(to_js)?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// `client.saveUnsaved()`: save every record held only in memory.
    #[wasm_bindgen(js_name = saveUnsaved)]
    pub fn save_unsaved(&self) -> Promise {
        let client = self.inner.clone();
        super::promise(Box::pin(async move {
            client.save_unsaved().await.map_err(to_js)?;
            Ok(JsValue::UNDEFINED)
        }))
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

    /// `client.invalidateClientToken(scopes)`: forget a cached client
    /// token; with `token` (`client.clientTokenRejected(scopes, token)`),
    /// only if it is still that one. (One export for both: each costs wasm
    /// bytes.)
    #[wasm_bindgen(js_name = invalidateClientToken)]
    pub fn invalidate_client_token(&self, scopes: JsValue, token: JsValue) -> Result<(), JsValue> {
        let scopes = strings(&scopes, "scopes").map_err(to_js)?;
        let tokens = self.inner.client_tokens();
        if token.is_undefined() {
            return tokens.invalidate(&scopes).map_err(to_js);
        }
        let token = string_arg(&token, "token").map_err(to_js)?;
        tokens.token_rejected(&scopes, &token).map_err(to_js)
    }

    /// `await client.authorizationUrl({ redirectUri, scopes, state?, nonce?,
    /// prompt?, extraParams? })` (async: WebCrypto hashes the PKCE verifier).
    #[wasm_bindgen(js_name = authorizationUrl)]
    pub fn authorization_url(&self, params: JsValue) -> Promise {
        let client = self.inner.clone();
        let params = authorization_params(&params);
        super::promise(Box::pin(async move {
            let request = client
                .authorization_url(params.map_err(to_js)?)
                .await
                .map_err(to_js)?;
            Ok(object(&[
                ("url", Some(request.url.into())),
                ("codeVerifier", Some(request.code_verifier.into())),
                ("state", Some(request.state.into())),
                ("nonce", Some(request.nonce.into())),
            ]))
        }))
    }

    /// `client.codeFromRedirect(redirect, expectedState)`: the code of the
    /// redirect back from the server, its state and issuer checked
    /// (throws otherwise; see [`TokenClient::code_from_redirect`]).
    #[wasm_bindgen(js_name = codeFromRedirect)]
    pub fn code_from_redirect(
        &self,
        redirect: JsValue,
        expected_state: JsValue,
    ) -> Result<String, JsValue> {
        let read = || -> Result<String, Error> {
            let redirect = string_arg(&redirect, "redirect")?;
            let expected_state = string_arg(&expected_state, "expected_state")?;
            self.inner.code_from_redirect(&redirect, &expected_state)
        };
        read().map_err(to_js)
    }

    /// `client.exchangeCode({ code, codeVerifier, redirectUri }, key, store)`:
    /// resolves once the new record is saved (the package then hands out a
    /// session on `key`).
    #[wasm_bindgen(js_name = exchangeCode)]
    pub fn exchange_code(&self, params: JsValue, key: JsValue, store: JsValue) -> Promise {
        let client = self.inner.clone();
        super::promise(Box::pin(async move {
            let read = || -> Result<_, Error> {
                // As authorizationUrl's: a misspelt or extra member (`state`,
                // a spread authorizationUrl() result) is named, not ignored.
                known_keys(&params, "options", "", EXCHANGE_MEMBERS)?;
                Ok((
                    string(&params, "code")?,
                    string(&params, "codeVerifier")?,
                    string(&params, "redirectUri")?,
                    string_arg(&key, "key")?,
                    JsStore::new(store).map_err(|e| client.scrub_storage(e))?,
                ))
            };
            let (code, verifier, redirect_uri, key, store) = read().map_err(to_js)?;
            client
                .exchange_code(&code, &verifier, &redirect_uri, &key, Arc::new(store))
                .await
                .map_err(to_js)?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// This client's name as a fleet lease owner: a lease holds it
    /// followed by `.` and a random number, new for each lease taken.
    #[wasm_bindgen(getter, js_name = leaseOwner)]
    pub fn lease_owner(&self) -> String {
        self.inner.lease_owner()
    }

    /// The most session states the client keeps (the package bounds its
    /// mirror of cached tokens the same way).
    #[wasm_bindgen(getter, js_name = maxSessions)]
    pub fn max_sessions(&self) -> f64 {
        self.inner.config().max_sessions as f64
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
        // One refresh with no session emits no events: the event options
        // (the last of OPTIONS) are not options here.
        let mut allowed = OPTIONS[..OPTIONS.len() - EVENT_OPTIONS].to_vec();
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

/// The members of `client.exchangeCode()`'s options.
const EXCHANGE_MEMBERS: &[&str] = &["code", "codeVerifier", "redirectUri"];

/// The members of `client.authorizationUrl()`'s options.
const AUTHORIZATION_MEMBERS: &[&str] = &[
    "redirectUri",
    "scopes",
    "state",
    "nonce",
    "prompt",
    "extraParams",
];

fn authorization_params(params: &JsValue) -> Result<AuthorizationParams, Error> {
    // A misspelt member (`scope` for `scopes`) would be dropped silently,
    // and the user asked to consent to the wrong scopes.
    known_keys(params, "options", "", AUTHORIZATION_MEMBERS)?;
    let scopes = get(params, "scopes")?;
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
        extra: extra_params(params)?,
    })
}

/// The member [`extra_params`] reads.
const EXTRA_PARAMS: &str = "extraParams";

/// `options.extraParams`: further query parameters, an object of strings,
/// sent in the order of its own enumerable keys (`Object.keys`). Values
/// are never quoted in an error (a `login_hint` is personal).
fn extra_params(params: &JsValue) -> Result<Vec<(String, String)>, Error> {
    let given = get(params, EXTRA_PARAMS)?;
    if given.is_undefined() || given.is_null() {
        return Ok(Vec::new());
    }
    let threw = |_| Error::config(EXTRA_PARAMS, "could not be read (it threw)");
    // An array's indexes would become parameter names (`0=…`); a `Map` or
    // `URLSearchParams` has no own keys, and would send nothing.
    if !given.is_object() || host::iterable(&given).map_err(threw)? {
        return Err(Error::config(
            EXTRA_PARAMS,
            "must be an object of strings ({ name: value }), not an array, Map or \
             URLSearchParams (Object.fromEntries() makes one)",
        ));
    }
    let keys = host::keys(&given).map_err(threw)?;
    if keys.length() as usize > MAX_ARRAY_ITEMS {
        return Err(Error::config(
            EXTRA_PARAMS,
            format!("has more than {MAX_ARRAY_ITEMS} members"),
        ));
    }
    keys.iter()
        .map(|key| {
            let name = as_text(&key, EXTRA_PARAMS)?.unwrap_or_default();
            let value = host::get(&given, &name).map_err(threw)?;
            let value = as_text(&value, EXTRA_PARAMS)?.ok_or_else(|| {
                // The name, cut: a parameter's name is short and no secret.
                let shown = host::text_cut(&key, 64).unwrap_or_default();
                Error::config(EXTRA_PARAMS, format!("`{shown}` must be a string"))
            })?;
            Ok((name, value))
        })
        .collect()
}
