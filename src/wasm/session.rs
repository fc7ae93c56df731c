//! One user's session for JavaScript, addressed by key on its client.
//!
//! The package's JavaScript `UserSession` (pkg/src/api.js) is a plain JS
//! object holding its client, key and store; it owns no wasm handle. Each
//! call names the key, and these methods attach a core [`UserSession`] for
//! that call only: a handle the host drops after one request then costs no
//! wasm memory and no FinalizationRegistry entry (DESIGN point 11, the
//! 100,000-sessions heap row of bench/run.mjs). The core still holds one
//! state per key and owns single flight, rotation and errors.

use super::client::WasmTokenClient;
use super::convert::{opt_int, opt_string, session_status, string, string_arg, token_info};
use super::error::to_js;
use super::js_store::JsStore;
use super::memory_store::WasmMemoryStore;
use super::options::known_keys;
use crate::{Error, Seed, TokenStore, UserSession};
use js_sys::{Array, Promise};
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// The members of `session.seed()`'s argument.
const SEED_MEMBERS: &[&str] = &[
    "refreshToken",
    "accessToken",
    "expiresIn",
    "scope",
    "idToken",
];

/// A host store object, checked once (it has `load` and `save`) and
/// wrapped, or the core's own in-memory store. The package keeps one per
/// store object (a WeakMap), so every session on that store shares it.
#[wasm_bindgen]
pub struct StoreRef(Arc<dyn TokenStore>);

impl WasmTokenClient {
    /// A core handle on `key` with `store`, for one call.
    fn attach(&self, key: &JsValue, store: &StoreRef) -> Result<UserSession, Error> {
        let key = string_arg(key, "key")?;
        self.inner().session(&key, store.0.clone())
    }

    /// A Promise of `op` on the session `key`; argument errors reject it.
    fn on_session<F, Fut>(&self, key: &JsValue, store: &StoreRef, op: F) -> Promise
    where
        F: FnOnce(UserSession) -> Fut,
        Fut: std::future::Future<Output = Result<JsValue, JsValue>> + 'static,
    {
        match self.attach(key, store) {
            Ok(session) => super::promise(Box::pin(op(session))),
            Err(e) => Promise::reject(&to_js(e)),
        }
    }
}

#[wasm_bindgen(js_class = TokenClient)]
impl WasmTokenClient {
    /// `client.session(key, store)` for a store seen for the first time:
    /// checks `key`, then `store`, creates the key's state and returns the
    /// wrapped store (throws a `config` error naming the bad argument).
    #[wasm_bindgen(js_name = sessionOpen)]
    pub fn session_open(&self, key: JsValue, store: JsValue) -> Result<StoreRef, JsValue> {
        let open = || -> Result<StoreRef, Error> {
            string_arg(&key, "key")?;
            let store = JsStore::new(store).map_err(|e| self.inner().scrub_storage(e))?;
            let store = StoreRef(Arc::new(store));
            self.attach(&key, &store)?;
            Ok(store)
        };
        open().map_err(to_js)
    }

    /// `client.session(key, store)` for the package's `MemoryStore` seen for
    /// the first time: the core's store it holds, used directly.
    #[wasm_bindgen(js_name = sessionOpenMemory)]
    pub fn session_open_memory(
        &self,
        key: JsValue,
        store: &WasmMemoryStore,
    ) -> Result<StoreRef, JsValue> {
        let store = StoreRef(store.0.clone());
        self.attach(&key, &store).map_err(to_js)?;
        Ok(store)
    }

    /// `client.session(key, store)` for a store already wrapped: checks
    /// `key` and creates its state.
    #[wasm_bindgen(js_name = sessionCheck)]
    pub fn session_check(&self, key: JsValue, store: &StoreRef) -> Result<(), JsValue> {
        self.attach(&key, store).map(drop).map_err(to_js)
    }

    /// The cached token of `key` with the instant it stays fresh until,
    /// `[token, freshUntilMs]`, or `undefined`: what the package mirrors on
    /// its side. Synchronous, no I/O.
    #[wasm_bindgen(js_name = sessionCached)]
    pub fn session_cached(&self, key: JsValue, store: &StoreRef) -> Result<JsValue, JsValue> {
        let session = self.attach(&key, store).map_err(to_js)?;
        Ok(match session.cached_token() {
            Some(cached) => Array::of2(
                &JsValue::from(cached.token),
                &JsValue::from_f64(cached.fresh_until_ms as f64),
            )
            .into(),
            None => JsValue::UNDEFINED,
        })
    }

    /// `session.accessToken()` past the mirror: a fresh token.
    #[wasm_bindgen(js_name = sessionAccessToken)]
    pub fn session_access_token(&self, key: JsValue, store: &StoreRef) -> Promise {
        self.on_session(&key, store, |session| async move {
            let token = session.access_token().await.map_err(to_js)?;
            Ok(JsValue::from(token))
        })
    }

    /// `session.tokens()`: the fresh token with its times, scope and ID token.
    #[wasm_bindgen(js_name = sessionTokens)]
    pub fn session_tokens(&self, key: JsValue, store: &StoreRef) -> Promise {
        self.on_session(&key, store, |session| async move {
            session.tokens().await.map(token_info).map_err(to_js)
        })
    }

    /// `session.refresh()`: a forced refresh.
    #[wasm_bindgen(js_name = sessionRefresh)]
    pub fn session_refresh(&self, key: JsValue, store: &StoreRef) -> Promise {
        self.on_session(&key, store, |session| async move {
            session.refresh().await.map(token_info).map_err(to_js)
        })
    }

    /// `session.tokenRejected(token)`: the API rejected `token`; refresh
    /// unless another caller already did.
    #[wasm_bindgen(js_name = sessionTokenRejected)]
    pub fn session_token_rejected(
        &self,
        key: JsValue,
        store: &StoreRef,
        token: JsValue,
    ) -> Promise {
        self.on_session(&key, store, |session| async move {
            let token = string_arg(&token, "token").map_err(to_js)?;
            session
                .token_rejected(&token)
                .await
                .map(token_info)
                .map_err(to_js)
        })
    }

    /// `session.seed({ refreshToken, accessToken?, expiresIn?, scope?, idToken? })`.
    #[wasm_bindgen(js_name = sessionSeed)]
    pub fn session_seed(&self, key: JsValue, store: &StoreRef, seed: JsValue) -> Promise {
        self.on_session(&key, store, |session| async move {
            let read = || -> Result<Seed, Error> {
                // A misspelt optional member (`expires_in`) would be dropped
                // silently, and the token it came with refreshed at once.
                known_keys(&seed, "seed", "", SEED_MEMBERS)?;
                Ok(Seed {
                    refresh_token: string(&seed, "refreshToken")?.into(),
                    access_token: opt_string(&seed, "accessToken")?.map(Into::into),
                    expires_in: opt_int(&seed, "expiresIn")?,
                    scope: opt_string(&seed, "scope")?,
                    id_token: opt_string(&seed, "idToken")?.map(Into::into),
                })
            };
            let seed = read().map_err(to_js)?;
            session.seed(seed).await.map_err(to_js)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// `session.revoke()`: revoke at the server and mark the record dead.
    #[wasm_bindgen(js_name = sessionRevoke)]
    pub fn session_revoke(&self, key: JsValue, store: &StoreRef) -> Promise {
        self.on_session(&key, store, |session| async move {
            session.revoke().await.map_err(to_js)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// `session.status()`: what is known without sending anything.
    #[wasm_bindgen(js_name = sessionStatus)]
    pub fn session_status(&self, key: JsValue, store: &StoreRef) -> Promise {
        self.on_session(&key, store, |session| async move {
            session.status().await.map(session_status).map_err(to_js)
        })
    }
}
