//! Host storage for wasm: a JavaScript object whose `load(key)` resolves to
//! a string or `null` and whose `save(key, record)` resolves when durable.

use crate::{StoreError, TokenStore};
use async_trait::async_trait;
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The host's store object.
pub(crate) struct JsStore {
    object: JsValue,
}

impl JsStore {
    /// Wraps `object` after checking it has `load` and `save` methods.
    pub(crate) fn new(object: JsValue) -> Result<Self, crate::Error> {
        for method in ["load", "save"] {
            let f = Reflect::get(&object, &JsValue::from_str(method)).unwrap_or(JsValue::UNDEFINED);
            if !f.is_function() {
                return Err(crate::Error::config(
                    "store",
                    format!("must have a {method}() method"),
                ));
            }
        }
        Ok(JsStore { object })
    }

    /// Calls `method(args…)` and awaits its result (a Promise or a value).
    async fn call(&self, method: &str, args: &[JsValue]) -> Result<JsValue, StoreError> {
        let f: Function = Reflect::get(&self.object, &JsValue::from_str(method))
            .ok()
            .and_then(|f| f.dyn_into().ok())
            .ok_or_else(|| StoreError(format!("store.{method} is not a function")))?;
        let result = match args {
            [a] => f.call1(&self.object, a),
            [a, b, ..] => f.call2(&self.object, a, b),
            [] => f.call0(&self.object),
        }
        .map_err(|e| store_error(method, &e))?;
        match result.dyn_into::<Promise>() {
            Ok(promise) => JsFuture::from(promise)
                .await
                .map_err(|e| store_error(method, &e)),
            Err(value) => Ok(value),
        }
    }
}

/// The host's error message (never the record: the core does not put it in
/// the arguments of an error).
fn store_error(method: &str, error: &JsValue) -> StoreError {
    let message = Reflect::get(error, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| error.as_string())
        .unwrap_or_else(|| "unknown error".into());
    StoreError(format!("store.{method} failed: {message}"))
}

#[async_trait(?Send)]
impl TokenStore for JsStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        let value = self.call("load", &[key.into()]).await?;
        if value.is_null() || value.is_undefined() {
            return Ok(None);
        }
        value
            .as_string()
            .map(Some)
            .ok_or_else(|| StoreError("store.load must resolve to a string or null".into()))
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        self.call("save", &[key.into(), record.into()])
            .await
            .map(|_| ())
    }
}
