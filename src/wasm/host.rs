//! Calls that can run host code: getters, Proxy traps, iterators, the
//! store's and `fetch`'s methods, thenables. None may let an exception
//! unwind through wasm (that leaks the wasm stack and, repeated, poisons
//! the instance), so each goes through a catching call.
//!
//! wasm-bindgen's own catching imports (`#[wasm_bindgen(catch)]`) also leak
//! one externref slot every time a call that returns a value throws. The
//! package therefore registers `attempt` (pkg/src/host-calls.js), which
//! catches in JavaScript and returns a sentinel instead.

use js_sys::{Array, Function, JsString, Promise, Reflect, Uint8Array};
use std::cell::OnceCell;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = Promise, js_name = all)]
    fn promise_all(values: &Array) -> Promise;
}

/// The package's catching calls: `attempt(op, a, b, c)` returns `op(a, b, c)`,
/// or `threw` after keeping the error for `takeError()`.
struct HostCalls {
    attempt: Function,
    take_error: Function,
    threw: JsValue,
    get: JsValue,
    keys: JsValue,
    iterable: JsValue,
    array: JsValue,
    apply: JsValue,
    bytes: JsValue,
    well_formed: JsValue,
    cancel: JsValue,
    set_timer: JsValue,
    clear_timer: JsValue,
}

thread_local! {
    static CALLS: OnceCell<HostCalls> = const { OnceCell::new() };
}

/// Registers the package's catching calls (once; later calls are ignored):
/// `{ attempt, takeError, threw, get, keys, iterable, array, apply, bytes, wellFormed,
/// cancel, setTimer, clearTimer }`.
#[wasm_bindgen(js_name = setHostCalls)]
pub fn set_host_calls(calls: JsValue) {
    let field = |name: &str| Reflect::get(&calls, &JsValue::from_str(name)).unwrap_or_default();
    let function = |name: &str| field(name).dyn_into::<Function>().ok();
    if let (Some(attempt), Some(take_error)) = (function("attempt"), function("takeError")) {
        let registered = HostCalls {
            attempt,
            take_error,
            threw: field("threw"),
            get: field("get"),
            keys: field("keys"),
            iterable: field("iterable"),
            array: field("array"),
            apply: field("apply"),
            bytes: field("bytes"),
            well_formed: field("wellFormed"),
            cancel: field("cancel"),
            set_timer: field("setTimer"),
            clear_timer: field("clearTimer"),
        };
        CALLS.with(|c| {
            let _ = c.set(registered);
        });
    }
}

/// `op(a, b, c)` through the registered `attempt`.
fn attempt(op: fn(&HostCalls) -> &JsValue, [a, b, c]: [&JsValue; 3]) -> Result<JsValue, JsValue> {
    CALLS.with(|calls| {
        let Some(calls) = calls.get() else {
            return Err(JsValue::from_str("freshtoken: no host calls registered"));
        };
        let result = calls.attempt.call4(&JsValue::NULL, op(calls), a, b, c)?;
        if result == calls.threw {
            Err(calls.take_error.call0(&JsValue::NULL).unwrap_or_default())
        } else {
            Ok(result)
        }
    })
}

/// The longest message of a host's error that is read (in UTF-16 units);
/// a longer one is cut on the JavaScript side before it is copied in.
pub(crate) const MAX_MESSAGE_CHARS: usize = 4096;

/// `setTimeout(() => callback(id), ms)` (the host's global at call time:
/// fake timers apply); the host's timer id.
pub(crate) fn set_timer(callback: &JsValue, ms: f64, id: f64) -> Result<JsValue, JsValue> {
    attempt(
        |c| &c.set_timer,
        [callback, &JsValue::from_f64(ms), &JsValue::from_f64(id)],
    )
}

/// What a thrown value says: its `message` if that is a string, else the
/// value itself if it is one (`throw 'text'`).
pub(crate) fn thrown_message(error: &JsValue) -> Option<String> {
    get(error, "message")
        .ok()
        .and_then(|m| message_text(&m))
        .or_else(|| message_text(error))
}

/// A host's message as Rust text, if it is a string: its first
/// [`MAX_MESSAGE_CHARS`] UTF-16 units and `…` when it is longer (cut by
/// the host's `slice`, so a huge message never reaches wasm memory).
pub(crate) fn message_text(value: &JsValue) -> Option<String> {
    text_cut(value, MAX_MESSAGE_CHARS)
}

/// A host string as Rust text, if it is one: its first `max` UTF-16 units
/// and `…` when it is longer, cut by the host before the copy.
pub(crate) fn text_cut(value: &JsValue, max: usize) -> Option<String> {
    let text = value.dyn_ref::<JsString>()?;
    if text.length() as usize <= max {
        return value.as_string();
    }
    let cut = text.slice(0, max as u32).as_string()?;
    Some(cut + "…")
}

/// `clearTimeout(id)`, the same way.
pub(crate) fn clear_timer(id: &JsValue) -> Result<JsValue, JsValue> {
    let u = JsValue::UNDEFINED;
    attempt(|c| &c.clear_timer, [id, &u, &u])
}

/// `obj[name]`; `undefined` when `obj` is not an object or a function, or
/// when it only inherits `name` from `Object.prototype` or
/// `Function.prototype` (prototype pollution is not read; a class's own
/// methods and getters are).
pub(crate) fn get(obj: &JsValue, name: &str) -> Result<JsValue, JsValue> {
    if !obj.is_object() && !obj.is_function() {
        return Ok(JsValue::UNDEFINED);
    }
    attempt(|c| &c.get, [obj, &name.into(), &JsValue::UNDEFINED])
}

/// `obj[name]` if it is a function (a method to call on `obj`).
pub(crate) fn method(obj: &JsValue, name: &str) -> Result<Option<Function>, JsValue> {
    let f = get(obj, name)?;
    Ok(f.is_function().then(|| f.unchecked_into()))
}

/// `f.call(this, ...args)` with exactly `args`.
pub(crate) fn call(f: &Function, this: &JsValue, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let list: Array = args.iter().collect();
    attempt(|c| &c.apply, [f, this, &list])
}

/// The first `limit` bytes (or fewer) of a host's `Uint8Array` (with
/// `buffer`, of an `ArrayBuffer`), or `None` if `value` is not one. The
/// package copies them with the engine's own accessors into a new array
/// first: the host's object may be a Proxy, a view of a detached buffer, or
/// a subclass whose `length` throws or lies, and none of that may throw
/// through wasm, trap, or size an allocation here.
pub(crate) fn bytes(
    value: &JsValue,
    limit: usize,
    buffer: bool,
) -> Result<Option<Vec<u8>>, JsValue> {
    let limit_js = JsValue::from_f64(limit as f64);
    let copy = attempt(
        |c| &c.bytes,
        [value, &limit_js, &JsValue::from_bool(buffer)],
    )?;
    if copy.is_null() {
        return Ok(None);
    }
    let copy: Uint8Array = copy.unchecked_into();
    if copy.length() as usize > limit {
        return Err(JsValue::from_str("the bytes could not be read"));
    }
    let bytes = copy.to_vec();
    // The copy is ours: wipe it (its bytes may be a key or a token).
    copy.fill(0, 0, copy.length());
    Ok(Some(bytes))
}

/// The own enumerable string keys of an object.
pub(crate) fn keys(obj: &JsValue) -> Result<Array, JsValue> {
    let u = JsValue::UNDEFINED;
    attempt(|c| &c.keys, [obj, &u, &u]).map(JsCast::unchecked_into)
}

/// Whether `value` is iterable (an array, a `Map`, `URLSearchParams`):
/// not a plain object of members.
pub(crate) fn iterable(value: &JsValue) -> Result<bool, JsValue> {
    let u = JsValue::UNDEFINED;
    Ok(attempt(|c| &c.iterable, [value, &u, &u])?.is_truthy())
}

/// What [`array`] found.
pub(crate) enum Listed {
    NotArray,
    /// An array longer than the cap; nothing was copied.
    TooLong,
    Items(Array),
}

/// A copy of `value` as a plain array if it is one of at most `max` items:
/// the length is checked before anything is copied.
pub(crate) fn array(value: &JsValue, max: usize) -> Result<Listed, JsValue> {
    let u = JsValue::UNDEFINED;
    let copy = attempt(|c| &c.array, [value, &JsValue::from_f64(max as f64), &u])?;
    Ok(if copy.is_null() {
        Listed::NotArray
    } else if copy.as_f64().is_some() {
        Listed::TooLong
    } else {
        Listed::Items(copy.unchecked_into())
    })
}

/// Awaits `value` like `await value` does: a Promise, any thenable (from
/// any realm) or a plain value. `Promise.all` runs the host's `then` (and
/// a throwing one rejects) inside the engine, never through wasm.
pub(crate) async fn settle(value: &JsValue) -> Result<JsValue, JsValue> {
    let values = JsFuture::from(promise_all(&Array::of1(value))).await?;
    Ok(values.unchecked_into::<Array>().get(0))
}

/// The JavaScript string `text` as a Rust string, or `None` if it is not a
/// string or holds a lone UTF-16 surrogate: converted, that would become
/// U+FFFD, a different string (two session keys merged, a refresh token
/// sent changed).
pub(crate) fn lossless_string(text: &JsValue) -> Option<String> {
    let s = text.as_string()?;
    // Only a string that converted to U+FFFD can have held a lone surrogate.
    // A scan for its first UTF-8 byte (0xEF) comes first: searching for a
    // non-ASCII char builds a substring searcher, about 1 µs in Node on every
    // key and token that crosses, and keys and tokens are ASCII.
    if s.bytes().any(|b| b == 0xEF) && s.contains('\u{FFFD}') && !well_formed(text) {
        return None;
    }
    Some(s)
}

/// `value` as a Rust string if it is a JavaScript string of at most `max`
/// UTF-16 units (a lower bound of its UTF-8 bytes), checked before it is
/// copied into wasm: a host's huge string never reaches wasm memory.
pub(crate) fn text_within(value: &JsValue, max: usize) -> Option<String> {
    let text = value.dyn_ref::<JsString>()?;
    if text.length() as usize > max {
        return None;
    }
    value.as_string()
}

/// Whether a JavaScript string has no lone UTF-16 surrogate.
fn well_formed(text: &JsValue) -> bool {
    let u = JsValue::UNDEFINED;
    attempt(|c| &c.well_formed, [text, &u, &u]).is_ok_and(|ok| ok.is_truthy())
}

/// Cancels a stream (or a stream's reader) without waiting for it to
/// finish; a failed cancel is ignored, never an unhandled rejection.
pub(crate) fn cancel(stream: &JsValue) {
    let u = JsValue::UNDEFINED;
    let _ = attempt(|c| &c.cancel, [stream, &u, &u]);
}
