//! The in-memory state of one session key, shared by every handle of it
//! (DESIGN point 11), and the small pure helpers around it.

use crate::error::{Error, ReauthReason};
use crate::maybe_send::BoxFuture;
use crate::secret::Secret;
use crate::started_by::StartedBy;
use crate::store::{Record, TokenStore};
use crate::tokens::{AccessToken, TokenInfo};
use futures_util::future::Shared;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// A refresh (or load) in progress, shared by every waiting caller.
pub(crate) type Flight = Shared<BoxFuture<'static, Result<TokenInfo, Error>>>;

static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// A process-wide unique stamp for a version of a session's record. Unique
/// across cells, so that a handle whose cell was evicted and re-created
/// never mistakes the new cell's record for the one it cached.
pub(crate) fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

/// The most retired tokens a state keeps for scrubbing (the oldest go
/// first): four records' worth, for replacements that failed to save.
const MAX_RETIRED: usize = 12;

/// The state of one session key.
pub(crate) struct SessionCell {
    /// Boxed: a handle's `Weak` keeps an evicted cell's allocation alive
    /// until the handle is collected, so the cell itself stays small.
    state: Mutex<Box<SessionState>>,
    /// Registry tick of the last use, for evicting idle sessions.
    pub(crate) last_used: AtomicU64,
    /// Set by the registry while it evicts this state (see
    /// [`crate::registry::Registry::attach`]).
    pub(crate) evicted: std::sync::atomic::AtomicBool,
}

impl Default for SessionCell {
    fn default() -> Self {
        SessionCell {
            state: Mutex::new(Box::new(SessionState {
                loaded: false,
                record: None,
                unpersisted: false,
                generation: next_generation(),
                arrivals: 0,
                inflight: None,
                saving_only: false,
                version: None,
                version_of: None,
                spent: None,
                lease_episode: None,
                retired: Vec::new(),
                rejected: None,
                replacing_calls: 0,
                started_by: StartedBy::default(),
                lapse_reported: 0,
                save_over: 0,
                read_before_code: None,
                keeping: None,
                strandings: 0,
                not_before: None,
                unsaved_in: None,
                replacing_waiters: None,
            })),
            last_used: AtomicU64::new(0),
            evicted: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

pub(crate) struct SessionState {
    /// The store has been read at least once.
    pub(crate) loaded: bool,
    /// The latest record known to this process. Shared with a
    /// [`crate::MemoryStore`] that holds it, so it is never changed in place.
    pub(crate) record: Option<Arc<Record>>,
    /// `record` differs from what the store holds: save it before anything else.
    pub(crate) unpersisted: bool,
    /// Changes (to a process-wide unique value) whenever `record` does.
    pub(crate) generation: u64,
    /// Counts new tokens that became current once durable (a refresh saved,
    /// another process's rotation read, a seed): a forced refresh that asked
    /// before one of these arrived is answered by it.
    pub(crate) arrivals: u64,
    /// The refresh (or load) in progress, shared by every waiting caller.
    pub(crate) inflight: Option<Flight>,
    /// `inflight` only saves a record this process could not save before
    /// (for `status()`): a caller that needs a token waits for it, then
    /// goes on as a new call.
    pub(crate) saving_only: bool,
    /// The store's version of the record last read or written (stores with
    /// compare-and-swap only): the next save must still match it.
    pub(crate) version: Option<String>,
    /// The record `version` was given for (by the read or the save that
    /// gave it), when known: a compare-and-swap that conflicts while the
    /// store holds exactly this record shows a store that spells its
    /// versions two ways, not another writer.
    pub(crate) version_of: Option<Arc<Record>>,
    /// A keyed hash of the refresh token this state's last rotation spent
    /// (see [`SessionState::stale_beside`]).
    pub(crate) spent: Option<std::num::NonZeroU64>,
    /// The fleet lease this state holds or last asked for, as the random
    /// part of its owner name (see
    /// [`crate::attached::Attached::lease_owner`]); `None` once released.
    pub(crate) lease_episode: Option<std::num::NonZeroU64>,
    /// The tokens of the record `record` replaced: a store may still quote
    /// it in an error message, which must not show them.
    retired: Vec<Secret>,
    /// The access token a caller reported rejected (`token_rejected`): never
    /// served again, even while the refresh it caused is in flight or after
    /// it failed. Boxed: most sessions never have one.
    pub(crate) rejected: Option<Box<Secret>>,
    /// Seeds and code exchanges running (see [`Replacing`]).
    pub(crate) replacing_calls: u32,
    /// The process whose calls `inflight` and `replacing_calls` are.
    pub(crate) started_by: StartedBy,
    /// The `generation` whose refresh-token lapse was last reported (0:
    /// none): a lapse is judged at every call, and reported once per record.
    pub(crate) lapse_reported: u64,
    /// The `generation` of a code exchange's record that is to be saved
    /// over whatever another process stored meanwhile (0: none): its save
    /// reads the stored version first.
    pub(crate) save_over: u64,
    /// What the last code exchange read in the store before sending its
    /// code (see [`crate::attached::Attached::signed_out_since`]). Boxed:
    /// only a state that exchanged a code has one.
    pub(crate) read_before_code: Option<Box<ReadBeforeCode>>,
    /// The process whose background save of a stranded rotation
    /// ([`crate::fleet::keep_stranded`]) runs for this state, if one does:
    /// one such task per session, however many later calls fail to save.
    pub(crate) keeping: Option<StartedBy>,
    /// Counts the rotations left unsaved under the lease (calls of
    /// `keep_stranded`): a running background save that sees it move goes
    /// on for the newest one.
    pub(crate) strandings: u64,
    /// A server's `Retry-After` that outlasted the refresh that got it: no
    /// refresh is sent before it. Boxed: most sessions never have one.
    pub(crate) not_before: Option<Box<crate::retry::NotBefore>>,
    /// The store whose save of `record` failed, while it is `unpersisted`:
    /// where [`crate::TokenClient::save_unsaved`] saves it again.
    pub(crate) unsaved_in: Option<Arc<dyn TokenStore>>,
    /// Calls waiting for `replacing_calls` to reach zero
    /// ([`crate::TokenClient::save_unsaved`]). Boxed: there rarely are any,
    /// and a box is 8 bytes in every session state where a `Vec` is 24.
    #[allow(clippy::box_collection)]
    pub(crate) replacing_waiters: Option<Box<Vec<Waker>>>,
}

/// What a code exchange read in the store before sending its code: a
/// revocation found when its record is saved is a sign-out made since
/// unless it is the one read then (a re-link after a sign-out).
pub(crate) struct ReadBeforeCode {
    /// Whether the stored record was a revocation; `None`: it could not be
    /// read (a blip, damaged text, a record no key opens).
    pub(crate) revoked: Option<bool>,
    /// The stored version read then (`None`: a store without versions).
    pub(crate) version: Option<Option<String>>,
}

impl SessionState {
    /// Whether a call that may replace the access token is running: a
    /// flight (a refresh, a revocation, a save) or a seed or code exchange,
    /// even one whose caller gave up. A host mirror must not copy the token
    /// meanwhile: once the call ends it would keep serving the token the
    /// call replaced (another account's, after a re-link).
    pub(crate) fn replacing(&self) -> bool {
        self.inflight.is_some() || self.replacing_calls > 0
    }

    /// Whether `token` is the one a caller reported rejected.
    pub(crate) fn is_rejected(&self, token: &AccessToken) -> bool {
        self.rejected
            .as_ref()
            .is_some_and(|rejected| rejected.expose() == token.value.expose())
    }

    /// Every token this state knows (current and just replaced), for
    /// scrubbing messages that come from the host.
    pub(crate) fn secrets(&self) -> Vec<Secret> {
        let mut out = self.retired.clone();
        if let Some(record) = &self.record {
            record_secrets(record, &mut out);
        }
        out
    }

    /// Puts `record` in memory as the newest, not yet saved, and returns its
    /// generation and the record to save.
    pub(crate) fn set_record(&mut self, record: impl Into<Arc<Record>>) -> (u64, Arc<Record>) {
        let record = record.into();
        if let Some(old) = self.record.replace(record.clone()) {
            // Over a record not saved yet, the store still holds an older
            // one (a seed over a stranded rotation): its tokens stay known
            // until a save lands, as a store's message may quote them.
            if !self.unpersisted {
                self.retired.clear();
            }
            record_secrets(&old, &mut self.retired);
            let excess = self.retired.len().saturating_sub(MAX_RETIRED);
            self.retired.drain(..excess);
        }
        self.loaded = true;
        self.unpersisted = true;
        self.generation = next_generation();
        (self.generation, record)
    }

    /// Notes that a refresh spent `sent` if it left the session holding
    /// another refresh token, `now_held` (a server that does not rotate
    /// answers none, or the same one).
    pub(crate) fn note_rotation(&mut self, sent: &Secret, now_held: Option<&Secret>) {
        if now_held.is_some_and(|held| held.expose() != sent.expose()) {
            self.spent = std::num::NonZeroU64::new(spent_key(sent));
        }
    }

    /// Whether `stored`, read from the store, is older than `ours`: it
    /// holds the refresh token this state's last rotation spent, `ours`
    /// another, and it is not a revocation's mark (a revocation wins). So
    /// it is after the store was rolled back (a restored backup or
    /// snapshot, a replica promoted without the last write, an older copy
    /// written back), or after another process wrote a record read before
    /// the rotation (its lease lapsed meanwhile). Adopting it would send the
    /// spent token, and the provider would revoke the whole grant. A dead
    /// mark other than `revoked` on the spent token is about that token,
    /// not the one this state rotated to. Known for the last rotation only,
    /// and only while this state lives (an evicted state, or another
    /// process, has only the store to go by).
    pub(crate) fn stale_beside(&self, stored: Option<&Record>, ours: Option<&Record>) -> bool {
        let token = |r: Option<&Record>| r.and_then(|r| r.refresh_token.as_ref()).map(spent_key);
        let spent = self.spent.map(std::num::NonZeroU64::get);
        let revoked = stored.is_some_and(|r| r.reauth == Some(ReauthReason::Revoked));
        let ours = token(ours);
        spent.is_some() && token(stored) == spent && ours.is_some() && ours != spent && !revoked
    }

    /// Adopts a record read from the store.
    pub(crate) fn adopt(&mut self, record: Option<Arc<Record>>, version: Option<String>) {
        if self.loaded && self.record != record {
            self.generation = next_generation();
            // An arrival is a renewal stored by another process: a new access
            // token (or the same value issued again). A marker written ahead
            // of a send (`in_doubt`), or the same tokens saved again, brings
            // none, and must not answer a forced refresh with the token it
            // was asked to replace.
            let access = |r: &Option<Arc<Record>>| r.as_ref().and_then(|r| r.access_token.clone());
            if access(&self.record) != access(&record) {
                self.arrivals += 1;
            }
        }
        if let Some(old) = std::mem::replace(&mut self.record, record) {
            if Some(&old) != self.record.as_ref() {
                let mut retired = Vec::new();
                record_secrets(&old, &mut retired);
                self.retired = retired;
            }
        }
        self.version_of = version.as_ref().and(self.record.clone());
        self.version = version;
        self.loaded = true;
    }
}

impl SessionCell {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Box<SessionState>> {
        // A poisoned lock only means a panic elsewhere; the state itself is
        // always consistent between statements, so keep using it.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        forget_forked(&mut st);
        st
    }

    /// Whether a record may be waiting to be saved, without waiting for the
    /// lock: one held (in a forked child, by a thread the fork left behind)
    /// counts as maybe.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn may_be_unsaved(&self) -> bool {
        self.peek(|st| st.unpersisted)
    }

    /// Whether a seed or code exchange runs on this state, without waiting
    /// for the lock (one held counts as yes).
    pub(crate) fn has_replacing_calls(&self) -> bool {
        self.peek(|st| st.replacing_calls > 0)
    }

    /// `f` of the state if its lock is free (poisoned or not); true if it
    /// is held.
    fn peek(&self, f: impl FnOnce(&SessionState) -> bool) -> bool {
        match self.state.try_lock() {
            Ok(st) => f(&st),
            Err(std::sync::TryLockError::Poisoned(st)) => f(&st.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => true,
        }
    }

    /// Ready once no seed or code exchange runs on this state (their
    /// records are then in memory, saved or not).
    pub(crate) fn poll_replacing_ended(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.lock();
        if st.replacing_calls == 0 {
            return Poll::Ready(());
        }
        let waiters = st.replacing_waiters.get_or_insert_with(Box::default);
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Nothing in flight, nothing waiting to be saved, and no rejected token
    /// still in the record: safe to evict. (Evicted, a state whose refresh
    /// after `token_rejected` failed would forget the rejection, and the
    /// store's record would serve the rejected token again.)
    pub(crate) fn is_idle(&self) -> bool {
        match self.state.try_lock() {
            Ok(mut st) => {
                forget_forked(&mut st);
                let rejected_held = (st.record.as_ref())
                    .and_then(|r| r.access_token.as_ref())
                    .is_some_and(|a| st.is_rejected(a));
                st.inflight.is_none() && !st.unpersisted && !rejected_held
            }
            Err(_) => false,
        }
    }
}

/// In a child forked while a flight, seed or code exchange of the parent
/// ran: forgets them (see [`crate::started_by`]). The record stays; the
/// refresh token the parent's flight is spending is never sent from here.
fn forget_forked(st: &mut SessionState) {
    if (st.inflight.is_some() || st.replacing_calls > 0) && st.started_by.elsewhere() {
        st.inflight = None;
        st.saving_only = false;
        st.replacing_calls = 0;
        st.replacing_waiters = None;
    }
}

/// Counts a seed or code exchange as running on its cell for as long as it
/// lives: a code exchange moves it into the task that runs to its end, so
/// it still counts after its caller gave up.
pub(crate) struct Replacing(Arc<SessionCell>);

impl Replacing {
    /// Counts a replacing call on `cell` until dropped.
    pub(crate) fn start(cell: Arc<SessionCell>) -> Self {
        let mut st = cell.lock();
        st.replacing_calls += 1;
        st.started_by = StartedBy::this();
        drop(st);
        Replacing(cell)
    }
}

impl Drop for Replacing {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.replacing_calls = st.replacing_calls.saturating_sub(1);
        let waiters = (st.replacing_calls == 0)
            .then(|| st.replacing_waiters.take())
            .flatten();
        drop(st);
        if let Some(waiters) = waiters {
            for waiter in *waiters {
                waiter.wake();
            }
        }
    }
}

/// The key [`SessionState::spent`] keeps of a refresh token (no copy of
/// the token itself).
fn spent_key(refresh_token: &Secret) -> u64 {
    crate::code_exchange::digest(&[refresh_token.expose()])
}

/// Appends the refresh, access and ID tokens of `rec` to `out` (pushed one
/// by one: an iterator over an array of options cost wasm bytes).
fn record_secrets(rec: &Record, out: &mut Vec<Secret>) {
    if let Some(refresh) = &rec.refresh_token {
        out.push(refresh.clone());
    }
    if let Some(access) = &rec.access_token {
        out.push(access.value.clone());
    }
    if let Some(id) = &rec.id_token {
        out.push(id.clone());
    }
}

/// Why the user must authorize again, as the next token call at `now_ms`
/// would find it without sending anything (see `Attached::plan`): the
/// record's mark, else, its access token stale, a missing refresh token or
/// one past its sliding lifetime.
pub(crate) fn reauth_due(rec: &Record, now_ms: u64, leeway_ms: u64) -> Option<ReauthReason> {
    if let Some(reason) = verdict(rec) {
        return Some(reason);
    }
    let fresh = rec
        .access_token
        .as_ref()
        .is_some_and(|a| a.is_fresh(now_ms, leeway_ms));
    if fresh {
        None
    } else if rec.refresh_token.is_none() {
        Some(ReauthReason::NoRefreshToken)
    } else if rec.refresh_lapsed(now_ms) {
        Some(ReauthReason::RefreshExpired)
    } else {
        None
    }
}

/// The stored mark that the session is dead, if any. A `refresh_expired`
/// mark, stored by earlier releases when this process's clock judged the
/// refresh token lapsed, is no verdict: only a clock said so (one that ran
/// ahead would have killed the session for good), so the lifetime is
/// judged again on this clock, as a lapse now is (never stored).
pub(crate) fn verdict(rec: &Record) -> Option<ReauthReason> {
    rec.reauth
        .filter(|reason| *reason != ReauthReason::RefreshExpired)
}

/// What callers get from a record.
pub(crate) fn info_of(rec: &Record) -> TokenInfo {
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
