//! The core's record encryption for JavaScript: the package's
//! `EncryptedStore` (pkg/src/encrypted-store.js) passes each record through
//! `seal` on its way into the inner store and `open` on its way out; the
//! envelope, the keys and every check are the core's
//! ([`EncryptionKeys::seal`], [`EncryptionKeys::open`]), and the host's
//! WebCrypto encrypts. (The inner store's I/O stays in JavaScript: it is
//! one `await` each way, and the core's `TokenStore` impl for
//! `EncryptedStore` would cost the wasm 3 KB for it.)
//!
//! `keys` is `{ current: { id, key }, old?: [{ id, key }], refusePlaintext? }`;
//! each `key` is a `Uint8Array` of 32 bytes or those bytes in base64
//! (standard or URL-safe, padding optional).

use super::convert::{array, get, string_arg, string_arg_within};
use super::error::to_js;
use super::host;
use super::options::known_keys;
use crate::cipher::KEY_BYTES;
use crate::encrypted_store::{failure, too_large, MAX_ENVELOPE_BYTES};
use crate::store::MAX_RECORD_BYTES;
use crate::{EncryptionKey, EncryptionKeys, Error, StoreError};
use js_sys::{JsString, Promise, Reflect};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use zeroize::Zeroizing;

/// The keys of one `EncryptedStore`, sealing and opening its records.
#[wasm_bindgen(js_name = EncryptedStoreCore)]
pub struct WasmEncryptedStore(Rc<EncryptionKeys>);

/// The bytes of a `Uint8Array` key, copied by the package's catching
/// `bytes` with the engine's accessors (a Proxy is not one; a detached
/// buffer or a `length` that throws or lies is never trusted), and at most
/// one byte past the key size: no allocation is sized by the host's claim.
/// `None` if `key` is not a `Uint8Array`.
fn key_bytes(key: &JsValue, field: &str) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    let bytes = host::bytes(key, KEY_BYTES + 1, false).map_err(|_| {
        Error::config(
            format!("{field}.key"),
            "could not be read (a detached buffer?)",
        )
    })?;
    match bytes.map(Zeroizing::new) {
        Some(bytes) if bytes.len() > KEY_BYTES => Err(Error::config(
            format!("{field}.key"),
            format!("must be exactly {KEY_BYTES} bytes (AES-256), not more"),
        )),
        other => Ok(other),
    }
}

/// One key from `{ id, key }` at `field` (`keys.current`, `keys.old[1]`).
fn key_of(value: &JsValue, field: &str) -> Result<EncryptionKey, Error> {
    known_keys(value, field, &format!("{field}."), &["id", "key"])?;
    let id = get(value, "id")?;
    let id = string_arg(&id, &format!("{field}.id"))?;
    let key = get(value, "key")?;
    let prefix = format!("{field}.");
    if key.is_string() {
        // Base64 of 32 bytes is 44 characters: a longer string is not copied in.
        let text = host::text_within(&key, 4 * KEY_BYTES)
            .ok_or_else(|| Error::config(format!("{field}.key"), "is too long for a base64 key"))?;
        EncryptionKey::checked_base64(&prefix, id, &Zeroizing::new(text))
    } else if let Some(bytes) = key_bytes(&key, field)? {
        EncryptionKey::checked(&prefix, id, &bytes)
    } else {
        Err(Error::config(
            format!("{field}.key"),
            "must be a Uint8Array of 32 bytes or a base64 string",
        ))
    }
}

/// The keys from the `keys` argument.
fn keys_of(value: &JsValue) -> Result<EncryptionKeys, Error> {
    known_keys(
        value,
        "keys",
        "keys.",
        &["current", "old", "refusePlaintext"],
    )?;
    let current = key_of(&get(value, "current")?, "keys.current")?;
    let old = get(value, "old")?;
    let mut keys = EncryptionKeys::new(current);
    if !old.is_undefined() && !old.is_null() {
        let items = array(&old, "keys.old", "must be an array of { id, key }")?;
        for (i, item) in items.iter().enumerate() {
            let key = key_of(&item, &format!("keys.old[{i}]"))?;
            keys = keys.with_old([key]).map_err(|e| match e {
                Error::Config { message, .. } => Error::config("keys.old", message),
                other => other,
            })?;
        }
    }
    let refuse = get(value, "refusePlaintext")?;
    let refuse = match refuse.as_bool() {
        Some(refuse) => refuse,
        None if refuse.is_undefined() => false,
        None => return Err(Error::config("keys.refusePlaintext", "must be a boolean")),
    };
    Ok(keys.refuse_plaintext(refuse))
}

/// A store failure as the package's `StorageError`, its message the
/// store's own (the session that calls this store adds its prefix).
fn rejection(error: StoreError) -> JsValue {
    let value = to_js(Error::storage(error.0.clone()));
    let _ = Reflect::set(&value, &"message".into(), &error.0.into());
    value
}

impl WasmEncryptedStore {
    /// A Promise of `op(keys, key, text)` for the checked session key `key`
    /// and `text` (`Err`: the Promise rejects with it).
    fn run<Fut>(
        &self,
        key: Result<String, Error>,
        text: impl FnOnce(&str) -> Result<String, JsValue>,
        op: impl FnOnce(Rc<EncryptionKeys>, String, String) -> Fut,
    ) -> Promise
    where
        Fut: std::future::Future<Output = Result<String, StoreError>> + 'static,
    {
        let key = match key {
            Ok(key) => key,
            Err(e) => return Promise::reject(&to_js(e)),
        };
        match text(&key) {
            Ok(text) => {
                let call = op(self.0.clone(), key, text);
                super::promise(Box::pin(async move {
                    call.await.map(JsValue::from).map_err(rejection)
                }))
            }
            Err(e) => Promise::reject(&e),
        }
    }
}

/// The inner store's text under the session key `key`: one the core cannot
/// take (too long, a lone surrogate, not a string) is the store's failure,
/// a `storage` error, never a `config` error about an argument.
fn stored_text(key: &str, stored: &JsValue) -> Result<String, JsValue> {
    let refused = |what: &str| rejection(failure(key, None, what));
    match stored.dyn_ref::<JsString>() {
        None => Err(refused("is not a string")),
        Some(text) if text.length() as usize > MAX_ENVELOPE_BYTES => Err(rejection(too_large(key))),
        Some(_) => host::lossless_string(stored)
            .ok_or_else(|| refused("holds a lone UTF-16 surrogate; it was not read")),
    }
}

#[wasm_bindgen(js_class = EncryptedStoreCore)]
impl WasmEncryptedStore {
    /// The keys from `keys`; a `config` error names a bad one
    /// (`keys.current.key`, `keys.old[1].id`, …).
    #[wasm_bindgen(constructor)]
    pub fn new(keys: JsValue) -> Result<WasmEncryptedStore, JsValue> {
        keys_of(&keys)
            .map(|keys| WasmEncryptedStore(Rc::new(keys)))
            .map_err(to_js)
    }

    /// `record` as the envelope to store under the session key `key`.
    pub fn seal(&self, key: JsValue, record: JsValue) -> Promise {
        self.run(
            string_arg(&key, "key"),
            |_| string_arg_within(&record, "record", MAX_RECORD_BYTES).map_err(to_js),
            |keys, key, record| async move { keys.seal(&key, &record).await },
        )
    }

    /// The record in `stored` (the inner store's text under `key`).
    pub fn open(&self, key: JsValue, stored: JsValue) -> Promise {
        self.run(
            string_arg(&key, "key"),
            |key| stored_text(key, &stored),
            |keys, key, stored| async move { keys.open(&key, &stored).await },
        )
    }
}
