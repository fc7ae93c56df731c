//! Time for wasm: `Date.now()` (or the host's `now`), `performance.now()`
//! for durations, and sleeps through `setTimeout` (or the host's `sleep`).

use super::host;
use super::timeout::Timeout;
use crate::Clock;
use async_trait::async_trait;
use js_sys::Function;
use wasm_bindgen::prelude::*;

/// The clock: optional host overrides for tests with fake time.
pub(crate) struct JsClock {
    pub(crate) now: Option<Function>,
    pub(crate) sleep: Option<Function>,
}

/// The host's `now` gives wall time only; durations are also measured on
/// `performance.now()` (the trait's default `monotonic_ms`).
#[async_trait(?Send)]
impl Clock for JsClock {
    /// The host's `now()` when it reads a plausible time (a finite number of
    /// milliseconds after 1970 and before the year 10000), else `Date.now()`
    /// — the rule of every binding's clock, and of the package's mirror.
    fn now_ms(&self) -> u64 {
        let latest = crate::clock::LATEST_PLAUSIBLE_MS as f64;
        let host = self.now.as_ref().and_then(|f| {
            let now = host::call(f, &JsValue::NULL, &[]).ok()?.as_f64()?;
            (now > 0.0 && now <= latest).then_some(now)
        });
        let now = host.unwrap_or_else(js_sys::Date::now);
        if now.is_finite() && now > 0.0 {
            now as u64
        } else {
            0
        }
    }

    async fn sleep(&self, ms: u64) {
        match &self.sleep {
            Some(f) => {
                if let Ok(slept) = host::call(f, &JsValue::NULL, &[(ms as f64).into()]) {
                    // A host sleep that never settles ends on the real timer.
                    let grace = ms.saturating_add(1_000);
                    let _ = crate::deadline::within(self, grace, host::settle(&slept)).await;
                }
            }
            // A sleep whose timer cannot be set ends at once (a retry's
            // backoff is then skipped; its deadline fails the call anyway).
            None => {
                let _ = Timeout::new(ms).await;
            }
        }
    }

    /// Deadlines of host callbacks run on the real `setTimeout`, whatever
    /// the host's `sleep` does (a test's may resolve at once).
    async fn timer(&self, ms: u64) {
        let _ = Timeout::new(ms).await;
    }

    /// [`Clock::timer`], or why `setTimeout` could not be used; extended
    /// once when the event loop stalled past it ([`Timeout::deadline`]).
    async fn deadline(&self, ms: u64) -> Result<(), String> {
        Timeout::deadline(ms).await
    }
}

#[wasm_bindgen]
extern "C" {
    /// `globalThis`, as far as its `performance` goes.
    type PerformanceGlobal;
    /// Caught: a sandbox or a test may define it as an accessor that throws.
    #[wasm_bindgen(method, getter, catch)]
    fn performance(this: &PerformanceGlobal) -> Result<Option<Performance>, JsValue>;

    /// The host's `performance` (Node >= 16, browsers, workers).
    type Performance;
    #[wasm_bindgen(method, catch)]
    fn now(this: &Performance) -> Result<JsValue, JsValue>;
}

/// The host's monotonic clock, `performance.now()`, in whole milliseconds;
/// 0 when the host has none or it throws or reads no finite, non-negative
/// number (the wall clock alone then measures durations).
pub(crate) fn performance_now_ms() -> u64 {
    let now = js_sys::global()
        .unchecked_into::<PerformanceGlobal>()
        .performance()
        .ok()
        .flatten()
        .and_then(|p| p.now().ok())
        .and_then(|n| n.as_f64())
        .filter(|n| n.is_finite() && *n >= 0.0);
    now.map_or(0, |n| n as u64)
}

/// Runs detached refreshes on the JavaScript event loop.
pub(crate) struct LocalSpawner;

impl crate::Spawn for LocalSpawner {
    fn spawn(&self, task: crate::BoxFuture<'static, ()>) {
        wasm_bindgen_futures::spawn_local(task);
    }
}
