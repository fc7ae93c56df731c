//! The wasm-bindgen export (JavaScript): thin conversions onto the core.
//!
//! JavaScript supplies HTTP (`fetch`), time (`Date.now`, `setTimeout`) and
//! storage (an object whose `load`/`save` return Promises); every class and
//! function here converts its arguments, calls the core, and converts back.
//! The npm package in `pkg/` wraps these with its error classes and stores.

mod client;
mod convert;
pub(crate) mod crypto;
mod encrypted_store;
mod error;
mod events;
mod fetch_http;
mod host;
pub(crate) mod http_date;
mod js_clock;
mod js_store;
pub(crate) mod json_text;
mod memory_store;
mod options;
pub(crate) mod record_cipher;
mod session;
mod timeout;

pub use client::{refresh_tokens, WasmTokenClient};
pub use encrypted_store::WasmEncryptedStore;
pub use memory_store::WasmMemoryStore;

use std::future::Future;
use std::pin::Pin;

/// The future behind every Promise the export returns.
type JsResultFuture =
    Pin<Box<dyn Future<Output = Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue>>>>;

/// A Promise for `future`. One boxed instantiation of `future_to_promise`
/// instead of one per method keeps the wasm smaller.
pub(crate) fn promise(future: JsResultFuture) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(future)
}
pub use error::set_error_factory;

/// The size of this instance's wasm memory in bytes (it only ever grows):
/// for the package's memory tests, not part of its API.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = __wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size::<0>() * 65536) as f64
}
