//! `freshtoken revoke`: revokes a stored session at the server (RFC 7009)
//! and marks it dead (reason `revoked`), for when a user unlinks or leaves.

use crate::args::RevokeArgs;
use crate::failure::Failure;
use crate::file_store::FileStore;
use crate::output::{now_ms, Output};
use freshtoken::{ReauthReason, Record};
use serde::Serialize;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The `--json` result.
#[derive(Serialize)]
struct RevokeJson<'a> {
    key: &'a str,
    /// False when nothing was stored under the key.
    revoked: bool,
    /// True when the session was revoked before, with nothing left for the
    /// server: nothing was sent.
    already_revoked: bool,
}

/// Revokes the session; a key with nothing stored is not an error.
pub async fn run(args: RevokeArgs, out: Output) -> Result<(), Failure> {
    let client = crate::client::build(&args.client).await?;
    let store = crate::session_lock::linked_store(args.store.store.as_ref())?;
    let key = args.store.key.as_str();
    let wait = crate::session_lock::lock_wait(&args.client, &args.lock);
    let session = client.session(key, Arc::new(store.clone()))?;
    // Inside the shield: a signal while waiting for the lock or for a
    // writer ends the run with nothing sent.
    let flow = async {
        let _lock = crate::session_lock::lock_session(&store, key, wait).await?;
        // The refresh token to revoke is the newest one.
        crate::session_lock::recover_saves(&store, key, "nothing was sent").await?;
        let text = store.read(key).map_err(|e| {
            Failure::storage(format!(
                "cannot read the record ({})",
                crate::file_store::describe(&e)
            ))
        })?;
        let stored = text.is_some();
        // Revoked before, and the server told: the core sends nothing again.
        // (A record the core cannot read is its to report, below.)
        let already_revoked = text
            .as_deref()
            .and_then(|t| Record::decode(t).ok())
            .is_some_and(|r| {
                r.reauth == Some(ReauthReason::Revoked) && !r.revocation_pending(now_ms())
            });
        if stored {
            session.revoke().await?;
        }
        Ok((stored, already_revoked))
    };
    let (stored, already_revoked) = crate::interrupt::shielded(flow, |text| out.note(text))
        .await
        .map_err(|failure| match failure {
            Failure::Interrupted {
                signal,
                sent: false,
                ..
            } => Failure::Interrupted {
                signal,
                sent: false,
                left: left_here(&store, key),
            },
            other => other,
        })?;
    out.result(
        || {
            if already_revoked {
                format!("{key} was revoked before; nothing was sent.\n")
            } else if stored {
                format!("Revoked {key}: the server dropped its tokens; the session is marked revoked.\n")
            } else {
                format!("Nothing stored under {key}: nothing to revoke.\n")
            }
        },
        None,
        &RevokeJson {
            key,
            revoked: stored,
            already_revoked,
        },
    )
}

/// After a signal ended the revocation with nothing sent: what the store
/// holds all the same, said with the failure, whose "nothing was sent" must
/// not read as "nothing changed". The session is marked revoked before the
/// request goes: this run's mark (saved before a signal that came, say,
/// between retries of a server that cannot be reached), or an earlier
/// run's whose revocation failed. Its tokens are kept until the server
/// takes them, so `revoke` again sends them.
fn left_here(store: &FileStore, key: &str) -> Option<&'static str> {
    let untold =
        |r: &Record| r.reauth == Some(ReauthReason::Revoked) && r.revocation_pending(now_ms());
    match store.read(key).map(|text| text.map(Zeroizing::new)) {
        Ok(text) => {
            let record = text.as_deref().and_then(|t| Record::decode(t).ok());
            record.as_ref().is_some_and(untold).then_some(
                "but the session is marked revoked here (`freshtoken token` refuses it), while the server, not told, may still hold its tokens: `freshtoken revoke` again revokes them there",
            )
        }
        Err(_) => Some(
            "but the session may be marked revoked here (`freshtoken inspect` shows whether), while the server, not told, may still hold its tokens: `freshtoken revoke` again revokes them there",
        ),
    }
}
