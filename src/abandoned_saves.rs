//! Saves the store deadline gave up on while the host may still be writing
//! them (DESIGN point 15). Giving up only stops the waiting: a blocking
//! driver call, a file write on a worker thread or a promise that settles
//! late still lands, after anything saved since. Such a late write is
//! harmless while it carries the current refresh token, and costs the user
//! a re-link once a newer one exists. So the core keeps each abandoned save
//! running to its end, and sends no refresh and replaces no record of that
//! key until it has ended: every newer refresh token is saved after it.
//!
//! Not forever: a save that has not ended [`HORIZON_FACTOR`] store deadlines
//! after it was abandoned (a minute by default) is given up for good — it is
//! dropped, which cancels it where the host can cancel — so that a store
//! call that never returns leaves no session stuck. A write that lands even
//! later can still replace a newer record; a store whose writes can land
//! that late should do compare-and-swap (`save_versioned`), which makes
//! every late write harmless.
//!
//! Kept per client, by key, outside the session state: rare, so no session
//! pays for it, and it outlives the eviction of its session's state.

use crate::elapsed::Started;
use crate::maybe_send::BoxFuture;
use crate::spawn::Spawn;
use futures_util::future::{join, AbortHandle, Abortable, FutureExt, Shared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// An abandoned save, resolving when the host's call ends (whatever its result).
pub(crate) type SaveEnd = Shared<BoxFuture<'static, ()>>;

/// How many store deadlines an abandoned save is waited for, from when it
/// was abandoned, before it is given up for good.
pub(crate) const HORIZON_FACTOR: u64 = 12;

/// The abandoned saves of one client's sessions, by key, with when each
/// was abandoned (ms on the client's clock).
#[derive(Default)]
pub(crate) struct AbandonedSaves(Mutex<HashMap<Arc<str>, Kept>>);

/// One abandoned save (or several of one key, joined): its end, when it was
/// abandoned, and the handles that stop the tasks driving it (with a spawner).
struct Kept {
    end: SaveEnd,
    abandoned: Started,
    drivers: Vec<AbortHandle>,
}

impl AbandonedSaves {
    /// Keeps `call`, a save of `key` its deadline gave up on, running to its
    /// end: on `spawn` when there is one, else driven by whoever waits for it.
    /// An earlier save of `key` that has not ended stays waited for too: the
    /// key's end is then that of both, counted from the earlier abandonment.
    pub(crate) fn keep(
        &self,
        key: Arc<str>,
        call: BoxFuture<'static, ()>,
        spawn: Option<&Arc<dyn Spawn>>,
        now: Started,
    ) {
        let mut saves = self.lock();
        let earlier = saves.remove(&key).filter(|kept| kept.end.peek().is_none());
        let (call, abandoned, mut drivers) = match earlier {
            Some(kept) => {
                let both = join(kept.end, call).map(drop);
                let call: BoxFuture<'static, ()> = Box::pin(both);
                (call, kept.abandoned.earlier(now), kept.drivers)
            }
            None => (call, now, Vec::new()),
        };
        let end = call.shared();
        let task = spawn.map(|spawn| {
            let (driver, registration) = AbortHandle::new_pair();
            drivers.push(driver);
            (spawn, Abortable::new(end.clone(), registration).map(drop))
        });
        let kept = Kept {
            end,
            abandoned,
            drivers,
        };
        saves.insert(key, kept);
        drop(saves);
        // Outside the lock: a spawner may poll the task at once.
        if let Some((spawn, task)) = task {
            spawn.spawn(Box::pin(task));
        }
    }

    /// The abandoned save of `key` still to wait for, if any. Forgets one
    /// that has ended, and gives up one abandoned `horizon_ms` or more
    /// before `now` (dropping it: see the module's notes). Counted on the
    /// wall clock, unless it reads earlier than the abandonment (set back):
    /// then on the monotonic one, so a step back neither holds the key for
    /// its length nor, once corrected, ends the wait early.
    pub(crate) fn pending(&self, key: &str, now: Started, horizon_ms: u64) -> Option<SaveEnd> {
        let mut saves = self.lock();
        let kept = saves.get(key)?;
        if kept.end.peek().is_some() {
            saves.remove(key);
            return None;
        }
        if kept.abandoned.waited_until(&now) >= horizon_ms {
            let kept = saves.remove(key);
            drop(saves);
            log::warn!("freshtoken: a save abandoned {horizon_ms} ms ago never ended; given up");
            stop(kept);
            return None;
        }
        Some(kept.end.clone())
    }

    /// Whether `key` has an abandoned save still to wait for at `now`, as
    /// [`AbandonedSaves::pending`] tells, but changing nothing: nothing is
    /// dropped, so no host call is made (the caller may hold a lock).
    pub(crate) fn holds(&self, key: &str, now: Started, horizon_ms: u64) -> bool {
        self.lock().get(key).is_some_and(|kept| {
            kept.end.peek().is_none() && kept.abandoned.waited_until(&now) < horizon_ms
        })
    }

    /// Gives up `key`'s abandoned save for good (see [`stop`]).
    pub(crate) fn give_up(&self, key: &str) {
        let kept = self.lock().remove(key);
        if kept.is_some() {
            log::warn!("freshtoken: a save abandoned long ago never ended; given up");
        }
        stop(kept);
    }

    /// Forgets `end` (it has ended), unless a newer abandoned save replaced it.
    pub(crate) fn ended(&self, key: &str, end: &SaveEnd) {
        let mut saves = self.lock();
        if saves.get(key).is_some_and(|kept| kept.end.ptr_eq(end)) {
            saves.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Kept>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Drops a given-up save (which cancels it where the host can cancel) and
/// stops the tasks driving it. Called with no lock held: dropping the
/// host's call may call into the host.
fn stop(kept: Option<Kept>) {
    if let Some(kept) = kept {
        for driver in kept.drivers {
            driver.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A reading whose wall and monotonic clocks agree.
    fn at(ms: u64) -> Started {
        Started::at(ms, ms)
    }

    /// Sets its flag when dropped (the host's call was given up).
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A save that never ends, and the flag its dropping sets.
    fn never_ending() -> (BoxFuture<'static, ()>, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let call = Box::pin(async move {
            let _flag = flag;
            std::future::pending::<()>().await
        });
        (call, dropped)
    }

    #[test]
    fn an_abandoned_save_is_waited_for_until_the_horizon_then_dropped() {
        let saves = AbandonedSaves::default();
        let (call, dropped) = never_ending();
        saves.keep(Arc::from("u1"), call, None, at(1_000));
        assert!(saves.pending("u2", at(1_000), 60_000).is_none(), "per key");
        let end = saves
            .pending("u1", at(60_999), 60_000)
            .expect("still running");
        drop(end);
        assert!(!dropped.load(Ordering::SeqCst));
        assert!(
            saves.pending("u1", at(61_000), 60_000).is_none(),
            "given up"
        );
        assert!(dropped.load(Ordering::SeqCst), "and dropped (cancelled)");
        assert!(
            saves.pending("u1", at(61_000), 60_000).is_none(),
            "and forgotten"
        );
    }

    /// Keeps the tasks it is given, for the test to poll.
    #[derive(Default)]
    struct Tasks(Mutex<Vec<BoxFuture<'static, ()>>>);

    impl Spawn for Tasks {
        fn spawn(&self, task: BoxFuture<'static, ()>) {
            self.0.lock().unwrap().push(task);
        }
    }

    #[test]
    fn giving_up_stops_the_task_that_drives_the_save() {
        let saves = AbandonedSaves::default();
        let tasks = Arc::new(Tasks::default());
        let spawn: Arc<dyn Spawn> = tasks.clone();
        let (call, dropped) = never_ending();
        saves.keep(Arc::from("u1"), call, Some(&spawn), at(0));
        let mut task = tasks.0.lock().unwrap().pop().expect("spawned");
        assert!((&mut task).now_or_never().is_none(), "drives the save");
        assert!(
            saves.pending("u1", at(60_000), 60_000).is_none(),
            "given up"
        );
        assert!(task.now_or_never().is_some(), "the driving task ends");
        assert!(dropped.load(Ordering::SeqCst), "and the save is dropped");
    }

    #[test]
    fn an_ended_save_is_forgotten() {
        let saves = AbandonedSaves::default();
        saves.keep(Arc::from("u1"), Box::pin(async {}), None, at(0));
        let end = saves.pending("u1", at(0), 60_000).expect("not polled yet");
        futures_util::FutureExt::now_or_never(end.clone()).expect("ends at once");
        assert!(saves.pending("u1", at(0), 60_000).is_none());
        saves.ended("u1", &end);
    }

    #[test]
    fn a_second_abandoned_save_of_a_key_does_not_forget_the_first() {
        let saves = AbandonedSaves::default();
        let (first, dropped) = never_ending();
        saves.keep(Arc::from("u1"), first, None, at(1_000));
        // A retry of the save, abandoned too, that ends first.
        saves.keep(Arc::from("u1"), Box::pin(async {}), None, at(2_000));
        let end = saves
            .pending("u1", at(2_000), 60_000)
            .expect("still running");
        assert!(end.now_or_never().is_none(), "the first save has not ended");
        // Counted from the first abandonment; both given up together.
        assert!(saves.pending("u1", at(60_999), 60_000).is_some());
        assert!(
            saves.pending("u1", at(61_000), 60_000).is_none(),
            "given up"
        );
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn a_clock_stepped_back_counts_the_horizon_on_the_monotonic_clock() {
        let saves = AbandonedSaves::default();
        let (call, _dropped) = never_ending();
        saves.keep(Arc::from("u1"), call, None, Started::at(3_600_000, 500));
        // The wall clock steps back an hour: the monotonic one counts, so
        // the key is not held for the step's length ...
        assert!(saves
            .pending("u1", Started::at(1_000, 1_000), 60_000)
            .is_some());
        // ... and a correction right after does not end the wait early.
        assert!(saves
            .pending("u1", Started::at(3_600_500, 1_000), 60_000)
            .is_some());
        assert!(saves
            .pending("u1", Started::at(2_000, 60_499), 60_000)
            .is_some());
        assert!(
            saves
                .pending("u1", Started::at(2_000, 60_500), 60_000)
                .is_none(),
            "given up"
        );
    }
}
