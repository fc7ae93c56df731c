//! `UserSession`: the host's handle on one user's tokens.
//!
//! All handles with the same key in one [`crate::TokenClient`] share one
//! state and one single flight (DESIGN point 11). A handle holds that state
//! only weakly: idle state is evicted when the client holds too many, and the
//! handle re-attaches by key on its next call. The cached path is a lock, a
//! comparison and a return; everything else runs inside the one shared
//! flight (see `attached.rs` and `flight.rs`).

use crate::attached::{serve, Attached};
use crate::error::{Error, ReauthReason};
use crate::exchange::Context;
use crate::registry::Registry;
use crate::secret::Secret;
use crate::session_state::SessionCell;
use crate::store::{Record, TokenStore};
use crate::tokens::{AccessToken, TokenInfo};
use std::sync::{Arc, Mutex, Weak};

/// What `seed` adopts: an existing refresh token (and optionally the access
/// token that came with it), for users migrating from hand-written code.
#[derive(Clone, Debug, Default)]
pub struct Seed {
    /// The refresh token to adopt.
    pub refresh_token: Secret,
    /// The access token that came with it, if still known.
    pub access_token: Option<Secret>,
    /// Seconds the access token was valid for, counted from now. Without it
    /// the access token is treated as expired (its age is unknown).
    pub expires_in: Option<i64>,
    /// The granted scope.
    pub scope: Option<String>,
    /// The ID token.
    pub id_token: Option<Secret>,
}

/// A fresh access token as the cached path serves it, with the instant until
/// which it may be served without asking the core again.
#[derive(Clone, PartialEq, Eq)]
pub struct CachedToken {
    /// The access token.
    pub token: String,
    /// Fresh while the client's clock reads less than this (ms since the epoch).
    pub fresh_until_ms: u64,
    /// The in-memory record's generation (unique in the process).
    pub generation: u64,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("token", &crate::secret::redacted(&self.token))
            .field("fresh_until_ms", &self.fresh_until_ms)
            .field("generation", &self.generation)
            .finish()
    }
}

/// What the host may want to know without causing any request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    /// A record exists for this key.
    pub has_record: bool,
    /// Set when the user must authorize again: the reason the session was
    /// marked dead with, or the one the next token call would meet without
    /// sending anything (`refresh_expired`, `no_refresh_token`).
    pub reauth: Option<ReauthReason>,
    /// Expiry of the current access token (Unix ms).
    pub access_expires_at_ms: Option<u64>,
    /// End of the refresh token's sliding lifetime (Unix ms): prompt the
    /// user before it lapses.
    pub refresh_expires_at_ms: Option<u64>,
    /// A renewed record could not be saved yet.
    pub unpersisted: bool,
    /// The last refresh answer was lost; the next one may find the token
    /// rotated. On a revoked session: the server may hold a successor this
    /// client never received, which `revoke()` could not reach.
    pub in_doubt: bool,
    /// `revoke()` marked the session revoked, but its revocation failed for
    /// good: the server may still hold its refresh token (or a live access
    /// token). Read from the record, so it survives restarts and shows in
    /// every process; `revoke()` again retries, and clears it once the
    /// server took the tokens.
    pub revocation_pending: bool,
}

/// A handle on one user's tokens. Cheap to create and clone: handles with the
/// same key in one client share state and single flight.
pub struct UserSession {
    key: Arc<str>,
    /// The key's state while it is in the client's map; re-attached by key
    /// once it was evicted.
    cell: Mutex<Weak<SessionCell>>,
    registry: Arc<Registry>,
    store: Arc<dyn TokenStore>,
    ctx: Arc<Context>,
}

impl Clone for UserSession {
    fn clone(&self) -> Self {
        UserSession {
            key: self.key.clone(),
            cell: Mutex::new(self.weak_cell()),
            registry: self.registry.clone(),
            store: self.store.clone(),
            ctx: self.ctx.clone(),
        }
    }
}

impl std::fmt::Debug for UserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSession")
            .field("key", &self.key)
            .finish()
    }
}

impl UserSession {
    pub(crate) fn new(
        key: Arc<str>,
        cell: &Arc<SessionCell>,
        registry: Arc<Registry>,
        store: Arc<dyn TokenStore>,
        ctx: Arc<Context>,
    ) -> Self {
        UserSession {
            key,
            cell: Mutex::new(Arc::downgrade(cell)),
            registry,
            store,
            ctx,
        }
    }

    fn weak_cell(&self) -> Weak<SessionCell> {
        self.cell.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key's state, re-attached by key if it was evicted; marked used.
    fn cell(&self) -> Arc<SessionCell> {
        let mut slot = self.cell.lock().unwrap_or_else(|e| e.into_inner());
        self.registry.attach(&self.key, &mut slot)
    }

    /// This handle attached to its state for one operation.
    pub(crate) fn attach(&self) -> Attached {
        Attached {
            key: self.key.clone(),
            cell: self.cell(),
            store: self.store.clone(),
            ctx: self.ctx.clone(),
        }
    }

    /// The session key (also the store key).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The access token if it is fresh in memory and nothing is pending: no
    /// I/O, no waiting. `None` means "call [`UserSession::access_token`]".
    pub fn cached_access_token(&self) -> Option<String> {
        self.cached(|_, at, _| at.value.expose().to_owned())
    }

    /// The cached token with the instant (ms since the epoch, on the client's
    /// clock) until which it stays fresh, so that an export can mirror it on
    /// its own side of the boundary and serve it without crossing it. The
    /// mirror must be dropped whenever the host calls anything else on the
    /// key (refresh, token rejected, seed): those may replace the token early.
    /// `None` while such a call runs in the core, even one whose caller gave
    /// up (its code exchange or refresh runs on): a token copied meanwhile
    /// would outlive the call that replaced it.
    pub fn cached_token(&self) -> Option<CachedToken> {
        let leeway = self.ctx.config.leeway_ms;
        let now = self.ctx.clock.now_ms();
        let cell = self.cell();
        let st = cell.lock();
        if st.replacing() {
            return None;
        }
        serve(&st, &self.ctx, now, |_, at, generation| CachedToken {
            token: at.value.expose().to_owned(),
            fresh_until_ms: at.fresh_until_ms(leeway),
            generation,
        })
    }

    /// When the cached path would serve a token: the generation of the
    /// in-memory record (it changes whenever the record does, and is unique
    /// in the process), so an export can keep its own converted copy of the
    /// token keyed by it.
    pub fn fresh_generation(&self) -> Option<u64> {
        self.cached(|_, _, generation| generation)
    }

    fn cached<T>(&self, f: impl FnOnce(&Record, &AccessToken, u64) -> T) -> Option<T> {
        let now = self.ctx.clock.now_ms();
        serve(&self.cell().lock(), &self.ctx, now, f)
    }

    /// A fresh access token: from memory with no I/O when it is fresh,
    /// otherwise through one shared refresh.
    pub async fn access_token(&self) -> Result<String, Error> {
        if let Some(token) = self.cached_access_token() {
            return Ok(token);
        }
        self.attach().access_token().await
    }

    /// The fresh access token with its expiry, scope, ID token and the
    /// refresh token's expiry.
    pub async fn tokens(&self) -> Result<TokenInfo, Error> {
        self.attach().tokens().await
    }

    /// Forces a refresh. Callers that ask while a refresh is running share
    /// it; a refresh that completed after this call began counts as this
    /// call's.
    pub async fn refresh(&self) -> Result<TokenInfo, Error> {
        self.attach().refresh_unless(None).await
    }

    /// The API rejected `token`: refresh, unless the session already holds
    /// a different fresh token (another caller refreshed first), which is
    /// then returned without a request. Shares a refresh in progress.
    /// `token` is not handed out again by this process: callers that ask
    /// meanwhile join the refresh, and after a failed one start another.
    pub async fn token_rejected(&self, token: &str) -> Result<TokenInfo, Error> {
        self.attach().refresh_unless(Some(token)).await
    }

    /// Adopts an existing refresh token (and optionally its access token),
    /// replacing whatever the session held, and saves it. Waits for a
    /// refresh in progress to settle first.
    pub async fn seed(&self, seed: Seed) -> Result<(), Error> {
        self.attach().seed(seed).await
    }

    /// Revokes the session (RFC 7009) when the user unlinks or leaves:
    /// waits for a refresh in flight, marks the record dead (reason
    /// `revoked`) and saves it, then revokes the refresh token and a live
    /// access token at the server. Every later call fails fast with
    /// `reauthorization_required` / `revoked`, here and, through the store,
    /// in other processes, until `seed()` or a code exchange. If the server
    /// could not be told, the error is [`Error::RevocationIncomplete`] (the
    /// record is dead all the same; calling `revoke()` again retries). A
    /// session whose last refresh lost its answer (`in_doubt`) may have a
    /// successor at the server that this client never received: after
    /// revoking what it holds, the error is `RevocationIncomplete` over
    /// `reauthorization_required` / `lost_rotation`, at every later call
    /// too (sending nothing). A client with no revocation endpoint (none given, discovered or
    /// derived) gets a `config` error naming it, and nothing changes.
    pub async fn revoke(&self) -> Result<(), Error> {
        self.attach().revoke().await
    }

    /// Whether this process holds a record of the session newer than the
    /// store's (a rotation or a new link whose save failed). No I/O; the
    /// next call, `status()` included, saves it first.
    pub fn holds_unsaved(&self) -> bool {
        self.cell().lock().unpersisted
    }

    /// The session's state as far as it is known, reading the store if this
    /// process has not yet. Sends nothing. Like every call, it first saves a
    /// record this process could not save before (then `unpersisted` tells
    /// whether that worked).
    pub async fn status(&self) -> Result<SessionStatus, Error> {
        self.attach().status().await
    }
}
