//! The key's lock around a whole command (`token`, `link`, `revoke`): how
//! long it waits for another process using the same session, and what
//! giving up reports; and, under it, the finishing of a save a killed
//! process left.

use crate::args::{ClientArgs, LockArgs};
use crate::failure::Failure;
use crate::file_store::FileStore;
use crate::key_locks::HeldLock;
use freshtoken::{Error, RetryPolicy};
use std::io;
use std::path::Path;
use std::time::Duration;

/// The slack over another process's longest refresh, as the core's lease
/// wait has it (lease TTL = timeout + retry budget + 15 s with the default
/// 5 s store deadline, wait = TTL + 5 s).
const SLACK_SECS: u64 = 20;

/// The store of a command that uses what `link` saved (`token`, `revoke`;
/// `inspect` reports a missing directory as a missing record). A directory
/// that does not exist is a `config` error naming `store`, and is not
/// made: a mistyped `--store` would otherwise read as a session never
/// linked ("the user must link again") or, for `revoke`, as "nothing to
/// revoke".
pub fn linked_store(dir: &Path) -> Result<FileStore, Failure> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Failure::config(
            "store",
            format!(
                "{} does not exist (`freshtoken link` makes it): check --store",
                dir.display()
            ),
        )),
        _ => Ok(FileStore::new(dir)),
    }
}

/// The wait the options give: `--lock-wait`, else as long as the core
/// waits for another process's refresh lease with these settings.
pub fn lock_wait(client: &ClientArgs, lock: &LockArgs) -> Duration {
    let secs = match lock.lock_wait {
        Some(secs) => u64::from(secs),
        None => u64::from(client.timeout) + RetryPolicy::default().budget_ms / 1000 + SLACK_SECS,
    };
    Duration::from_secs(secs)
}

/// Takes `key`'s lock, waiting at most `wait`: a holder that does not let
/// go by then (a stalled process) gives `conflict`, and nothing is sent.
pub async fn lock_session(
    store: &FileStore,
    key: &str,
    wait: Duration,
) -> Result<HeldLock, Failure> {
    store.lock(key, wait).await.map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            Failure::Core(Error::Conflict {
                message: format!(
                    "another process has held this session's lock for {} s (a refresh, link or revocation elsewhere, or a stalled process); nothing was sent",
                    wait.as_secs()
                ),
            })
        } else {
            Failure::storage(format!(
                "cannot lock the session ({})",
                crate::file_store::describe(&e)
            ))
        }
    })
}

/// Finishes the save of `key` a killed process left half done (see
/// [`FileStore::recover`]); call it before the record is loaded (a token
/// flow holding the key's lock). A failure is `storage`, its message ending
/// with `then` (what the command does not do): the record file may hold a
/// refresh token that save's refresh spent.
pub async fn recover_saves(store: &FileStore, key: &str, then: &str) -> Result<(), Failure> {
    store.recover(key).await.map_err(|e| {
        let why = if e.kind() == io::ErrorKind::TimedOut {
            format!(
                "another process has held the record's write lock for {} s",
                crate::file_store::WRITE_LOCK_WAIT.as_secs()
            )
        } else {
            crate::file_store::describe(&e)
        };
        Failure::storage(format!(
            "cannot finish the save a killed process left of this session ({why}); {then}"
        ))
    })
}
