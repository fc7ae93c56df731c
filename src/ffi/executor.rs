//! Where the uniffi export runs detached refreshes: one freshtoken thread
//! per process, polling every refresh task. Foreign hosts bring their own
//! executors (coroutines, asyncio, Swift tasks) for their calls; a refresh
//! that their caller gave up on must still finish and save (DESIGN point
//! 15), so it cannot live on the caller's executor.

use crate::maybe_send::BoxFuture;
use crate::per_process::PerProcess;
use futures_executor::ThreadPool;
use futures_util::future::FutureExt;

/// Spawns refresh tasks on the process-wide flight thread.
pub(crate) struct FlightThread;

/// This process's flight thread: a forked child starts its own (its
/// parent's is not in it), see [`PerProcess`].
fn pool() -> Option<&'static ThreadPool> {
    static POOL: PerProcess<Option<ThreadPool>> = PerProcess::new();
    POOL.get(|| {
        ThreadPool::builder()
            .pool_size(1)
            .name_prefix("freshtoken-flights-")
            .create()
            .ok()
    })
    .and_then(Option::as_ref)
}

impl crate::Spawn for FlightThread {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        // A panic inside a host callback must not take the thread (and
        // every later refresh) with it: the callers see it through the
        // shared flight instead.
        // Counted until it ends (or is dropped): a host that exits waits
        // for it, so that a refresh whose caller gave up still saves.
        let running = super::host_exit::task();
        let task = std::panic::AssertUnwindSafe(task)
            .catch_unwind()
            .map(move |_| drop(running));
        match pool() {
            Some(pool) => pool.spawn_ok(task),
            // No thread could be started: the callers drive the refresh.
            None => drop(task),
        }
    }
}
