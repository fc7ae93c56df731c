//! The wasm-bindgen export (JavaScript): thin conversions onto the core.
//! Empty until the JavaScript issue lands.
