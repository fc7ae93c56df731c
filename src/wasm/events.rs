//! Events for JavaScript: each event as a plain object, handed to the
//! package's dispatcher (which delivers it to `onEvent` after the current
//! turn and, in Node, on `diagnostics_channel`), or straight to `onEvent`
//! when no dispatcher is registered. Nothing a handler throws reaches the core.

use super::convert::object;
use super::host;
use crate::{Event, EventSink};
use js_sys::Function;
use std::cell::OnceCell;
use wasm_bindgen::prelude::*;

/// The package's dispatcher, and whether every client needs a sink even
/// without `onEvent` (Node: `diagnostics_channel` subscribers).
struct Dispatch {
    dispatch: Function,
    always: bool,
}

thread_local! {
    static DISPATCH: OnceCell<Dispatch> = const { OnceCell::new() };
}

/// Registers `dispatch(event, onEvent)` (once; later calls are ignored),
/// called for every event; with `always`, clients without `onEvent` emit
/// events too (`onEvent` is then `undefined`).
#[wasm_bindgen(js_name = setEventDispatch)]
pub fn set_event_dispatch(dispatch: Function, always: bool) {
    DISPATCH.with(|d| {
        let _ = d.set(Dispatch { dispatch, always });
    });
}

/// The sink of a client with `onEvent` (or, with an `always` dispatcher,
/// of every client); `None` when nothing would receive its events.
pub(crate) fn sink(on_event: Option<Function>) -> Option<JsEventSink> {
    let always = DISPATCH.with(|d| d.get().is_some_and(|d| d.always));
    (on_event.is_some() || always).then_some(JsEventSink { on_event })
}

/// Events as JavaScript objects.
pub(crate) struct JsEventSink {
    on_event: Option<Function>,
}

impl EventSink for JsEventSink {
    fn on_event(&self, event: &Event) {
        let number = |n: f64| Some(JsValue::from_f64(n));
        let value = object(&[
            ("kind", Some(event.kind.as_str().into())),
            ("key", event.key.as_deref().map(Into::into)),
            ("scope", event.scope.as_deref().map(Into::into)),
            (
                "durationMs",
                event.duration_ms.and_then(|ms| number(ms as f64)),
            ),
            ("attempts", event.attempts.and_then(|n| number(n.into()))),
            ("errorCode", event.error_code.map(|c| c.as_str().into())),
            ("reason", event.reason.map(|r| r.as_str().into())),
            ("at", number(event.at_ms as f64)),
        ]);
        let handler = self.on_event.clone().map_or(JsValue::UNDEFINED, Into::into);
        // Every call catches (host.rs): a handler that throws is ignored.
        let _ = DISPATCH.with(|d| match d.get() {
            Some(d) => host::call(&d.dispatch, &JsValue::UNDEFINED, &[value, handler]),
            None => match &self.on_event {
                Some(f) => host::call(f, &JsValue::UNDEFINED, &[value]),
                None => Ok(JsValue::UNDEFINED),
            },
        });
    }
}
