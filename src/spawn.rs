//! Detached refreshes (DESIGN point 15): a caller that gives up — a
//! cancelled coroutine, a dropped promise, a closed event loop — must never
//! stop the shared refresh that it started from finishing and saving for
//! everyone else. A client with a [`Spawn`] runs every refresh as a task of
//! its own; without one, the refresh is driven by its callers and pauses
//! when all of them stop waiting, to resume with the next caller.

use crate::maybe_send::{BoxFuture, MaybeSendSync};
use futures_util::future::{FutureExt, Shared};
use std::sync::Arc;

/// Runs a task to completion independently of whoever started it: the
/// wasm export spawns on the JavaScript event loop, the uniffi export on a
/// freshtoken executor thread, [`crate::TokenClient::native`] on tokio.
pub trait Spawn: MaybeSendSync {
    /// Starts `task`; it must be polled until it completes. `spawn` must
    /// return before the task is first polled (queue it, as tokio's `spawn`
    /// does): the core calls it holding the session's lock, which the task
    /// takes, so a task polled inline would wait for itself.
    fn spawn(&self, task: BoxFuture<'static, ()>);
}

/// `task` as a shared future that runs to its end even if every caller
/// stops waiting: as a task of `spawn` when the client has one, else driven
/// by whoever awaits it (and paused while nobody does). Refreshes,
/// revocations and code exchanges run this way.
pub(crate) fn detached<T>(
    spawn: Option<&Arc<dyn Spawn>>,
    task: BoxFuture<'static, T>,
) -> Shared<BoxFuture<'static, T>>
where
    T: Clone + MaybeSendSync + 'static,
{
    let shared = task.shared();
    if let Some(spawn) = spawn {
        spawn.spawn(Box::pin(shared.clone().map(drop)));
    }
    shared
}
