//! What one shared flight does: re-read the store, decide, write ahead,
//! send the refresh, rotate and save — in the order that never loses a
//! refresh token (DESIGN points 3, 4, 5, 12, 13, 14).

use crate::attached::Attached;
use crate::error::{Error, ReauthReason};
use crate::exchange::{self, CallFailure, Failure, Issued};
use crate::grant::Grant;
use crate::refresh_claims::Claimed;
use crate::secret::Secret;
use crate::session_state::{info_of, SessionCell};
use crate::started_by::StartedBy;
use crate::store::Record;
use crate::tokens::{AccessToken, TokenInfo};
use std::sync::Arc;

/// What a flight must do, decided from the in-memory record.
pub(crate) enum Plan {
    /// The access token is fresh: hand it out.
    Serve(TokenInfo),
    /// The refresh token passed its sliding lifetime on this clock.
    Lapsed,
    /// Send this refresh token.
    Refresh {
        refresh_token: Secret,
        /// A request with this token was sent before and its answer lost.
        in_doubt: bool,
    },
}

/// Removes the finished flight from its session when dropped.
pub(crate) struct Landed(pub(crate) Arc<SessionCell>);

impl Drop for Landed {
    fn drop(&mut self) {
        self.0.lock().inflight = None;
    }
}

/// What a flight does with the refresh token its plan would send.
enum Step {
    /// Send it, under this claim.
    Send(crate::refresh_claims::Claim),
    /// Another flight of this process sends it: wait for that flight to
    /// end (polling it drives it, should nothing else), then read the
    /// store again and plan anew.
    Wait(crate::session_state::Flight),
    /// Another flight of this process rotated it: read the store again
    /// and plan anew.
    Reread,
}

impl Attached {
    /// The body of a flight. A refresh token is sent by one flight in the
    /// process at a time, whatever client or key holds it (see
    /// [`crate::refresh_claims`]); with a store that offers a lease, the
    /// flight also holds its key's lease, which keeps processes apart but
    /// not two keys (or two stores) holding one token.
    pub(crate) async fn fly(&self, force: bool, asked_at: u64) -> Result<TokenInfo, Error> {
        let flown_by = StartedBy::this();
        if !self.store.supports_lease() {
            return self
                .claim_and_carry_out(force, asked_at, None, flown_by)
                .await;
        }
        self.sync_keeping_issued().await?;
        if let Plan::Serve(info) = self.plan(force, asked_at)? {
            return Ok(info);
        }
        // A fleet: one process refreshes, the others wait and re-read. A
        // lapse is decided under the lease too: the holder may be renewing
        // the refresh token that this process finds just past its lifetime.
        let leased_from = crate::elapsed::Started::now(self.ctx.clock.as_ref());
        if let Some(info) = crate::fleet::take_lease(self, Some((force, asked_at))).await? {
            return Ok(info);
        }
        let result = self
            .claim_and_carry_out(force, asked_at, Some(leased_from), flown_by)
            .await;
        // A rotation whose save failed keeps the lease until it is saved.
        crate::fleet::keep_or_release_lease(self).await;
        result
    }

    /// Reads the store, plans, claims the refresh token the plan would send
    /// and carries the plan out. A flight that finds the token claimed
    /// waits for that flight to end and reads the store again; one that
    /// finds it rotated reads the store again and never sends it.
    /// `leased_from`: under the fleet lease, asked for then.
    async fn claim_and_carry_out(
        &self,
        force: bool,
        asked_at: u64,
        leased_from: Option<crate::elapsed::Started>,
        flown_by: StartedBy,
    ) -> Result<TokenInfo, Error> {
        let mut reread = false;
        loop {
            if leased_from.is_none() {
                // Without a lease (with one, `fly` has saved it already).
                self.sync_keeping_issued().await?;
            } else {
                self.sync().await?;
            }
            let plan = self.plan(force, asked_at)?;
            let claim = match &plan {
                Plan::Refresh { refresh_token, .. } => {
                    match self.claim(refresh_token, &mut reread)? {
                        Some(Step::Send(claim)) => Some((claim, refresh_token.clone())),
                        Some(Step::Wait(other)) => {
                            let _ = other.await;
                            continue;
                        }
                        Some(Step::Reread) => continue,
                        None => None,
                    }
                }
                _ => None,
            };
            let result = self.carry_out(plan, leased_from, flown_by).await;
            if let Some((claim, spent)) = claim {
                let (rotated, unsaved) = self.rotated_away_from(&spent);
                claim.end(rotated, unsaved.then(|| Arc::downgrade(&self.cell)));
                // Saved between the look and the end: not held unsaved.
                if unsaved && !self.cell.lock().unpersisted {
                    crate::refresh_claims::saved(&self.cell, self.ctx.clock.as_ref());
                }
            }
            return result;
        }
    }

    /// Claims `refresh_token` for this session's running flight (`None`:
    /// no flight runs, as in a direct call). `reread`: whether the store
    /// was read again once already for a rotation found here.
    fn claim(&self, refresh_token: &Secret, reread: &mut bool) -> Result<Option<Step>, Error> {
        let Some(own) = self.cell.lock().inflight.clone() else {
            return Ok(None);
        };
        match crate::refresh_claims::claim(&self.ctx, refresh_token, &own) {
            Claimed::Mine(claim) => Ok(Some(Step::Send(claim))),
            Claimed::Running(other) => Ok(Some(Step::Wait(other))),
            // Read before that rotation was saved: read again.
            Claimed::Rotated if !*reread => {
                *reread = true;
                Ok(Some(Step::Reread))
            }
            #[cfg(not(target_arch = "wasm32"))]
            Claimed::Forked if !*reread => {
                *reread = true;
                Ok(Some(Step::Reread))
            }
            #[cfg(not(target_arch = "wasm32"))]
            Claimed::Forked => Err(Error::Conflict {
                message: "the parent process was sending this refresh token when this \
                          process was forked, and this session's store still holds it; \
                          nothing was sent"
                    .to_owned(),
            }),
            Claimed::Rotated => Err(Error::Conflict {
                message: "another client of this process already rotated or revoked \
                          this refresh token, and this session's store still holds it; \
                          nothing was sent"
                    .to_owned(),
            }),
        }
    }

    /// Whether the flight that sent `spent` left this session with another
    /// refresh token, and whether it holds that unsaved.
    fn rotated_away_from(&self, spent: &Secret) -> (bool, bool) {
        let st = self.cell.lock();
        let rotated = st
            .record
            .as_ref()
            .and_then(|rec| rec.refresh_token.as_ref())
            .is_some_and(|t| t.expose() != spent.expose());
        (rotated, rotated && st.unpersisted)
    }

    /// What the session must do now, from its in-memory record.
    pub(crate) fn plan(&self, force: bool, asked_at: u64) -> Result<Plan, Error> {
        let now = self.ctx.clock.now_ms();
        let st = self.cell.lock();
        let rec = st
            .record
            .as_ref()
            .ok_or(Error::reauth(ReauthReason::NoRefreshToken))?;
        if let Some(reason) = crate::session_state::verdict(rec) {
            return Err(Error::reauth(reason));
        }
        let fresh = rec
            .access_token
            .as_ref()
            .is_some_and(|a| a.is_fresh(now, self.ctx.config.leeway_ms) && !st.is_rejected(a));
        if fresh && (!force || st.arrivals > asked_at) {
            return Ok(Plan::Serve(info_of(rec)));
        }
        let refresh_token = rec
            .refresh_token
            .clone()
            .ok_or(Error::reauth(ReauthReason::NoRefreshToken))?;
        if rec.refresh_lapsed(now) {
            return Ok(Plan::Lapsed);
        }
        if let Some(refusal) = st.not_before.as_ref().and_then(|n| n.refusal(now)) {
            return Err(refusal);
        }
        Ok(Plan::Refresh {
            refresh_token,
            in_doubt: rec.in_doubt,
        })
    }

    /// Serves, reports the lapsed refresh token, or writes ahead and sends.
    /// `leased_from`: under the fleet lease, asked for then.
    async fn carry_out(
        &self,
        plan: Plan,
        leased_from: Option<crate::elapsed::Started>,
        flown_by: StartedBy,
    ) -> Result<TokenInfo, Error> {
        match plan {
            Plan::Serve(info) => Ok(info),
            Plan::Lapsed => Err(self.lapsed()),
            Plan::Refresh {
                refresh_token,
                in_doubt,
            } => {
                self.abandoned_save_ended().await?;
                let leased_from = match leased_from {
                    Some(since) => Some(crate::fleet::hold_before_save(self, since).await?),
                    None => None,
                };
                // An in-doubt record is in the store already; with versions
                // it is saved again all the same. That save checks the
                // version read: a stale read (a replica behind, a cache)
                // of the marker whose token was rotated since is then a
                // `conflict`, not a send of the spent token.
                let versioned = self.store.supports_versions() && self.store.in_memory().is_none();
                if !in_doubt || versioned {
                    self.write_ahead().await?;
                }
                if let Some(since) = leased_from {
                    crate::fleet::confirm_lease(self, since).await?;
                }
                // A flight copied into a forked child and polled there by a
                // caller's future: its claim and its lease are the parent's,
                // which may be sending this very token. (Never in wasm.)
                if flown_by.elsewhere() {
                    return Err(Error::Conflict {
                        message: "this refresh was started by the parent of this forked \
                                  process; nothing was sent"
                            .to_owned(),
                    });
                }
                self.send_refresh(refresh_token, in_doubt).await
            }
        }
    }

    /// Write ahead (DESIGN point 14): the store holds the in-doubt marker
    /// before the refresh token is sent, so a crash after sending reads
    /// `lost_rotation` later, and a store that cannot write never lets the
    /// core consume a refresh token. On failure nothing is sent (should the
    /// failed save land after all, the marker only makes a later
    /// `invalid_grant` read `lost_rotation`).
    async fn write_ahead(&self) -> Result<(), Error> {
        self.mark_in_doubt(true).await
    }

    /// The request surely did nothing: withdraw the write-ahead marker.
    /// Should that save fail, memory keeps the marker the store holds, with
    /// nothing left to save: another client finding the marker may rotate
    /// the token and save that, and a withdrawal saved later would put the
    /// spent token back over it.
    async fn withdraw_marker(&self) {
        if let Err(e) = self.mark_in_doubt(false).await {
            log::warn!(
                "freshtoken: session {}: {e}",
                self.ctx.logged_key(&self.key)
            );
        }
    }

    /// Saves the record marked `in_doubt` (or not). Only a mark the store
    /// took is kept: on failure memory goes back to the mark it had, which
    /// is the store's, and nothing is left pending.
    async fn mark_in_doubt(&self, in_doubt: bool) -> Result<(), Error> {
        // The clock is read before the lock, as everywhere (see `serve`).
        let now = self.ctx.clock.now_ms();
        let (generation, saved_record, was_in_doubt) = {
            let mut st = self.cell.lock();
            let Some(mut record) = st.record.as_deref().cloned() else {
                return Ok(());
            };
            let was_in_doubt = std::mem::replace(&mut record.in_doubt, in_doubt);
            record.updated_at_ms = now;
            let (generation, saved_record) = st.set_record(record);
            (generation, saved_record, was_in_doubt)
        };
        let saved = self.persist(generation, &saved_record).await;
        if saved.is_err() {
            let mut st = self.cell.lock();
            if st.generation == generation {
                let mut record = (*saved_record).clone();
                record.in_doubt = was_in_doubt;
                st.set_record(record);
                st.unpersisted = false;
                st.unsaved_in = None;
            }
        }
        saved
    }

    /// Sends the refresh (the record already marked in doubt in the store)
    /// and settles the record by the answer. `in_doubt`: an earlier request
    /// with this token lost its answer.
    async fn send_refresh(
        &self,
        refresh_token: Secret,
        in_doubt: bool,
    ) -> Result<TokenInfo, Error> {
        let known = self.cell.lock().secrets();
        let grant = Grant::Refresh {
            refresh_token: refresh_token.expose(),
            known: &known,
        };
        let started = self.refresh_started();
        let answer = exchange::call(&self.ctx, &grant).await;
        let attempts = match &answer {
            Ok(issued) => issued.attempts,
            Err(failure) => failure.attempts,
        };
        // The server refused this refresh, and another process's record
        // serves the call instead: `refresh_failed`, not `refreshed`.
        let mut refused = false;
        let result = match answer {
            Ok(issued) => self.rotate(issued, refresh_token).await,
            Err(CallFailure {
                failure: Failure::OAuth { body, .. },
                maybe_processed,
                ..
            }) if body.error == "invalid_grant" => {
                match self.rotated_elsewhere(&refresh_token).await {
                    Some(adopted) => {
                        refused = true;
                        adopted
                    }
                    None => {
                        let reason = if in_doubt || maybe_processed {
                            ReauthReason::LostRotation
                        } else {
                            ReauthReason::InvalidGrant
                        };
                        self.kill(reason, body.description).await
                    }
                }
            }
            Err(mut failure) => {
                if let Some(rotated) = failure.salvaged.take() {
                    self.keep_rotated(rotated, &refresh_token).await;
                } else if !failure.maybe_processed && !in_doubt {
                    self.withdraw_marker().await;
                }
                let error = failure.into_error();
                let now = self.ctx.clock.now_ms();
                if let Some(wait) = crate::retry::NotBefore::after(&error, now) {
                    self.cell.lock().not_before = Some(Box::new(wait));
                }
                Err(error)
            }
        };
        self.refresh_ended(started, attempts, &result, refused);
        result
    }

    /// After `invalid_grant` for `sent`: the stored record, if another
    /// process rotated `sent` while this one sent it (a fleet whose store
    /// has no lease, or whose lease lapsed). The store then holds another
    /// refresh token in a record that is not dead, nor one this session
    /// rotated away from ([`crate::session_state::SessionState::stale_beside`]).
    /// That record is adopted, where a dead mark saved over it would end
    /// a session whose token lives (a server that refuses a reused token
    /// without revoking its family), and its access token served when
    /// fresh; else `conflict`, and the next call refreshes with it. `None`:
    /// the refusal is about the session (or the store cannot tell).
    async fn rotated_elsewhere(&self, sent: &Secret) -> Option<Result<TokenInfo, Error>> {
        let generation = self.cell.lock().generation;
        let (stored, version) = self.load_current().await.ok()?;
        let now = self.ctx.clock.now_ms(); // before the lock (see `serve`)
        let mut st = self.cell.lock();
        let record = stored.as_deref()?;
        let another = record
            .refresh_token
            .as_ref()
            .is_some_and(|t| t.expose() != sent.expose());
        if st.generation != generation
            || !another
            || record.reauth.is_some()
            || st.stale_beside(Some(record), st.record.as_deref())
        {
            return None;
        }
        log::warn!(
            "freshtoken: session {}: another process rotated the refresh token this one sent \
             (a store without a lease shared by processes?); its record is used",
            self.ctx.logged_key(&self.key)
        );
        let fresh = record
            .access_token
            .as_ref()
            .is_some_and(|a| a.is_fresh(now, self.ctx.config.leeway_ms));
        let info = info_of(record);
        st.adopt(stored.clone(), version);
        Some(if fresh {
            Ok(info)
        } else {
            Err(Error::Conflict {
                message: "another process rotated this session's refresh token while this \
                          one sent it; its record is used from the next call"
                    .to_owned(),
            })
        })
    }

    /// A successful refresh: the new record goes to memory first (so the
    /// consumed refresh token is never used again), then to the store; the
    /// caller gets the token only after the save resolved.
    async fn rotate(&self, issued: Issued, old_refresh_token: Secret) -> Result<TokenInfo, Error> {
        let Issued {
            response,
            sent_at_ms,
            ..
        } = issued;
        let config = &self.ctx.config;
        let now = self.ctx.clock.now_ms(); // before the lock (see `serve`)
        let (generation, saved_record, info) = {
            let mut st = self.cell.lock();
            let old = st.record.as_deref().cloned().unwrap_or_default();
            st.note_rotation(&old_refresh_token, response.refresh_token.as_ref());
            st.not_before = None;
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
                updated_at_ms: now,
                // Still the link that code made (a repeat of it adopts it).
                from_code: old.from_code,
            };
            let info = info_of(&record);
            let (generation, saved_record) = st.set_record(record);
            (generation, saved_record, info)
        };
        let saved = self.persist(generation, &saved_record).await;
        self.cell.lock().arrivals += 1;
        saved.map(|()| info)
    }

    /// A refresh token past its sliding lifetime on this process's clock
    /// (DESIGN point 7): `reauthorization_required` (`refresh_expired`),
    /// with nothing sent and, unlike [`Attached::kill`], nothing stored.
    /// The server said nothing; only this clock did, and a clock that ran
    /// ahead (set by hand, a broken RTC, a VM before NTP) must not kill the
    /// session in every process for good. Each process judges the lapse
    /// from the record's `refresh_expires_at` on its own clock, at every
    /// call, so a corrected clock recovers. The event and the log line come
    /// once per record, as for a stored verdict: a host that prompts the
    /// user to re-link on the event must not prompt at every call.
    fn lapsed(&self) -> Error {
        let reason = ReauthReason::RefreshExpired;
        let first = {
            let mut st = self.cell.lock();
            let generation = st.generation;
            std::mem::replace(&mut st.lapse_reported, generation) != generation
        };
        if first {
            log::info!(
                "freshtoken: session {} needs reauthorization ({reason})",
                self.ctx.logged_key(&self.key)
            );
            self.reauthorization_required(reason);
        }
        Error::reauth(reason)
    }

    /// Marks the session dead (DESIGN point 13), saves that, and returns the
    /// reauthorization error.
    pub(crate) async fn kill(
        &self,
        reason: ReauthReason,
        description: Option<String>,
    ) -> Result<TokenInfo, Error> {
        log::info!(
            "freshtoken: session {} needs reauthorization ({reason})",
            self.ctx.logged_key(&self.key)
        );
        self.update(|rec| {
            rec.reauth = Some(reason);
            rec.in_doubt = false;
        })
        .await;
        self.reauthorization_required(reason);
        Err(Error::ReauthorizationRequired {
            reason,
            description,
        })
    }

    /// The server rotated but its answer was unusable: keep the new refresh
    /// token (without an access token) so the next call can use it.
    async fn keep_rotated(&self, refresh_token: Secret, spent: &Secret) {
        self.cell.lock().note_rotation(spent, Some(&refresh_token));
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

    /// Changes the record and saves it; a failed save leaves it unpersisted,
    /// to be saved before anything else on the next call.
    pub(crate) async fn update(&self, change: impl FnOnce(&mut Record)) {
        let now = self.ctx.clock.now_ms();
        let (generation, saved_record) = {
            let mut st = self.cell.lock();
            let Some(mut record) = st.record.as_deref().cloned() else {
                return;
            };
            change(&mut record);
            record.updated_at_ms = now;
            st.set_record(record)
        };
        if let Err(e) = self.persist(generation, &saved_record).await {
            log::warn!(
                "freshtoken: session {}: {e}",
                self.ctx.logged_key(&self.key)
            );
        }
    }
}
