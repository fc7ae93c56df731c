//! Detached refreshes (DESIGN point 15): a caller that gives up — a
//! cancelled coroutine, a dropped promise, a closed event loop — must never
//! stop the shared refresh that it started from finishing and saving for
//! everyone else. A client with a [`Spawn`] runs every refresh as a task of
//! its own; without one, the refresh is driven by its callers and pauses
//! when all of them stop waiting, to resume with the next caller.

use crate::maybe_send::{BoxFuture, MaybeSendSync};

/// Runs a task to completion independently of whoever started it: the
/// wasm export spawns on the JavaScript event loop, the uniffi export on a
/// freshtoken executor thread, [`crate::TokenClient::native`] on tokio.
pub trait Spawn: MaybeSendSync {
    /// Starts `task`; it must be polled until it completes.
    fn spawn(&self, task: BoxFuture<'static, ()>);
}
