//! Several processes, one refresh (DESIGN point 9): with a store that
//! offers a lease, a process takes it before refreshing; the others wait
//! with backoff, re-read the store, and use the record the holder saved.
//! A holder that dies delays the others by at most the lease TTL.

use crate::attached::{Attached, StrandedTry, TryEnd};
use crate::config::lease_held_ms;
use crate::elapsed::Started;
use crate::error::Error;
use crate::flight::Plan;
use crate::random::jitter;
use crate::session_state::{SessionCell, SessionState};
use crate::started_by::StartedBy;
use crate::tokens::TokenInfo;
use std::sync::Arc;

/// First and largest pause between two looks at another process's lease
/// (ms): short enough that a dead holder's expired lease is taken soon after
/// its TTL, not a second later.
const FIRST_WAIT_MS: u64 = 50;
const MAX_WAIT_MS: u64 = 250;

/// Takes the refresh lease of `session`'s key. `Ok(None)`: this process
/// holds it now. `Ok(Some(info))`: while waiting, another process saved a
/// record that serves this call (a refresh's `(force, asked_at)` given in
/// `serves`), so no lease (and no request) is needed. A wait (another
/// process held the lease) emits `lease_waited`.
pub(crate) async fn take_lease(
    session: &Attached,
    serves: Option<(bool, u64)>,
) -> Result<Option<TokenInfo>, Error> {
    let mut waiting_since = None;
    let result = wait_for_lease(session, serves, &mut waiting_since).await;
    if let Some(since) = waiting_since {
        session.lease_waited(since, &result);
    }
    result
}

/// The body of [`take_lease`]; sets `waiting_since` when the lease was
/// first found held by another process.
async fn wait_for_lease(
    session: &Attached,
    serves: Option<(bool, u64)>,
    waiting_since: &mut Option<u64>,
) -> Result<Option<TokenInfo>, Error> {
    let ctx = &session.ctx;
    let config = &ctx.config;
    let waiting = Started::now(ctx.clock.as_ref());
    // The looks are bounded too, by as many of the shortest pauses as fit
    // in the wait: under a host clock whose `sleep` returns at once and
    // whose time stands still (a fake one), the deadline never comes, and
    // the loop would ask the store for the lease forever, without yielding
    // (in JavaScript, starving the whole event loop).
    let mut looks_left = config.lease_wait_ms / FIRST_WAIT_MS + 1;
    let mut wait = FIRST_WAIT_MS;
    loop {
        // A lease this state holds already (kept for a rotation not saved
        // yet, or while an abandoned save may still land) is renewed here.
        let renewing = session.has_lease();
        match session.acquire().await {
            Ok(true) => return Ok(None),
            Ok(false) => {}
            Err(e) => {
                // A new lease whose acquire failed may have been taken all
                // the same (a host call past its deadline keeps running):
                // given back at once, it does not keep the other processes
                // waiting for its whole TTL, should the release reach the
                // store after the acquire. A renewed one stays: it guards a
                // rotation only this process holds.
                if !renewing {
                    release_lease(session).await;
                }
                return Err(e);
            }
        }
        waiting_since.get_or_insert_with(|| ctx.clock.now_ms());
        looks_left = looks_left.saturating_sub(1);
        if waiting.elapsed_ms(ctx.clock.as_ref()) >= config.lease_wait_ms || looks_left == 0 {
            return Err(Error::Conflict {
                message: format!(
                    "another process held the refresh lease for more than {} ms",
                    config.lease_wait_ms
                ),
            });
        }
        ctx.clock
            .sleep(wait + u64::from(jitter()) % (wait / 2 + 1))
            .await;
        wait = (wait * 2).min(MAX_WAIT_MS);
        let Some((force, asked_at)) = serves else {
            continue;
        };
        session.sync().await?;
        match session.plan(force, asked_at)? {
            Plan::Serve(info) => return Ok(Some(info)),
            Plan::Lapsed | Plan::Refresh { .. } => {}
        }
    }
}

/// Just before a holder sends, when the lease it asked for at `since` may
/// not outlast the request with its retries and the save of the rotated
/// record after it ([`lease_held_ms`]): renews the lease and checks that the
/// stored record is still the one it read or wrote under it (see
/// [`renewed_if_short`]). Slow store answers can outlast the lease; another
/// process may then have taken it and sent this refresh token, and sending
/// it again would revoke the family. When the TTL has room for it (the
/// default has), the lease is renewed early enough to cover one store
/// deadline more: should the rotated save fail at its deadline, the renewal
/// that keeps the lease while it is saved again ([`keep_stranded`]) may take
/// that long to land.
pub(crate) async fn confirm_lease(session: &Attached, since: Started) -> Result<(), Error> {
    let config = &session.ctx.config;
    let held = lease_held_ms(
        config.timeout_ms,
        config.retry.budget_ms,
        config.store_timeout_ms,
    );
    let with_renewal = held.saturating_add(config.store_timeout_ms);
    // A TTL too short for it gains nothing from a renewal: one per send
    // would only cost a store call.
    let want = if with_renewal < config.lease_ttl_ms {
        with_renewal
    } else {
        held
    };
    renewed_if_short(session, since, want, held).await.map(drop)
}

/// Before a holder whose store has no versions saves over the record it
/// read under the lease (a refresh's write-ahead, a revocation's dead
/// mark). Without compare-and-swap that save overwrites whatever is
/// stored: had the lease lapsed during slow store answers before it, and
/// another process rotated and saved meanwhile, a write-ahead would put the
/// spent refresh token back (and [`confirm_lease`] find nothing to tell it
/// from, so the token would be sent again: a revoked grant), a revocation
/// would revoke the spent token and leave the rotated one live. So the
/// lease is renewed and the record compared when it may not outlast the
/// save's store deadline (see [`renewed_if_short`]). Returns when the
/// lease, as now held, was asked for. A store with versions needs none of
/// this: its save is itself a compare-and-swap. Nor does a record of this
/// process not yet saved: it is the newest there is.
pub(crate) async fn hold_before_save(session: &Attached, since: Started) -> Result<Started, Error> {
    let versioned = session.store.supports_versions() || session.store.in_memory().is_some();
    if versioned || session.cell.lock().unpersisted {
        return Ok(since);
    }
    let save = session.ctx.config.store_timeout_ms;
    renewed_if_short(session, since, save, save).await
}

/// When the lease asked for at `since` may not outlast `want_ms` more:
/// renews it (an `acquire` by the holding owner extends it) and, unless
/// the renewal was answered before the lease could have lapsed, checks
/// that the stored record (its version, or, without versions, the record
/// itself) is still the one in memory, read or written under the lease.
/// Another process holding the lease, or a record it saved meanwhile, is
/// `conflict`; a renewal that took so long that the renewed lease may not
/// outlast `need_ms` (at most `want_ms`) is `storage`. Either way nothing
/// is saved or sent, and the next call reads the store again. Returns when
/// the lease, as now held, was asked for.
async fn renewed_if_short(
    session: &Attached,
    since: Started,
    want_ms: u64,
    need_ms: u64,
) -> Result<Started, Error> {
    let config = &session.ctx.config;
    let clock = session.ctx.clock.as_ref();
    if since.elapsed_ms(clock).saturating_add(want_ms) < config.lease_ttl_ms {
        return Ok(since); // still held for longer than what is left can take
    }
    // The renewed lease counts from no earlier than this.
    let renewing_from = Started::now(clock);
    if !session.acquire().await? {
        session.reread_next();
        return Err(Error::Conflict {
            message: "the refresh lease lapsed and another process holds it; nothing was sent \
                      or saved"
                .to_owned(),
        });
    }
    // A renewal answered before the lease it renews could have lapsed kept
    // it held throughout: no other process took it, so none refreshed or
    // saved under it, and there is nothing to compare (an early renewal,
    // with room left, then costs one store call, not two).
    let held_throughout = since.elapsed_ms(clock) < config.lease_ttl_ms;
    if !held_throughout && stored_record_changed(session).await? {
        session.reread_next();
        return Err(Error::Conflict {
            message: "the refresh lease lapsed and another process saved the record \
                      meanwhile; nothing was sent or saved"
                .to_owned(),
        });
    }
    let renewing = renewing_from.elapsed_ms(clock);
    if renewing.saturating_add(need_ms) >= config.lease_ttl_ms {
        return Err(Error::storage(format!(
            "renewing the refresh lease took {renewing} ms, too long for the lease ({} ms, \
             lease_ttl_ms) to outlast what is left to do under it; nothing was sent or saved",
            config.lease_ttl_ms
        )));
    }
    Ok(renewing_from)
}

/// Whether the stored record (its version, or, without versions, the
/// record itself) is no longer the one in memory.
async fn stored_record_changed(session: &Attached) -> Result<bool, Error> {
    let expected = session.cell.lock().version.clone();
    Ok(match session.stored_version().await? {
        Some(stored) => stored != expected,
        // No versions: the record itself tells.
        None => session.load_current().await?.0.as_deref() != session.cell.lock().record.as_deref(),
    })
}

/// How long a rotation whose save failed is kept trying in the background,
/// its lease renewed meanwhile (ms). Past it the lease is let lapse; the
/// record stays in memory and every later call still saves it first.
const KEEP_STRANDED_MS: u64 = 10 * 60_000;
/// First pause between two background tries of such a save (ms); it
/// doubles up to a third of the lease TTL, and is never longer than half
/// of what is left of the lease once the next renewal's store deadline is
/// counted, so the lease is renewed before it lapses.
const KEEP_FIRST_WAIT_MS: u64 = 1_000;

/// A rotation whose save failed under the lease lives only in this
/// process's memory, and the lease that keeps the other processes from
/// reading the in-doubt record and spending the refresh token it replaced
/// would lapse at its TTL: in a fleet, a user's next request usually
/// reaches another process, which would send the spent token, and a
/// rotating server then revokes the whole grant. So the save is tried
/// again in the background, the lease renewed before each try and released
/// once it lands (see [`Attached::save_stranded`]), for at most
/// [`KEEP_STRANDED_MS`]. Needs a spawner (every export has one; a
/// [`crate::TokenClient::new`] without one keeps the earlier behaviour: the
/// lease lapses at its TTL unless a later call saves the record first).
pub(crate) fn keep_stranded(session: &Attached) {
    let Some(spawn) = session.ctx.spawn.clone() else {
        return;
    };
    let mut kept = {
        // One task per session: each later call whose save fails too (a
        // forced refresh in a retry loop during a store outage) would
        // otherwise add one more loop of tries against the recovering
        // store. A running one is told instead, and keeps on for it.
        let mut st = session.cell.lock();
        st.strandings = st.strandings.wrapping_add(1);
        if st.keeping.is_some_and(|by| !by.elsewhere()) {
            return;
        }
        st.keeping = Some(StartedBy::this());
        st.strandings
    };
    let mut keeping = Keeping {
        cell: session.cell.clone(),
        by: StartedBy::this(),
        armed: true,
    };
    let session = session.clone();
    spawn.spawn(Box::pin(async move {
        let clock = session.ctx.clock.clone();
        let config = &session.ctx.config;
        let mut started = Started::now(clock.as_ref());
        let longest = (config.lease_ttl_ms / 3).max(1);
        let mut backoff = 0;
        // The pauses asked for count too: under a host clock whose `sleep`
        // returns at once and whose time stands still (a fake one), the
        // horizon would never come.
        let mut waited: u64 = 0;
        // One late renewal is often a blip, and waiting for a quicker one
        // costs a pause; a store that answers every renewal late would
        // answer the next late too, and waiting on would only keep the
        // record unsaved until the lease is given up. So a save is left to
        // the next try at most once in a row.
        let mut may_defer = true;
        loop {
            let tried_from = Started::now(clock.as_ref());
            let StrandedTry { end, seen } = session.save_stranded(may_defer).await;
            let done = end == TryEnd::Done;
            may_defer = end != TryEnd::Deferred;
            if seen != kept {
                // A later call stranded a newer rotation since the last try
                // (this one saved it, or tried): kept afresh, with ten
                // minutes of its own.
                kept = seen;
                started = tried_from;
                waited = 0;
                backoff = 0;
            }
            let late = !done && started.elapsed_ms(clock.as_ref()).max(waited) >= KEEP_STRANDED_MS;
            if done || late {
                if keeping.end_unless_stranded_since(seen) {
                    if late {
                        log::warn!(
                            "freshtoken: session {}: the rotated record is still not saved (or \
                             an earlier save of it may still land) after {} minutes; the \
                             refresh lease is let lapse (later calls still save it first)",
                            session.ctx.logged_key(&session.key),
                            KEEP_STRANDED_MS / 60_000
                        );
                    }
                    return;
                }
                // A later call stranded a newer rotation after this try
                // began: tried again at once, as the next try counts it.
                continue;
            }
            backoff = if backoff == 0 {
                KEEP_FIRST_WAIT_MS
            } else {
                backoff * 2
            }
            .min(longest);
            // The lease was renewed no earlier than `tried_from`, and the
            // next renewal may take a store deadline to land: pause no
            // longer than what is left of the lease after that.
            let spent = tried_from.elapsed_ms(clock.as_ref());
            let left = config
                .lease_ttl_ms
                .saturating_sub(spent.saturating_add(config.store_timeout_ms));
            let wait = backoff.min(left / 2);
            waited = waited.saturating_add(wait.max(1));
            clock.sleep(wait).await;
        }
    }));
}

/// Whether a background try whose renewal of the lease took `renewing_ms`
/// should leave the save for the next try: the renewed lease counts from
/// when the renewal was asked for, and the save (one store deadline) and
/// the next renewal (another) might not both land within it. Another
/// process could then take the lapsed lease and send the spent refresh
/// token. A TTL too short for two deadlines even after a quick renewal
/// saves anyway: leaving the save would only keep the record unsaved.
pub(crate) fn too_late_to_save(config: &crate::config::Config, renewing_ms: u64) -> bool {
    let two_deadlines = config.store_timeout_ms.saturating_mul(2);
    two_deadlines < config.lease_ttl_ms
        && renewing_ms.saturating_add(two_deadlines) >= config.lease_ttl_ms
}

/// A session's running background save ([`keep_stranded`]): marked as
/// ended when dropped (the task dropped unpolled, or with its runtime)
/// unless it ended itself.
struct Keeping {
    cell: Arc<SessionCell>,
    /// The mark this task set in `keeping`.
    by: StartedBy,
    armed: bool,
}

impl Keeping {
    /// Ends the task's mark, unless a later call stranded another rotation
    /// since `seen`; true if ended. Under the state's lock: a stranding
    /// either finds the mark (and is kept by this task) or starts a task.
    fn end_unless_stranded_since(&mut self, seen: u64) -> bool {
        let mut st = self.cell.lock();
        if st.strandings != seen {
            return false;
        }
        self.unmark(&mut st);
        self.armed = false;
        true
    }

    /// Clears the mark if it is still this task's: in a child forked while
    /// the parent's task ran, the child's own task replaced it, and the
    /// parent's guard, dropped there, must not clear it: a second task
    /// would then start beside the child's.
    fn unmark(&self, st: &mut SessionState) {
        if st.keeping == Some(self.by) {
            st.keeping = None;
        }
    }
}

impl Drop for Keeping {
    fn drop(&mut self) {
        if self.armed {
            self.unmark(&mut self.cell.lock());
        }
    }
}

/// Ends a flight's or a save's hold on the lease. A record left unsaved is
/// only in this process's memory until it is saved: the lease is kept, so
/// that no other process meanwhile reads the stored record and spends the
/// token it replaced, and renewed while the save is tried again in the
/// background ([`keep_stranded`]). So it is while a save abandoned at its
/// deadline (a write-ahead's) may still land: another process that
/// rotated meanwhile would find the spent token put back. Otherwise the
/// lease is given back.
pub(crate) async fn keep_or_release_lease(session: &Attached) {
    let now = crate::elapsed::Started::now(session.ctx.clock.as_ref());
    if session.cell.lock().unpersisted || session.abandoned_save_pending(now) {
        keep_stranded(session);
    } else {
        release_lease(session).await;
    }
}

/// Gives the lease back. A failure only delays the others until the lease
/// expires, so it is logged, not reported. Kept while a code exchange of
/// the state holds it (a refresh or a save that ran under it meanwhile
/// ends first): the exchange gives it back at its end (see
/// [`crate::code_exchange::holds_lease`]).
pub(crate) async fn release_lease(session: &Attached) {
    if crate::code_exchange::holds_lease(session) {
        return;
    }
    if let Err(e) = session.release().await {
        log::warn!(
            "freshtoken: session {}: releasing the lease: {e}",
            session.ctx.logged_key(&session.key)
        );
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// A guard of a task started by `by`, on a state marked by this
    /// process's task (as a forked child's own task replaces its parent's
    /// mark).
    fn marked_here(by: StartedBy) -> (Arc<SessionCell>, Keeping) {
        let cell = Arc::new(SessionCell::default());
        let keeping = Keeping {
            cell: cell.clone(),
            by,
            armed: true,
        };
        cell.lock().keeping = Some(StartedBy::this());
        (cell, keeping)
    }

    #[test]
    fn a_dropped_guard_clears_only_its_own_mark() {
        let (cell, keeping) = marked_here(StartedBy::this());
        drop(keeping);
        assert_eq!(cell.lock().keeping, None, "its own mark is cleared");

        let (cell, keeping) = marked_here(StartedBy::other());
        drop(keeping);
        assert_eq!(
            cell.lock().keeping,
            Some(StartedBy::this()),
            "the child's mark is left"
        );
    }

    #[test]
    fn an_ending_task_clears_only_its_own_mark() {
        let (cell, mut keeping) = marked_here(StartedBy::other());
        assert!(keeping.end_unless_stranded_since(0));
        drop(keeping);
        assert_eq!(cell.lock().keeping, Some(StartedBy::this()));

        let (cell, mut keeping) = marked_here(StartedBy::this());
        assert!(keeping.end_unless_stranded_since(0));
        assert_eq!(cell.lock().keeping, None);
    }
}
