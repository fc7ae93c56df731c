//! The wasm half of [`crate::json_text`]: the host's `JSON.parse` and
//! `JSON.stringify` handle the text (no JSON code in the wasm), and
//! `serde-wasm-bindgen` maps the values to and from the Rust types.

use super::host;
use crate::json_text::JsonError;
use js_sys::{Function, Reflect, JSON};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};

thread_local! {
    /// The host's `JSON.parse`, called through the package's catching call:
    /// it throws on bad text, and a throw must not unwind through wasm.
    static PARSE: Option<Function> = Reflect::get(&js_sys::global(), &"JSON".into())
        .and_then(|json| Reflect::get(&json, &"parse".into()))
        .ok()
        .and_then(|parse| parse.dyn_into().ok());
}

/// `JSON.parse(text)`, mapped onto a `T`.
pub(crate) fn text_to_value<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    let value = PARSE
        .with(|parse| {
            let parse = parse.as_ref()?;
            host::call(parse, &JsValue::NULL, &[JsValue::from_str(text)]).ok()
        })
        .ok_or(JsonError::Syntax)?;
    serde_wasm_bindgen::from_value(value).map_err(|_| JsonError::Shape)
}

/// `JSON.stringify` of `value` mapped to a JavaScript value (members in
/// declaration order, `None`s left out).
pub(crate) fn value_to_text<T: Serialize>(value: &T) -> Result<String, JsonError> {
    let value = serde_wasm_bindgen::to_value(value).map_err(|_| JsonError::Shape)?;
    JSON::stringify(&value)
        .ok()
        .and_then(|text| text.as_string())
        .ok_or(JsonError::Shape)
}
