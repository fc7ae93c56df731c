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
//! record. A claim that rotated the token is kept for [`REMEMBERED_MS`]
//! with the record it rotated to, so that a state whose own store still
//! holds the spent token takes the newest record of that chain of
//! rotations instead of sending the token. A chain that ends in a dead or
//! revoked record is forgotten.

use crate::code_exchange::digest;
use crate::exchange::Context;
use crate::maybe_send::BoxFuture;
use crate::secret::Secret;
use crate::session_state::Flight;
use crate::store::Record;
use crate::tokens::TokenInfo;
use crate::Error;
use futures_util::future::WeakShared;
use std::sync::Arc;

/// How long a rotated token's new record is kept for states that still
/// hold the spent token.
const REMEMBERED_MS: u64 = 10 * 60 * 1000;
/// How many claims are kept before the ended ones are pruned.
const PRUNE_AT: usize = 1024;
/// The most links of a chain of rotations followed.
const MAX_LINKS: usize = 64;

/// A claim on one refresh token: running, or ended with a rotation.
struct Spend {
    /// The keyed hash of token endpoint, client id and refresh token.
    token: u64,
    /// Tells this claim's entry from a later one for the same token.
    serial: u64,
    started_ms: u64,
    /// The flight sending the token, while it runs. Weak: a claim never
    /// keeps a flight alive; a flight dropped unfinished drops its claim.
    running: Option<WeakShared<BoxFuture<'static, Result<TokenInfo, Error>>>>,
    /// The record the token was rotated to, once the flight ended, and
    /// the key of that record's refresh token (the chain's next link).
    rotated: Option<(Arc<Record>, u64)>,
}

/// The process's claims (`Shared` futures are `Send` natively only). A
/// list, not a map: it holds the refreshes running now and at most
/// [`PRUNE_AT`] ended ones, and a scan of it costs less than the map's
/// code in the wasm (2 KB gzipped).
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

/// The claim on `token` in `list`.
fn find(list: &[Spend], token: u64) -> Option<&Spend> {
    list.iter().find(|s| s.token == token)
}

/// What a flight about to send a refresh token finds.
pub(crate) enum Claimed {
    /// The token is this flight's to send; end the claim when done.
    Mine(Claim),
    /// Another flight sends it (or the token it was rotated to): wait for
    /// this (polling it drives it, should nothing else), then read the
    /// store again.
    Running(Flight),
    /// Other flights rotated it: take this newest record, send nothing.
    Rotated(Arc<Record>),
}

/// This flight's claim on its refresh token. Dropped without a rotation
/// (the flight failed, or stopped), it is forgotten.
pub(crate) struct Claim {
    /// Unique in the process: the claim's entry.
    serial: u64,
}

/// The key of `refresh_token` for the client of `ctx`.
fn key_of(ctx: &Context, refresh_token: &Secret) -> u64 {
    digest(&[
        &ctx.config.token_endpoint,
        &ctx.config.client_id,
        refresh_token.expose(),
    ])
}

/// What other flights did or do with `token` (following its chain of
/// rotations): `None` when nothing is known of it.
fn look(list: &[Spend], token: u64, now: u64) -> Option<Claimed> {
    let mut link = token;
    let mut newest = None;
    for _ in 0..MAX_LINKS {
        let Some(spend) = find(list, link) else {
            break;
        };
        if let Some(running) = spend.running.as_ref().and_then(WeakShared::upgrade) {
            return Some(Claimed::Running(running));
        }
        match &spend.rotated {
            Some((record, next)) if now.saturating_sub(spend.started_ms) < REMEMBERED_MS => {
                newest = Some(record.clone());
                link = *next;
            }
            _ => break,
        }
    }
    newest.map(Claimed::Rotated)
}

/// What another flight does or did with `refresh_token`, without claiming
/// it: `Running` or `Rotated`, or `None`.
pub(crate) fn elsewhere(ctx: &Context, refresh_token: &Secret) -> Option<Claimed> {
    let now = ctx.clock.now_ms();
    claims(|list| look(list, key_of(ctx, refresh_token), now))
}

/// Claims `refresh_token` for `flight`, the caller's own running flight.
pub(crate) fn claim(ctx: &Context, refresh_token: &Secret, flight: &Flight) -> Claimed {
    let token = key_of(ctx, refresh_token);
    let now = ctx.clock.now_ms();
    claims(|list| {
        if let Some(found) = look(list, token, now) {
            return found;
        }
        list.retain(|s| s.token != token);
        if list.len() >= PRUNE_AT {
            // Running claims stay; so do rotations still remembered, unless
            // there are too many of them too.
            list.retain(|s| {
                s.running.is_some() || now.saturating_sub(s.started_ms) < REMEMBERED_MS
            });
            if list.len() >= PRUNE_AT {
                list.retain(|s| s.running.is_some());
            }
        }
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        list.push(Spend {
            token,
            serial,
            started_ms: now,
            running: flight.downgrade(),
            rotated: None,
        });
        Claimed::Mine(Claim { serial })
    })
}

impl Claim {
    /// Ends the claim: with the record its token was rotated to, that is
    /// kept for states still holding the token; without, it is forgotten.
    pub(crate) fn end(self, ctx: &Context, rotated: Option<Arc<Record>>) {
        let Some(rotated) = rotated else {
            return; // dropped: forgotten
        };
        let Some(next) = rotated.refresh_token.as_ref().map(|t| key_of(ctx, t)) else {
            return;
        };
        claims(|list| {
            if let Some(spend) = list.iter_mut().find(|s| s.serial == self.serial) {
                spend.rotated = Some((rotated, next));
                spend.running = None;
            }
        });
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        claims(|list| list.retain(|s| s.serial != self.serial || s.running.is_none()));
    }
}

/// Forgets the chain of rotations that led to `refresh_token` (its record
/// is dead or being revoked): no state still holding one of the tokens it
/// replaced takes up that record, or one before it, again.
pub(crate) fn forget_chain_to(ctx: &Context, refresh_token: &Secret) {
    let mut link = key_of(ctx, refresh_token);
    claims(|list| {
        for _ in 0..MAX_LINKS {
            let Some(at) = list
                .iter()
                .position(|s| s.rotated.as_ref().is_some_and(|(_, next)| *next == link))
            else {
                break;
            };
            link = list.swap_remove(at).token;
        }
    });
}
