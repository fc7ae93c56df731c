//! The host's exit: once the host says it is exiting
//! ([`shutdown_host_calls`]), no freshtoken thread calls into it again.
//!
//! Why: a thread that calls into a CPython interpreter that has begun to
//! finalize is ended with `pthread_exit` (before Python 3.14), which cannot
//! unwind through Rust frames, and the process aborts. The core's threads
//! (the flight thread finishing a refresh whose caller gave up, the timer,
//! the events thread) may call in at any moment: a host object's method
//! (store, HTTP, clock, listener), the release of a host object, the
//! wake-up of a call the host awaits. Each goes through a *crossing* here;
//! once the host is exiting, none starts, and the ones already running are
//! waited for (bounded). What is not called is given up: a store call
//! fails as a storage error, a request is not sent, a host object is leaked
//! instead of released, an awaited call is never woken (the process is
//! ending).

use std::future::Future;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Process-wide, in one word each so that no lock is taken on the way into
/// the host (a lock a parent's thread held at a fork would stay locked in
/// the child): the process the word belongs to (high 32 bits: a forked
/// child starts afresh, since a crossing of its parent never ends in it),
/// then for [`CROSSINGS`] whether the host is exiting ([`EXITING`]) and how
/// many crossings into the host run, for [`TASKS`] how many detached core
/// tasks (refreshes, revocations, code exchanges) run.
static CROSSINGS: AtomicU64 = AtomicU64::new(0);
static TASKS: AtomicU64 = AtomicU64::new(0);
/// The exiting flag in [`CROSSINGS`]'s low half.
const EXITING: u64 = 1 << 31;
/// The count in a word's low half.
const COUNT: u64 = EXITING - 1;

/// Where [`shutdown_host_calls`] waits; only it locks this.
static WAIT: Mutex<()> = Mutex::new(());
static CHANGED: Condvar = Condvar::new();

/// How long [`shutdown_host_calls`] waits, at least, for calls into the
/// host already running once it closed (they are short: a listener's
/// hand-over, a store method's start).
const CROSSINGS_WAIT: Duration = Duration::from_millis(200);

/// Changes `word` by `change` of its low half (this process's), atomically;
/// returns the new low half, or `None` (and no change) when `change` says so.
fn update(word: &AtomicU64, change: impl Fn(u64) -> Option<u64>) -> Option<u64> {
    let pid = u64::from(std::process::id()) << 32;
    let mut seen = word.load(Ordering::SeqCst);
    loop {
        let low = if seen & !(EXITING | COUNT) == pid {
            seen & (EXITING | COUNT)
        } else {
            0
        };
        let new = change(low)?;
        match word.compare_exchange(seen, pid | new, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return Some(new),
            Err(now) => seen = now,
        }
    }
}

/// This process's count in `word`.
fn count(word: &AtomicU64) -> u64 {
    update(word, Some).map_or(0, |low| low & COUNT)
}

/// One fewer in `word`'s count, if `pid` (the counted one's process) is
/// still this process: one counted in a parent and ended in its forked
/// child is not the child's. Wakes [`shutdown_host_calls`].
fn end(word: &AtomicU64, pid: u32) {
    if pid == std::process::id() {
        update(word, |low| {
            Some((low & EXITING) | (low & COUNT).saturating_sub(1))
        });
    }
    CHANGED.notify_all();
}

/// Waits until `done()` or `deadline`; whether `done()`.
fn wait_until(deadline: Instant, done: impl Fn() -> bool) -> bool {
    let mut guard = WAIT.lock().unwrap_or_else(|e| e.into_inner());
    while !done() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // Counts change without this lock: look again every few ms, so
        // that a wake-up sent between the check and the wait is not missed
        // for long.
        let slice = left.min(Duration::from_millis(5));
        guard = CHANGED
            .wait_timeout(guard, slice)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

/// Stops every call from freshtoken into the host, for good, for a host
/// that is exiting. First waits, up to `timeout_ms`, for the core's
/// detached tasks already running (a refresh whose caller gave up still
/// saves its rotated refresh token through the host's store) and for the
/// calls into the host they make; then no freshtoken thread calls a store,
/// an HTTP client, a clock or a listener, releases one, or wakes a call
/// the host awaits (store calls fail as storage errors, requests are not
/// sent, host objects are leaked, calls made later fail at once), and
/// calls into the host already running get what is left of `timeout_ms`,
/// 200 ms at least. Returns whether nothing was still running. Python calls
/// it at exit, after its own calls ended: a thread that is not Python's
/// must not call into an interpreter that is finalizing (CPython before
/// 3.14 aborts the process). A negative `timeout_ms` waits for no task.
#[uniffi::export]
pub fn shutdown_host_calls(timeout_ms: i64) -> bool {
    let wait = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
    // A wait an Instant cannot hold on some platform is a year: forever
    // for an exiting process, and no overflow panic across the FFI.
    let now = Instant::now();
    let deadline = (now.checked_add(wait)).unwrap_or(now + Duration::from_secs(365 * 86_400));
    let idle = wait_until(deadline, || count(&TASKS) == 0 && count(&CROSSINGS) == 0);
    update(&CROSSINGS, |low| Some(low | EXITING));
    let left = deadline.saturating_duration_since(Instant::now());
    let crossed = wait_until(Instant::now() + left.max(CROSSINGS_WAIT), || {
        count(&CROSSINGS) == 0
    });
    idle && crossed && count(&TASKS) == 0
}

/// Whether the host is exiting.
pub(crate) fn exiting() -> bool {
    update(&CROSSINGS, Some).is_some_and(|low| low & EXITING != 0)
}

/// One call into the host in progress, counted in this process; ends
/// when dropped.
pub(crate) struct Crossing(u32);

/// A crossing into the host, or `None` once the host is exiting.
pub(crate) fn enter() -> Option<Crossing> {
    let pid = std::process::id();
    update(&CROSSINGS, |low| (low & EXITING == 0).then_some(low + 1))?;
    Some(Crossing(pid))
}

impl Drop for Crossing {
    fn drop(&mut self) {
        end(&CROSSINGS, self.0);
    }
}

/// One detached core task running (counted for [`shutdown_host_calls`]'s
/// first wait); ends when dropped, with the task or when it is dropped.
pub(crate) struct Task(u32);

/// Counts a detached task until the returned value is dropped.
pub(crate) fn task() -> Task {
    let pid = std::process::id();
    update(&TASKS, |low| Some(low + 1));
    Task(pid)
}

impl Drop for Task {
    fn drop(&mut self) {
        end(&TASKS, self.0);
    }
}

/// A host object (store, HTTP client, clock, listener) held by the core.
/// Its last release calls into the host, so it happens in a crossing, or
/// not at all once the host is exiting (the object is leaked).
pub(crate) struct HostObject<T: ?Sized>(ManuallyDrop<Arc<T>>);

impl<T: ?Sized> HostObject<T> {
    /// Holds `object`.
    pub(crate) fn new(object: Arc<T>) -> Self {
        HostObject(ManuallyDrop::new(object))
    }
}

impl<T: ?Sized> Clone for HostObject<T> {
    fn clone(&self) -> Self {
        HostObject::new(Arc::clone(&self.0))
    }
}

impl<T: ?Sized> Deref for HostObject<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized> Drop for HostObject<T> {
    fn drop(&mut self) {
        if let Some(_crossing) = enter() {
            // SAFETY: dropped once, here; `self.0` is not used again.
            unsafe { ManuallyDrop::drop(&mut self.0) }
        }
    }
}

/// The host is exiting: a call into it was not made, or its answer is not
/// awaited (`made`: the call was made, and may have done its work).
#[derive(Debug)]
pub(crate) struct Exiting {
    pub(crate) made: bool,
}

impl From<Exiting> for crate::Error {
    /// An exported call polled once the host is exiting: nothing was sent
    /// when it was first polled then (`made`: it ran before, and may have).
    fn from(exiting: Exiting) -> Self {
        let message = if exiting.made {
            "the app is exiting: freshtoken no longer calls into it, and this call's answer is not awaited"
        } else {
            "the app is exiting: freshtoken no longer calls into it, and nothing was sent"
        };
        crate::Error::Network {
            message: message.to_owned(),
            maybe_sent: exiting.made,
        }
    }
}

/// A call of a host object's async method: the call itself (made when
/// first polled), every later poll and the release of its future (which
/// calls into the host) each run in a crossing. Once the host is exiting it
/// ends with [`Exiting`], and its future is leaked instead of released.
pub(crate) struct HostCall<F> {
    call: ManuallyDrop<Pin<Box<F>>>,
    made: bool,
}

/// Wraps the host call `call` (not yet polled).
pub(crate) fn host_call<F: Future>(call: F) -> HostCall<F> {
    HostCall {
        call: ManuallyDrop::new(Box::pin(call)),
        made: false,
    }
}

impl<F: Future> Future for HostCall<F> {
    type Output = Result<F::Output, Exiting>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(_crossing) = enter() else {
            return Poll::Ready(Err(Exiting { made: self.made }));
        };
        self.made = true;
        self.call.as_mut().poll(cx).map(Ok)
    }
}

impl<F> Drop for HostCall<F> {
    fn drop(&mut self) {
        if let Some(_crossing) = enter() {
            // SAFETY: dropped once, here; `self.call` is not used again.
            unsafe { ManuallyDrop::drop(&mut self.call) }
        }
    }
}

/// An exported call's future, whose wake-ups call into the host (the
/// host's executor resumes its awaiting caller): each wake-up runs in a
/// crossing, and none once the host is exiting. Polled once the host is
/// exiting, it ends with [`Exiting`] (its wake-ups would never come).
pub(crate) struct Woken<F> {
    call: Pin<Box<F>>,
    relay: Option<(Arc<Relay>, Waker)>,
}

/// Passes wake-ups on to the host's waker.
struct Relay(Mutex<Waker>);

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let waker = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(_crossing) = enter() {
            waker.wake();
        }
    }
}

/// Wraps the exported call `call`.
pub(crate) fn woken<F: Future>(call: F) -> Woken<F> {
    Woken {
        call: Box::pin(call),
        relay: None,
    }
}

impl<F, T, E> Future for Woken<F>
where
    F: Future<Output = Result<T, E>>,
    E: From<Exiting>,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let made = self.relay.is_some();
        if exiting() {
            return Poll::Ready(Err(Exiting { made }.into()));
        }
        let this = &mut *self;
        let (relay, waker) = this.relay.get_or_insert_with(|| {
            let relay = Arc::new(Relay(Mutex::new(cx.waker().clone())));
            let waker = Waker::from(relay.clone());
            (relay, waker)
        });
        {
            let mut host = relay.0.lock().unwrap_or_else(|e| e.into_inner());
            if !host.will_wake(cx.waker()) {
                host.clone_from(cx.waker());
            }
        }
        match this.call.as_mut().poll(&mut Context::from_waker(waker)) {
            // The host began to exit meanwhile: no wake-up would come.
            Poll::Pending if exiting() => Poll::Ready(Err(Exiting { made: true }.into())),
            polled => polled,
        }
    }
}

/// [`shutdown_host_calls`] is process-wide for good, so its test runs in a
/// child process of its own (this test binary, filtered to it).
#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc::channel;

    const CHILD: &str = "FRESHTOKEN_HOST_EXIT_CHILD";

    /// In the test process: runs the test `path` alone in a child process
    /// (this test binary, filtered to it) and asserts it passed; returns
    /// true. In that child: returns false, and the test runs. For tests of
    /// [`shutdown_host_calls`], which is for good in its process.
    pub(in crate::ffi) fn ran_in_a_child_process(path: &str) -> bool {
        if std::env::var_os(CHILD).is_some() {
            return false;
        }
        let run = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", path, "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "the child process failed: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        true
    }

    /// Counts wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Notes its drop (the release of a host object).
    struct Released(Arc<AtomicBool>);

    impl Drop for Released {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Pending until its waker is taken and woken by the test.
    struct Parked(Arc<Mutex<Option<Waker>>>);

    impl Future for Parked {
        type Output = Result<(), crate::Error>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            *self.0.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn after_shutdown_the_host_is_never_called_released_or_woken() {
        if ran_in_a_child_process(
            "ffi::host_exit::tests::after_shutdown_the_host_is_never_called_released_or_woken",
        ) {
            return;
        }

        // Before: a wake-up reaches the host's waker; a host object is released.
        let host = Arc::new(Count(AtomicUsize::new(0)));
        let host_waker = Waker::from(host.clone());
        let parked = Arc::new(Mutex::new(None));
        let mut call = woken(Parked(parked.clone()));
        let mut cx = Context::from_waker(&host_waker);
        assert!(Pin::new(&mut call).poll(&mut cx).is_pending());
        let inner = parked.lock().unwrap().take().unwrap();
        inner.wake_by_ref();
        assert_eq!(host.0.load(Ordering::SeqCst), 1, "woken before the exit");
        let released = Arc::new(AtomicBool::new(false));
        drop(HostObject::new(Arc::new(Released(released.clone()))));
        assert!(released.load(Ordering::SeqCst));
        // A host call made before the exit, still waiting for its answer.
        let parked_call = Arc::new(Mutex::new(None));
        let mut made = host_call(Parked(parked_call.clone()));
        assert!(Pin::new(&mut made).poll(&mut cx).is_pending());

        // A running detached task holds up the shutdown until it ends,
        // and so does a crossing it makes (a save of its rotated token).
        let (started, running) = channel();
        let (finish, finished) = channel::<()>();
        let worker = std::thread::spawn(move || {
            let task = task();
            let crossing = enter().expect("not exiting yet");
            started.send(()).unwrap();
            finished.recv().unwrap();
            drop(crossing);
            drop(task);
        });
        running.recv().unwrap();
        assert!(!shutdown_host_calls(10), "a task is still running");
        assert!(enter().is_none(), "closed even when it gave up waiting");
        finish.send(()).unwrap();
        assert!(
            shutdown_host_calls(i64::MAX),
            "the crossing ended (no overflow)"
        );
        worker.join().unwrap();

        // After: no crossing, no wake-up, no release, no host call.
        assert!(enter().is_none());
        inner.wake();
        assert_eq!(host.0.load(Ordering::SeqCst), 1, "not woken after the exit");
        let after = Arc::new(AtomicBool::new(false));
        drop(HostObject::new(Arc::new(Released(after.clone()))));
        assert!(!after.load(Ordering::SeqCst), "leaked, not released");
        let called = Arc::new(AtomicBool::new(false));
        let flag = called.clone();
        let mut never = host_call(async move { flag.store(true, Ordering::SeqCst) });
        assert!(matches!(
            Pin::new(&mut never).poll(&mut cx),
            Poll::Ready(Err(Exiting { made: false }))
        ));
        drop(never);
        assert!(!called.load(Ordering::SeqCst), "the host call was not made");
        // The call made before: its answer is not awaited, and it says it was made.
        assert!(matches!(
            Pin::new(&mut made).poll(&mut cx),
            Poll::Ready(Err(Exiting { made: true }))
        ));
        // An exported call polled now fails at once (no wake-up would
        // come): one polled before may have sent; one made now sent nothing.
        assert!(matches!(
            Pin::new(&mut call).poll(&mut cx),
            Poll::Ready(Err(crate::Error::Network {
                maybe_sent: true,
                ..
            }))
        ));
        let mut late = woken(Parked(Arc::new(Mutex::new(None))));
        assert!(matches!(
            Pin::new(&mut late).poll(&mut cx),
            Poll::Ready(Err(crate::Error::Network {
                maybe_sent: false,
                ..
            }))
        ));
    }
}
