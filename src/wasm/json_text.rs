//! The wasm half of [`crate::json_text`]: the host's `JSON.parse` and
//! `JSON.stringify` handle the text (no JSON code in the wasm), and
//! `serde-wasm-bindgen` maps Rust values to JavaScript ones for writing.
//!
//! Reading maps `JSON.parse`'s result with [`Parsed`] below instead of
//! `serde_wasm_bindgen::from_value`. Measured reason (DESIGN point 17): its
//! errors format serde's `Unexpected`, whose `f64` arm links core's float
//! formatting (Grisu and Dragon4); [`Parsed`]'s error carries no text, so
//! none of it is linked. A parsed document holds only null, booleans,
//! numbers, strings, arrays and plain objects, so this is all it needs.

use super::host;
use crate::json_text::JsonError;
use js_sys::{Array, Function, Number, Object, Reflect, JSON};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Serialize;
use std::cell::Cell;
use std::fmt;
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
    LONE_SURROGATE.with(|seen| seen.set(false));
    T::deserialize(Parsed(value)).map_err(|Mismatch| {
        // serde_json refuses a lone surrogate's escape as bad JSON: so does this.
        if LONE_SURROGATE.with(Cell::take) {
            JsonError::Syntax
        } else {
            JsonError::Shape
        }
    })
}

/// The string members `names` of the object `JSON.parse(text)` returns
/// (see [`crate::json_text::string_members`]).
pub(crate) fn string_members(text: &str, names: &[&str]) -> Result<Vec<Option<String>>, JsonError> {
    let value = PARSE
        .with(|parse| {
            let parse = parse.as_ref()?;
            host::call(parse, &JsValue::NULL, &[JsValue::from_str(text)]).ok()
        })
        .ok_or(JsonError::Syntax)?;
    if !value.is_object() || Array::is_array(&value) {
        return Err(JsonError::Syntax);
    }
    // A loop, not map/collect: fewer wasm bytes.
    let mut members = Vec::with_capacity(names.len());
    for name in names {
        let member = host::get(&value, name).ok();
        members.push(member.and_then(|v| host::lossless_string(&v)));
    }
    Ok(members)
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

/// A value `JSON.parse` returned, as a serde `Deserializer`.
struct Parsed(JsValue);

/// Why a parsed value does not fit the type (no text: see the module docs).
/// Zero-sized, which keeps every deserializer's `Result` small; a lone
/// surrogate is told apart through [`LONE_SURROGATE`] instead (an enum here
/// cost 4.6 KB of wasm across the monomorphized deserializers).
#[derive(Debug)]
struct Mismatch;

thread_local! {
    /// Set when the mismatch was a string (or member name) with a lone
    /// UTF-16 surrogate, from a `\ud800`-style escape: as a Rust string it
    /// would become U+FFFD.
    static LONE_SURROGATE: Cell<bool> = const { Cell::new(false) };
}

/// The mismatch of a string with a lone UTF-16 surrogate.
fn lone_surrogate() -> Mismatch {
    LONE_SURROGATE.with(|seen| seen.set(true));
    Mismatch
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the JSON does not fit the type")
    }
}

impl std::error::Error for Mismatch {}

impl de::Error for Mismatch {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Mismatch
    }
}

impl<'de> de::Deserializer<'de> for Parsed {
    type Error = Mismatch;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        let value = self.0;
        if value.is_null() || value.is_undefined() {
            visitor.visit_unit()
        } else if let Some(b) = value.as_bool() {
            visitor.visit_bool(b)
        } else if let Some(n) = value.as_f64() {
            if Number::is_safe_integer(&value) {
                visitor.visit_i64(n as i64)
            } else {
                visitor.visit_f64(n)
            }
        } else if value.is_string() {
            let s = host::lossless_string(&value).ok_or_else(lone_surrogate)?;
            visitor.visit_string(s)
        } else if Array::is_array(&value) {
            visitor.visit_seq(Items {
                items: value.unchecked_into(),
                next: 0,
            })
        } else {
            Parsed(value).deserialize_map(visitor)
        }
    }

    /// A plain object: its own members, in order.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        if !self.0.is_object() || Array::is_array(&self.0) {
            return Err(Mismatch);
        }
        visitor.visit_map(Members {
            members: Object::entries(self.0.unchecked_ref()),
            next: 0,
            value: JsValue::UNDEFINED,
        })
    }

    /// A struct is read from an object only (a derived struct's visitor
    /// also takes arrays: only its map half is instantiated this way).
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        self.deserialize_map(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        if self.0.is_null() || self.0.is_undefined() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    /// Skipped values are not walked at all, however deep they nest.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple tuple_struct
        enum identifier
    }
}

/// An array's items.
struct Items {
    items: Array,
    next: u32,
}

impl<'de> de::SeqAccess<'de> for Items {
    type Error = Mismatch;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Mismatch> {
        if self.next >= self.items.length() {
            return Ok(None);
        }
        let item = self.items.get(self.next);
        self.next += 1;
        seed.deserialize(Parsed(item)).map(Some)
    }
}

/// An object's `[key, value]` entries.
struct Members {
    members: Array,
    next: u32,
    value: JsValue,
}

impl<'de> de::MapAccess<'de> for Members {
    type Error = Mismatch;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Mismatch> {
        if self.next >= self.members.length() {
            return Ok(None);
        }
        let entry: Array = self.members.get(self.next).unchecked_into();
        self.next += 1;
        self.value = entry.get(1);
        let key = host::lossless_string(&entry.get(0)).ok_or_else(lone_surrogate)?;
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Mismatch> {
        seed.deserialize(Parsed(std::mem::take(&mut self.value)))
    }
}
