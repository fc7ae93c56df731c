//! A session handle attached to its key's shared state for one operation:
//! the cached path, joining or starting the one shared flight, and the
//! deliberate replacements (seed, code exchange).
//!
//! Public handles ([`crate::UserSession`]) hold their state only weakly, so
//! that idle state can be evicted whatever handles the host keeps
//! (DESIGN point 11); each operation attaches, holding it strongly while it
//! runs.

use crate::error::Error;
use crate::exchange::Context;
use crate::flight::Landed;
use crate::maybe_send::BoxFuture;
use crate::response::MAX_EXPIRES_IN_SECS;
use crate::session::{Seed, SessionStatus};
use crate::session_state::{
    info_of, reauth_due, verdict, Flight, Replacing, SessionCell, SessionState,
};
use crate::store::{Record, TokenStore};
use crate::tokens::{AccessToken, TokenInfo};
use std::sync::Arc;

/// One session's key, state, store and client context, held strongly.
#[derive(Clone)]
pub(crate) struct Attached {
    pub(crate) key: Arc<str>,
    pub(crate) cell: Arc<SessionCell>,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) ctx: Arc<Context>,
}

impl Attached {
    /// A fresh access token, from memory or through the shared flight.
    pub(crate) async fn access_token(&self) -> Result<String, Error> {
        if let Some(token) = self.cached(|_, at, _| at.value.expose().to_owned()) {
            return Ok(token);
        }
        self.join_or_start().await.map(|info| info.access_token)
    }

    /// The fresh token with its details.
    pub(crate) async fn tokens(&self) -> Result<TokenInfo, Error> {
        if let Some(info) = self.cached(|rec, _, _| info_of(rec)) {
            return Ok(info);
        }
        self.join_or_start().await
    }

    /// A forced refresh, unless `rejected` is given and the session already
    /// holds a different fresh token; shares a refresh in progress, and a
    /// refresh that completed after this call began counts as this call's.
    pub(crate) async fn refresh_unless(&self, rejected: Option<&str>) -> Result<TokenInfo, Error> {
        // A process that has not read the record yet compares the rejected
        // token with the stored one (DESIGN point 12): another process's
        // renewal answers it. (The flight's own read cannot tell: a first
        // read is no arrival.)
        if rejected.is_some() && !self.cell.lock().loaded {
            self.sync().await?;
        }
        let asked_at = self.cell.lock().arrivals;
        loop {
            let now = self.ctx.clock.now_ms();
            let (flight, mine, saving_only) = {
                let mut st = self.cell.lock();
                if let Some(rejected) = rejected {
                    let other = serve(&st, &self.ctx, now, |rec, at, _| {
                        (at.value.expose() != rejected).then(|| info_of(rec))
                    });
                    if let Some(info) = other.flatten() {
                        return Ok(info);
                    }
                    // The API refused it: no caller is handed it again; a
                    // call that needs a token joins this refresh instead.
                    st.rejected = Some(Box::new(rejected.into()));
                }
                match &st.inflight {
                    Some(flight) => (flight.clone(), false, st.saving_only),
                    None => (self.start(&mut st, true, asked_at), true, false),
                }
            };
            let result = flight.await;
            // A save of a seed or of a pending record is no refresh: go on
            // (a seed counts as an arrival, so its fresh token answers), as
            // after its conflict (join_or_start says why).
            if saving_only && result.as_ref().map_or_else(is_conflict, |_| true) {
                continue;
            }
            if mine || result.is_err() || self.cell.lock().arrivals > asked_at {
                return result;
            }
        }
    }

    /// Adopts an existing refresh token (see [`crate::UserSession::seed`]).
    pub(crate) async fn seed(&self, seed: Seed) -> Result<(), Error> {
        let _replacing = Replacing::start(self.cell.clone());
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
        if let Some(value) = &seed.access_token {
            if !value.is_empty() && !crate::response::is_printable_token(value.expose()) {
                return Err(Error::config(
                    "access_token",
                    "must be visible ASCII characters (it is sent in an Authorization header)",
                ));
            }
        }
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
            from_code: None,
        };
        // A record over the cap would be saved, and then refused by every
        // later load (a new process could not read the session back).
        if record.encode().len() > crate::MAX_RECORD_BYTES {
            return Err(Error::config(
                largest_member(&record),
                format!(
                    "is too large: the session's record would exceed {} bytes",
                    crate::MAX_RECORD_BYTES
                ),
            ));
        }
        self.install(record).await
    }

    /// What is known without sending anything (reads the store once). Like
    /// every call (DESIGN point 4), it first saves a record this process
    /// could not save before; if that fails again, the status says
    /// `unpersisted` (the error goes to the `save_failed` event).
    pub(crate) async fn status(&self) -> Result<SessionStatus, Error> {
        // (A failure shows as `unpersisted`.)
        let _ = self.save_pending().await;
        if !self.cell.lock().loaded {
            self.sync().await?;
        }
        let now = self.ctx.clock.now_ms();
        let st = self.cell.lock();
        let rec = st.record.as_ref();
        Ok(SessionStatus {
            has_record: rec.is_some(),
            reauth: rec.and_then(|r| reauth_due(r, now, self.ctx.config.leeway_ms)),
            access_expires_at_ms: rec
                .and_then(|r| r.access_token.as_ref())
                .map(|a| a.expires_at_ms),
            refresh_expires_at_ms: rec.and_then(|r| r.refresh_expires_at_ms),
            unpersisted: st.unpersisted,
            in_doubt: rec.is_some_and(|r| r.in_doubt),
            revocation_pending: rec.is_some_and(|r| crate::revoke::revocation_pending(r, now)),
        })
    }

    /// Replaces the record (seed, code exchange) once no flight is running
    /// and no abandoned save of the key can still land, then saves it.
    pub(crate) async fn install(&self, record: Record) -> Result<(), Error> {
        self.replace(record, None).await
    }

    /// [`Attached::install`]; with `read_before`, for a record the server
    /// already issued (a code exchange): an abandoned save of the key is
    /// then waited for until it ends or is given up, never refused, since
    /// refusing would throw the issued refresh token away.
    ///
    /// `read_before`: for a record the server issued, the stored version
    /// read before its request was sent. Should the store fail to tell the
    /// version now, that one is compared against, so a read failing between
    /// the two never throws the issued tokens away (they stay in memory,
    /// unpersisted, if the save fails).
    ///
    /// The save runs as the session's flight (like [`Attached::save_pending`]):
    /// a refresh asked for meanwhile starts only once it has ended, so no
    /// later save of the key can land before it, and it runs to its end if
    /// the caller stops waiting.
    pub(crate) async fn replace(
        &self,
        record: Record,
        read_before: Option<Option<Option<String>>>,
    ) -> Result<(), Error> {
        let issued = read_before.is_some();
        // A deliberate replacement: compare-and-swap against what is stored
        // once nothing of this process runs on the key (read after the
        // waits: a refresh saved meanwhile moved the version on), at the
        // generation it was read at.
        let mut read = None;
        let flight = loop {
            // Checked under the state's lock: only a flight abandons a
            // save, and none runs when this finds none. The clock is read
            // before the lock (a host clock may call back into the session).
            let now = crate::elapsed::Started::now(self.ctx.clock.as_ref());
            let step = {
                let mut st = self.cell.lock();
                match &st.inflight {
                    Some(flight) => Step::Wait(flight.clone()),
                    None if self.abandoned_save_pending(now) => Step::Abandoned,
                    None => match read.take() {
                        Some((generation, version)) if generation == st.generation => {
                            if let Some(version) = version {
                                st.version = version;
                                st.version_of = None;
                            }
                            let (generation, record) = st.set_record(record);
                            // Issued tokens exist nowhere else: should this
                            // save fail, the next call's save of them reads
                            // the version first and saves over what another
                            // process stored meanwhile (see `save_over`),
                            // instead of conflicting and dropping them.
                            if issued {
                                st.save_over = generation;
                            }
                            let session = self.clone();
                            let body = async move {
                                let saved = if issued {
                                    session.save_issued(generation, &record, false).await
                                } else {
                                    session.persist(generation, &record).await
                                };
                                session.cell.lock().arrivals += 1;
                                saved.map(|()| info_of(&Record::default()))
                            };
                            let flight = self.start_flight(&mut st, Box::pin(body));
                            st.saving_only = true;
                            break flight;
                        }
                        _ => Step::Read(st.generation),
                    },
                }
            };
            match step {
                Step::Wait(flight) => drop(flight.await),
                Step::Abandoned if issued => self.abandoned_save_given_up().await,
                Step::Abandoned => self.abandoned_save_ended().await?,
                Step::Read(generation) => {
                    let version = match (self.stored_version().await, &read_before) {
                        (Ok(version), _) => version,
                        (Err(_), Some(version)) => version.clone(),
                        (Err(e), None) => return Err(e),
                    };
                    read = Some((generation, version));
                }
            }
        };
        flight.await.map(drop)
    }

    /// Saves `record`, issued by the server (a code exchange), set in the
    /// state at `generation` and marked to be saved over what is stored.
    ///
    /// With a store that offers the fleet lease but no compare-and-swap, the
    /// save is made under the lease: another process refreshing the old link
    /// holds it until its rotated record is saved, and that save, landing
    /// after this one, would put the old link back over the new one (the
    /// code spent, the issued refresh token held only in this process). A
    /// lease not taken within the wait leaves the record unsaved, as a failed
    /// save does. With compare-and-swap, a conflict is saved over (see
    /// [`Attached::save_over`]) up to [`ISSUED_SAVE_TRIES`] saves in all;
    /// past them the record stays unsaved. Either way the issued tokens are
    /// never dropped: they stay in memory, unpersisted, for the next call
    /// (or `save_unsaved`) to save, and the caller gets `storage`.
    ///
    /// `kept`: the record was kept unsaved by an earlier call; its first
    /// save reads the stored version first, as every save of it does (see
    /// `sync`), instead of comparing against the version read before the
    /// code was sent.
    async fn save_issued(
        &self,
        generation: u64,
        record: &Arc<Record>,
        kept: bool,
    ) -> Result<(), Error> {
        let store = &self.store;
        let leased =
            store.supports_lease() && !store.supports_versions() && store.in_memory().is_none();
        if leased {
            let started = self.ctx.clock.now_ms();
            if let Err(e) = crate::fleet::take_lease(self, None).await {
                let error = self.keep_issued(
                    record,
                    &format!(
                        "the refresh lease was not taken for its save: {}",
                        plain(&e)
                    ),
                );
                self.save_ended(started, &Err(error.clone()));
                return Err(error);
            }
        }
        // A sign-out stored since the exchange read the store (while its
        // code was at the server, or since its tokens were kept) wins.
        let mut saved = match self.signed_out_since(record, kept).await {
            Some(error) => Err(error),
            None if kept => self.sync().await,
            None => self.persist(generation, record).await,
        };
        let mut tries = 1;
        while tries < ISSUED_SAVE_TRIES && saved.as_ref().is_err_and(is_conflict) {
            tries += 1;
            // Another process saved meanwhile: a sign-out made since the
            // exchange read the store wins over the re-link, as it does
            // over a kept one (checked before each save over it).
            saved = match self.signed_out_since(record, false).await {
                Some(error) => Err(error),
                None => self.save_over(record).await,
            };
        }
        if saved.as_ref().is_err_and(is_conflict) {
            saved = Err(self.keep_issued(
                record,
                &format!(
                    "the stored record changed under each of {ISSUED_SAVE_TRIES} saves of it \
                     (other processes keep saving the key)"
                ),
            ));
        }
        if leased {
            // As after a refresh (see `fly`).
            crate::fleet::keep_or_release_lease(self).await;
        }
        saved
    }

    /// Whether the user signed out since the code exchange that issued `record`
    /// read the store: the stored record is a revocation, and the one the code
    /// exchange read before sending its code was not (a revocation then is
    /// a sign-out this re-link follows, saved over). No clocks are
    /// compared: each process stamps records with its own. Saved over a
    /// later sign-out, the kept record would bring back the session the
    /// user ended; it is dropped instead, its tokens revoked (best effort:
    /// they would otherwise live on at the server, held by no one), and
    /// the caller gets `reauthorization_required` (revoked); the events
    /// `revoked` and `reauthorization_required` say so. When the exchange
    /// could not read the stored record, a revocation stored under the
    /// version it read then is the one it followed; under another (or
    /// without versions) one made since. Damaged stored text is no
    /// sign-out. A store that cannot be read fails the save of a `kept`
    /// record (which stays kept) with its error, unless its version is
    /// still the one the exchange read (nothing written since: a record no
    /// key of an `EncryptedStore` opens is replaced); any other save goes
    /// on. Checked before
    /// every save of an issued record: its first, each over a conflicting
    /// record, and a kept one's.
    async fn signed_out_since(&self, record: &Arc<Record>, kept: bool) -> Option<Error> {
        let (revoked_before, version_before) = match self.cell.lock().read_before_code.as_deref() {
            Some(read) => (read.revoked, read.version.clone()),
            None => (None, None),
        };
        let unchanged = |now: &Option<Option<String>>| now.is_some() && *now == version_before;
        let stored = match self.load_with_version().await {
            Ok((Ok(stored), version)) => (stored?, version),
            // Damaged text is no sign-out: the re-link replaces it.
            Ok((Err(_), _)) => return None,
            Err(error) if kept => {
                let now = self.stored_version().await;
                return (!now.is_ok_and(|now| unchanged(&now))).then_some(error);
            }
            // Any other save goes on (a store that answers saves but not
            // reads keeps the tokens saved).
            Err(_) => return None,
        };
        let (stored, version) = stored;
        let revoked = stored.reauth == Some(crate::error::ReauthReason::Revoked);
        let since = match revoked_before {
            Some(revoked) => !revoked,
            None => !unchanged(&version),
        };
        if !revoked || !since {
            return None;
        }
        let ours = (self.cell.lock().record.as_ref()).is_some_and(|r| Arc::ptr_eq(r, record));
        if ours {
            self.reread_next();
        }
        let access = record.access_token.as_ref().map(|a| &a.value);
        let started = self.ctx.clock.now_ms();
        let revoked =
            crate::revoke::revoke_pair(&self.ctx, record.refresh_token.as_ref(), access, &[]).await;
        // As a `revoke()`'s, then the session's end, for listeners that
        // count either (a log line alone reaches no one).
        self.revoked(started, revoked.as_ref().err());
        self.reauthorization_required(crate::error::ReauthReason::Revoked);
        let key = self.ctx.logged_key(&self.key);
        match revoked {
            Ok(()) => log::warn!(
                "freshtoken: session {key}: a re-link not saved yet was dropped: the user signed \
                 out since; its tokens were revoked"
            ),
            Err(e) => log::warn!(
                "freshtoken: session {key}: a re-link not saved yet was dropped: the user signed \
                 out since; revoking its tokens failed ({e}): the server may hold them"
            ),
        }
        Some(Error::reauth(crate::error::ReauthReason::Revoked))
    }

    /// The code exchange's record this state holds unsaved, marked to be
    /// saved over what is stored (see [`Attached::save_issued`]), if any,
    /// with its generation.
    fn kept_issued(&self) -> Option<(u64, Arc<Record>)> {
        let st = self.cell.lock();
        if !st.unpersisted || st.save_over != st.generation {
            return None;
        }
        Some((st.generation, st.record.clone()?))
    }

    /// [`Attached::sync`], but a code exchange's record kept unsaved is
    /// saved as it was first (see [`Attached::save_issued`]): under the
    /// fleet lease with a store that has no compare-and-swap, and kept,
    /// never dropped, should other processes' saves keep conflicting with
    /// it. A plain `sync` would read such a conflict as another process
    /// having moved on, and drop the re-link with its code spent.
    pub(crate) async fn sync_keeping_issued(&self) -> Result<(), Error> {
        match self.kept_issued() {
            Some((generation, record)) => self.save_issued(generation, &record, true).await,
            None => self.sync().await,
        }
    }

    /// Keeps an issued `record` that could not be saved (`why`) in memory,
    /// unpersisted and marked to be saved over whatever is stored, so the
    /// next call or `save_unsaved` saves it: it is by construction the
    /// newest link, and a conflict's re-read would have dropped it, with the
    /// code spent and its refresh token held nowhere. Left alone if this
    /// process replaced it since. The `storage` error for the caller.
    fn keep_issued(&self, record: &Arc<Record>, why: &str) -> Error {
        let mut st = self.cell.lock();
        if st.record.as_ref().is_some_and(|r| Arc::ptr_eq(r, record)) {
            if !st.unpersisted {
                st.loaded = true;
                st.unpersisted = true;
                st.generation = crate::session_state::next_generation();
            }
            st.save_over = st.generation;
            st.unsaved_in = Some(self.store.clone());
        }
        Error::storage(format!(
            "the new tokens are not saved yet: {why}; they are kept in this process and \
             saved on the next call"
        ))
    }

    /// Saves an issued `record` again after its compare-and-swap conflicted:
    /// another process saved the key between this one's version read and
    /// its save. The record is the re-link the user just made, and its
    /// tokens exist nowhere else (the code is spent), so it replaces what
    /// that process saved, as it would have, had that process saved a
    /// moment earlier. It is held in memory (unpersisted) from the start,
    /// marked to be saved over whatever is stored: should the store fail to
    /// tell the version now, the next call's save reads it first (instead
    /// of conflicting against the stale one and dropping the tokens).
    async fn save_over(&self, record: &Arc<Record>) -> Result<(), Error> {
        {
            let mut st = self.cell.lock();
            let (generation, _) = st.set_record(record.clone());
            // Until it is saved, every save of it reads the version first,
            // this one included (see `sync`), whoever makes it.
            st.save_over = generation;
        }
        self.sync().await
    }

    /// `f` of the record when its access token is fresh and nothing is
    /// pending: the cached path, a lock and a comparison.
    pub(crate) fn cached<T>(&self, f: impl FnOnce(&Record, &AccessToken, u64) -> T) -> Option<T> {
        let now = self.ctx.clock.now_ms();
        serve(&self.cell.lock(), &self.ctx, now, f)
    }

    async fn join_or_start(&self) -> Result<TokenInfo, Error> {
        loop {
            let (flight, saving_only) = {
                let mut st = self.cell.lock();
                match &st.inflight {
                    Some(flight) => (flight.clone(), st.saving_only),
                    None => {
                        let asked_at = st.arrivals;
                        (self.start(&mut st, false, asked_at), false)
                    }
                }
            };
            let result = flight.await;
            // After a save of a seed or of a pending record, go on as a new
            // call. Its storage failure is this call's (the call's own
            // flight would have saved that record first); a conflict is
            // not: the next flight reads the record another process saved.
            if !saving_only || result.as_ref().is_err_and(|e| !is_conflict(e)) {
                return result;
            }
        }
    }

    /// Saves the record this process could not save before, once no flight
    /// runs (a flight saves it first itself), as a flight of its own: no
    /// save of a newer record can start before this one has ended.
    ///
    /// A code exchange's record kept unsaved is saved as it was first
    /// (see [`Attached::save_issued`]): under the fleet lease with a store
    /// that has no compare-and-swap, and kept, never dropped, should other
    /// processes' saves keep conflicting with it.
    pub(crate) async fn save_pending(&self) -> Result<(), Error> {
        self.saving_flight(
            |st| !st.unpersisted,
            |session| Box::pin(async move { session.sync_keeping_issued().await }),
        )
        .await
    }

    /// Ends a code exchange's hold on the fleet lease (see
    /// [`crate::code_exchange::holds_lease`]) as the session's flight: a
    /// flight running now (a refresh under the same lease) ends first, and
    /// none starts meanwhile. Given back, or kept while the exchange's
    /// record is unsaved ([`crate::fleet::keep_or_release_lease`]).
    pub(crate) async fn end_code_lease(&self) {
        let release = |session: Attached| -> BoxFuture<'static, Result<(), Error>> {
            Box::pin(async move {
                crate::fleet::keep_or_release_lease(&session).await;
                Ok(())
            })
        };
        let _ = self.saving_flight(|_| false, release).await;
    }

    /// One background try of [`crate::fleet::keep_stranded`], as the
    /// session's flight (no other flight of this process then holds the
    /// lease): renews the lease, saves the pending record if it still is,
    /// and releases the lease once the record is saved and no abandoned save
    /// of the key can still land. `may_defer`: a renewal answered late may
    /// leave the save to the next try (see [`crate::fleet::too_late_to_save`]).
    pub(crate) async fn save_stranded(&self, may_defer: bool) -> StrandedTry {
        use std::sync::{Mutex, PoisonError};
        let tried = Arc::new(Mutex::new(StrandedTry {
            end: TryEnd::Again,
            seen: 0,
        }));
        let noted = tried.clone();
        let _ = self
            .saving_flight(
                |_| false,
                move |session| {
                    let noted = noted.clone();
                    Box::pin(async move {
                        let seen = session.cell.lock().strandings;
                        let ended = session.renew_and_save(may_defer).await;
                        let end = *ended.as_ref().unwrap_or(&TryEnd::Again);
                        *noted.lock().unwrap_or_else(PoisonError::into_inner) =
                            StrandedTry { end, seen };
                        ended.map(drop)
                    })
                },
            )
            .await;
        let tried = *tried.lock().unwrap_or_else(PoisonError::into_inner);
        tried
    }

    /// Runs `body` as the session's flight, marked saving-only (callers who
    /// join it go on as new calls once it ends), as soon as no other flight
    /// runs: a running one is waited for first. Does nothing once `done`,
    /// checked under the state's lock before each start, says so. The
    /// outcome of `body`'s own flight (`Ok` if it never started).
    async fn saving_flight(
        &self,
        done: impl Fn(&SessionState) -> bool,
        body: impl Fn(Attached) -> BoxFuture<'static, Result<(), Error>>,
    ) -> Result<(), Error> {
        loop {
            let (flight, mine) = {
                let mut st = self.cell.lock();
                if done(&st) {
                    return Ok(());
                }
                match &st.inflight {
                    Some(flight) => (flight.clone(), false),
                    None => {
                        let run = body(self.clone());
                        let saved = async move { run.await.map(|()| info_of(&Record::default())) };
                        let flight = self.start_flight(&mut st, Box::pin(saved));
                        st.saving_only = true;
                        (flight, true)
                    }
                }
            };
            let result = flight.await;
            if mine {
                return result.map(drop);
            }
        }
    }

    /// The body of [`Attached::save_stranded`]'s flight; a storage error:
    /// try again.
    async fn renew_and_save(&self, may_defer: bool) -> Result<TryEnd, Error> {
        let clock = self.ctx.clock.as_ref();
        let renewing_from = crate::elapsed::Started::now(clock);
        // An acquire by the holding owner extends the lease.
        if !self.acquire().await? {
            if self.cell.lock().unpersisted {
                log::warn!(
                    "freshtoken: session {}: the refresh lease lapsed before the rotated \
                     record could be saved, and another process holds it",
                    self.ctx.logged_key(&self.key)
                );
            }
            return Ok(TryEnd::Done);
        }
        // Saved by this try or by a later call's flight (which does not
        // release: its plan served the token), or a conflict (another
        // process saved the key; the next call reads that record).
        let pending = self.cell.lock().unpersisted;
        let renewing = renewing_from.elapsed_ms(clock);
        if pending && may_defer && crate::fleet::too_late_to_save(&self.ctx.config, renewing) {
            return Ok(TryEnd::Deferred);
        }
        let saved = match self.kept_issued() {
            // A code exchange's record (a re-link): a sign-out stored since
            // (the lease may have lapsed between two tries) wins over it.
            Some((_, record)) if pending => match self.signed_out_since(&record, true).await {
                Some(error) => Err(error),
                None => self.sync_renewing(false).await,
            },
            _ if pending => self.sync_renewing(false).await,
            _ => Ok(()),
        };
        if self.cell.lock().unpersisted {
            return saved.map(|()| TryEnd::Again);
        }
        // An earlier save of the rotated record abandoned at its deadline
        // may still land in the host: a process that took the lease before
        // then could rotate, and that late write would put the spent token
        // back. The lease is kept (renewed at each try) until it has ended
        // or been given up.
        let now = crate::elapsed::Started::now(self.ctx.clock.as_ref());
        if self.abandoned_save_pending(now) {
            return Ok(TryEnd::Again);
        }
        crate::fleet::release_lease(self).await;
        Ok(TryEnd::Done)
    }

    /// A new shared flight, registered in `st`. It clears itself from the
    /// state when it ends, so a failure never leaves the session stuck; with
    /// a spawner it runs as a task of its own, so callers that stop waiting
    /// never stop it.
    fn start(&self, st: &mut SessionState, force: bool, asked_at: u64) -> Flight {
        let session = self.clone();
        self.start_flight(
            st,
            Box::pin(async move { session.fly(force, asked_at).await }),
        )
    }

    /// Registers `body` as the session's one flight (see [`Attached::start`]).
    pub(crate) fn start_flight(
        &self,
        st: &mut SessionState,
        body: BoxFuture<'static, Result<TokenInfo, Error>>,
    ) -> Flight {
        let cell = self.cell.clone();
        let fut: BoxFuture<'static, Result<TokenInfo, Error>> = Box::pin(async move {
            // Cleared however the flight ends, even by a panic in a host
            // callback, so the next call always starts a new attempt.
            let _landed = Landed(cell);
            body.await
        });
        let flight = crate::spawn::detached(self.ctx.spawn.as_ref(), fut);
        st.inflight = Some(flight.clone());
        st.started_by = crate::started_by::StartedBy::this();
        st.saving_only = false;
        flight
    }
}

/// What one background try of [`crate::fleet::keep_stranded`] left.
#[derive(Clone, Copy)]
pub(crate) struct StrandedTry {
    /// How the try ended.
    pub end: TryEnd,
    /// The session's count of stranded rotations as the try began.
    pub seen: u64,
}

/// How a background try of [`crate::fleet::keep_stranded`] ended.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryEnd {
    /// Nothing is left to keep: the lease is released, or another process
    /// took it after it lapsed.
    Done,
    /// Try again: the save failed, or an abandoned save may still land.
    Again,
    /// The lease was renewed, and the save left to the next try.
    Deferred,
}

/// `f` of the record in `st` when the cached path may serve its token at
/// `now`. The clock is read before `st` is locked: a host clock that calls
/// back into the session (a contrived one) must not find it locked.
pub(crate) fn serve<T>(
    st: &SessionState,
    ctx: &Context,
    now: u64,
    f: impl FnOnce(&Record, &AccessToken, u64) -> T,
) -> Option<T> {
    if !st.loaded || st.unpersisted {
        return None;
    }
    let rec = st.record.as_ref()?;
    let at = rec.access_token.as_ref()?;
    if verdict(rec).is_some() || !at.is_fresh(now, ctx.config.leeway_ms) || st.is_rejected(at) {
        return None;
    }
    Some(f(rec, at, st.generation))
}

/// Whether `error` is a compare-and-swap `conflict`: the save found a record
/// another process saved, and the session reads that one next.
fn is_conflict(error: &Error) -> bool {
    matches!(error, Error::Conflict { .. })
}

/// The message of `error` without its code's prefix, to quote in another.
fn plain(error: &Error) -> String {
    match error {
        Error::Storage { message } | Error::Conflict { message } => message.clone(),
        other => other.to_string(),
    }
}

/// The name of `record`'s longest seeded member (for a seed too large).
fn largest_member(record: &Record) -> &'static str {
    let length = |text: Option<&str>| text.map_or(0, str::len);
    [
        (
            "refresh_token",
            length(record.refresh_token.as_ref().map(|t| t.expose())),
        ),
        (
            "access_token",
            length(record.access_token.as_ref().map(|a| a.value.expose())),
        ),
        (
            "id_token",
            length(record.id_token.as_ref().map(|t| t.expose())),
        ),
        ("scope", length(record.scope.as_deref())),
    ]
    .into_iter()
    .max_by_key(|(_, len)| *len)
    .map_or("refresh_token", |(name, _)| name)
}

/// How many times a code exchange's tokens are saved when other processes'
/// saves keep moving the version on between its read and its save. Each
/// such save is a whole store round trip of another process; three in a
/// row means the key is contended beyond a re-link's reach: the caller
/// gets `storage`, and the tokens wait in memory for the next call's save.
const ISSUED_SAVE_TRIES: u32 = 3;

/// What [`Attached::replace`] does next.
enum Step {
    /// Wait for the session's running flight.
    Wait(Flight),
    /// Wait for an abandoned save of the key.
    Abandoned,
    /// Read the stored version, nothing running at this generation.
    Read(u64),
}
