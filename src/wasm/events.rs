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

/// The package's dispatcher, and, when every client needs a sink even
/// without `onEvent` (Node: `diagnostics_channel` subscribers), the
/// function that says whether anyone subscribes right now.
struct Dispatch {
    dispatch: Function,
    subscribed: Option<Function>,
}

thread_local! {
    static DISPATCH: OnceCell<Dispatch> = const { OnceCell::new() };
}

/// Registers `dispatch(event, onEvent)` (once; later calls are ignored),
/// called for every event. With `subscribed` (a function, else
/// `undefined`), clients without `onEvent` emit events too (`onEvent` is
/// then `undefined`), but only while `subscribed()` is true: an event
/// nobody receives is not built (eight crossings and its strings).
#[wasm_bindgen(js_name = setEventDispatch)]
pub fn set_event_dispatch(dispatch: Function, subscribed: JsValue) {
    let subscribed = subscribed.dyn_into::<Function>().ok();
    DISPATCH.with(|d| {
        let _ = d.set(Dispatch {
            dispatch,
            subscribed,
        });
    });
}

/// Whether a client without `onEvent` has anyone to receive its event now.
fn subscribed() -> bool {
    DISPATCH.with(|d| {
        d.get()
            .and_then(|d| d.subscribed.as_ref())
            .is_some_and(|f| {
                host::call(f, &JsValue::UNDEFINED, &[]).is_ok_and(|v| v.as_bool() == Some(true))
            })
    })
}

/// The sink of a client with `onEvent` (or, with an `always` dispatcher,
/// of every client); `None` when nothing would receive its events.
pub(crate) fn sink(on_event: Option<Function>) -> Option<JsEventSink> {
    let always = DISPATCH.with(|d| d.get().is_some_and(|d| d.subscribed.is_some()));
    (on_event.is_some() || always).then_some(JsEventSink { on_event })
}

/// Events as JavaScript objects.
pub(crate) struct JsEventSink {
    on_event: Option<Function>,
}

impl EventSink for JsEventSink {
    fn on_event(&self, event: &Event) {
        if self.on_event.is_none() && !subscribed() {
            return;
        }
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
