//! `UserSession`: single-flight refresh, rotation, and persistence order.
//!
//! All handles with the same key in one [`crate::TokenClient`] share one
//! [`SessionCell`]. The cached path is a lock, a comparison and a return;
//! everything else runs inside one shared "flight" per session, so that
//! concurrent callers cause one token request and all get its result.

use crate::error::{Error, ReauthReason};
use crate::exchange::{self, CallFailure, Context, Failure, Issued};
use crate::grant::Grant;
use crate::maybe_send::BoxFuture;
use crate::response::MAX_EXPIRES_IN_SECS;
use crate::secret::Secret;
use crate::store::{CasOutcome, Record, TokenStore};
use crate::tokens::{AccessToken, TokenInfo};
use futures_util::future::{FutureExt, Shared};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

type Flight = Shared<BoxFuture<'static, Result<TokenInfo, Error>>>;

/// The in-memory state of one session key, shared by all its handles.
#[derive(Default)]
pub(crate) struct SessionCell {
    state: Mutex<SessionState>,
    /// Registry tick of the last use, for evicting idle sessions.
    pub(crate) last_used: AtomicU64,
}

#[derive(Default)]
struct SessionState {
    /// The store has been read at least once.
    loaded: bool,
    /// The latest record known to this process.
    record: Option<Record>,
    /// `record` differs from what the store holds: save it before anything else.
    unpersisted: bool,
    /// Bumped on every change of `record` after the first load.
    generation: u64,
    /// Counts new tokens that became current once durable (a refresh saved,
    /// another process's rotation read, a seed): a forced refresh that asked
    /// before one of these arrived is answered by it.
    arrivals: u64,
    /// The refresh (or load) in progress, shared by every waiting caller.
    inflight: Option<Flight>,
    /// The store's version of the record last read or written (stores with
    /// compare-and-swap only): the next save must still match it.
    version: Option<String>,
}

impl SessionCell {
    fn lock(&self) -> MutexGuard<'_, SessionState> {
        // A poisoned lock only means a panic elsewhere; the state itself is
        // always consistent between statements, so keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Nothing in flight and nothing waiting to be saved: safe to evict.
    pub(crate) fn is_idle(&self) -> bool {
        match self.state.try_lock() {
            Ok(st) => st.inflight.is_none() && !st.unpersisted,
            Err(_) => false,
        }
    }
}

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

/// What the host may want to know without causing any request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    /// A record exists for this key.
    pub has_record: bool,
    /// Set when the user must authorize again.
    pub reauth: Option<ReauthReason>,
    /// Expiry of the current access token (Unix ms).
    pub access_expires_at_ms: Option<u64>,
    /// End of the refresh token's sliding lifetime (Unix ms): prompt the
    /// user before it lapses.
    pub refresh_expires_at_ms: Option<u64>,
    /// A renewed record could not be saved yet.
    pub unpersisted: bool,
    /// The last refresh answer was lost; the next one may find the token rotated.
    pub in_doubt: bool,
}

/// A handle on one user's tokens. Cheap to create and clone: handles with the
/// same key in one client share state and single flight.
#[derive(Clone)]
pub struct UserSession {
    key: Arc<str>,
    cell: Arc<SessionCell>,
    store: Arc<dyn TokenStore>,
    ctx: Arc<Context>,
}

impl std::fmt::Debug for UserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSession")
            .field("key", &self.key)
            .finish()
    }
}

impl UserSession {
    pub(crate) fn store(&self) -> &dyn TokenStore {
        self.store.as_ref()
    }

    pub(crate) fn context(&self) -> &Context {
        &self.ctx
    }

    pub(crate) fn new(
        key: Arc<str>,
        cell: Arc<SessionCell>,
        store: Arc<dyn TokenStore>,
        ctx: Arc<Context>,
    ) -> Self {
        UserSession {
            key,
            cell,
            store,
            ctx,
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

    /// When the cached path would serve a token: the generation of the
    /// in-memory record (it changes whenever the record does), so an export
    /// can keep its own converted copy of the token keyed by it.
    pub fn fresh_generation(&self) -> Option<u64> {
        self.cached(|_, _, generation| generation)
    }

    /// A fresh access token: from memory with no I/O when it is fresh,
    /// otherwise through one shared refresh.
    pub async fn access_token(&self) -> Result<String, Error> {
        if let Some(token) = self.cached_access_token() {
            return Ok(token);
        }
        self.join_or_start(false)
            .await
            .map(|info| info.access_token)
    }

    /// The fresh access token with its expiry, scope, ID token and the
    /// refresh token's expiry.
    pub async fn tokens(&self) -> Result<TokenInfo, Error> {
        if let Some(info) = self.cached(|rec, _, _| info_of(rec)) {
            return Ok(info);
        }
        self.join_or_start(false).await
    }

    /// Forces a refresh. Callers that ask while a refresh is running share
    /// it; a refresh that completed after this call began counts as this
    /// call's.
    pub async fn refresh(&self) -> Result<TokenInfo, Error> {
        self.refresh_unless(None).await
    }

    /// The API rejected `token`: refresh, unless the session already holds
    /// a different fresh token (another caller refreshed first), which is
    /// then returned without a request. Shares a refresh in progress.
    pub async fn token_rejected(&self, token: &str) -> Result<TokenInfo, Error> {
        self.refresh_unless(Some(token)).await
    }

    async fn refresh_unless(&self, rejected: Option<&str>) -> Result<TokenInfo, Error> {
        let asked_at = self.cell.lock().arrivals;
        loop {
            let (flight, mine) = {
                let mut st = self.cell.lock();
                if let Some(rejected) = rejected {
                    let other = self.serve(&st, |rec, at, _| {
                        (at.value.expose() != rejected).then(|| info_of(rec))
                    });
                    if let Some(info) = other.flatten() {
                        return Ok(info);
                    }
                }
                match &st.inflight {
                    Some(flight) => (flight.clone(), false),
                    None => {
                        let flight = self.start(true, asked_at);
                        st.inflight = Some(flight.clone());
                        (flight, true)
                    }
                }
            };
            let result = flight.await;
            if mine || result.is_err() || self.cell.lock().arrivals > asked_at {
                return result;
            }
        }
    }

    /// Adopts an existing refresh token (and optionally its access token),
    /// replacing whatever the session held, and saves it. Waits for a
    /// refresh in progress to settle first.
    pub async fn seed(&self, seed: Seed) -> Result<(), Error> {
        if seed.refresh_token.is_empty() {
            return Err(Error::config("refresh_token", "must not be empty"));
        }
        let expires_in = match seed.expires_in {
            None => None,
            Some(secs) => match u64::try_from(secs) {
                Ok(secs) if secs <= MAX_EXPIRES_IN_SECS => Some(secs),
                _ => {
                    return Err(Error::config(
                        "expires_in",
                        "must be between 0 and ten years",
                    ))
                }
            },
        };
        let now = self.ctx.clock.now_ms();
        let access_token = match (seed.access_token, expires_in) {
            (Some(value), Some(secs)) if !value.is_empty() => {
                Some(AccessToken::new(value, now, Some(secs), 0))
            }
            _ => None,
        };
        let record = Record {
            access_token,
            scope: seed.scope,
            id_token: seed.id_token,
            refresh_token: Some(seed.refresh_token),
            refresh_expires_at_ms: Some(
                now.saturating_add(self.ctx.config.refresh_token_lifetime_ms),
            ),
            reauth: None,
            in_doubt: false,
            updated_at_ms: now,
        };
        self.install(record).await
    }

    /// The session's state as far as it is known, reading the store if this
    /// process has not yet. Sends nothing.
    pub async fn status(&self) -> Result<SessionStatus, Error> {
        if !self.cell.lock().loaded {
            self.sync().await?;
        }
        let st = self.cell.lock();
        let rec = st.record.as_ref();
        Ok(SessionStatus {
            has_record: rec.is_some(),
            reauth: rec.and_then(|r| r.reauth),
            access_expires_at_ms: rec
                .and_then(|r| r.access_token.as_ref())
                .map(|a| a.expires_at_ms),
            refresh_expires_at_ms: rec.and_then(|r| r.refresh_expires_at_ms),
            unpersisted: st.unpersisted,
            in_doubt: rec.is_some_and(|r| r.in_doubt),
        })
    }

    /// Replaces the record (seed, code exchange) once no flight is running,
    /// then saves it.
    pub(crate) async fn install(&self, record: Record) -> Result<(), Error> {
        // A deliberate replacement: compare-and-swap against what is stored now.
        let stored_version = if self.store.supports_versions() {
            Some(
                self.store
                    .load_versioned(&self.key)
                    .await?
                    .map(|v| v.version),
            )
        } else {
            None
        };
        let (generation, text) = loop {
            let running = {
                let mut st = self.cell.lock();
                match &st.inflight {
                    Some(flight) => flight.clone(),
                    None => {
                        if let Some(version) = stored_version {
                            st.version = version;
                        }
                        break set_record(&mut st, record);
                    }
                }
            };
            let _ = running.await;
        };
        let saved = self.persist(generation, &text).await;
        self.cell.lock().arrivals += 1;
        saved
    }

    /// The fast path: `f` of the record when its access token is fresh and
    /// nothing is pending.
    fn cached<T>(&self, f: impl FnOnce(&Record, &AccessToken, u64) -> T) -> Option<T> {
        let st = self.cell.lock();
        self.serve(&st, f)
    }

    /// `f` of the record in `st` when the cached path may serve its token.
    fn serve<T>(
        &self,
        st: &SessionState,
        f: impl FnOnce(&Record, &AccessToken, u64) -> T,
    ) -> Option<T> {
        if !st.loaded || st.unpersisted {
            return None;
        }
        let rec = st.record.as_ref()?;
        let at = rec.access_token.as_ref()?;
        if rec.reauth.is_some() || !at.is_fresh(self.ctx.clock.now_ms(), self.ctx.config.leeway_ms)
        {
            return None;
        }
        Some(f(rec, at, st.generation))
    }

    async fn join_or_start(&self, force: bool) -> Result<TokenInfo, Error> {
        let flight = {
            let mut st = self.cell.lock();
            match &st.inflight {
                Some(flight) => flight.clone(),
                None => {
                    let flight = self.start(force, st.arrivals);
                    st.inflight = Some(flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    /// A new shared flight. It clears itself from the state when it ends, so
    /// a failure never leaves the session stuck.
    fn start(&self, force: bool, asked_at: u64) -> Flight {
        let session = self.clone();
        let fut: BoxFuture<'static, Result<TokenInfo, Error>> = Box::pin(async move {
            // Cleared however the flight ends, even by a panic in a host
            // callback, so the next call always starts a new attempt.
            let _landed = Landed(session.cell.clone());
            session.fly(force, asked_at).await
        });
        fut.shared()
    }

    async fn fly(&self, force: bool, asked_at: u64) -> Result<TokenInfo, Error> {
        self.sync().await?;
        let plan = self.plan(force, asked_at)?;
        if !matches!(plan, Plan::Refresh { .. }) || !self.store.supports_lease() {
            return self.carry_out(plan).await;
        }
        // A fleet: one process refreshes, the others wait and re-read.
        match crate::fleet::take_lease(self, force, asked_at).await? {
            Some(info) => Ok(info),
            None => {
                let result = match self.sync().await {
                    Ok(()) => match self.plan(force, asked_at) {
                        Ok(plan) => self.carry_out_under_lease(plan).await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                crate::fleet::release_lease(self).await;
                result
            }
        }
    }

    /// What the session must do now, from its in-memory record.
    pub(crate) fn plan(&self, force: bool, asked_at: u64) -> Result<Plan, Error> {
        let now = self.ctx.clock.now_ms();
        let st = self.cell.lock();
        let rec = st
            .record
            .as_ref()
            .ok_or(Error::reauth(ReauthReason::NoRefreshToken))?;
        if let Some(reason) = rec.reauth {
            return Err(Error::reauth(reason));
        }
        let fresh = rec
            .access_token
            .as_ref()
            .is_some_and(|a| a.is_fresh(now, self.ctx.config.leeway_ms));
        if fresh && (!force || st.arrivals > asked_at) {
            return Ok(Plan::Serve(info_of(rec)));
        }
        let refresh_token = rec
            .refresh_token
            .clone()
            .ok_or(Error::reauth(ReauthReason::NoRefreshToken))?;
        if rec.refresh_expires_at_ms.is_some_and(|t| now >= t) {
            return Ok(Plan::Lapsed);
        }
        Ok(Plan::Refresh {
            refresh_token,
            in_doubt: rec.in_doubt,
        })
    }

    /// Under a fleet lease, the refresh token is marked in doubt in the
    /// store before it is sent: if this process dies before saving the
    /// answer, the next holder knows a rotation may have been lost and
    /// reports `lost_rotation`, not a plain `invalid_grant` (DESIGN 5).
    async fn carry_out_under_lease(&self, plan: Plan) -> Result<TokenInfo, Error> {
        if let Plan::Refresh {
            in_doubt: false, ..
        } = &plan
        {
            // Sending without the marker would lose that knowledge.
            self.store_update(|rec| rec.in_doubt = true).await?;
            return self.send_refresh(plan, true).await;
        }
        self.carry_out(plan).await
    }

    /// Serves, marks the lapsed session dead, or sends the refresh.
    async fn carry_out(&self, plan: Plan) -> Result<TokenInfo, Error> {
        self.send_refresh(plan, false).await
    }

    /// `carry_out`; `pre_marked` says the store already holds the in-doubt
    /// marker this refresh set, to be withdrawn if the request surely did
    /// nothing.
    async fn send_refresh(&self, plan: Plan, pre_marked: bool) -> Result<TokenInfo, Error> {
        let (refresh_token, in_doubt) = match plan {
            Plan::Serve(info) => return Ok(info),
            Plan::Lapsed => return self.kill(ReauthReason::RefreshExpired, None).await,
            Plan::Refresh {
                refresh_token,
                in_doubt,
            } => (refresh_token, in_doubt),
        };
        let grant = Grant::Refresh {
            refresh_token: refresh_token.expose(),
        };
        match exchange::call(&self.ctx, &grant).await {
            Ok(issued) => self.rotate(issued, refresh_token).await,
            Err(CallFailure {
                failure: Failure::OAuth { body, .. },
                maybe_processed,
                ..
            }) if body.error == "invalid_grant" => {
                let reason = if in_doubt || maybe_processed {
                    ReauthReason::LostRotation
                } else {
                    ReauthReason::InvalidGrant
                };
                self.kill(reason, body.description).await
            }
            Err(mut failure) => {
                if let Some(rotated) = failure.salvaged.take() {
                    self.keep_rotated(rotated).await;
                } else if failure.maybe_processed && !in_doubt && !pre_marked {
                    self.mark_in_doubt().await;
                } else if !failure.maybe_processed && pre_marked && !in_doubt {
                    // The request never took effect: withdraw the marker.
                    self.update(|rec| rec.in_doubt = false).await;
                }
                Err(failure.into_error())
            }
        }
    }

    /// Saves a pending record, or else re-reads the store (another process
    /// may have rotated the token; DESIGN point 12).
    pub(crate) async fn sync(&self) -> Result<(), Error> {
        let (pending, generation) = {
            let st = self.cell.lock();
            let pending = st
                .unpersisted
                .then(|| st.record.as_ref().map(Record::encode));
            (pending, st.generation)
        };
        if let Some(pending) = pending {
            return match pending {
                Some(text) => self.persist(generation, &text).await,
                None => Ok(()),
            };
        }
        let (stored, version) = if self.store.supports_versions() {
            match self.store.load_versioned(&self.key).await? {
                Some(v) => (Some(v.record), Some(v.version)),
                None => (None, None),
            }
        } else {
            (self.store.load(&self.key).await?, None)
        };
        let record = stored.as_deref().map(Record::decode).transpose()?;
        let mut st = self.cell.lock();
        if st.generation != generation || st.unpersisted {
            return Ok(()); // changed meanwhile by this process: keep ours
        }
        if st.loaded && st.record != record {
            st.generation += 1;
            st.arrivals += 1;
        }
        st.record = record;
        st.version = version;
        st.loaded = true;
        Ok(())
    }

    /// Saves `text`; on success the record is persisted unless it changed since.
    /// With a compare-and-swap store the save must match the version last
    /// seen; a mismatch is a `conflict` (DESIGN point 9), never an
    /// overwrite, and the stored record is read again on the next call.
    async fn persist(&self, generation: u64, text: &str) -> Result<(), Error> {
        let version = if self.store.supports_versions() {
            let expected = self.cell.lock().version.clone();
            match self
                .store
                .save_versioned(&self.key, text, expected.as_deref())
                .await?
            {
                CasOutcome::Saved { version } => Some(version),
                CasOutcome::Conflict => {
                    let mut st = self.cell.lock();
                    st.loaded = false;
                    st.unpersisted = false;
                    st.generation += 1;
                    return Err(Error::Conflict {
                        message: "the stored record changed since it was read (another process \
                                  or a new login saved it); it was not overwritten"
                            .to_owned(),
                    });
                }
            }
        } else {
            self.store.save(&self.key, text).await?;
            None
        };
        let mut st = self.cell.lock();
        if version.is_some() {
            st.version = version;
        }
        if st.generation == generation {
            st.unpersisted = false;
        }
        Ok(())
    }

    /// A successful refresh: the new record goes to memory first (so the
    /// consumed refresh token is never used again), then to the store; the
    /// caller gets the token only after the save resolved.
    async fn rotate(&self, issued: Issued, old_refresh_token: Secret) -> Result<TokenInfo, Error> {
        let Issued {
            response,
            sent_at_ms,
        } = issued;
        let config = &self.ctx.config;
        let (generation, text, info) = {
            let mut st = self.cell.lock();
            let old = st.record.take().unwrap_or_default();
            let record = Record {
                access_token: Some(AccessToken::new(
                    response.access_token,
                    sent_at_ms,
                    response.expires_in,
                    config.user_token_lifetime_secs,
                )),
                scope: response.scope.or(old.scope),
                id_token: response.id_token.or(old.id_token),
                refresh_token: Some(response.refresh_token.unwrap_or(old_refresh_token)),
                refresh_expires_at_ms: Some(
                    sent_at_ms.saturating_add(config.refresh_token_lifetime_ms),
                ),
                reauth: None,
                in_doubt: false,
                updated_at_ms: self.ctx.clock.now_ms(),
            };
            let info = info_of(&record);
            let (generation, text) = set_record(&mut st, record);
            (generation, text, info)
        };
        let saved = self.persist(generation, &text).await;
        self.cell.lock().arrivals += 1;
        saved.map(|()| info)
    }

    /// Marks the session dead (DESIGN point 13), saves that, and returns the
    /// reauthorization error.
    async fn kill(
        &self,
        reason: ReauthReason,
        description: Option<String>,
    ) -> Result<TokenInfo, Error> {
        log::info!(
            "freshtoken: session {} needs reauthorization ({reason})",
            self.key
        );
        self.update(|rec| {
            rec.reauth = Some(reason);
            rec.in_doubt = false;
        })
        .await;
        Err(Error::ReauthorizationRequired {
            reason,
            description,
        })
    }

    /// The server rotated but its answer was unusable: keep the new refresh
    /// token (without an access token) so the next call can use it.
    async fn keep_rotated(&self, refresh_token: Secret) {
        let until = self
            .ctx
            .clock
            .now_ms()
            .saturating_add(self.ctx.config.refresh_token_lifetime_ms);
        self.update(|rec| {
            rec.refresh_token = Some(refresh_token);
            rec.access_token = None;
            rec.refresh_expires_at_ms = Some(until);
            rec.in_doubt = false;
        })
        .await;
    }

    /// Records that the refresh token's fate is unknown (DESIGN point 5).
    async fn mark_in_doubt(&self) {
        self.update(|rec| rec.in_doubt = true).await;
    }

    /// Changes the record and saves it, reporting a failed save.
    async fn store_update(&self, change: impl FnOnce(&mut Record)) -> Result<(), Error> {
        let now = self.ctx.clock.now_ms();
        let saved = {
            let mut st = self.cell.lock();
            let Some(mut record) = st.record.clone() else {
                return Ok(());
            };
            change(&mut record);
            record.updated_at_ms = now;
            set_record(&mut st, record)
        };
        self.persist(saved.0, &saved.1).await
    }

    /// Changes the record and saves it; a failed save leaves it unpersisted,
    /// to be saved before anything else on the next call.
    async fn update(&self, change: impl FnOnce(&mut Record)) {
        if let Err(e) = self.store_update(change).await {
            log::warn!("freshtoken: session {}: {e}", self.key);
        }
    }
}

/// What a flight must do, decided from the in-memory record.
pub(crate) enum Plan {
    /// The access token is fresh: hand it out.
    Serve(TokenInfo),
    /// The refresh token passed its sliding lifetime.
    Lapsed,
    /// Send this refresh token.
    Refresh {
        refresh_token: Secret,
        in_doubt: bool,
    },
}

/// Removes the finished flight from its session when dropped.
struct Landed(Arc<SessionCell>);

impl Drop for Landed {
    fn drop(&mut self) {
        self.0.lock().inflight = None;
    }
}

/// Puts `record` in memory as the newest, not yet saved, and returns its
/// generation and encoding.
fn set_record(st: &mut SessionState, record: Record) -> (u64, String) {
    let text = record.encode();
    st.record = Some(record);
    st.loaded = true;
    st.unpersisted = true;
    st.generation += 1;
    (st.generation, text)
}

fn info_of(rec: &Record) -> TokenInfo {
    let access = rec.access_token.as_ref();
    TokenInfo {
        access_token: access
            .map(|a| a.value.expose().to_owned())
            .unwrap_or_default(),
        expires_at_ms: access.map_or(0, |a| a.expires_at_ms),
        scope: rec.scope.clone(),
        id_token: rec.id_token.as_ref().map(|s| s.expose().to_owned()),
        refresh_expires_at_ms: rec.refresh_expires_at_ms,
    }
}
