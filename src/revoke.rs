//! Revoking a session (RFC 7009): when a user unlinks or leaves, the
//! session's tokens are revoked at the server and the record is marked dead
//! with reason `revoked`, in this process and, through the store, in others.

use crate::attached::Attached;
use crate::error::{Error, ReauthReason};
use crate::exchange::{self, Context, Failure};
use crate::refresh_claims::{Claim, Claimed};
use crate::secret::Secret;
use crate::store::Record;
use crate::tokens::TokenInfo;
use std::sync::{Arc, Mutex};

/// Where the revoking caller finds the revocation's own result.
type Outcome = Arc<Mutex<Option<Result<(), Error>>>>;

impl Attached {
    /// Revokes the session. Waits for a refresh in flight to settle (so the
    /// freshly rotated token is the one revoked), then runs as the
    /// session's one flight: callers that arrive meanwhile get
    /// `reauthorization_required` / `revoked`, or, when the session was not
    /// marked revoked (the store could not be read, a fleet lease was not
    /// taken), the error that stopped it.
    pub(crate) async fn revoke(&self) -> Result<(), Error> {
        // A client with nowhere to send the revocation is a config error
        // before anything changes: marked dead first, the session would
        // make the user re-link while the server, never told, holds a
        // token that no later `revoke()` could ever revoke.
        self.ctx.config.revocation_endpoint()?;
        let outcome: Outcome = Arc::default();
        let flight = loop {
            let running = {
                let mut st = self.cell.lock();
                match &st.inflight {
                    Some(flight) => flight.clone(),
                    None => {
                        let body = self.clone().revoke_flight(outcome.clone());
                        break self.start_flight(&mut st, Box::pin(body));
                    }
                }
            };
            let _ = running.await;
        };
        let _ = flight.await;
        let result = outcome.lock().unwrap_or_else(|e| e.into_inner()).take();
        result.unwrap_or(Err(Error::reauth(ReauthReason::Revoked)))
    }

    /// The revocation as the session's flight: its own result goes to
    /// `outcome`; the callers that joined it get `revoked` once the record
    /// is marked so, else the error that stopped it.
    async fn revoke_flight(self, outcome: Outcome) -> Result<TokenInfo, Error> {
        let result = self.revoke_leased().await;
        let dead = self
            .cell
            .lock()
            .record
            .as_ref()
            .is_some_and(|r| r.reauth == Some(ReauthReason::Revoked));
        let joined = match &result {
            Err(e) if !dead => Err(e.clone()),
            _ => Err(Error::reauth(ReauthReason::Revoked)),
        };
        *outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        joined
    }

    /// In a fleet, holds the refresh lease while revoking, so no other
    /// process rotates the token meanwhile.
    async fn revoke_leased(&self) -> Result<(), Error> {
        if !self.store.supports_lease() {
            return self.revoke_now(None).await;
        }
        let leased_from = crate::elapsed::Started::now(self.ctx.clock.as_ref());
        crate::fleet::take_lease(self, None).await?;
        let result = self.revoke_now(Some(leased_from)).await;
        crate::fleet::release_lease(self).await;
        result
    }

    /// Marks the record dead and saves it, then revokes the refresh token
    /// and a live access token; once the server took them, the record keeps
    /// no token at all. A record whose revocation failed keeps its tokens,
    /// so that calling `revoke()` again retries. `leased_from`: under the
    /// fleet lease, asked for then.
    async fn revoke_now(&self, leased_from: Option<crate::elapsed::Started>) -> Result<(), Error> {
        // A save still writing could land over the revoked mark and bring
        // the refresh token back: wait for it first (nothing sent otherwise).
        self.abandoned_save_ended().await?;
        // The newest record: another process may have rotated the token.
        // If the store could not be read, the record in memory may be an
        // older one: revoking it and saving it dead would overwrite, and
        // leave live at the server, the token the store holds. Nothing is
        // sent or saved then. (A record of this process still unsaved is
        // the newest there is: its failed save does not stop the revocation.)
        let pending = self.cell.lock().unpersisted;
        let (synced, claim) = self.sync_past_other_clients().await;
        if synced.is_err() && !pending {
            return synced;
        }
        if let (Some(since), Ok(())) = (leased_from, &synced) {
            crate::fleet::hold_before_save(self, since).await?;
        }
        let now = self.ctx.clock.now_ms();
        let (generation, record, refresh, access, known) = {
            let mut st = self.cell.lock();
            let Some(record) = st.record.as_deref().cloned() else {
                // Nothing stored (or the store could not be read): nothing
                // to revoke here.
                return synced;
            };
            let access = record
                .access_token
                .as_ref()
                .filter(|a| now < a.expires_at_ms)
                .map(|a| a.value.clone());
            let refresh = record.refresh_token.clone();
            if record.reauth == Some(ReauthReason::Revoked) && !revocation_pending(&record, now) {
                // Revoked before; one whose successor may be live says so again.
                return synced.and(successor_unknown(record.in_doubt));
            }
            let mut dead = record;
            // A session already dead of a lost rotation: the successor of
            // its last refresh may be live, as for a record in doubt.
            dead.in_doubt |= dead.reauth == Some(ReauthReason::LostRotation);
            dead.reauth = Some(ReauthReason::Revoked);
            // Kept: an in-doubt record's last refresh may have rotated its
            // token into one this client never received (see below).
            dead.updated_at_ms = now;
            let (generation, saved) = st.set_record(dead);
            (generation, saved, refresh, access, st.secrets())
        };
        // Dead in intent from here, whatever the store or the server
        // answers: no flight of this process sends the token again.
        let _spent = Spent(claim);
        log::info!(
            "freshtoken: session {} revoked",
            self.ctx.logged_key(&self.key)
        );
        // Dead everywhere before the server hears of it: no process sends
        // the refresh token again, whatever the server answers.
        let saved = self.persist(generation, &record).await;
        let revoked = revoke_pair(&self.ctx, refresh.as_ref(), access.as_ref(), &known).await;
        if let Err(cause) = revoked {
            let error = Error::RevocationIncomplete {
                cause: Box::new(cause),
            };
            self.revoked(now, Some(&error));
            return Err(error);
        }
        // The server took what this client holds; an in-doubt record's
        // successor may still be live there.
        let unknown = successor_unknown(record.in_doubt);
        if unknown.is_err() {
            log::warn!(
                "freshtoken: session {}: revoked, but its last refresh answer was lost: the \
                 server may hold a newer refresh token this client never received",
                self.ctx.logged_key(&self.key)
            );
        }
        self.update(|rec| {
            rec.refresh_token = None;
            rec.access_token = None;
            rec.id_token = None;
        })
        .await;
        let result = if self.cell.lock().unpersisted {
            saved.and(synced).and(Err(Error::storage(
                "the revoked record is not saved yet; it is saved on the next call",
            )))
        } else {
            // The token-less record saved: a failed save or read before it
            // is healed, but a conflict is not (another writer's record was
            // kept).
            match (saved, synced) {
                (Err(conflict @ Error::Conflict { .. }), _)
                | (_, Err(conflict @ Error::Conflict { .. })) => Err(conflict),
                _ => unknown,
            }
        };
        // After the last save, with the call's own outcome: a listener that
        // reads the store finds the token-less record, and a call that
        // failed is not counted as a revocation that went through.
        self.revoked(now, result.as_ref().err());
        result
    }

    /// Reads the store (as `sync`) and claims the refresh token read for
    /// this revocation (see [`crate::refresh_claims`]): a refresh another
    /// client or key of this process runs with it is waited for, and the
    /// store read again, as after one that rotated it meanwhile, so the
    /// token revoked is the newest the store holds; a refresh that comes
    /// later waits for this revocation, reads the store again and finds the
    /// session dead, instead of writing its older read over the revoked
    /// mark and sending the token. No claim when none could be taken.
    async fn sync_past_other_clients(&self) -> (Result<(), Error>, Option<Claim>) {
        let mut reread = false;
        loop {
            let synced = self.sync().await;
            let (token, own) = {
                let st = self.cell.lock();
                let token = st.record.as_ref().and_then(|r| r.refresh_token.clone());
                (token, st.inflight.clone())
            };
            // `own` is this revocation's flight (it runs as the session's).
            let found = match (&token, &own) {
                (Some(token), Some(own)) => {
                    Some(crate::refresh_claims::claim(&self.ctx, token, own))
                }
                _ => None,
            };
            match found {
                Some(Claimed::Mine(claim)) => return (synced, Some(claim)),
                Some(Claimed::Running(other)) => {
                    let _ = other.await;
                }
                Some(Claimed::Rotated) if !reread => reread = true,
                #[cfg(not(target_arch = "wasm32"))]
                Some(Claimed::Forked) if !reread => reread = true,
                _ => return (synced, None),
            }
        }
    }
}

/// A revocation's claim on the refresh token it marked dead: once the
/// revocation ends, however it ends, the token counts as spent in this
/// process, so that a flight that read the store before the revoked mark
/// landed reads it again and never sends the token.
struct Spent(Option<Claim>);

impl Drop for Spent {
    fn drop(&mut self) {
        if let Some(claim) = self.0.take() {
            claim.end(true, None);
        }
    }
}

/// Revokes one token. A server that does not revoke access tokens
/// (`unsupported_token_type`, RFC 7009 §2.2.1) is done with them; one that
/// will not revoke a refresh token still holds it, which is an error.
/// `known`: every token the session holds, kept out of the error's text.
/// Revokes `refresh`, then `access` (each if given; the access token only
/// once the refresh token's revocation went through), scrubbing `known`
/// from errors.
pub(crate) async fn revoke_pair(
    ctx: &Context,
    refresh: Option<&Secret>,
    access: Option<&Secret>,
    known: &[Secret],
) -> Result<(), Error> {
    if let Some(token) = refresh {
        revoke_token(ctx, token, "refresh_token", known).await?;
    }
    if let Some(token) = access {
        revoke_token(ctx, token, "access_token", known).await?;
    }
    Ok(())
}

pub(crate) async fn revoke_token(
    ctx: &Context,
    token: &Secret,
    hint: &str,
    known: &[Secret],
) -> Result<(), Error> {
    match exchange::revoke(ctx, token.expose(), hint, known).await {
        Ok(()) => Ok(()),
        Err(failure) => match &failure.failure {
            Failure::OAuth { body, .. }
                if hint == "access_token" && body.error == "unsupported_token_type" =>
            {
                Ok(())
            }
            _ => Err(failure.into_error()),
        },
    }
}

/// The outcome of revoking a record that was in doubt (`in_doubt`): its
/// last refresh lost its answer, so the server may have rotated the token
/// revoked into one this client never received, which no revocation from
/// here can reach (a server that revokes a token's whole family on
/// revocation ends it; one that does not keeps it live). Reported, never
/// a silent success: the host should end the grant at the provider.
/// `revoke()` again answers the same, sending nothing.
fn successor_unknown(in_doubt: bool) -> Result<(), Error> {
    if !in_doubt {
        return Ok(());
    }
    Err(Error::RevocationIncomplete {
        cause: Box::new(Error::reauth(ReauthReason::LostRotation)),
    })
}

/// A record that `revoke()` marked revoked still holds a token the server
/// may have: its refresh token, or an access token live at `now_ms`.
pub(crate) fn revocation_pending(record: &Record, now_ms: u64) -> bool {
    record.reauth == Some(ReauthReason::Revoked)
        && (record.refresh_token.is_some()
            || record
                .access_token
                .as_ref()
                .is_some_and(|a| now_ms < a.expires_at_ms))
}
