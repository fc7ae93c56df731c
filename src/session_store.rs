//! The session's calls into the host's store. Each is bounded by the store
//! deadline (DESIGN point 15) and each failure message is scrubbed of every
//! token and secret the session knows (DESIGN point 16); on top of them,
//! `sync` (save what is pending, else re-read) and `persist`.

use crate::attached::Attached;
use crate::deadline::{no_timer_text, within, Abandoned};
use crate::elapsed::Started;
use crate::error::Error;
use crate::grant::client_secret_spellings;
use crate::maybe_send::BoxFuture;
use crate::secret::{scrub_secrets, Secret};
use crate::store::{CasOutcome, Record, StoreError, Versioned};
use futures_util::future::FutureExt;
use std::future::Future;
use std::sync::Arc;

/// What [`Attached::load_with_version`] read: the stored record (an error
/// when the stored text is not one) and the version, as
/// [`Attached::stored_version`] tells it.
pub(crate) type LoadedWithVersion = (Result<Option<Arc<Record>>, Error>, Option<Option<String>>);

impl Attached {
    /// Runs the store call `op`, bounded by the store deadline; its error
    /// message scrubbed.
    async fn store_call<T>(
        &self,
        op: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, Error> {
        self.store_answer(call)
            .await
            .unwrap_or_else(|abandoned| Err(self.abandoned(op, abandoned)))
    }

    /// `call`'s answer within the store deadline (an error message
    /// scrubbed), or `Err` when the deadline gave up on it: the host may
    /// still carry it out.
    async fn store_answer<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<Result<T, Error>, Abandoned> {
        let ms = self.ctx.config.store_timeout_ms;
        let answer = within(self.ctx.clock.as_ref(), ms, call).await?;
        Ok(answer.map_err(|StoreError(message)| Error::storage(self.scrubbed(&message))))
    }

    /// A plain save (no compare-and-swap: a late write would land over
    /// anything saved since), bounded by the store deadline. If the deadline
    /// gives up on it, it is kept running to its end (see
    /// [`crate::abandoned_saves`]).
    async fn save_plain(&self, text: &str) -> Result<(), Error> {
        let (store, key, record) = (self.store.clone(), self.key.clone(), text.to_owned());
        let mut call: BoxFuture<'static, Result<(), StoreError>> =
            Box::pin(async move { store.save(&key, &record).await });
        match self.store_answer(&mut call).await {
            Ok(answer) => answer,
            Err(abandoned) => {
                let end = Box::pin(call.map(drop));
                let spawn = self.ctx.spawn.as_ref();
                let now = Started::now(self.ctx.clock.as_ref());
                self.ctx
                    .abandoned_saves
                    .keep(self.key.clone(), end, spawn, now);
                Err(self.abandoned("save", abandoned))
            }
        }
    }

    /// Waits, within the store deadline, for this key's abandoned save (if
    /// any) to end. Called before anything that puts a new refresh token in
    /// the store (a refresh, a seed, a code exchange before its code is
    /// sent) or marks the session revoked: it fails, with nothing sent or
    /// replaced, while the host may still write over it.
    pub(crate) async fn abandoned_save_ended(&self) -> Result<(), Error> {
        let ms = self.ctx.config.store_timeout_ms;
        let horizon = self.abandoned_horizon_ms();
        let now = Started::now(self.ctx.clock.as_ref());
        let Some(end) = self.ctx.abandoned_saves.pending(&self.key, now, horizon) else {
            return Ok(());
        };
        match within(self.ctx.clock.as_ref(), ms, end.clone()).await {
            Ok(()) => {
                self.ctx.abandoned_saves.ended(&self.key, &end);
                Ok(())
            }
            Err(_) => Err(Error::storage(format!(
                "an earlier save of this session, abandoned at its deadline, has not ended \
                 within {ms} ms (store_timeout_ms); no new token is requested or saved until it \
                 has (or is given up, {horizon} ms after it was abandoned), so that its late \
                 write cannot replace a newer refresh token"
            ))),
        }
    }

    /// Whether an abandoned save of this key may still land at `now` (see
    /// [`Attached::abandoned_save_ended`]); no waiting, no host call.
    pub(crate) fn abandoned_save_pending(&self, now: Started) -> bool {
        let horizon = self.abandoned_horizon_ms();
        self.ctx.abandoned_saves.holds(&self.key, now, horizon)
    }

    /// Waits for this key's abandoned save to end or be given up, for a
    /// record the server already issued (which refusing would lose). Each
    /// wait is one store deadline on the timer; at most as many as the
    /// horizon holds, after which the save is given up even under a clock
    /// that stands still.
    pub(crate) async fn abandoned_save_given_up(&self) {
        let ms = self.ctx.config.store_timeout_ms;
        for _ in 0..=crate::abandoned_saves::HORIZON_FACTOR {
            let now = Started::now(self.ctx.clock.as_ref());
            let horizon = self.abandoned_horizon_ms();
            let Some(end) = self.ctx.abandoned_saves.pending(&self.key, now, horizon) else {
                return;
            };
            if within(self.ctx.clock.as_ref(), ms, end.clone())
                .await
                .is_ok()
            {
                self.ctx.abandoned_saves.ended(&self.key, &end);
                return;
            }
        }
        self.ctx.abandoned_saves.give_up(&self.key);
    }

    /// How long an abandoned save is waited for before it is given up.
    fn abandoned_horizon_ms(&self) -> u64 {
        let ms = self.ctx.config.store_timeout_ms;
        ms.saturating_mul(crate::abandoned_saves::HORIZON_FACTOR)
    }

    /// The error of the store call `op` that its deadline abandoned. Not
    /// generic, so the wasm build carries its text once, not once per kind
    /// of store call.
    fn abandoned(&self, op: &str, abandoned: Abandoned) -> Error {
        let ms = self.ctx.config.store_timeout_ms;
        Error::storage(match abandoned {
            Abandoned::Expired => {
                format!("the store's {op} did not answer within {ms} ms (store_timeout_ms)")
            }
            Abandoned::NoTimer(why) => format!(
                "the store's {op} was abandoned: {}",
                self.scrubbed(&no_timer_text(&why))
            ),
        })
    }

    /// `message` with every token of the session and the client secret removed.
    pub(crate) fn scrubbed(&self, message: &str) -> String {
        let mut secrets: Vec<Secret> = self.cell.lock().secrets();
        secrets.extend(client_secret_spellings(&self.ctx.config));
        scrub_secrets(message, &secrets)
    }

    /// The stored record and its version (stores with compare-and-swap).
    pub(crate) async fn load_versioned(&self) -> Result<Option<Versioned>, Error> {
        self.store_call("load_versioned", self.store.load_versioned(&self.key))
            .await
    }

    /// Takes the fleet refresh lease, or renews the one this state holds.
    /// Refused (another process holds it), the lease's owner name is
    /// dropped: the next try takes a new one.
    pub(crate) async fn acquire(&self) -> Result<bool, Error> {
        let ttl = self.ctx.config.lease_ttl_ms;
        let episode = *self
            .cell
            .lock()
            .lease_episode
            .get_or_insert_with(new_episode);
        let owner = self.lease_owner(episode);
        let taken = self
            .store_call("acquire", self.store.acquire(&self.key, &owner, ttl))
            .await;
        if matches!(taken, Ok(false)) {
            self.forget_episode(episode);
        }
        taken
    }

    /// Whether this state holds (or has asked for) a fleet lease.
    pub(crate) fn has_lease(&self) -> bool {
        self.cell.lock().lease_episode.is_some()
    }

    /// Gives the fleet refresh lease back. A release the store answered
    /// (done, or failed) ends the lease's owner name only once done: one
    /// that failed keeps it, so this process's next acquire renews its own
    /// lease instead of waiting for it. One abandoned at its deadline ends
    /// the name: the host may still deliver it, and it must not end a lease
    /// taken since, as it would under one owner name for good (the store
    /// only compares owners).
    pub(crate) async fn release(&self) -> Result<(), Error> {
        let Some(episode) = self.cell.lock().lease_episode else {
            return Ok(());
        };
        let owner = self.lease_owner(episode);
        let answer = self
            .store_answer(self.store.release(&self.key, &owner))
            .await;
        if !matches!(answer, Ok(Err(_))) {
            self.forget_episode(episode);
        }
        answer.unwrap_or_else(|abandoned| Err(self.abandoned("release", abandoned)))
    }

    /// Drops the lease owner name `episode`, unless another replaced it.
    fn forget_episode(&self, episode: std::num::NonZeroU64) {
        let mut st = self.cell.lock();
        if st.lease_episode == Some(episode) {
            st.lease_episode = None;
        }
    }

    /// The owner name of one lease: the client's ([`crate::TokenClient::lease_owner`])
    /// and the episode's random number. Random rather than counted, so that
    /// two copies of one process restored from a snapshot (a cloned VM, a
    /// resumed serverless snapshot) do not name their leases alike.
    fn lease_owner(&self, episode: std::num::NonZeroU64) -> String {
        format!("{}.{:x}", self.ctx.owner(), episode)
    }

    /// Saves a pending record, or else re-reads the store (another process
    /// may have rotated the token; DESIGN point 12).
    pub(crate) async fn sync(&self) -> Result<(), Error> {
        self.sync_renewing(true).await
    }

    /// [`Attached::sync`]. `renew_kept`: while this process keeps the
    /// fleet lease for a pending record ([`crate::fleet::keep_stranded`]),
    /// the lease is renewed before the record is saved. A call's save
    /// between two background tries (a store deadline) would otherwise
    /// delay the next renewal past the lease, and another process would
    /// read the in-doubt record and send the spent refresh token. Whether
    /// the renewal finds the lease still held changes nothing here: the
    /// record is the newest there is either way, and the background try
    /// tells.
    pub(crate) async fn sync_renewing(&self, renew_kept: bool) -> Result<(), Error> {
        let (pending, generation, over, kept) = {
            let st = self.cell.lock();
            let over = st.save_over == st.generation;
            (
                st.unpersisted.then(|| st.record.clone()),
                st.generation,
                over,
                st.keeping.is_some_and(|by| !by.elsewhere()),
            )
        };
        if let Some(pending) = pending {
            let Some(record) = pending else {
                return Ok(());
            };
            // Where `save_unsaved` saves it should this save fail, even
            // before it is sent (a lease renewal, a version read).
            self.cell.lock().unsaved_in = Some(self.store.clone());
            if renew_kept && kept && self.store.supports_lease() {
                self.acquire().await?;
            }
            if over {
                // A code exchange's record (`Attached::save_over`).
                if let Some(version) = self.stored_version().await? {
                    let mut st = self.cell.lock();
                    if st.generation == generation {
                        st.version = version;
                        st.version_of = None;
                    }
                }
            }
            return self.persist(generation, &record).await;
        }
        let (record, version) = self.load_current().await?;
        let ours = {
            let mut st = self.cell.lock();
            if st.generation != generation || st.unpersisted {
                return Ok(()); // changed meanwhile by this process: keep ours
            }
            let stale = st.stale_beside(record.as_deref(), st.record.as_deref());
            let Some(ours) = st.record.clone().filter(|_| stale) else {
                st.adopt(record, version);
                return Ok(());
            };
            // The store went back to a record holding the token this
            // state spent: keep ours and save it over that one (against
            // its version), before anything is sent.
            st.version_of = version.as_ref().and(record);
            st.version = version;
            st.unpersisted = true;
            st.unsaved_in = Some(self.store.clone());
            ours
        };
        self.persist(generation, &ours).await
    }

    /// The stored record, read, and its version (stores with compare-and-swap).
    pub(crate) async fn load_current(
        &self,
    ) -> Result<(Option<Arc<Record>>, Option<String>), Error> {
        let (record, version) = self.load_with_version().await?;
        Ok((record?, version.flatten()))
    }

    /// The stored record and, as [`Attached::stored_version`] tells it, its
    /// version, in one store call: what a code exchange reads before it
    /// sends its code.
    ///
    /// The outer error is the store's (the call failed); the inner one a
    /// stored text that is not a record (damaged), which the version read
    /// alongside it still tells.
    pub(crate) async fn load_with_version(&self) -> Result<LoadedWithVersion, Error> {
        if let Some(memory) = self.store.in_memory() {
            return Ok(match memory.load_shared(&self.key)? {
                Some((record, version)) => (Ok(Some(record)), Some(Some(version))),
                None => (Ok(None), Some(None)),
            });
        }
        let (stored, version) = if self.store.supports_versions() {
            match self.load_versioned().await? {
                Some(v) => (Some(v.record), Some(Some(v.version))),
                None => (None, Some(None)),
            }
        } else {
            let stored = self.store_call("load", self.store.load(&self.key)).await?;
            (stored, None)
        };
        let record = stored.as_deref().map(Record::decode).transpose();
        Ok((record.map(|r| r.map(Arc::new)), version))
    }

    /// The version of the stored record (`Some(None)`: nothing is stored),
    /// or `None` for a store without compare-and-swap.
    pub(crate) async fn stored_version(&self) -> Result<Option<Option<String>>, Error> {
        if let Some(memory) = self.store.in_memory() {
            return Ok(Some(memory.version(&self.key)?));
        }
        if !self.store.supports_versions() {
            return Ok(None);
        }
        let version = self.store.load_version(&self.key);
        // Named as the member a store without `load_version` is asked.
        Ok(Some(self.store_call("load_versioned", version).await?))
    }

    /// Saves `record` (see [`Attached::save_record`]) and emits `saved` or
    /// `save_failed`.
    pub(crate) async fn persist(&self, generation: u64, record: &Arc<Record>) -> Result<(), Error> {
        let started = self.ctx.clock.now_ms();
        let result = self.save_record(generation, record).await;
        let persisted = {
            let mut st = self.cell.lock();
            st.unsaved_in = st.unpersisted.then(|| self.store.clone());
            !st.unpersisted
        };
        if persisted {
            crate::refresh_claims::saved(&self.cell, self.ctx.clock.as_ref());
        }
        self.save_ended(started, &result);
        result
    }

    /// Saves `record`; on success the record is persisted unless it changed
    /// since. With a compare-and-swap store the save must match the version
    /// last seen; a mismatch is a `conflict` (DESIGN point 9), never an
    /// overwrite, and the stored record is read again on the next call. A
    /// [`crate::MemoryStore`] keeps the record object itself, not its text.
    async fn save_record(&self, generation: u64, record: &Arc<Record>) -> Result<(), Error> {
        let version = if let Some(memory) = self.store.in_memory() {
            let expected = self.cell.lock().version.clone();
            match memory.save_shared(&self.key, record, expected.as_deref())? {
                CasOutcome::Saved { version } => Some(version),
                CasOutcome::Conflict => return Err(self.conflicted()),
            }
        } else if self.store.supports_versions() {
            let text = record.encode();
            let expected = self.cell.lock().version.clone();
            let saved = self
                .store
                .save_versioned(&self.key, &text, expected.as_deref());
            match self.store_call("save_versioned", saved).await? {
                CasOutcome::Saved { version } => Some(version),
                CasOutcome::Conflict => Some(self.saved_after_conflict(&text, record).await?),
            }
        } else {
            self.save_plain(&record.encode()).await?;
            None
        };
        let mut st = self.cell.lock();
        if version.is_some() {
            st.version = version;
            st.version_of = Some(record.clone());
        }
        if st.generation == generation {
            st.unpersisted = false;
        }
        Ok(())
    }

    /// After a compare-and-swap save of `text` conflicted: the version the
    /// store holds it under, when our own earlier save (one that timed out)
    /// landed late; or, when the store holds exactly the record our version
    /// was given for under another spelling of it (a store whose save
    /// answers the version it saved against, or `W/"2"` where its load says
    /// `2`: nobody wrote since), the version of `text` saved once more
    /// against the version the store reads back. Dropping the record as a
    /// conflict there would lose the refresh token it holds (a rotation's).
    /// So too when the store holds a record older than `record` (see
    /// [`SessionState::stale_beside`]): another process whose lease lapsed
    /// wrote what it read before this state's rotation, and the rotated
    /// refresh token lives only in `record`. Anything else is `conflict`.
    async fn saved_after_conflict(&self, text: &str, record: &Record) -> Result<String, Error> {
        let Ok(Some(stored)) = self.load_versioned().await else {
            return Err(self.conflicted());
        };
        if stored.record == text {
            return Ok(stored.version);
        }
        let older = Record::decode(&stored.record)
            .is_ok_and(|s| self.cell.lock().stale_beside(Some(&s), Some(record)));
        let ours = self.cell.lock().version_of.clone();
        if !older && ours.is_none_or(|ours| ours.encode() != stored.record) {
            return Err(self.conflicted());
        }
        let again = self
            .store
            .save_versioned(&self.key, text, Some(stored.version.as_str()));
        match self.store_call("save_versioned", again).await? {
            CasOutcome::Saved { version } => Ok(version),
            CasOutcome::Conflict => Err(self.conflicted()),
        }
    }

    /// Drops what this process knows of the record (not saved): the next
    /// call reads the store again.
    pub(crate) fn reread_next(&self) {
        let mut st = self.cell.lock();
        st.loaded = false;
        st.unpersisted = false;
        st.unsaved_in = None;
        st.generation = crate::session_state::next_generation();
    }

    /// A compare-and-swap save found a newer record: nothing was written, and
    /// the next call reads the store again.
    fn conflicted(&self) -> Error {
        self.reread_next();
        Error::Conflict {
            message: "the stored record changed since it was read (another process \
                      or a new login saved it); it was not overwritten"
                .to_owned(),
        }
    }
}

/// A new lease episode: random (see [`Attached::lease_owner`]), else, with
/// no random source, unique in this process. Sixteen bytes drawn, folded to
/// eight: enough for the wasm build's check of a source that fills nothing.
fn new_episode() -> std::num::NonZeroU64 {
    let mut bytes = [0u8; 16];
    let random = crate::random::fill(&mut bytes).map(|()| {
        let (high, low) = bytes.split_at(8);
        let half = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        half(high) ^ half(low)
    });
    let n = random.unwrap_or_else(|()| crate::session_state::next_generation());
    std::num::NonZeroU64::new(n).unwrap_or(std::num::NonZeroU64::MIN)
}
