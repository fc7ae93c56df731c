//! `UserSession` for JavaScript.

use super::convert::{
    object_arg, opt_int, opt_string, session_status, string, string_arg, token_info,
};
use super::error::to_js;
use crate::{Error, Seed, UserSession};
use js_sys::Promise;
use std::cell::RefCell;
use wasm_bindgen::prelude::*;

/// The JavaScript `UserSession`: one user's tokens.
#[wasm_bindgen(js_name = UserSession)]
pub struct WasmUserSession {
    inner: UserSession,
    /// The last token handed out, as a JS string, with the record
    /// generation it came from: the cached path then crosses no string.
    token: RefCell<Option<(u64, JsValue)>>,
}

impl WasmUserSession {
    pub(crate) fn new(inner: UserSession) -> Self {
        WasmUserSession {
            inner,
            token: RefCell::new(None),
        }
    }
}

#[wasm_bindgen(js_class = UserSession)]
impl WasmUserSession {
    /// The session key.
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> String {
        self.inner.key().to_owned()
    }

    /// `session.accessToken()`: a fresh token. The cached path resolves an
    /// already-settled Promise without entering the async machinery.
    #[wasm_bindgen(js_name = accessToken)]
    pub fn access_token(&self) -> Promise {
        if let Some(generation) = self.inner.fresh_generation() {
            let mut cache = self.token.borrow_mut();
            match cache.as_ref() {
                Some((g, token)) if *g == generation => return Promise::resolve(token),
                _ => {
                    if let Some(token) = self.inner.cached_access_token() {
                        let token = JsValue::from(token);
                        *cache = Some((generation, token.clone()));
                        return Promise::resolve(&token);
                    }
                }
            }
        }
        let session = self.inner.clone();
        super::promise(Box::pin(async move {
            session
                .access_token()
                .await
                .map(JsValue::from)
                .map_err(to_js)
        }))
    }

    /// `session.tokens()`: the fresh token with its times, scope and ID token.
    pub fn tokens(&self) -> Promise {
        let session = self.inner.clone();
        super::promise(Box::pin(async move {
            session.tokens().await.map(token_info).map_err(to_js)
        }))
    }

    /// `session.refresh()`: a forced refresh.
    pub fn refresh(&self) -> Promise {
        let session = self.inner.clone();
        super::promise(Box::pin(async move {
            session.refresh().await.map(token_info).map_err(to_js)
        }))
    }

    /// `session.tokenRejected(token)`: the API rejected `token`; refresh
    /// unless another caller already did.
    #[wasm_bindgen(js_name = tokenRejected)]
    pub fn token_rejected(&self, token: JsValue) -> Promise {
        let session = self.inner.clone();
        super::promise(Box::pin(async move {
            let token = string_arg(&token, "token").map_err(to_js)?;
            session
                .token_rejected(&token)
                .await
                .map(token_info)
                .map_err(to_js)
        }))
    }

    /// `session.seed({ refreshToken, accessToken?, expiresIn?, scope?, idToken? })`.
    pub fn seed(&self, seed: JsValue) -> Promise {
        let session = self.inner.clone();
        super::promise(Box::pin(async move {
            let read = || -> Result<Seed, Error> {
                object_arg(&seed, "seed")?;
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
        }))
    }

    /// `session.status()`: what is known without sending anything.
    pub fn status(&self) -> Promise {
        let session = self.inner.clone();
        super::promise(Box::pin(async move {
            session.status().await.map(session_status).map_err(to_js)
        }))
    }
}
