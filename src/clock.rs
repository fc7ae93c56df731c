//! Time: a `Clock` gives the current time and sleeps (for retry backoff).
//!
//! wasm32 has no working `SystemTime::now`, so the core only ever asks a
//! `Clock`; tests use [`ManualClock`] to make every time rule deterministic.
//! Durations (a retry budget, a lease's age) are measured on the wall clock
//! and on a monotonic one, and the larger counts (see `elapsed.rs`):
//! a wall clock set back never stretches them.

use crate::maybe_send::MaybeSendSync;
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};

/// Wall-clock time in milliseconds since the Unix epoch, and a sleep.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait Clock: MaybeSendSync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Milliseconds from an arbitrary origin on a clock that never steps
    /// when the wall clock is set (NTP, a user). Only differences count.
    /// Defaults to the platform's (`Instant` natively, `performance.now()`
    /// in wasm), whatever `now_ms` reads; a fake clock overrides it so that
    /// tests drive both readings ([`ManualClock`]).
    fn monotonic_ms(&self) -> u64 {
        platform_monotonic_ms()
    }
    /// Waits `ms` milliseconds: between retries, between looks at another
    /// process's fleet lease, between background saves of a stranded record.
    async fn sleep(&self, ms: u64);

    /// Resolves `ms` milliseconds from now: the deadline of a host callback
    /// (a store call, an HTTP request). Defaults to [`Clock::sleep`]. A fake
    /// clock whose `sleep` returns at once must override it, or every
    /// callback that is not ready at once would time out: [`ManualClock`]
    /// fires it only when its time is moved past the deadline.
    async fn timer(&self, ms: u64) {
        self.sleep(ms).await
    }

    /// [`Clock::timer`], or why no timer could be set. Only a timer that can
    /// fail to be set overrides it (the wasm build's, when the host's
    /// `setTimeout` throws): the callback it bounds then fails at once with
    /// that reason, rather than reading as one that answered too slowly.
    #[doc(hidden)]
    async fn deadline(&self, ms: u64) -> Result<(), String> {
        self.timer(ms).await;
        Ok(())
    }
}

/// The platform's monotonic clock in milliseconds from an arbitrary origin.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn platform_monotonic_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = ORIGIN.get_or_init(std::time::Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// The host's `performance.now()` in milliseconds (0 where the host has
/// none: the wall clock alone then measures durations).
#[cfg(target_arch = "wasm32")]
pub(crate) fn platform_monotonic_ms() -> u64 {
    crate::wasm::performance_now_ms()
}

/// The end of year 9999 in Unix milliseconds. A host clock reading past it
/// is a unit mistake (nanoseconds, microseconds) or a broken clock, not a
/// time: the core then reads the system clock, as for a negative reading,
/// so that no token is judged expired (or stored with an instant no record
/// can hold) by it.
#[cfg_attr(not(any(feature = "ffi", target_arch = "wasm32")), allow(dead_code))]
pub(crate) const LATEST_PLAUSIBLE_MS: u64 = 253_402_300_799_999;

/// 2026-01-01 in Unix milliseconds, before any freshtoken release: the
/// earliest refresh-token expiry taken as a verdict. A record's
/// `refresh_expires_at` is its writer's clock plus the lifetime, so one
/// before this was written under a clock far behind (a device back in 1970
/// before NTP, a host clock in seconds). Judged, it would end a live grant
/// in every process for good; unjudged, the server decides.
pub(crate) const EARLIEST_PLAUSIBLE_EXPIRY_MS: u64 = 1_767_225_600_000;

/// The operating system's clock, with a runtime-free timer for sleeps.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[cfg(not(target_arch = "wasm32"))]
#[async_trait]
impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    async fn sleep(&self, ms: u64) {
        crate::timer_thread::sleep(std::time::Duration::from_millis(ms)).await;
    }

    /// A host callback's deadline, set again once when it ended over
    /// 100 ms late: the process was paused (SIGSTOP, Android's freezer of
    /// cached apps, a long VM pause), every deadline is due at once on
    /// resume, and a token answer the host had received meanwhile would
    /// count as timed out, its rotated refresh token lost and the one sent
    /// in doubt. The time lost (at most the deadline's length and 250 ms)
    /// lets the callback deliver it.
    async fn timer(&self, ms: u64) {
        let started = std::time::Instant::now();
        self.sleep(ms).await;
        let late = u64::try_from(started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_sub(ms);
        if late > PAUSE_MS {
            self.sleep(late.min(ms).min(PAUSE_GRACE_MS)).await;
        }
    }
}

/// How late a native deadline may end before the process counts as paused
/// (threads are scheduled a few ms late under load).
#[cfg(not(target_arch = "wasm32"))]
const PAUSE_MS: u64 = 100;
/// The most a native deadline is extended by after a pause.
#[cfg(not(target_arch = "wasm32"))]
const PAUSE_GRACE_MS: u64 = 250;

/// A clock that only moves when told to. `sleep` advances it instantly and
/// records the requested duration, so backoff is observable without waiting;
/// a [`Clock::timer`] fires once the clock is moved past its deadline, so a
/// stalled host callback times out exactly when the test says.
///
/// It has a monotonic reading too: [`ManualClock::advance`] (and `sleep`)
/// moves both, [`ManualClock::set`] only the wall clock, as a step of the
/// system clock would.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
    monotonic: AtomicU64,
    sleeps: Mutex<Vec<u64>>,
    /// Armed timers: id, deadline, and the waker of the task waiting for it.
    timers: Mutex<Vec<(u64, u64, Option<Waker>)>>,
    next_timer: AtomicU64,
}

impl ManualClock {
    /// A clock set to `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        ManualClock {
            now: AtomicU64::new(now_ms),
            monotonic: AtomicU64::new(0),
            sleeps: Mutex::new(Vec::new()),
            timers: Mutex::new(Vec::new()),
            next_timer: AtomicU64::new(0),
        }
    }

    /// Lets `ms` pass: moves the wall clock and the monotonic one forward
    /// (firing the timers it passes).
    pub fn advance(&self, ms: u64) {
        self.monotonic.fetch_add(ms, Ordering::SeqCst);
        self.now.fetch_add(ms, Ordering::SeqCst);
        self.fire_due();
    }

    /// Sets the wall clock, forward or back, as a step of the system clock
    /// does (firing the timers it passes); the monotonic reading stays.
    pub fn set(&self, now_ms: u64) {
        self.now.store(now_ms, Ordering::SeqCst);
        self.fire_due();
    }

    /// How many timers are armed and wait for the clock to move: a test can
    /// tell that a host callback is under way (its deadline armed) before
    /// it moves time past the deadline.
    pub fn pending_timers(&self) -> usize {
        let now = self.now_ms();
        self.lock_timers()
            .iter()
            .filter(|(_, due, _)| *due > now)
            .count()
    }

    fn lock_timers(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u64, Option<Waker>)>> {
        self.timers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fire_due(&self) {
        let due: Vec<Waker> = {
            let mut timers = self.lock_timers();
            let now = self.now.load(Ordering::SeqCst);
            timers
                .iter_mut()
                .filter(|(_, at, _)| *at <= now)
                .filter_map(|(_, _, waker)| waker.take())
                .collect()
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// Every duration passed to `sleep` so far, in order.
    pub fn sleeps(&self) -> Vec<u64> {
        self.sleeps.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> u64 {
        self.monotonic.load(Ordering::SeqCst)
    }

    async fn sleep(&self, ms: u64) {
        if let Ok(mut sleeps) = self.sleeps.lock() {
            sleeps.push(ms);
        }
        self.advance(ms);
    }

    async fn timer(&self, ms: u64) {
        let id = self.next_timer.fetch_add(1, Ordering::SeqCst);
        let due = self.now_ms().saturating_add(ms);
        self.lock_timers().push((id, due, None));
        // Disarmed however the wait ends (fired, or its future dropped).
        let _armed = Armed { clock: self, id };
        std::future::poll_fn(|cx| {
            // Checked and registered under the lock `fire_due` takes after
            // moving time, so no wake-up can fall between the two.
            let mut timers = self.lock_timers();
            if self.now.load(Ordering::SeqCst) >= due {
                return Poll::Ready(());
            }
            if let Some(entry) = timers.iter_mut().find(|(i, _, _)| *i == id) {
                entry.2 = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// An armed [`ManualClock`] timer; dropping it disarms the timer.
struct Armed<'a> {
    clock: &'a ManualClock,
    id: u64,
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.clock.lock_timers().retain(|(id, _, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_advances_both_readings_and_steps_only_the_wall() {
        let clock = ManualClock::new(1_000_000);
        clock.advance(2_500);
        assert_eq!((clock.now_ms(), clock.monotonic_ms()), (1_002_500, 2_500));
        clock.set(5);
        assert_eq!((clock.now_ms(), clock.monotonic_ms()), (5, 2_500));
        futures_util::FutureExt::now_or_never(clock.sleep(100)).unwrap();
        assert_eq!((clock.now_ms(), clock.monotonic_ms()), (105, 2_600));
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn the_default_monotonic_reading_is_the_platforms() {
        let first = SystemClock.monotonic_ms();
        let second = SystemClock.monotonic_ms();
        assert!(second >= first);
    }
}
