//! Redeeming an authorization code (RFC 6749 §4.1.3 with PKCE) and saving
//! the first record it brings, as one task that outlives its caller.
//!
//! A code is sent once per process: servers refuse its second use and
//! revoke what the first brought (RFC 6749 §4.1.2), so a callback handled
//! twice (a reload, a double submit), or twice at once, would otherwise
//! kill the session the first call saved. A repeat for the same session
//! key joins the first redemption or gets its outcome; one for another key,
//! or with another verifier, is refused unsent. Outcomes that issued
//! nothing are forgotten (the code may be tried again); the others are
//! kept for [`REMEMBERED_MS`].

use crate::attached::Attached;
use crate::error::Error;
use crate::exchange::{self, Context};
use crate::grant::Grant;
use crate::maybe_send::BoxFuture;
use crate::secret::Secret;
use crate::session_state::Replacing;
use crate::started_by::StartedBy;
use crate::store::Record;
use crate::tokens::AccessToken;
use futures_util::future::{FutureExt, Shared};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

/// How long a redeemed code's outcome is kept: the longest lifetime RFC
/// 6749 §4.1.2 recommends for a code (a later repeat is sent, and refused).
const REMEMBERED_MS: u64 = 10 * 60 * 1000;
/// The most finished redemptions kept.
const MAX_REMEMBERED: usize = 1024;

/// Whether the server issued anything, and the caller's result.
type Outcome = (bool, Result<(), Error>);

/// One code's redemption in this process, running or finished.
struct Redemption {
    /// Hash of the token endpoint, client id and code.
    code: u64,
    /// Hash of the verifier and redirect URI it is redeemed with.
    with: u64,
    /// The session key it is saved under.
    key: Arc<str>,
    started_ms: u64,
    /// Drops the entry once it ends having issued nothing.
    serial: u64,
    /// The process sending it (see [`crate::started_by`]).
    by: StartedBy,
    outcome: Shared<BoxFuture<'static, Outcome>>,
}

/// The process's redemptions (`Shared` futures are `Send` natively only).
#[cfg(not(target_arch = "wasm32"))]
fn redemptions<T>(f: impl FnOnce(&mut Vec<Redemption>) -> T) -> T {
    static LIST: std::sync::Mutex<Vec<Redemption>> = std::sync::Mutex::new(Vec::new());
    f(&mut LIST.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// The process's redemptions (one thread in wasm).
#[cfg(target_arch = "wasm32")]
fn redemptions<T>(f: impl FnOnce(&mut Vec<Redemption>) -> T) -> T {
    thread_local! {
        static LIST: std::cell::RefCell<Vec<Redemption>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LIST.with(|list| f(&mut list.borrow_mut()))
}

/// A keyed hash of `parts` (keys drawn once per process).
pub(crate) fn digest(parts: &[&str]) -> u64 {
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut hasher = KEYS.get_or_init(Default::default).build_hasher();
    for part in parts {
        part.hash(&mut hasher);
    }
    hasher.finish()
}

/// The code and the PKCE parameters it is redeemed with.
pub(crate) struct Code {
    pub(crate) code: Secret,
    pub(crate) code_verifier: Secret,
    pub(crate) redirect_uri: String,
}

/// Redeems `code` into `session` once per process (see the module docs):
/// the first call sends it, a repeat joins it or gets its outcome.
///
/// `replacing` counts the exchange as running on the session (no host
/// mirror copies its token meanwhile) until the exchange that sends the
/// code has ended: it moves into that exchange, shared by its repeats.
pub(crate) async fn redeem(
    ctx: Arc<Context>,
    session: Attached,
    code: Code,
    replacing: Replacing,
) -> Result<(), Error> {
    if !is_verifier(code.code_verifier.expose()) {
        // Conformant servers refuse it, and some drop the code first.
        return Err(Error::config(
            "code_verifier",
            "must be 43 to 128 of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.1)",
        ));
    }
    let config = &ctx.config;
    let id = digest(&[
        &config.token_endpoint,
        &config.client_id,
        code.code.expose(),
    ]);
    let with = digest(&[code.code_verifier.expose(), &code.redirect_uri]);
    let now = ctx.clock.now_ms();
    let key = session.key.clone();
    let outcome = redemptions(|list| {
        // By age alone: no exchange runs that long (its requests have
        // deadlines), unless its callers left it with no spawner to run it.
        list.retain(|r| now.saturating_sub(r.started_ms) < REMEMBERED_MS);
        if let Some(r) = list.iter().find(|r| r.code == id) {
            if r.key != key || r.with != with {
                return Err(Error::config(
                    "code",
                    "is already redeemed in this process, for another session key or with another code_verifier or redirect_uri",
                ));
            }
            if r.by.elsewhere() && r.outcome.peek().is_none() {
                // Copied into a forked child, where nothing drives it: the
                // answer goes to the parent, and a second send would be
                // refused (or revoke what the first one issued).
                return Err(Error::Conflict {
                    message: "the parent process was redeeming this code when this process \
                              was forked; nothing was sent"
                        .to_owned(),
                });
            }
            return Ok(r.outcome.clone());
        }
        if list.len() >= MAX_REMEMBERED {
            if let Some(oldest) = list.iter().position(|r| r.outcome.peek().is_some()) {
                list.remove(oldest);
            }
        }
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body: BoxFuture<'static, Outcome> = Box::pin(async move {
            let outcome = send_and_save(ctx, session, code).await;
            drop(replacing);
            if !outcome.0 {
                redemptions(|list| list.retain(|r| r.serial != serial));
            }
            outcome
        });
        let outcome = body.shared();
        list.push(Redemption {
            code: id,
            with,
            key,
            started_ms: now,
            serial,
            by: StartedBy::this(),
            outcome: outcome.clone(),
        });
        Ok(outcome)
    })?;
    outcome.await.1
}

/// Whether `verifier` is a PKCE code verifier (RFC 7636 §4.1).
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Sends the code and saves the record it brings into `session`: the first
/// tokens, or the refresh token of an unusable answer that still carries
/// one (kept, or the user has to log in again). Also says whether the
/// server issued anything.
async fn send_and_save(ctx: Arc<Context>, session: Attached, code: Code) -> Outcome {
    let config = &ctx.config;
    // The save after the exchange compares and swaps against the stored
    // version, and the code is single use: a store that cannot tell the
    // version fails the exchange here, with nothing sent (as the write-ahead
    // save of a refresh does). The version read now is the fallback should
    // the store fail to tell it again once the tokens are issued.
    let read_before = match session.stored_version().await {
        Ok(version) => version,
        Err(error) => return (false, Err(error)),
    };
    let grant = Grant::AuthorizationCode {
        code: code.code.expose(),
        code_verifier: code.code_verifier.expose(),
        redirect_uri: &code.redirect_uri,
    };
    let issued = match exchange::call(&ctx, &grant).await {
        Ok(issued) => issued,
        Err(mut failure) => {
            let salvaged = failure.salvaged.is_some();
            if let Some(refresh_token) = failure.salvaged.take() {
                let now = ctx.clock.now_ms();
                let record = Record {
                    refresh_token: Some(refresh_token),
                    refresh_expires_at_ms: Some(
                        now.saturating_add(config.refresh_token_lifetime_ms),
                    ),
                    updated_at_ms: now,
                    ..Record::default()
                };
                if let Err(e) = session.replace(record, Some(read_before)).await {
                    log::warn!("freshtoken: session {}: {e}", session.key);
                }
            }
            return (salvaged, Err(failure.into_error()));
        }
    };
    let response = issued.response;
    let record = Record {
        access_token: Some(AccessToken::new(
            response.access_token,
            issued.sent_at_ms,
            response.expires_in,
            config.user_token_lifetime_secs,
        )),
        scope: response.scope,
        id_token: response.id_token,
        refresh_expires_at_ms: response.refresh_token.as_ref().map(|_| {
            issued
                .sent_at_ms
                .saturating_add(config.refresh_token_lifetime_ms)
        }),
        refresh_token: response.refresh_token,
        reauth: None,
        in_doubt: false,
        updated_at_ms: ctx.clock.now_ms(),
    };
    (true, session.replace(record, Some(read_before)).await)
}
