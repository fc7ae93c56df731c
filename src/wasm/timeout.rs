//! `setTimeout` as a future that clears its timeout when dropped. Most
//! deadlines never fire (the store or the server answers first); a timer
//! awaited through a Promise would keep its callback, its wasm closure and
//! the event loop alive until it did.

use super::host;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use wasm_bindgen::prelude::*;

/// Resolves `ms` milliseconds after its first poll; at once with the host's
/// reason if `setTimeout` threw.
pub(crate) struct Timeout {
    ms: f64,
    shared: Rc<RefCell<Shared>>,
    /// The callback and the timer id while the timeout is set.
    armed: Option<(Closure<dyn FnMut()>, JsValue)>,
}

#[derive(Default)]
struct Shared {
    fired: bool,
    waker: Option<Waker>,
}

impl Timeout {
    pub(crate) fn new(ms: u64) -> Self {
        Timeout {
            ms: ms as f64,
            shared: Rc::default(),
            armed: None,
        }
    }

    /// Sets the timeout now rather than at the first poll (a no-op if it is
    /// set); why not if the host's `setTimeout` threw.
    pub(crate) fn start(&mut self) -> Result<(), String> {
        if self.armed.is_some() {
            return Ok(());
        }
        self.arm()
    }

    /// Sets the timeout; why not if the host's `setTimeout` threw.
    fn arm(&mut self) -> Result<(), String> {
        let shared = self.shared.clone();
        let fire = Closure::<dyn FnMut()>::new(move || {
            let waker = {
                let mut shared = shared.borrow_mut();
                shared.fired = true;
                shared.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        });
        // One catching crossing each way (host-calls.js `setTimer` and
        // `clearTimer`), not a lookup of the global by name and a call: a
        // timeout is set and cleared around every store call and request.
        match host::set_timer(fire.as_ref(), self.ms) {
            Ok(id) => {
                self.armed = Some((fire, id));
                Ok(())
            }
            Err(e) => Err(format!(
                "setTimeout threw: {}",
                host::thrown_message(&e).unwrap_or_else(|| "a value that is not an Error".into())
            )),
        }
    }
}

impl Future for Timeout {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        {
            let mut shared = self.shared.borrow_mut();
            if shared.fired {
                return Poll::Ready(Ok(()));
            }
            shared.waker = Some(cx.waker().clone());
        }
        match self.start() {
            Ok(()) => Poll::Pending,
            Err(why) => Poll::Ready(Err(why)),
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        let Some((fire, id)) = self.armed.take() else {
            return;
        };
        if self.shared.borrow().fired {
            return;
        }
        if host::clear_timer(&id).is_err() {
            // Still set: the callback must outlive this future.
            fire.forget();
        }
    }
}
