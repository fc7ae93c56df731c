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
pub(crate) use js_clock::performance_now_ms;
pub use memory_store::WasmMemoryStore;

use std::future::Future;
use std::pin::Pin;

/// The future behind every Promise the export returns.
type JsResultFuture =
    Pin<Box<dyn Future<Output = Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue>>>>;

/// A Promise for `future`. One boxed instantiation of `future_to_promise`
/// instead of one per method keeps the wasm smaller.
///
/// The future is polled once at once, before the call returns, rather than
/// first in a microtask: a refresh then sends its request while the caller
/// is still running. 10,000 callers at expiry otherwise ran to the end of
/// their synchronous code (about 2 ms) before the one request left, and the
/// round trip did not overlap with them (`bench/run.mjs` row 2). What that
/// poll waits on is polled again by the task `future_to_promise` starts, as
/// every future may be: a future wakes only the waker of its latest poll,
/// so the no-op one of this first poll is never needed. Host callbacks
/// (`fetch`, a store's `load`) then run inside the caller's call.
pub(crate) fn promise(mut future: JsResultFuture) -> js_sys::Promise {
    let mut now = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut now) {
        std::task::Poll::Ready(Ok(value)) => js_sys::Promise::resolve(&value),
        std::task::Poll::Ready(Err(error)) => js_sys::Promise::reject(&error),
        std::task::Poll::Pending => wasm_bindgen_futures::future_to_promise(future),
    }
}
pub use error::set_error_factory;

/// The size of this instance's wasm memory in bytes (it only ever grows):
/// for the package's memory tests, not part of its API.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = __wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size::<0>() * 65536) as f64
}
