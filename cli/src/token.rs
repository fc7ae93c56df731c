//! `freshtoken token`: a fresh access token from a stored session.

use crate::args::TokenArgs;
use crate::failure::Failure;
use crate::file_store::FileStore;
use crate::output::{seconds_until, when, Output};
use freshtoken::{Error, ErrorCode, TokenInfo, UserSession};
use serde::Serialize;
use std::sync::Arc;

/// Extra attempts after a `storage` failure (each first saves the renewed
/// record the core keeps in memory, which this process would otherwise
/// take with it when it exits) or a `conflict` (each reads the record
/// another process saved).
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

/// The session's tokens, refreshed when stale (or when `force`), with the
/// save of a renewed record retried before giving up.
async fn fresh_tokens(session: &UserSession, force: bool) -> Result<TokenInfo, Error> {
    let mut result = if force {
        session.refresh().await
    } else {
        session.tokens().await
    };
    for _ in 0..STORAGE_RETRIES {
        match &result {
            Err(e) if e.code() == ErrorCode::Storage => result = session.tokens().await,
            // Another process saved the session (a re-link) during this
            // refresh, and nothing was overwritten: serve what it saved.
            Err(e) if e.code() == ErrorCode::Conflict => result = session.tokens().await,
            _ => break,
        }
    }
    result
}

/// Prints a fresh access token for the key, refreshing (and saving the
/// rotated refresh token) only when needed.
pub async fn run(args: TokenArgs, out: Output) -> Result<(), Failure> {
    let client = crate::client::build(&args.client).await?;
    let store = FileStore::new(&args.store.store);
    let key = args.store.key.as_str();
    let wait = crate::session_lock::lock_wait(&args.client, &args.lock);
    let _lock = crate::session_lock::lock_session(&store, key, wait).await?;
    let session = client.session(key, Arc::new(store))?;
    let flow = async { Ok(fresh_tokens(&session, args.refresh).await?) };
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
