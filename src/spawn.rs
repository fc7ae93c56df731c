//! Detached refreshes (DESIGN point 15): a caller that gives up — a
//! cancelled coroutine, a dropped promise, a closed event loop — must never
//! stop the shared refresh that it started from finishing and saving for
//! everyone else. A client with a [`Spawn`] runs every refresh as a task of
//! its own; without one, the refresh is driven by its callers and pauses
//! when all of them stop waiting, to resume with the next caller.

use crate::maybe_send::{BoxFuture, MaybeSendSync};
use futures_util::future::FutureExt;
use std::sync::Arc;

/// Runs a task to completion independently of whoever started it: the
/// wasm export spawns on the JavaScript event loop, the uniffi export on a
/// freshtoken executor thread, [`crate::TokenClient::native`] on tokio.
pub trait Spawn: MaybeSendSync {
    /// Starts `task`; it must be polled until it completes.
    fn spawn(&self, task: BoxFuture<'static, ()>);
}

/// Runs `task` to its end even if the caller stops waiting: as a task of
/// `spawn` when the client has one (the caller waits for its shared
/// result), else driven by the caller, like a refresh without a spawner.
pub(crate) async fn run_detached<T>(
    spawn: Option<&Arc<dyn Spawn>>,
    task: BoxFuture<'static, T>,
) -> T
where
    T: Clone + MaybeSendSync + 'static,
{
    let Some(spawn) = spawn else {
        return task.await;
    };
    let shared = task.shared();
    spawn.spawn(Box::pin(shared.clone().map(drop)));
    shared.await
}
