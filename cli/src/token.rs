//! `freshtoken token`: a fresh access token from a stored session.

use crate::args::TokenArgs;
use crate::failure::Failure;
use crate::file_store::FileStore;
use crate::output::{seconds_until, when, Output};
use crate::unsaved::{holds_unsaved, save_held};
use freshtoken::{Error, ErrorCode, Record, TokenInfo, UserSession};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// Extra attempts after a `storage` failure with nothing renewed held, or
/// a `conflict` (each reads the record another process saved).
const STORAGE_RETRIES: usize = 2;

/// The `--json` result.
#[derive(Serialize)]
struct TokenJson<'a> {
    key: &'a str,
    access_token: &'a str,
    token_type: &'static str,
    expires_at_ms: u64,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_at_ms: Option<u64>,
}

/// The access token stored before this command waited for the key's lock:
/// the one a forced refresh is meant to replace. Anything unreadable gives
/// `None` (then the refresh is forced as asked; the core reports the error).
fn stored_access_token(store: &FileStore, key: &str) -> Option<Zeroizing<String>> {
    let text = Zeroizing::new(store.read(key).ok()??);
    let record = Record::decode(&text).ok()?;
    Some(Zeroizing::new(
        record.access_token?.value.expose().to_owned(),
    ))
}

/// The session's tokens, refreshed when stale, with the save of a renewed
/// record retried for `saving` before giving up (with save_held's error).
/// With `force`, refreshed even when fresh, unless the stored token is no
/// longer `replacing` (another process renewed the session while this one
/// waited: that refresh is this one's).
async fn fresh_tokens(
    session: &UserSession,
    force: bool,
    replacing: Option<&str>,
    saving: Duration,
    out: Output,
) -> Result<TokenInfo, Error> {
    let mut result = match (force, replacing) {
        (false, _) => session.tokens().await,
        (true, Some(token)) => {
            // token_rejected compares with the record this process holds:
            // read the store first (a new process holds none), so that a
            // renewal another process saved counts.
            match session.status().await {
                Ok(_) => session.token_rejected(token).await,
                Err(e) => Err(e),
            }
        }
        (true, None) => session.refresh().await,
    };
    let mut retries = STORAGE_RETRIES;
    let mut held_saving_tried = false;
    loop {
        match result {
            Err(e)
                if !held_saving_tried
                    && e.code() == ErrorCode::Storage
                    && holds_unsaved(session) =>
            {
                // A conflict after it (a re-link saved meanwhile) is served
                // below, as after any refresh.
                held_saving_tried = true;
                result = save_held(session, e, saving, out).await;
                if result
                    .as_ref()
                    .is_err_and(|e| e.code() == ErrorCode::Storage)
                {
                    // save_held gave up, and says what that costs: trying
                    // once more would only replace its message.
                    return result;
                }
            }
            // After a signal no new attempt starts (see interrupt.rs).
            Err(e)
                if retries > 0
                    && !crate::interrupt::stopping()
                    && matches!(e.code(), ErrorCode::Storage | ErrorCode::Conflict) =>
            {
                // Storage: nothing renewed is held (a write-ahead failed).
                // Conflict: another process saved the session (a re-link)
                // during this refresh, and nothing was overwritten: serve
                // what it saved.
                retries -= 1;
                result = session.tokens().await;
            }
            other => return other,
        }
    }
}

/// Prints a fresh access token for the key, refreshing (and saving the
/// rotated refresh token) only when needed.
pub async fn run(args: TokenArgs, out: Output) -> Result<(), Failure> {
    let client = crate::client::build(&args.client).await?;
    let store = crate::session_lock::linked_store(args.store.store.as_ref())?;
    let key = args.store.key.as_str();
    let replacing = args
        .refresh
        .then(|| stored_access_token(&store, key))
        .flatten();
    let wait = crate::session_lock::lock_wait(&args.client, &args.lock);
    let saving = crate::unsaved::saving_budget(&args.client, wait);
    let session = client.session(key, Arc::new(store.clone()))?;
    let flow = async {
        // Inside the shield: a signal while waiting for the lock or for a
        // writer ends the run with nothing sent.
        let _lock = crate::session_lock::lock_session(&store, key, wait).await?;
        crate::session_lock::recover_saves(&store, key, "nothing was sent").await?;
        let replacing = replacing.as_ref().map(|t| t.as_str());
        Ok(fresh_tokens(&session, args.refresh, replacing, saving, out).await?)
    };
    let info = crate::interrupt::shielded(flow, |text| out.note(text)).await?;
    let json = TokenJson {
        key,
        access_token: &info.access_token,
        token_type: "Bearer",
        expires_at_ms: info.expires_at_ms,
        expires_in: seconds_until(info.expires_at_ms),
        scope: info.scope.as_deref(),
        refresh_expires_at_ms: info.refresh_expires_at_ms,
    };
    out.result(
        || {
            format!(
                "Access token for {key}, expires {}:\n{}\n",
                when(info.expires_at_ms),
                info.access_token
            )
        },
        Some(&info.access_token),
        &json,
    )
}
