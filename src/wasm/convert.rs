//! Reading JavaScript arguments and option objects, and building result
//! objects. Every read that can run host code goes through [`super::host`];
//! a getter or Proxy trap that throws is a `config` error naming the field.

use super::host;
use crate::{Error, SessionStatus, TokenInfo};
use js_sys::{Array, Function, JsString, Object, Reflect};
use std::cell::RefCell;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// `obj[name]`, or `undefined` when `obj` is not an object.
pub(crate) fn get(obj: &JsValue, name: &str) -> Result<JsValue, Error> {
    host::get(obj, name).map_err(|_| Error::config(name, "could not be read (it threw)"))
}

/// The longest string argument (keys, tokens, option strings) in UTF-16
/// units: the response body cap, since every token came in a response.
pub(crate) const MAX_ARG_CHARS: usize = crate::MAX_RESPONSE_BYTES;

/// `value` as a Rust string if it is a JavaScript string. A lone UTF-16
/// surrogate is an error: converted, it would become U+FFFD, and distinct
/// strings (two session keys) would become one.
pub(crate) fn as_text(value: &JsValue, name: &str) -> Result<Option<String>, Error> {
    as_text_within(value, name, MAX_ARG_CHARS)
}

/// [`as_text`] with the cap `max` (UTF-16 units, a lower bound of the UTF-8
/// bytes), checked before the string is copied into wasm memory.
fn as_text_within(value: &JsValue, name: &str, max: usize) -> Result<Option<String>, Error> {
    let Some(text) = value.dyn_ref::<JsString>() else {
        return Ok(None);
    };
    if text.length() as usize > max {
        return Err(Error::config(
            name,
            format!("is longer than {max} characters"),
        ));
    }
    host::lossless_string(value)
        .map(Some)
        .ok_or_else(|| Error::config(name, "must not contain a lone UTF-16 surrogate"))
}

/// A string argument: anything else (`null`, a number, a Symbol) is a
/// `config` error naming it.
pub(crate) fn string_arg(value: &JsValue, name: &str) -> Result<String, Error> {
    string_arg_within(value, name, MAX_ARG_CHARS)
}

/// [`string_arg`] with the cap `max` (records, credentials JSON).
pub(crate) fn string_arg_within(value: &JsValue, name: &str, max: usize) -> Result<String, Error> {
    if value.is_undefined() || value.is_null() {
        return Err(Error::config(name, "is required"));
    }
    as_text_within(value, name, max)?.ok_or_else(|| Error::config(name, "must be a string"))
}

/// An optional string field; anything but a string, `null` or `undefined`
/// is a `config` error naming the field.
pub(crate) fn opt_string(obj: &JsValue, name: &str) -> Result<Option<String>, Error> {
    let value = get(obj, name)?;
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    as_text(&value, name)?
        .map(Some)
        .ok_or_else(|| Error::config(name, "must be a string"))
}

/// A required string field.
pub(crate) fn string(obj: &JsValue, name: &str) -> Result<String, Error> {
    opt_string(obj, name)?.ok_or_else(|| Error::config(name, "is required"))
}

/// An optional whole-number field (JavaScript numbers are doubles).
pub(crate) fn opt_int(obj: &JsValue, name: &str) -> Result<Option<i64>, Error> {
    let value = get(obj, name)?;
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    match value.as_f64() {
        Some(n) if n.is_finite() && n.fract() == 0.0 && n.abs() < 9.0e15 => Ok(Some(n as i64)),
        _ => Err(Error::config(name, "must be a whole number")),
    }
}

/// An optional function field.
pub(crate) fn opt_function(obj: &JsValue, name: &str) -> Result<Option<Function>, Error> {
    let value = get(obj, name)?;
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    if !value.is_function() {
        return Err(Error::config(name, "must be a function"));
    }
    Ok(Some(value.unchecked_into()))
}

/// The most items an array argument (scopes) may have, checked before it
/// is copied: `n` non-empty scopes joined by spaces are `2n - 1` characters
/// or more, so more than this could not fit in a string argument.
pub(crate) const MAX_ARRAY_ITEMS: usize = MAX_ARG_CHARS / 2;

/// A copy of the array argument `value`, its length checked against
/// [`MAX_ARRAY_ITEMS`] before anything is copied; anything but an array is
/// a `config` error saying `what` it must be.
pub(crate) fn array(value: &JsValue, name: &str, what: &str) -> Result<Array, Error> {
    match host::array(value, MAX_ARRAY_ITEMS) {
        Ok(host::Listed::Items(items)) => Ok(items),
        Ok(host::Listed::NotArray) => Err(Error::config(name, what)),
        Ok(host::Listed::TooLong) => Err(Error::config(
            name,
            format!("has more than {MAX_ARRAY_ITEMS} items"),
        )),
        Err(_) => Err(Error::config(name, "could not be read (it threw)")),
    }
}

/// An array of strings.
pub(crate) fn strings(value: &JsValue, name: &str) -> Result<Vec<String>, Error> {
    const WRONG: &str = "must be an array of strings";
    let items = array(value, name, WRONG)?;
    // A loop, not a `collect` into a `Result`: fewer wasm bytes.
    let mut strings = Vec::new();
    for item in items.iter() {
        strings.push(as_text(&item, name)?.ok_or_else(|| Error::config(name, WRONG))?);
    }
    Ok(strings)
}

/// A plain object from name/value pairs (skipping `None`s).
pub(crate) fn object(fields: &[(&str, Option<JsValue>)]) -> JsValue {
    fill(Object::new(), fields)
}

/// Sets name/value pairs (skipping `None`s) on `obj`.
fn fill(obj: Object, fields: &[(&str, Option<JsValue>)]) -> JsValue {
    for (name, value) in fields {
        if let Some(value) = value {
            let _ = Reflect::set(&obj, &JsValue::from_str(name), value);
        }
    }
    obj.into()
}

fn ms(value: u64) -> JsValue {
    JsValue::from_f64(value as f64)
}

thread_local! {
    static TOKEN_INFO_PROTO: RefCell<Option<Object>> = const { RefCell::new(None) };
}

/// Registers the prototype of every `TokenInfo` object: the package's glue
/// gives it a redacting `util.inspect` hook and `toString`, so that logging a
/// `TokenInfo` shows no token while its own fields stay plain data.
#[wasm_bindgen(js_name = setTokenInfoPrototype)]
pub fn set_token_info_prototype(prototype: Object) {
    TOKEN_INFO_PROTO.with(|p| *p.borrow_mut() = Some(prototype));
}

/// How a secret may be shown: a short prefix (long values only) and the
/// length — the core's rule, for the glue's inspect hook.
#[wasm_bindgen(js_name = redactSecret)]
pub fn redact_secret(value: &str) -> String {
    crate::secret::redacted(value)
}

/// `TokenInfo` as `{ accessToken, expiresAt, scope?, idToken?, refreshExpiresAt? }`,
/// on the registered prototype.
pub(crate) fn token_info(info: TokenInfo) -> JsValue {
    let base = TOKEN_INFO_PROTO.with(|p| p.borrow().as_ref().map(Object::create));
    fill(
        base.unwrap_or_default(),
        &[
            ("accessToken", Some(info.access_token.into())),
            ("expiresAt", Some(ms(info.expires_at_ms))),
            ("scope", info.scope.map(Into::into)),
            ("idToken", info.id_token.map(Into::into)),
            ("refreshExpiresAt", info.refresh_expires_at_ms.map(ms)),
        ],
    )
}

/// `SessionStatus` as a plain object.
pub(crate) fn session_status(status: SessionStatus) -> JsValue {
    object(&[
        ("hasRecord", Some(status.has_record.into())),
        (
            "reauthorizationReason",
            status.reauth.map(|r| r.as_str().into()),
        ),
        ("accessExpiresAt", status.access_expires_at_ms.map(ms)),
        ("refreshExpiresAt", status.refresh_expires_at_ms.map(ms)),
        ("unpersisted", Some(status.unpersisted.into())),
        ("inDoubt", Some(status.in_doubt.into())),
        ("revocationPending", Some(status.revocation_pending.into())),
    ])
}
