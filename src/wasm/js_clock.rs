//! Time for wasm: `Date.now()` (or the host's `now`), and sleeps through
//! `setTimeout` (or the host's `sleep`).

use super::host;
use crate::Clock;
use async_trait::async_trait;
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// The clock: optional host overrides for tests with fake time.
pub(crate) struct JsClock {
    pub(crate) now: Option<Function>,
    pub(crate) sleep: Option<Function>,
}

#[async_trait(?Send)]
impl Clock for JsClock {
    fn now_ms(&self) -> u64 {
        let now = match &self.now {
            Some(f) => host::call(f, &JsValue::NULL, &[])
                .ok()
                .and_then(|v| v.as_f64())
                .unwrap_or_else(js_sys::Date::now),
            None => js_sys::Date::now(),
        };
        if now.is_finite() && now > 0.0 {
            now as u64
        } else {
            0
        }
    }

    async fn sleep(&self, ms: u64) {
        let ms = JsValue::from_f64(ms as f64);
        match &self.sleep {
            Some(f) => {
                if let Ok(slept) = host::call(f, &JsValue::NULL, &[ms]) {
                    let _ = host::settle(&slept).await;
                }
            }
            None => {
                let _ = JsFuture::from(set_timeout_promise(&ms)).await;
            }
        }
    }
}

/// `new Promise(r => setTimeout(r, ms))`, with `setTimeout` from the global
/// object (Node, browsers and workers alike).
fn set_timeout_promise(ms: &JsValue) -> Promise {
    let ms = ms.clone();
    Promise::new(
        &mut |resolve, _reject| match host::method(&js_sys::global(), "setTimeout") {
            Ok(Some(f)) => {
                let _ = host::call(&f, &JsValue::NULL, &[resolve.into(), ms.clone()]);
            }
            _ => {
                let _ = host::call(&resolve, &JsValue::NULL, &[]);
            }
        },
    )
}
