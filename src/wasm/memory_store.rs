//! The package's `MemoryStore` (pkg/src/memory-store.js) is the core's
//! [`MemoryStore`]: a session on it shares its record object with the store
//! instead of the store keeping a second copy as JavaScript text (half the
//! memory of the 100,000-sessions heap row in bench/run.mjs).

use super::convert::{string_arg, string_arg_within};
use super::error::to_js;
use crate::MemoryStore;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// The core's in-memory store, held by the package's `MemoryStore`.
#[wasm_bindgen(js_name = CoreMemoryStore)]
pub struct WasmMemoryStore(pub(crate) Arc<MemoryStore>);

#[wasm_bindgen(js_class = CoreMemoryStore)]
impl WasmMemoryStore {
    /// An empty store.
    #[wasm_bindgen(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> WasmMemoryStore {
        WasmMemoryStore(Arc::new(MemoryStore::new()))
    }

    /// The record's text under `key`, or `undefined`.
    pub fn get(&self, key: JsValue) -> Result<Option<String>, JsValue> {
        let key = string_arg(&key, "key").map_err(to_js)?;
        Ok(self.0.get(&key))
    }

    /// Saves the record text `record` under `key`.
    pub fn put(&self, key: JsValue, record: JsValue) -> Result<(), JsValue> {
        let key = string_arg(&key, "key").map_err(to_js)?;
        let record =
            string_arg_within(&record, "record", crate::MAX_RECORD_BYTES).map_err(to_js)?;
        self.0.save_text(&key, &record).map_err(|e| to_js(e.into()))
    }
}
