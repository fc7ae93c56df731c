//! The wasm-bindgen export (JavaScript): thin conversions onto the core.
//!
//! JavaScript supplies HTTP (`fetch`), time (`Date.now`, `setTimeout`) and
//! storage (an object whose `load`/`save` return Promises); every class and
//! function here converts its arguments, calls the core, and converts back.
//! The npm package in `pkg/` wraps these with its error classes and stores.

mod client;
mod convert;
mod error;
mod fetch_http;
mod js_clock;
mod js_store;
mod session;

pub use client::{refresh_tokens, WasmTokenClient};
pub use error::set_error_factory;
pub use session::WasmUserSession;
