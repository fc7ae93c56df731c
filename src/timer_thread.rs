//! The native timer behind [`crate::SystemClock`]: one thread per process
//! that wakes each sleeping task at its instant.
//!
//! It replaces `futures-timer`, whose helper thread is started once and kept
//! in a static that cannot be reset: in a forked child (a prefork server's
//! worker whose parent used a client) that thread is gone, and every store
//! deadline, HTTP deadline and retry backoff waited forever. Here the
//! thread belongs to its process ([`PerProcess`]), so a child starts its own.

use crate::per_process::PerProcess;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The tasks waiting, by instant (and a number, to tell equal instants apart).
#[derive(Default)]
struct Timers {
    due: Mutex<BTreeMap<(Instant, u64), Waker>>,
    changed: Condvar,
    next_id: AtomicU64,
}

impl Timers {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(Instant, u64), Waker>> {
        self.due.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread's loop: wakes what is due (outside the lock: a waker may
    /// set a timer of its own), then waits for the next instant or a new,
    /// earlier one.
    fn run(&self) {
        let mut due = self.lock();
        loop {
            let now = Instant::now();
            let mut fired = Vec::new();
            while let Some(entry) = due.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                fired.push(entry.remove());
            }
            if !fired.is_empty() {
                drop(due);
                fired.into_iter().for_each(Waker::wake);
                due = self.lock();
                continue;
            }
            due = match due.keys().next() {
                Some(&(at, _)) => {
                    let waited = self.changed.wait_timeout(due, at - now);
                    waited.unwrap_or_else(PoisonError::into_inner).0
                }
                None => self
                    .changed
                    .wait(due)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

/// This process's timers, their thread started on first use; `None` if no
/// thread could be started.
fn timers() -> Option<&'static Arc<Timers>> {
    static TIMERS: PerProcess<Option<Arc<Timers>>> = PerProcess::new();
    let started = TIMERS.get(|| {
        let timers = Arc::new(Timers::default());
        let running = Arc::clone(&timers);
        std::thread::Builder::new()
            .name("freshtoken-timer".into())
            .spawn(move || running.run())
            .ok()
            .map(|_| timers)
    });
    started.and_then(Option::as_ref)
}

/// Resolves once `duration` has passed. Without a timer thread (none could
/// be started, or forks nested past [`PerProcess`]'s generations) it
/// resolves at once, as `futures-timer` did: a deadline then fires
/// early rather than never.
pub(crate) async fn sleep(duration: Duration) {
    let Some(at) = Instant::now().checked_add(duration) else {
        return std::future::pending().await; // past any instant: never
    };
    if let Some(timers) = timers() {
        Sleep {
            timers,
            at,
            id: None,
        }
        .await
    }
}

/// One task's wait for `at`.
struct Sleep {
    timers: &'static Timers,
    at: Instant,
    /// Set once the wait is registered with the thread.
    id: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            self.forget();
            return Poll::Ready(());
        }
        let (timers, at) = (self.timers, self.at);
        let id = *self
            .id
            .get_or_insert_with(|| timers.next_id.fetch_add(1, Ordering::Relaxed));
        let mut due = timers.lock();
        let earliest = due.keys().next().is_none_or(|first| at < first.0);
        due.insert((at, id), cx.waker().clone());
        drop(due);
        if earliest {
            timers.changed.notify_one();
        }
        Poll::Pending
    }
}

impl Sleep {
    fn forget(&mut self) {
        if let Some(id) = self.id.take() {
            self.timers.lock().remove(&(self.at, id));
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::{select, Either};
    use futures_util::task::noop_waker;

    #[tokio::test]
    async fn sleeps_end_in_order_of_their_instants() {
        let long = Box::pin(sleep(Duration::from_secs(60)));
        let short = Box::pin(sleep(Duration::from_millis(20)));
        let started = Instant::now();
        let first = select(long, short).await;
        assert!(
            matches!(first, Either::Right(_)),
            "the short one ends first"
        );
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn a_dropped_sleep_leaves_nothing_behind() {
        let timers = timers().expect("a timer thread");
        let mut waiting = Sleep {
            timers,
            at: Instant::now() + Duration::from_secs(3_600),
            id: None,
        };
        let waker = noop_waker();
        let pending = Pin::new(&mut waiting).poll(&mut Context::from_waker(&waker));
        assert!(pending.is_pending());
        let entry = (waiting.at, waiting.id.expect("registered"));
        assert!(timers.lock().contains_key(&entry));
        drop(waiting);
        assert!(
            !timers.lock().contains_key(&entry),
            "dropped with its sleep"
        );
    }

    #[tokio::test]
    async fn a_sleep_past_any_instant_never_ends() {
        let never = Box::pin(sleep(Duration::MAX));
        let short = Box::pin(sleep(Duration::from_millis(1)));
        assert!(matches!(select(never, short).await, Either::Right(_)));
    }
}
