//! Host storage for wasm: a JavaScript object whose `load(key)` resolves to
//! a string or `null` and whose `save(key, record)` resolves when durable.
//! Fleet stores add `acquire(key, owner, ttlMs)` → boolean and
//! `release(key, owner)` (a lease), and `loadVersioned(key)` →
//! `{ record, version } | null` and `saveVersioned(key, record, expected)` →
//! the new version, or `null` when `expected` no longer matches. A
//! versioned store may add `loadVersion(key)` → the version or `null`,
//! without the record (the package's `EncryptedStore` does, so that a
//! re-link replaces a record no key opens).

use super::host;
use crate::{CasOutcome, StoreError, TokenStore, Versioned, MAX_RECORD_BYTES};
use async_trait::async_trait;
use js_sys::JsString;
use wasm_bindgen::prelude::*;

/// The host's store object.
pub(crate) struct JsStore {
    object: JsValue,
    lease: bool,
    versions: bool,
    /// Whether a versioned store has `loadVersion`.
    version_only: bool,
}

/// Whether `object` has a method `name` (a getter that throws: no).
fn has_method(object: &JsValue, name: &str) -> bool {
    matches!(host::method(object, name), Ok(Some(_)))
}

/// Whether `object` offers the pair of methods `pair` (a lease, or the
/// versioned members). Half a pair is a `config` error, and a member that
/// throws when read is a `storage` error: read as "not offered", either
/// would let a fleet store refresh without its lease or overwrite without
/// compare-and-swap, beside another process using the same single-use
/// refresh token.
fn offers(object: &JsValue, pair: [&str; 2]) -> Result<bool, crate::Error> {
    let mut found = [false; 2];
    for (slot, name) in found.iter_mut().zip(pair) {
        *slot = host::method(object, name)
            .map_err(|e| crate::Error::storage(store_error(name, &e).0))?
            .is_some();
    }
    match found {
        [true, false] | [false, true] => Err(crate::Error::config(
            "store",
            format!(
                "has only one of {}() and {}(): a fleet store needs both",
                pair[0], pair[1]
            ),
        )),
        [offered, _] => Ok(offered),
    }
}

impl JsStore {
    /// Wraps `object` after checking it has `load` and `save` methods, and
    /// both or neither of each fleet pair.
    pub(crate) fn new(object: JsValue) -> Result<Self, crate::Error> {
        if !object.is_object() && !object.is_function() {
            return Err(crate::Error::config(
                "store",
                "must be an object with load() and save() methods",
            ));
        }
        for method in ["load", "save"] {
            if !has_method(&object, method) {
                return Err(crate::Error::config(
                    "store",
                    format!("must have a {method}() method"),
                ));
            }
        }
        let versions = offers(&object, ["loadVersioned", "saveVersioned"])?;
        Ok(JsStore {
            lease: offers(&object, ["acquire", "release"])?,
            version_only: versions && has_method(&object, "loadVersion"),
            versions,
            object,
        })
    }

    /// Calls `method(args…)` and awaits its result (a Promise, a thenable
    /// or a value).
    async fn call(&self, method: &str, args: &[JsValue]) -> Result<JsValue, StoreError> {
        let f = host::method(&self.object, method)
            .map_err(|e| store_error(method, &e))?
            .ok_or_else(|| StoreError(format!("store.{method} is not a function")))?;
        let result = host::call(&f, &self.object, args).map_err(|e| store_error(method, &e))?;
        host::settle(&result)
            .await
            .map_err(|e| store_error(method, &e))
    }
}

/// The text of a record a store returned, if it is a string. One with a
/// lone UTF-16 surrogate is refused: converted, it would become U+FFFD, and
/// its refresh token would be sent changed, refused by the server, and the
/// user would have to sign in again.
///
/// Its length is checked before it is copied into wasm memory: a record
/// over [`MAX_RECORD_BYTES`] is refused unread.
fn record_text(value: &JsValue, method: &str) -> Result<Option<String>, StoreError> {
    let Some(text) = value.dyn_ref::<JsString>() else {
        return Ok(None);
    };
    if text.length() as usize > MAX_RECORD_BYTES {
        return Err(StoreError(format!(
            "store.{method} returned a record larger than {MAX_RECORD_BYTES} bytes; it was not read"
        )));
    }
    host::lossless_string(value).map(Some).ok_or_else(|| {
        StoreError(format!(
            "store.{method} returned a record with a lone UTF-16 surrogate; it was not read"
        ))
    })
}

/// A version a store returned, if it is a string of at most
/// [`host::MAX_MESSAGE_CHARS`], kept exactly. One with a lone UTF-16
/// surrogate is refused: converted, it would become U+FFFD, the version
/// sent back would never match the stored one, and every save of the
/// session would be a `conflict`, for good.
fn version_text(value: &JsValue, method: &str) -> Result<Option<String>, StoreError> {
    if host::text_within(value, host::MAX_MESSAGE_CHARS).is_none() {
        return Ok(None);
    }
    host::lossless_string(value).map(Some).ok_or_else(|| {
        StoreError(format!(
            "store.{method} returned a version with a lone UTF-16 surrogate; it was not read"
        ))
    })
}

/// The host's error message (never the record: the core does not put it in
/// the arguments of an error, and scrubs what the host's message quotes).
fn store_error(method: &str, error: &JsValue) -> StoreError {
    let message = host::thrown_message(error).unwrap_or_else(|| "unknown error".into());
    StoreError(format!("store.{method} failed: {message}"))
}

#[async_trait(?Send)]
impl TokenStore for JsStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        let value = self.call("load", &[key.into()]).await?;
        if value.is_null() || value.is_undefined() {
            return Ok(None);
        }
        record_text(&value, "load")?
            .map(Some)
            .ok_or_else(|| StoreError("store.load must resolve to a string or null".into()))
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        let saved = self.call("save", &[key.into(), record.into()]).await?;
        // A client's "not written" answer returned as is: taken as saved,
        // the core would hand out a rotated token the store never got.
        if saved == JsValue::FALSE {
            return Err(StoreError(
                "store.save resolved false (a write refused?): resolve once written, reject when not"
                    .into(),
            ));
        }
        Ok(())
    }

    fn supports_lease(&self) -> bool {
        self.lease
    }

    async fn acquire(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let ttl = JsValue::from_f64(ttl_ms as f64);
        let taken = self
            .call("acquire", &[key.into(), owner.into(), ttl])
            .await?;
        taken
            .as_bool()
            .ok_or_else(|| StoreError("store.acquire must resolve to a boolean".into()))
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        self.call("release", &[key.into(), owner.into()])
            .await
            .map(|_| ())
    }

    fn supports_versions(&self) -> bool {
        self.versions
    }

    async fn load_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let found = self.call("loadVersioned", &[key.into()]).await?;
        if found.is_null() || found.is_undefined() {
            return Ok(None);
        }
        let record = host::get(&found, "record").unwrap_or(JsValue::UNDEFINED);
        let record = record_text(&record, "loadVersioned")?;
        let version = host::get(&found, "version").unwrap_or(JsValue::UNDEFINED);
        let version = version_text(&version, "loadVersioned")?;
        match (record, version) {
            (Some(record), Some(version)) => Ok(Some(Versioned { record, version })),
            _ => Err(StoreError(
                "store.loadVersioned must resolve to { record, version } (strings) or null".into(),
            )),
        }
    }

    async fn load_version(&self, key: &str) -> Result<Option<String>, StoreError> {
        if !self.version_only {
            return Ok(self.load_versioned(key).await?.map(|v| v.version));
        }
        let found = self.call("loadVersion", &[key.into()]).await?;
        if found.is_null() || found.is_undefined() {
            return Ok(None);
        }
        version_text(&found, "loadVersion")?
            .map(Some)
            .ok_or_else(|| {
                StoreError("store.loadVersion must resolve to a version string or null".into())
            })
    }

    async fn save_versioned(
        &self,
        key: &str,
        record: &str,
        expected: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        let expected = expected.map_or(JsValue::NULL, JsValue::from_str);
        let saved = self
            .call("saveVersioned", &[key.into(), record.into(), expected])
            .await?;
        if saved.is_null() || saved.is_undefined() {
            return Ok(CasOutcome::Conflict);
        }
        version_text(&saved, "saveVersioned")?
            .map(|version| CasOutcome::Saved { version })
            .ok_or_else(|| {
                StoreError("store.saveVersioned must resolve to the new version or null".into())
            })
    }
}
