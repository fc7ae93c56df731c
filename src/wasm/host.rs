//! Calls that can run host code: getters, Proxy traps, iterators, the
//! store's and `fetch`'s methods, thenables. None may let an exception
//! unwind through wasm (that leaks the wasm stack and, repeated, poisons
//! the instance), so each goes through a catching call.
//!
//! wasm-bindgen's own catching imports (`#[wasm_bindgen(catch)]`) also leak
//! one externref slot every time a call that returns a value throws. The
//! package therefore registers `attempt` (pkg/src/host-calls.js), which
//! catches in JavaScript and returns a sentinel; the catching imports below
//! are the fallback when the glue is used without the package.

use js_sys::{Array, Function, Promise, Reflect};
use std::cell::OnceCell;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = Object, js_name = keys)]
    fn object_keys(value: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_namespace = Array, js_name = isArray)]
    fn is_array(value: &JsValue) -> Result<bool, JsValue>;
    #[wasm_bindgen(catch, js_namespace = Array, js_name = from)]
    fn array_from(value: &JsValue) -> Result<JsValue, JsValue>;
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
    array: JsValue,
    apply: JsValue,
}

thread_local! {
    static CALLS: OnceCell<HostCalls> = const { OnceCell::new() };
}

/// Registers the package's catching calls (once; later calls are ignored):
/// `{ attempt, takeError, threw, get, keys, array, apply }`.
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
            array: field("array"),
            apply: field("apply"),
        };
        CALLS.with(|c| {
            let _ = c.set(registered);
        });
    }
}

/// `op(a, b, c)` through the registered `attempt`, or `fallback()` without it.
fn attempt(
    op: fn(&HostCalls) -> &JsValue,
    args: [&JsValue; 3],
    fallback: impl FnOnce() -> Result<JsValue, JsValue>,
) -> Result<JsValue, JsValue> {
    let attempted = CALLS.with(|c| {
        c.get().map(|calls| {
            let [a, b, c] = args;
            let result = calls.attempt.call4(&JsValue::NULL, op(calls), a, b, c)?;
            if result == calls.threw {
                Err(calls.take_error.call0(&JsValue::NULL).unwrap_or_default())
            } else {
                Ok(result)
            }
        })
    });
    attempted.unwrap_or_else(fallback)
}

/// `obj[name]`; `undefined` when `obj` is not an object or a function.
pub(crate) fn get(obj: &JsValue, name: &str) -> Result<JsValue, JsValue> {
    if !obj.is_object() && !obj.is_function() {
        return Ok(JsValue::UNDEFINED);
    }
    let name = JsValue::from_str(name);
    attempt(
        |c| &c.get,
        [obj, &name, &JsValue::UNDEFINED],
        || Reflect::get(obj, &name),
    )
}

/// `obj[name]` if it is a function (a method to call on `obj`).
pub(crate) fn method(obj: &JsValue, name: &str) -> Result<Option<Function>, JsValue> {
    let f = get(obj, name)?;
    Ok(f.is_function().then(|| f.unchecked_into()))
}

/// `f.call(this, ...args)` with exactly `args` (at most three).
pub(crate) fn call(f: &Function, this: &JsValue, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let list = match args {
        [] => Array::new(),
        [a] => Array::of1(a),
        [a, b] => Array::of2(a, b),
        [a, b, c, ..] => Array::of3(a, b, c),
    };
    attempt(
        |c| &c.apply,
        [f, this, &list],
        || Reflect::apply(f, this, &list),
    )
}

/// The own enumerable string keys of an object.
pub(crate) fn keys(obj: &JsValue) -> Result<Array, JsValue> {
    let u = JsValue::UNDEFINED;
    attempt(|c| &c.keys, [obj, &u, &u], || object_keys(obj)).map(JsCast::unchecked_into)
}

/// A copy of `value` as a plain array, or `None` if it is not an array.
pub(crate) fn array(value: &JsValue) -> Result<Option<Array>, JsValue> {
    let u = JsValue::UNDEFINED;
    let copy = attempt(
        |c| &c.array,
        [value, &u, &u],
        || {
            if is_array(value)? {
                array_from(value)
            } else {
                Ok(JsValue::NULL)
            }
        },
    )?;
    Ok((!copy.is_null()).then(|| copy.unchecked_into()))
}

/// Awaits `value` like `await value` does: a Promise, any thenable (from
/// any realm) or a plain value. `Promise.all` runs the host's `then` (and
/// a throwing one rejects) inside the engine, never through wasm.
pub(crate) async fn settle(value: &JsValue) -> Result<JsValue, JsValue> {
    let values = JsFuture::from(promise_all(&Array::of1(value))).await?;
    Ok(values.unchecked_into::<Array>().get(0))
}
