//! `ClientTokens`: client-credentials tokens cached per sorted scope set,
//! single-flight, re-requested when stale. They never carry a refresh token.

use crate::error::Error;
use crate::events::{Details, EventKind};
use crate::exchange::{self, Context};
use crate::grant::Grant;
use crate::maybe_send::BoxFuture;
use crate::tokens::AccessToken;
use futures_util::future::Shared;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

type Flight = Shared<BoxFuture<'static, Result<AccessToken, Error>>>;

/// How many tokens a scope set keeps to revoke later: a host calling
/// `revoke_all` again and again while the server refuses mints one more
/// each time, and each lives an hour at most. The oldest is dropped first.
const MAX_UNREVOKED: usize = 16;

#[derive(Default)]
struct Slot {
    token: Option<AccessToken>,
    inflight: Option<Flight>,
    /// Tokens whose revocation failed or was not tried after a failure:
    /// never served again, tried again by the next
    /// [`ClientTokens::revoke_all`] while they live (oldest first, at most
    /// [`MAX_UNREVOKED`]).
    unrevoked: Vec<AccessToken>,
    /// Which request is `inflight`: one that `revoke_all` took out of the
    /// slot lands nothing in it (its token is revoked, not cached).
    serial: u64,
    /// The process whose request `inflight` is (see [`crate::started_by`]).
    started_by: crate::started_by::StartedBy,
    /// A server's `Retry-After` that outlasted the request that got it: no
    /// request is sent before it (see [`crate::retry::NotBefore`]).
    not_before: Option<crate::retry::NotBefore>,
}

#[derive(Default)]
struct Cell(Mutex<Slot>);

impl Cell {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A forked child's copy of its parent's request: nothing here
        // drives it, so it is forgotten and the next call sends its own.
        if slot.inflight.is_some() && slot.started_by.elsewhere() {
            slot.inflight = None;
            slot.serial += 1;
        }
        slot
    }

    /// Whether the cell holds anything at `now_ms`: a request in flight, or
    /// a token not yet expired (served, or still to be revoked).
    fn holds_anything(&self, now_ms: u64) -> bool {
        let slot = self.lock();
        let live = |t: &AccessToken| t.expires_at_ms > now_ms;
        slot.inflight.is_some()
            || slot.token.as_ref().is_some_and(live)
            || slot.unrevoked.iter().any(live)
    }
}

/// The scope sets asked for so far, and when to next drop the ones that
/// hold nothing.
struct Cells {
    map: HashMap<String, Arc<Cell>>,
    sweep_at: usize,
}

/// The fewest scope sets at which the cache looks for ones to drop.
const MIN_SWEEP: usize = 64;

/// The client's own tokens (`client_credentials`), one per scope set.
pub struct ClientTokens {
    ctx: Arc<Context>,
    cells: Mutex<Cells>,
}

impl ClientTokens {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        ClientTokens {
            ctx,
            cells: Mutex::new(Cells {
                map: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    /// How many scope sets the cache holds: those with a live token or a
    /// request in flight, and others not dropped yet (no more than those,
    /// or 64), which a request for a new scope set drops.
    pub fn scope_sets(&self) -> usize {
        self.cells().map.len()
    }

    /// A fresh client token for `scopes` (order and duplicates do not matter):
    /// cached while fresh, otherwise one shared request.
    pub async fn token<S: AsRef<str>>(&self, scopes: &[S]) -> Result<String, Error> {
        let token = self.access_token(scopes).await?;
        Ok(token.value.expose().to_owned())
    }

    /// [`ClientTokens::token`] with when it was requested and when it
    /// expires (for a caller that caches or reports it, like the
    /// command line's `--json`).
    pub async fn access_token<S: AsRef<str>>(&self, scopes: &[S]) -> Result<AccessToken, Error> {
        let scope = scope_key(scopes)?;
        // Read before the locks, like a session's cached path (attached::serve).
        let now = self.ctx.clock.now_ms();
        let cell = self.cell(&scope, now);
        let flight = {
            let mut slot = cell.lock();
            if let Some(token) = slot
                .token
                .as_ref()
                .filter(|t| t.is_fresh(now, self.ctx.config.leeway_ms))
            {
                return Ok(token.clone());
            }
            match &slot.inflight {
                Some(flight) => flight.clone(),
                None => {
                    if let Some(refusal) = slot.not_before.and_then(|n| n.refusal(now)) {
                        return Err(refusal);
                    }
                    slot.serial += 1;
                    let flight = start(self.ctx.clone(), cell.clone(), slot.serial, scope);
                    slot.inflight = Some(flight.clone());
                    slot.started_by = crate::started_by::StartedBy::this();
                    flight
                }
            }
        };
        flight.await
    }

    /// Forgets the cached token for `scopes`, whichever it is, so the next
    /// call requests a new one. After the API rejected a token, prefer
    /// [`ClientTokens::token_rejected`]: this also forgets a replacement
    /// another caller has just fetched. A forgotten token that still lives
    /// is kept for [`ClientTokens::revoke_all`].
    pub fn invalidate<S: AsRef<str>>(&self, scopes: &[S]) -> Result<(), Error> {
        self.forget(scopes, None)
    }

    /// The API rejected `token`, a client token for `scopes`: forgets it if
    /// it is still the cached one, so the next call requests a new one.
    /// When another caller has already replaced it, nothing changes (many
    /// workers that saw one revoked token rejected cause one request, not
    /// one each). A forgotten token that still lives is kept for
    /// [`ClientTokens::revoke_all`].
    pub fn token_rejected<S: AsRef<str>>(&self, scopes: &[S], token: &str) -> Result<(), Error> {
        self.forget(scopes, Some(token))
    }

    /// Forgets the cached token of `scopes` (only if it is `rejected`, when
    /// given), keeping it to revoke while it lives.
    fn forget<S: AsRef<str>>(&self, scopes: &[S], rejected: Option<&str>) -> Result<(), Error> {
        let scope = scope_key(scopes)?;
        let Some(cell) = self.cells().map.get(&scope).cloned() else {
            return Ok(());
        };
        let mut slot = cell.lock();
        let cached = slot.token.as_ref().map(|t| t.value.expose());
        if rejected.is_some() && cached != rejected {
            return Ok(());
        }
        if let Some(token) = slot.token.take() {
            if token.expires_at_ms > self.ctx.clock.now_ms() {
                keep_unrevoked(&mut slot, token);
            }
        }
        Ok(())
    }

    /// Revokes every cached client token at the server (RFC 7009) and
    /// forgets it, after waiting for requests in flight. Every token is
    /// forgotten at once, before anything is sent, and every request in
    /// flight is left to the callers that joined it before: a call from
    /// now on gets a new one, never one about to be revoked. The revocations run to
    /// their end even if the caller stops waiting (DESIGN point 15). Every
    /// scope is tried; the first failure is returned, and a token the
    /// server may still hold is tried again by the next call.
    pub async fn revoke_all(&self) -> Result<(), Error> {
        // Nowhere to send them: a config error, and the tokens stay cached.
        self.ctx.config.revocation_endpoint()?;
        let taken: Vec<Taken> = {
            let cells = self.cells();
            // A loop, not map/collect: fewer wasm bytes.
            let mut taken = Vec::with_capacity(cells.map.len());
            for (scope, cell) in &cells.map {
                let mut slot = cell.lock();
                let cached = slot.token.take();
                // Its token goes to its callers so far, then is revoked.
                slot.serial += 1;
                let running = slot.inflight.take();
                taken.push((scope.clone(), cell.clone(), running, cached));
            }
            taken
        };
        let revoking = revoke_taken(self.ctx.clone(), taken);
        crate::spawn::detached(self.ctx.spawn.as_ref(), Box::pin(revoking)).await
    }

    fn cells(&self) -> MutexGuard<'_, Cells> {
        self.cells.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cell of `scope`, made if new. A new one may first drop the
    /// cells that hold nothing at `now_ms` (an expired token, a failed
    /// request) and that no call is using, once their number doubled since
    /// the last look: hosts that ask ever new scope sets (per tenant, per
    /// request) keep only the live ones.
    fn cell(&self, scope: &str, now_ms: u64) -> Arc<Cell> {
        let mut cells = self.cells();
        if let Some(cell) = cells.map.get(scope) {
            return cell.clone();
        }
        if cells.map.len() >= cells.sweep_at {
            cells
                .map
                .retain(|_, cell| Arc::strong_count(cell) > 1 || cell.holds_anything(now_ms));
            cells.sweep_at = cells.map.len().saturating_mul(2).max(MIN_SWEEP);
        }
        let cell = Arc::new(Cell::default());
        cells.map.insert(scope.to_owned(), cell.clone());
        cell
    }
}

/// A scope set's cell as `revoke_all` found it: its request in flight and
/// the cached token it took.
type Taken = (String, Arc<Cell>, Option<Flight>, Option<AccessToken>);

/// The body of [`ClientTokens::revoke_all`].
async fn revoke_taken(ctx: Arc<Context>, taken: Vec<Taken>) -> Result<(), Error> {
    let mut result = Ok(());
    for (scope, cell, running, cached) in taken {
        // A request in flight when the call began (never cached): its token goes too.
        let landed = match running {
            Some(flight) => flight.await.ok(),
            None => None,
        };
        let revoked = revoke_cell(&ctx, &scope, &cell, [cached, landed]).await;
        if let (Ok(()), Err(e)) = (&result, revoked) {
            result = Err(e);
        }
    }
    result
}

/// Revokes the tokens of `scope` whose revocation failed before, then
/// `taken`. After a failure the rest are not tried: they are kept to be
/// revoked by the next call, and never served again (the host was told
/// they are being revoked).
async fn revoke_cell(
    ctx: &Context,
    scope: &str,
    cell: &Cell,
    taken: [Option<AccessToken>; 2],
) -> Result<(), Error> {
    // The earlier ones first, then `taken` (pushed one by one: a chained
    // iterator held across the awaits cost wasm bytes).
    let mut tokens = std::mem::take(&mut cell.lock().unrevoked);
    let [first, second] = taken;
    if let Some(token) = first {
        tokens.push(token);
    }
    if let Some(token) = second {
        tokens.push(token);
    }
    let mut result = Ok(());
    for token in tokens {
        if token.expires_at_ms <= ctx.clock.now_ms() {
            continue;
        }
        if result.is_ok() {
            result = revoke_one(ctx, scope, &token).await;
            if result.is_ok() {
                continue;
            }
        }
        keep_unrevoked(&mut cell.lock(), token);
    }
    result
}

/// Keeps `token` to revoke later, never to serve (the oldest goes first
/// past [`MAX_UNREVOKED`]).
fn keep_unrevoked(slot: &mut Slot, token: AccessToken) {
    if slot.unrevoked.len() == MAX_UNREVOKED {
        slot.unrevoked.remove(0);
    }
    slot.unrevoked.push(token);
}

/// Revokes the live `token` of `scope`, with its event.
async fn revoke_one(ctx: &Context, scope: &str, token: &AccessToken) -> Result<(), Error> {
    let started = ctx.clock.now_ms();
    let revoked = crate::revoke::revoke_token(ctx, &token.value, "access_token", &[]).await;
    let details = Details {
        scope: Some(scope),
        duration_ms: Some(ctx.since(started)),
        error_code: revoked.as_ref().err().map(Error::code),
        ..Details::default()
    };
    ctx.emit(EventKind::Revoked, None, details);
    revoked
}

/// The request for `scope` as a shared flight that runs to its end even if
/// every caller stops waiting (DESIGN point 15): as a task of the client's
/// spawner when it has one, like a refresh. Its token is cached, and the
/// flight cleared, under one lock.
fn start(ctx: Arc<Context>, cell: Arc<Cell>, serial: u64, scope: String) -> Flight {
    let spawn = ctx.spawn.clone();
    let fut: BoxFuture<'static, Result<AccessToken, Error>> = Box::pin(async move {
        let landed = Landed(Some(cell), serial);
        let started = ctx.clock.now_ms();
        let result = request(&ctx, &scope).await;
        let wait = match &result {
            Ok(_) => None,
            Err((error, _)) => crate::retry::NotBefore::after(error, ctx.clock.now_ms()),
        };
        landed.land(result.as_ref().ok().map(|(token, _)| token.clone()), wait);
        let (kind, attempts, error_code) = match &result {
            Ok((_, attempts)) => (EventKind::ClientTokenIssued, *attempts, None),
            Err((error, attempts)) => (EventKind::ClientTokenFailed, *attempts, Some(error.code())),
        };
        let details = Details {
            scope: Some(&scope),
            duration_ms: Some(ctx.since(started)),
            attempts: Some(attempts),
            error_code,
            ..Details::default()
        };
        ctx.emit(kind, None, details);
        result.map(|(token, _)| token).map_err(|(error, _)| error)
    });
    crate::spawn::detached(spawn.as_ref(), fut)
}

/// One client-credentials request: the token, or the error, and the
/// requests it took.
async fn request(ctx: &Context, scope: &str) -> Result<(AccessToken, u32), (Error, u32)> {
    let issued = exchange::call(ctx, &Grant::ClientCredentials { scope })
        .await
        .map_err(|failure| {
            let attempts = failure.attempts;
            (failure.into_error(), attempts)
        })?;
    // Any refresh_token in the answer is dropped here, never kept.
    let token = AccessToken::new(
        issued.response.access_token,
        issued.sent_at_ms,
        issued.response.expires_in,
        ctx.config.client_token_lifetime_secs,
    );
    Ok((token, issued.attempts))
}

/// Removes the flight (request number `.1`) from its slot when it lands,
/// or when it is dropped unfinished (also on a panic); a flight that
/// `revoke_all` took out of its slot leaves the slot as it is.
struct Landed(Option<Arc<Cell>>, u64);

impl Landed {
    /// Caches `token` (if any) and clears the flight in one step, so that
    /// no caller finds neither and sends a second request; a failure's
    /// `Retry-After` is kept (`wait`), a success forgets it.
    fn land(mut self, token: Option<AccessToken>, wait: Option<crate::retry::NotBefore>) {
        self.release(token, wait);
    }

    /// Clears the flight and caches `token`, once, if the slot is still its own.
    fn release(&mut self, token: Option<AccessToken>, wait: Option<crate::retry::NotBefore>) {
        let Some(cell) = self.0.take() else { return };
        let mut slot = cell.lock();
        if slot.serial != self.1 {
            return;
        }
        if token.is_some() {
            slot.token = token;
            slot.not_before = None;
        } else if wait.is_some() {
            slot.not_before = wait;
        }
        slot.inflight = None;
    }
}

impl Drop for Landed {
    fn drop(&mut self) {
        self.release(None, None);
    }
}

/// `scope` is one scope-token of RFC 6749 §3.3: printable ASCII without
/// spaces, quotes or backslashes (`1*( %x21 / %x23-5B / %x5D-7E )`); else
/// the `config` error naming `scopes`.
pub(crate) fn check_scope(scope: &str) -> Result<(), Error> {
    let token = |b: u8| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E);
    if scope.is_empty() || !scope.bytes().all(token) {
        return Err(Error::config(
            "scopes",
            "each scope must be a non-empty word of printable ASCII without quotes or backslashes",
        ));
    }
    Ok(())
}

/// The scopes sorted, deduplicated and space-joined: the cache key and the
/// `scope` parameter.
pub(crate) fn scope_key<S: AsRef<str>>(scopes: &[S]) -> Result<String, Error> {
    let mut list: Vec<&str> = Vec::with_capacity(scopes.len());
    for scope in scopes {
        let scope = scope.as_ref();
        check_scope(scope)?;
        // Kept sorted and deduplicated as it grows (a handful of scopes):
        // no sort linked into the wasm (see registry.rs's evict_idle).
        if let Err(at) = list.binary_search(&scope) {
            list.insert(at, scope);
        }
    }
    Ok(list.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_sets_are_sorted_and_deduplicated() {
        assert_eq!(scope_key(&["b", "a", "b"]).unwrap(), "a b");
        assert_eq!(scope_key::<&str>(&[]).unwrap(), "");
        assert!(scope_key(&["a b"]).is_err());
        assert!(scope_key(&[""]).is_err());
        for outside in ["a\tb", "a\nb", "caf\u{e9}", "a\u{7f}", "\"q\"", "a\\b"] {
            let error = scope_key(&["ok", outside]).unwrap_err();
            assert!(
                matches!(&error, Error::Config { field, .. } if field == "scopes"),
                "{outside:?}: {error}"
            );
        }
    }
}
