//! `setTimeout` as a future that clears its timeout when dropped. Most
//! deadlines never fire (the store or the server answers first); a timer
//! awaited through a Promise would keep its callback, its wasm closure and
//! the event loop alive until it did.
//!
//! One callback, made once, serves every timeout: the host calls it with
//! the id of the timeout that fired, looked up in a table of live ones. A
//! dropped timeout leaves the table, so a timer the host's `clearTimeout`
//! did not clear (fake timers installed while it was set) finds nothing
//! when it fires, and does nothing. A closure per timeout would have to be
//! dropped (a late call then throws "closure invoked … after being dropped"
//! into the event loop, which ends a Node process), leaked, or left to the
//! garbage collector (its memory and a FinalizationRegistry entry per
//! deadline until a collection); an entry here is freed when it is dropped.

use super::host;
use std::cell::{OnceCell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use wasm_bindgen::prelude::*;

/// A live timeout's entry.
enum Slot {
    /// Not fired; the waker of its latest poll.
    Set(Option<Waker>),
    Fired,
}

/// The live timeouts: slot `i` holds `(generation, entry)`. An id is
/// `generation * 2^32 + i` (below 2^53, exact in a JavaScript number), so
/// a slot used again answers no stale id (until its 2^21st reuse).
struct Table {
    slots: Vec<(u32, Option<Slot>)>,
    free: Vec<u32>,
}

impl Table {
    fn insert(&mut self) -> u64 {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push((0, None));
            (self.slots.len() - 1) as u32
        });
        let (generation, slot) = &mut self.slots[index as usize];
        *slot = Some(Slot::Set(None));
        (u64::from(*generation) << 32) | u64::from(index)
    }

    /// The live entry of `id`; `None` for a stale or unknown id.
    fn get(&mut self, id: u64) -> Option<&mut Slot> {
        let (generation, slot) = self.slots.get_mut((id & 0xFFFF_FFFF) as usize)?;
        (u64::from(*generation) == id >> 32)
            .then_some(slot.as_mut())
            .flatten()
    }

    /// Ends `id`'s entry; whether it had fired.
    fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.get(id) else {
            return false;
        };
        let fired = matches!(slot, Slot::Fired);
        let index = id as u32;
        let (generation, slot) = &mut self.slots[index as usize];
        *slot = None;
        *generation = (*generation + 1) & GENERATIONS;
        self.free.push(index);
        fired
    }
}

/// Generations wrap here, so that every id is below 2^53.
const GENERATIONS: u32 = (1 << 21) - 1;

thread_local! {
    static TABLE: RefCell<Table> = const {
        RefCell::new(Table {
            slots: Vec::new(),
            free: Vec::new(),
        })
    };
    /// The one callback: `fire(id)`, made on first use. Lives as long as the instance.
    static FIRE: OnceCell<JsValue> = const { OnceCell::new() };
}

/// The host's timer for `id` ran out: wake its future, if it is still live.
fn fire(id: f64) {
    let waker = TABLE.with(|t| match t.borrow_mut().get(id as u64) {
        Some(slot) => match std::mem::replace(slot, Slot::Fired) {
            Slot::Set(waker) => waker,
            Slot::Fired => None,
        },
        None => None,
    });
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The most a deadline is extended by (see [`Timeout::deadline`]).
const MAX_LATE_GRACE_MS: u64 = 250;

/// Resolves `ms` milliseconds after its first poll; at once with the host's
/// reason if `setTimeout` threw.
pub(crate) struct Timeout {
    ms: f64,
    /// The table id and the host's timer id while the timeout is set.
    armed: Option<(u64, JsValue)>,
    /// A deadline's `performance.now()` when it was set, until it has been
    /// set again once (see [`Timeout::deadline`]).
    watch: Option<u64>,
}

impl Timeout {
    pub(crate) fn new(ms: u64) -> Self {
        Timeout {
            ms: ms as f64,
            armed: None,
            watch: None,
        }
    }

    /// A timeout that bounds a wait for the host. When its timer fires,
    /// an answer may be waiting unread: Node runs due timers before it
    /// reads sockets, and after a stalled event loop (a synchronous event
    /// handler, a long task) every deadline is due at once. Given up then,
    /// a token request the server answered (and rotated) would count as
    /// timed out, and its refresh token as in doubt. So a deadline that
    /// fires is set again once, for the time it fired late (at least 1 ms,
    /// at most its own length and [`MAX_LATE_GRACE_MS`]): a timer set while
    /// timers run fires after the loop has read its sockets.
    pub(crate) fn deadline(ms: u64) -> Self {
        Timeout {
            ms: ms as f64,
            armed: None,
            watch: Some(0),
        }
    }

    /// A deadline that fired, set again for the time it fired late (see
    /// [`Timeout::deadline`]): whether it was.
    fn extended(&mut self) -> bool {
        let Some(set_at) = self.watch.take() else {
            return false;
        };
        let ms = self.ms as u64;
        let late = super::js_clock::performance_now_ms()
            .saturating_sub(set_at)
            .saturating_sub(ms);
        if let Some((id, _)) = self.armed.take() {
            // It fired: nothing for the host to clear.
            TABLE.with(|t| t.borrow_mut().remove(id));
        }
        self.ms = late.min(ms).clamp(1, MAX_LATE_GRACE_MS) as f64;
        self.start().is_ok()
    }

    /// Sets the timeout now rather than at the first poll (a no-op if it is
    /// set); why not if the host's `setTimeout` threw.
    pub(crate) fn start(&mut self) -> Result<(), String> {
        if self.armed.is_some() {
            return Ok(());
        }
        let id = TABLE.with(|t| t.borrow_mut().insert());
        // One catching crossing each way (host-calls.js `setTimer` and
        // `clearTimer`), not a lookup of the global by name and a call: a
        // timeout is set and cleared around every store call and request.
        let set = FIRE.with(|callback| {
            let callback =
                callback.get_or_init(|| Closure::<dyn Fn(f64)>::new(fire).into_js_value());
            host::set_timer(callback, self.ms, id as f64)
        });
        match set {
            Ok(timer) => {
                self.armed = Some((id, timer));
                if let Some(set_at) = &mut self.watch {
                    *set_at = super::js_clock::performance_now_ms();
                }
                Ok(())
            }
            Err(e) => {
                TABLE.with(|t| t.borrow_mut().remove(id));
                Err(format!(
                    "setTimeout threw: {}",
                    host::thrown_message(&e)
                        .unwrap_or_else(|| "a value that is not an Error".into())
                ))
            }
        }
    }
}

impl Future for Timeout {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Err(why) = self.start() {
            return Poll::Ready(Err(why));
        }
        loop {
            let id = self.armed.as_ref().map_or(0, |(id, _)| *id);
            let pending = TABLE.with(|t| match t.borrow_mut().get(id) {
                Some(Slot::Set(waker)) => {
                    *waker = Some(cx.waker().clone());
                    true
                }
                _ => false,
            });
            if pending {
                return Poll::Pending;
            }
            if !self.extended() {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        let Some((id, timer)) = self.armed.take() else {
            return;
        };
        // Out of the table first: should the host not clear the timer, its
        // late call finds nothing.
        if !TABLE.with(|t| t.borrow_mut().remove(id)) {
            let _ = host::clear_timer(&timer);
        }
    }
}
