//! Saves the store deadline gave up on while the host may still be writing
//! them (DESIGN point 15). Giving up only stops the waiting: a blocking
//! driver call, a file write on a worker thread or a promise that settles
//! late still lands, after anything saved since. Such a late write is
//! harmless while it carries the current refresh token, and costs the user
//! a re-link once a newer one exists. So the core keeps each abandoned save
//! running to its end, and sends no refresh and replaces no record of that
//! key until it has ended: every newer refresh token is saved after it.
//!
//! Kept per client, by key, outside the session state: rare, so no session
//! pays for it, and it outlives the eviction of its session's state.

use crate::maybe_send::BoxFuture;
use crate::spawn::Spawn;
use futures_util::future::{FutureExt, Shared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// An abandoned save, resolving when the host's call ends (whatever its result).
pub(crate) type SaveEnd = Shared<BoxFuture<'static, ()>>;

/// The abandoned saves of one client's sessions, by key.
#[derive(Default)]
pub(crate) struct AbandonedSaves(Mutex<HashMap<Arc<str>, SaveEnd>>);

impl AbandonedSaves {
    /// Keeps `call`, a save of `key` its deadline gave up on, running to its
    /// end: on `spawn` when there is one, else driven by whoever waits for it.
    pub(crate) fn keep(
        &self,
        key: Arc<str>,
        call: BoxFuture<'static, ()>,
        spawn: Option<&Arc<dyn Spawn>>,
    ) {
        let end = call.shared();
        if let Some(spawn) = spawn {
            spawn.spawn(Box::pin(end.clone()));
        }
        self.lock().insert(key, end);
    }

    /// The abandoned save of `key` still to wait for, if any; forgets one
    /// that has ended.
    pub(crate) fn pending(&self, key: &str) -> Option<SaveEnd> {
        let mut saves = self.lock();
        let end = saves.get(key)?;
        if end.peek().is_some() {
            saves.remove(key);
            return None;
        }
        Some(end.clone())
    }

    /// Forgets `end` (it has ended), unless a newer abandoned save replaced it.
    pub(crate) fn ended(&self, key: &str, end: &SaveEnd) {
        let mut saves = self.lock();
        if saves.get(key).is_some_and(|e| e.ptr_eq(end)) {
            saves.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, SaveEnd>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
