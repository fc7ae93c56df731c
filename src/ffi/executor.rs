//! Where the uniffi export runs detached refreshes: one freshtoken thread
//! per process, polling every refresh task. Foreign hosts bring their own
//! executors (coroutines, asyncio, Swift tasks) for their calls; a refresh
//! that their caller gave up on must still finish and save (DESIGN point
//! 15), so it cannot live on the caller's executor.

use crate::maybe_send::BoxFuture;
use futures_executor::ThreadPool;
use futures_util::future::FutureExt;
use std::sync::OnceLock;

/// Spawns refresh tasks on the process-wide flight thread.
pub(crate) struct FlightThread;

fn pool() -> Option<&'static ThreadPool> {
    static POOL: OnceLock<Option<ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        ThreadPool::builder()
            .pool_size(1)
            .name_prefix("freshtoken-flights-")
            .create()
            .ok()
    })
    .as_ref()
}

impl crate::Spawn for FlightThread {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        // A panic inside a host callback must not take the thread (and
        // every later refresh) with it: the callers see it through the
        // shared flight instead.
        let task = std::panic::AssertUnwindSafe(task).catch_unwind().map(drop);
        match pool() {
            Some(pool) => pool.spawn_ok(task),
            // No thread could be started: the callers drive the refresh.
            None => drop(task),
        }
    }
}
