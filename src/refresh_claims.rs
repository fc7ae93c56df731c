//! One refresh per refresh token in the whole process (DESIGN point 2),
//! whichever client or session key holds the token.
//!
//! A session's flight is single per key within one client. Two clients
//! made with the same configuration (one per request, one per module), or
//! two keys seeded with the same token, keep separate states: each would
//! send the token, and the second use of a single-use refresh token makes
//! the server revoke the whole grant (RFC 6819 §5.2.2.3), a re-link for
//! the user. So a flight claims its refresh token here before writing
//! ahead. A flight that finds the token claimed waits for that flight to
//! end and reads its store again: on a shared store it finds the rotated
//! record. That a claim rotated its token is kept for [`REMEMBERED_MS`]
//! after the rotation, on the claiming client's clock for that client and
//! in real time for every other: a flight that read its store
//! before the rotation was saved reads it again, and one whose store still
//! holds the spent token then sends nothing (`conflict`). While the state
//! that rotated holds the rotation unsaved (its save failed), the rotation
//! is remembered however long that lasts, and for [`REMEMBERED_MS`] after
//! the save: until then the store still holds the spent token, and another
//! client of the process reading it would send it. A revocation claims the token it revokes too
//! (`revoke.rs`): a flight that read the store before the revoked mark was
//! saved waits for it, reads again and finds the session dead; once the
//! revocation ended, the token counts as rotated. The rotated record
//! itself is never handed to another state: a spent token replayed into
//! this process (say, from a leaked copy) must meet the server's reuse
//! detection, not get the newest tokens.

use crate::code_exchange::digest;
use crate::exchange::Context;
use crate::maybe_send::BoxFuture;
use crate::secret::Secret;
use crate::session_state::{Flight, SessionCell};
use crate::started_by::StartedBy;
use crate::tokens::TokenInfo;
use crate::Error;
use futures_util::future::WeakShared;

/// How long it is kept that a token was rotated.
const REMEMBERED_MS: u64 = 10 * 60 * 1000;
/// How many claims are kept before the ended ones are pruned.
const PRUNE_AT: usize = 1024;
/// How many claims hold a rotation unsaved: while none does, a save need
/// not look through the list.
static UNSAVED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A claim on one refresh token: running, or ended with a rotation.
struct Spend {
    /// The keyed hash of token endpoint, client id and refresh token.
    token: u64,
    /// Tells this claim's entry from a later one for the same token.
    serial: u64,
    /// When it was claimed, on the clock of the claiming client; once it
    /// ended with a rotation, when it ended (remembered from then).
    at_ms: u64,
    /// The same instant on the platform's monotonic clock.
    at_real_ms: u64,
    /// That clock: a look through it counts [`REMEMBERED_MS`] from `at_ms`
    /// (as a test's fake clock drives it); a look through any other counts
    /// real time from `at_real_ms`, as another client's clock may read
    /// hours ahead (a fake one, a host clock set by the app).
    clock: std::sync::Weak<dyn crate::clock::Clock>,
    /// The process whose flight it is (see [`crate::started_by`]).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    by: StartedBy,
    /// The flight sending the token, while it runs (`None`: it ended and
    /// rotated the token). Weak: a claim never keeps a flight alive; a
    /// flight dropped unfinished drops its claim.
    running: Option<WeakShared<BoxFuture<'static, Result<TokenInfo, Error>>>>,
    /// The state that rotated the token, while it holds the rotation unsaved.
    unsaved_in: Option<std::sync::Weak<SessionCell>>,
}

/// The process's claims (`Shared` futures are `Send` natively only). A
/// list, not a map: it holds the refreshes running now and at most
/// [`PRUNE_AT`] ended ones, and a scan of it costs less than the map's
/// code in the wasm.
#[cfg(not(target_arch = "wasm32"))]
fn claims<T>(f: impl FnOnce(&mut Vec<Spend>) -> T) -> T {
    static LIST: std::sync::Mutex<Vec<Spend>> = std::sync::Mutex::new(Vec::new());
    f(&mut LIST.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// The process's claims (one thread in wasm).
#[cfg(target_arch = "wasm32")]
fn claims<T>(f: impl FnOnce(&mut Vec<Spend>) -> T) -> T {
    thread_local! {
        static LIST: std::cell::RefCell<Vec<Spend>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LIST.with(|list| f(&mut list.borrow_mut()))
}

/// What a flight about to send a refresh token finds.
pub(crate) enum Claimed {
    /// The token is this flight's to send; end the claim when done.
    Mine(Claim),
    /// Another flight sends it: wait for this (polling it drives it, should
    /// nothing else), then read the store again.
    Running(Flight),
    /// Another flight of this process rotated it: read the store again,
    /// and never send it.
    Rotated,
    /// The parent process was sending it when this one was forked: read the
    /// store again, and never send it (the answer went to the parent).
    /// Not in wasm, where nothing forks (its message would cost bytes).
    #[cfg(not(target_arch = "wasm32"))]
    Forked,
}

/// This flight's claim on its refresh token. Dropped without a rotation
/// (the flight failed, or stopped), it is forgotten.
pub(crate) struct Claim {
    /// Unique in the process: the claim's entry.
    serial: u64,
    /// The claiming client's clock, read when the claim ends.
    clock: std::sync::Arc<dyn crate::clock::Clock>,
}

/// Now on `clock`, the clock of the client looking, and in real time.
struct Now<'a> {
    ms: u64,
    real_ms: u64,
    clock: &'a std::sync::Weak<dyn crate::clock::Clock>,
}

impl Now<'_> {
    /// Now, read outside the list's lock: a host clock may call back in.
    fn read(clock: &std::sync::Weak<dyn crate::clock::Clock>, ms: u64) -> Now<'_> {
        Now {
            ms,
            real_ms: crate::clock::platform_monotonic_ms(),
            clock,
        }
    }
}

impl Spend {
    /// Whether the state that rotated the token still lives and holds the
    /// rotation unsaved.
    fn held_unsaved(&self) -> bool {
        self.unsaved_in
            .as_ref()
            .is_some_and(|cell| cell.strong_count() > 0)
    }

    /// Whether its rotation is still remembered, looked at `now`.
    fn remembered(&self, now: &Now) -> bool {
        if self.held_unsaved() {
            return true;
        }
        let elapsed = if self.clock.ptr_eq(now.clock) {
            now.ms.saturating_sub(self.at_ms)
        } else {
            now.real_ms.saturating_sub(self.at_real_ms)
        };
        elapsed < REMEMBERED_MS
    }
}

/// What other flights do or did with `token`: `None` when nothing is known.
fn look(list: &[Spend], token: u64, now: &Now) -> Option<Claimed> {
    let spend = list.iter().find(|s| s.token == token)?;
    #[cfg(not(target_arch = "wasm32"))]
    if spend.running.is_some() && spend.by.elsewhere() {
        return Some(Claimed::Forked);
    }
    match &spend.running {
        Some(running) => running.upgrade().map(Claimed::Running),
        None => spend.remembered(now).then_some(Claimed::Rotated),
    }
}

/// The key of `refresh_token` for the client of `ctx`.
fn key_of(ctx: &Context, refresh_token: &Secret) -> u64 {
    digest(&[
        &ctx.config.token_endpoint,
        &ctx.config.client_id,
        refresh_token.expose(),
    ])
}

/// Claims `refresh_token` for `flight`, the caller's own running flight.
pub(crate) fn claim(ctx: &Context, refresh_token: &Secret, flight: &Flight) -> Claimed {
    let token = key_of(ctx, refresh_token);
    let clock = std::sync::Arc::downgrade(&ctx.clock);
    let now = Now::read(&clock, ctx.clock.now_ms());
    claims(|list| {
        if let Some(found) = look(list, token, &now) {
            return found;
        }
        list.retain(|s| s.token != token);
        prune(list, &now);
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        list.push(Spend {
            token,
            serial,
            at_ms: now.ms,
            at_real_ms: now.real_ms,
            clock: clock.clone(),
            by: StartedBy::this(),
            running: flight.downgrade(),
            unsaved_in: None,
        });
        Claimed::Mine(Claim {
            serial,
            clock: ctx.clock.clone(),
        })
    })
}

/// Makes room in a full list: rotations no longer remembered go, then, if
/// it is still full, the oldest ended claims (the list is in claim order)
/// down to half of [`PRUNE_AT`]. Running claims always stay: a wipe of
/// every ended claim would forget a rotation made a moment ago, and a
/// store still holding that token would send it.
fn prune(list: &mut Vec<Spend>, now: &Now) {
    if list.len() < PRUNE_AT {
        return;
    }
    list.retain(|s| s.running.is_some() || s.remembered(now));
    let mut excess = list.len().saturating_sub(PRUNE_AT / 2);
    if list.len() >= PRUNE_AT {
        list.retain(|s| {
            let evicted = excess > 0 && s.running.is_none() && !s.held_unsaved();
            excess -= usize::from(evicted);
            !evicted
        });
    }
}

impl Claim {
    /// Ends the claim: when its flight rotated the token, that is kept,
    /// from now and last in the list (the newest rotation, pruned last);
    /// otherwise it is forgotten. `unsaved_in`: the state holding the
    /// rotation, when its save failed (see [`saved`]).
    pub(crate) fn end(self, rotated: bool, unsaved_in: Option<std::sync::Weak<SessionCell>>) {
        if rotated {
            // Read before the list's lock: a host clock may call back in.
            let (ended_ms, ended_real_ms) =
                (self.clock.now_ms(), crate::clock::platform_monotonic_ms());
            claims(|list| {
                if let Some(i) = list.iter().position(|s| s.serial == self.serial) {
                    let mut spend = list.remove(i);
                    spend.running = None;
                    spend.at_ms = ended_ms;
                    spend.at_real_ms = ended_real_ms;
                    if unsaved_in.is_some() {
                        UNSAVED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    spend.unsaved_in = unsaved_in;
                    list.push(spend);
                }
            });
        }
    }
}

/// `cell`'s record is saved (or another one replaced it there): a
/// rotation it held unsaved is remembered for [`REMEMBERED_MS`] from now,
/// on `clock` (the state's client's), and in real time.
pub(crate) fn saved(cell: &std::sync::Arc<SessionCell>, clock: &dyn crate::clock::Clock) {
    use std::sync::atomic::Ordering::SeqCst;
    if UNSAVED.load(SeqCst) == 0 {
        return;
    }
    // Read before the list's lock: a host clock may call back in.
    let (now_ms, real_ms) = (clock.now_ms(), crate::clock::platform_monotonic_ms());
    let cell = std::sync::Arc::downgrade(cell);
    claims(|list| {
        for spend in list.iter_mut() {
            if spend.unsaved_in.as_ref().is_some_and(|c| c.ptr_eq(&cell)) {
                spend.unsaved_in = None;
                spend.at_ms = now_ms;
                spend.at_real_ms = real_ms;
                UNSAVED.fetch_sub(1, SeqCst);
            }
        }
    });
}

impl Drop for Spend {
    fn drop(&mut self) {
        if self.unsaved_in.is_some() {
            UNSAVED.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        claims(|list| list.retain(|s| s.serial != self.serial || s.running.is_none()));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use futures_util::future::FutureExt;
    use std::sync::Arc;

    fn running(by: StartedBy) -> (Flight, Spend) {
        let body: BoxFuture<'static, Result<TokenInfo, Error>> =
            Box::pin(futures_util::future::pending());
        let flight = body.shared();
        let spend = Spend {
            token: 7,
            serial: 1,
            at_ms: 0,
            at_real_ms: 0,
            clock: no_clock(),
            by,
            running: flight.downgrade(),
            unsaved_in: None,
        };
        (flight, spend)
    }

    fn no_clock() -> std::sync::Weak<dyn crate::clock::Clock> {
        std::sync::Weak::<crate::clock::SystemClock>::new()
    }

    /// Two clients' clocks: each client has its own (the system clock too).
    fn two_clocks() -> (Arc<dyn crate::clock::Clock>, Arc<dyn crate::clock::Clock>) {
        (
            Arc::new(crate::clock::SystemClock),
            Arc::new(crate::clock::SystemClock),
        )
    }

    /// Now at `ms` on `clock`, at 0 in real time.
    fn at(ms: u64, clock: &std::sync::Weak<dyn crate::clock::Clock>) -> Now<'_> {
        Now {
            ms,
            real_ms: 0,
            clock,
        }
    }

    #[test]
    fn a_rotation_is_forgotten_by_its_own_clock_and_by_real_time_for_any_other() {
        let ended = |clock| Spend {
            token: 7,
            serial: 1,
            at_ms: 0,
            at_real_ms: 0,
            clock,
            by: StartedBy::this(),
            running: None,
            unsaved_in: None,
        };
        let (own, other) = two_clocks();
        let (own_w, other_w) = (Arc::downgrade(&own), Arc::downgrade(&other));
        let later = REMEMBERED_MS;
        let spend = [ended(own_w.clone())];
        assert!(matches!(
            look(&spend, 7, &at(later - 1, &own_w)),
            Some(Claimed::Rotated)
        ));
        assert!(look(&spend, 7, &at(later, &own_w)).is_none());
        // Another client's clock reading an hour later: real time counts.
        assert!(matches!(
            look(&spend, 7, &at(later * 6, &other_w)),
            Some(Claimed::Rotated)
        ));
        let real_later = Now {
            ms: 0,
            real_ms: later,
            clock: &other_w,
        };
        assert!(look(&spend, 7, &real_later).is_none());
        drop((own, other));
    }

    #[test]
    fn a_full_list_drops_its_oldest_ended_claims_first_never_a_running_one() {
        let (own, other) = two_clocks();
        let (own_w, other_w) = (Arc::downgrade(&own), Arc::downgrade(&other));
        let (flight, mut first) = running(StartedBy::this());
        first.token = 1_000_000;
        // Another client's rotations, still remembered in real time.
        let mut list: Vec<Spend> = (0..PRUNE_AT as u64 - 2)
            .map(|token| Spend {
                token,
                serial: token,
                at_ms: 0,
                at_real_ms: 0,
                clock: other_w.clone(),
                by: StartedBy::this(),
                running: None,
                unsaved_in: None,
            })
            .collect();
        list.insert(0, first);
        // This client's rotation a moment ago, last in claim order.
        list.push(Spend {
            token: 2_000_000,
            serial: 2_000_000,
            at_ms: 5,
            at_real_ms: 0,
            clock: own_w.clone(),
            by: StartedBy::this(),
            running: None,
            unsaved_in: None,
        });
        prune(&mut list, &at(10, &own_w));
        assert_eq!(list.len(), PRUNE_AT / 2);
        assert!(matches!(
            look(&list, 1_000_000, &at(10, &own_w)),
            Some(Claimed::Running(_))
        ));
        assert!(matches!(
            look(&list, 2_000_000, &at(10, &own_w)),
            Some(Claimed::Rotated)
        ));
        assert!(look(&list, 0, &at(10, &own_w)).is_none(), "the oldest went");
        drop(flight);
    }

    /// Puts `flight`'s claim on `token` (also its serial) in the process's
    /// list, claimed at 0 on the clock `weak`.
    fn push_running(token: u64, weak: &std::sync::Weak<dyn crate::clock::Clock>, flight: &Flight) {
        claims(|list| {
            list.push(Spend {
                token,
                serial: token,
                at_ms: 0,
                at_real_ms: 0,
                clock: weak.clone(),
                by: StartedBy::this(),
                running: flight.downgrade(),
                unsaved_in: None,
            })
        });
    }

    #[test]
    fn a_rotation_is_remembered_from_when_it_ended() {
        let clock = std::sync::Arc::new(crate::ManualClock::new(0));
        let shared: std::sync::Arc<dyn crate::clock::Clock> = clock.clone();
        let weak = std::sync::Arc::downgrade(&shared);
        let (flight, _) = running(StartedBy::this());
        let (token, serial) = (u64::MAX - 7, u64::MAX - 7);
        push_running(token, &weak, &flight);
        clock.advance(REMEMBERED_MS); // a flight that ran for ten minutes
        Claim {
            serial,
            clock: shared.clone(),
        }
        .end(true, None);
        let later = at(2 * REMEMBERED_MS - 1, &weak);
        let rotated = claims(|list| matches!(look(list, token, &later), Some(Claimed::Rotated)));
        claims(|list| list.retain(|s| s.serial != serial));
        assert!(rotated, "remembered for ten minutes after it ended");
    }

    #[test]
    fn a_rotation_held_unsaved_is_remembered_until_ten_minutes_after_its_save() {
        let clock = Arc::new(crate::ManualClock::new(0));
        let shared: Arc<dyn crate::clock::Clock> = clock.clone();
        let weak = Arc::downgrade(&shared);
        let cell = Arc::new(SessionCell::default());
        let (token, serial) = (u64::MAX - 9, u64::MAX - 9);
        let (flight, _) = running(StartedBy::this());
        push_running(token, &weak, &flight);
        Claim {
            serial,
            clock: shared.clone(),
        }
        .end(true, Some(Arc::downgrade(&cell)));
        let rotated = |ms| {
            let now = at(ms, &weak);
            claims(|list| matches!(look(list, token, &now), Some(Claimed::Rotated)))
        };
        let day = 24 * 60 * 60 * 1000;
        assert!(rotated(day), "remembered while held unsaved");
        clock.set(day);
        saved(&cell, shared.as_ref());
        assert!(
            rotated(day + REMEMBERED_MS - 1),
            "ten minutes from the save"
        );
        assert!(!rotated(day + REMEMBERED_MS));
        claims(|list| list.retain(|s| s.serial != serial));
    }

    #[test]
    fn a_token_the_parent_was_sending_at_the_fork_is_never_waited_for_nor_sent() {
        let clock = no_clock();
        // This process's running flight is waited for; the parent's (copied
        // into a forked child, where nothing drives it) is not.
        let (_mine, spend) = running(StartedBy::this());
        assert!(matches!(
            look(&[spend], 7, &at(0, &clock)),
            Some(Claimed::Running(_))
        ));
        let (_parents, spend) = running(StartedBy::other());
        assert!(matches!(
            look(&[spend], 7, &at(0, &clock)),
            Some(Claimed::Forked)
        ));
        // However long ago: the child never sends it.
        let (_parents, spend) = running(StartedBy::other());
        assert!(matches!(
            look(&[spend], 7, &at(REMEMBERED_MS * 10, &clock)),
            Some(Claimed::Forked)
        ));
    }
}
