//! Redeeming an authorization code (RFC 6749 §4.1.3 with PKCE) and saving
//! the first record it brings, as one task that outlives its caller.
//!
//! A code is sent once: servers refuse its second use and revoke what the
//! first brought (RFC 6749 §4.1.2), so a callback handled twice (a reload,
//! a double submit), or twice at once, would otherwise kill the session the
//! first call saved.
//!
//! In a process, a repeat for the same session key joins the first
//! redemption or gets its outcome; one for another key, or with another
//! verifier, is refused unsent. A redemption is kept while it runs (up to
//! the longest a driven exchange takes, see [`longest_run_ms`]) and for
//! [`REMEMBERED_MS`] after it ended, unless its code surely never reached
//! the server (it may be tried again). A repeat through another client of
//! the process (another state for the key) reads what the first one saved
//! from its own store; a repeat after the save failed tries the save again.
//!
//! Across processes and past that time, the store tells: the record an
//! exchange saves carries the fingerprint of its code ([`fingerprint`], the
//! record's `from_code`), and every exchange reads the stored record before
//! it sends its code. Holding this code's fingerprint, the record is
//! adopted and nothing is sent. The fingerprint stays through the
//! record's rotations (the same link), until a seed or another code's
//! exchange replaces the record.
//!
//! Two processes handling the same code at the same moment: with a store
//! that offers the fleet lease, each exchange reads, sends and saves under
//! the key's lease ([`under_lease`]), so the second one reads the record
//! the first saved, and adopts it. Without a lease, both may read the
//! store before either has saved, and both send the code: no marker is
//! written before the code is sent, as a marker left by a process that
//! died would have to be told from one still sending.

use crate::attached::Attached;
use crate::error::Error;
use crate::exchange::{self, Context};
use crate::grant::Grant;
use crate::maybe_send::BoxFuture;
use crate::secret::Secret;
use crate::session_state::{ReadBeforeCode, Replacing, SessionCell};
use crate::started_by::StartedBy;
use crate::store::Record;
use crate::tokens::AccessToken;
use base64::Engine;
use futures_util::future::{FutureExt, Shared};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

/// How long a redeemed code's outcome is kept: the longest lifetime RFC
/// 6749 §4.1.2 recommends for a code (later, a repeat goes by the stored
/// record's fingerprint).
const REMEMBERED_MS: u64 = 10 * 60 * 1000;
/// The most finished redemptions kept.
const MAX_REMEMBERED: usize = 1024;

/// How a redemption ended.
#[derive(Clone)]
struct Outcome {
    /// Whether the code may have reached the server (kept then).
    sent: bool,
    /// What it issued, if anything.
    issued: Option<Issued>,
    /// The caller's result.
    result: Result<(), Error>,
}

impl Outcome {
    /// A redemption that sent nothing: not remembered, a repeat tries again.
    fn unsent(error: Error) -> Self {
        Outcome {
            sent: false,
            issued: None,
            result: Err(error),
        }
    }
}

/// What a redemption issued, to tell its record in a store.
#[derive(Clone, Copy)]
struct Issued {
    /// The keyed hash of the access token (none: a refresh token kept from
    /// an answer that was otherwise unusable).
    token: Option<u64>,
    /// The record's `updated_at_ms`.
    at_ms: u64,
}

/// One code's redemption in this process, running or finished.
struct Redemption {
    /// Hash of the token endpoint, client id and code.
    code: u64,
    /// Hash of the verifier and redirect URI it is redeemed with.
    with: u64,
    /// The session key it is saved under.
    key: Arc<str>,
    /// The state it is saved into (a repeat through another client of the
    /// process has its own).
    cell: std::sync::Weak<SessionCell>,
    /// When it is forgotten, on the clock of the client that redeemed it:
    /// [`REMEMBERED_MS`] after it ended, or, while it runs, after the
    /// longest a driven exchange takes too.
    forget_at_ms: u64,
    /// The same instant on the platform's monotonic clock.
    forget_at_real_ms: u64,
    /// That clock: a redemption through it compares its reading with
    /// `forget_at_ms` (as a test's fake clock drives it); one through any
    /// other compares real time with `forget_at_real_ms`, as another
    /// client's clock may read hours ahead (a fake one, a host clock).
    clock: std::sync::Weak<dyn crate::clock::Clock>,
    /// Drops the entry once it ends having issued nothing.
    serial: u64,
    /// While it holds the key's fleet lease: until when (on the monotonic
    /// clock of the client that redeemed it) the lease it took or renewed
    /// lasts; 0 otherwise (see [`holds_lease`]).
    lease_until_ms: u64,
    /// The process sending it (see [`crate::started_by`]).
    by: StartedBy,
    outcome: Shared<BoxFuture<'static, Outcome>>,
}

/// The process's redemptions (`Shared` futures are `Send` natively only).
#[cfg(not(target_arch = "wasm32"))]
fn redemptions<T>(f: impl FnOnce(&mut Vec<Redemption>) -> T) -> T {
    static LIST: std::sync::Mutex<Vec<Redemption>> = std::sync::Mutex::new(Vec::new());
    f(&mut LIST.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// The process's redemptions (one thread in wasm).
#[cfg(target_arch = "wasm32")]
fn redemptions<T>(f: impl FnOnce(&mut Vec<Redemption>) -> T) -> T {
    thread_local! {
        static LIST: std::cell::RefCell<Vec<Redemption>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LIST.with(|list| f(&mut list.borrow_mut()))
}

/// A keyed hash of `parts` (keys drawn once per process).
pub(crate) fn digest(parts: &[&str]) -> u64 {
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut hasher = KEYS.get_or_init(Default::default).build_hasher();
    for part in parts {
        part.hash(&mut hasher);
    }
    hasher.finish()
}

/// The code and the PKCE parameters it is redeemed with.
pub(crate) struct Code {
    pub(crate) code: Secret,
    pub(crate) code_verifier: Secret,
    pub(crate) redirect_uri: String,
}

/// Redeems `code` into `session` once per process (see the module docs):
/// the first call sends it, a repeat joins it or gets its outcome.
///
/// `replacing` counts the exchange as running on the session (no host
/// mirror copies its token meanwhile) until the exchange that sends the
/// code has ended: it moves into that exchange, shared by its repeats.
pub(crate) async fn redeem(
    ctx: Arc<Context>,
    session: Attached,
    code: Code,
    replacing: Replacing,
) -> Result<(), Error> {
    if !is_verifier(code.code_verifier.expose()) {
        // Conformant servers refuse it, and some drop the code first.
        return Err(Error::config(
            "code_verifier",
            "must be 43 to 128 of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.1)",
        ));
    }
    let config = &ctx.config;
    let id = digest(&[
        &config.token_endpoint,
        &config.client_id,
        code.code.expose(),
    ]);
    let with = digest(&[code.code_verifier.expose(), &code.redirect_uri]);
    let now = ctx.clock.now_ms();
    let real_now = crate::clock::platform_monotonic_ms();
    let remembered_ms = longest_run_ms(config).saturating_add(REMEMBERED_MS);
    let forget_at_ms = now.saturating_add(remembered_ms);
    let key = session.key.clone();
    let sender = session.clone();
    let own_clock = Arc::downgrade(&ctx.clock);
    let (outcome, joined) = redemptions(|list| {
        list.retain(|r| {
            if r.clock.ptr_eq(&own_clock) {
                now < r.forget_at_ms
            } else {
                real_now < r.forget_at_real_ms
            }
        });
        if let Some(r) = list.iter().find(|r| r.code == id) {
            if r.key != key || r.with != with {
                return Err(Error::config(
                    "code",
                    "is already redeemed in this process, for another session key or with another code_verifier or redirect_uri",
                ));
            }
            if r.by.elsewhere() && r.outcome.peek().is_none() {
                // Copied into a forked child, where nothing drives it: the
                // answer goes to the parent, and a second send would be
                // refused (or revoke what the first one issued).
                return Err(Error::Conflict {
                    message: "the parent process was redeeming this code when this process \
                              was forked; nothing was sent"
                        .to_owned(),
                });
            }
            let same_state = std::ptr::eq(r.cell.as_ptr(), Arc::as_ptr(&session.cell));
            return Ok((r.outcome.clone(), Some(same_state)));
        }
        if list.len() >= MAX_REMEMBERED {
            if let Some(oldest) = list.iter().position(|r| r.outcome.peek().is_some()) {
                list.remove(oldest);
            }
        }
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cell = Arc::downgrade(&session.cell);

        let body: BoxFuture<'static, Outcome> = Box::pin(async move {
            let clock = ctx.clock.clone();
            let outcome = under_lease(ctx, sender, code, serial).await;
            drop(replacing);
            let (ended, real_ended) = (clock.now_ms(), crate::clock::platform_monotonic_ms());
            redemptions(|list| match outcome.sent {
                true => list
                    .iter_mut()
                    .filter(|r| r.serial == serial)
                    .for_each(|r| {
                        r.forget_at_ms = ended.saturating_add(REMEMBERED_MS);
                        r.forget_at_real_ms = real_ended.saturating_add(REMEMBERED_MS);
                    }),
                false => list.retain(|r| r.serial != serial),
            });
            outcome
        });
        let outcome = body.shared();
        list.push(Redemption {
            code: id,
            with,
            key,
            cell,
            forget_at_ms,
            forget_at_real_ms: real_now.saturating_add(remembered_ms),
            clock: own_clock,
            serial,
            lease_until_ms: 0,
            by: StartedBy::this(),
            outcome: outcome.clone(),
        });
        Ok((outcome, None))
    })?;
    let outcome = outcome.await;
    match (joined, outcome.issued, outcome.result) {
        // A repeat of a redemption whose save of what it issued failed:
        // the record waits in this state, unsaved, and the session's own
        // path saves it (DESIGN 4), as the session's flight: a save outside
        // it could land after a refresh rotated that record and saved the
        // rotation, putting the spent refresh token back.
        (Some(true), Some(_), Err(Error::Storage { .. })) => session.save_pending().await,
        // Another client's state got the record: this one reads it.
        (Some(false), Some(issued), Ok(())) => read_redeemed(&session, issued).await,
        // That state's save failed: saved since, the store has it.
        (Some(false), Some(issued), Err(e @ Error::Storage { .. })) => {
            read_redeemed(&session, issued).await.map_err(|_| e)
        }
        (_, _, result) => result,
    }
}

/// The longest an exchange that something drives can run: its requests
/// (the retry budget, then a last request to its deadline) and its store
/// calls (the version read, the issued record's saves and their version
/// reads, each to its deadline). One still running past that was left by
/// its callers with nothing to drive it (a client without a spawner):
/// forgotten then, it no longer holds its key as being replaced.
fn longest_run_ms(config: &crate::Config) -> u64 {
    let requests = crate::config::lease_held_ms(config.timeout_ms, config.retry.budget_ms, 0);
    requests.saturating_add(config.store_timeout_ms.saturating_mul(8))
}

/// Makes `session`, another state for the key than the one a code was
/// redeemed into, read the record that redemption saved from its own
/// store: one holding the access token it issued, or a live record written
/// since (the session refreshed meanwhile, here or in another process).
async fn read_redeemed(session: &Attached, issued: Issued) -> Result<(), Error> {
    let conflict = |what: &str| Error::Conflict {
        message: format!(
            "this code was redeemed by another client of this process, and {what}; \
             nothing was sent"
        ),
    };
    if session.cell.lock().unpersisted {
        return Err(conflict("this session holds a record not saved yet"));
    }
    session.sync().await?;
    let st = session.cell.lock();
    let holds = st.record.as_ref().is_some_and(|r| {
        let same = issued.token.is_some() && access_digest(r) == issued.token;
        same || live_since(r, issued.at_ms)
    });
    if !holds {
        return Err(conflict(
            "this session's store does not hold what it issued",
        ));
    }
    Ok(())
}

impl Issued {
    /// What `record`, issued for a code, tells of it.
    fn of(record: &Record) -> Self {
        Issued {
            token: access_digest(record),
            at_ms: record.updated_at_ms,
        }
    }
}

/// The keyed hash of `record`'s access token.
fn access_digest(record: &Record) -> Option<u64> {
    (record.access_token.as_ref()).map(|a| digest(&[a.value.expose()]))
}

/// Whether `record` is live and written at or after `at_ms`: a redeemed
/// record's successor (the session refreshed since, here or elsewhere).
fn live_since(record: &Record, at_ms: u64) -> bool {
    record.reauth.is_none() && record.refresh_token.is_some() && record.updated_at_ms >= at_ms
}

/// The fingerprint a record issued for `code` carries (its `from_code`):
/// base64url of the first bytes of the SHA-256 of the client id, the code,
/// its verifier and its redirect URI, each prefixed with its length. Never
/// the code itself. The verifier is in it so that only a repeat proving the
/// same PKCE verifier is answered unsent. The token endpoint is not: the
/// processes of a fleet may name one server differently (another host
/// name, a trailing slash), and a code with its verifier belongs to one
/// login anyway. `None` when it cannot be had (the host's WebCrypto
/// failed): the exchange then goes on without it.
async fn fingerprint(ctx: &Context, code: &Code) -> Option<String> {
    let config = &ctx.config;
    let mut input = b"freshtoken.code/1".to_vec();
    for part in [
        config.client_id.as_str(),
        code.code.expose(),
        code.code_verifier.expose(),
        code.redirect_uri.as_str(),
    ] {
        input.extend_from_slice(&(part.len() as u64).to_be_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    let digest = sha256(ctx, &input).await?;
    let bytes = crate::store::FROM_CODE_CHARS * 3 / 4;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.get(..bytes)?))
}

/// SHA-256 of `data` (RustCrypto's, as PKCE's challenge natively).
#[cfg(not(target_arch = "wasm32"))]
async fn sha256(_ctx: &Context, data: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    Some(sha2::Sha256::digest(data).to_vec())
}

/// SHA-256 of `data` by the host's WebCrypto (as PKCE's challenge in wasm),
/// within the request timeout (a host call may stall).
#[cfg(target_arch = "wasm32")]
async fn sha256(ctx: &Context, data: &[u8]) -> Option<Vec<u8>> {
    let hashing = crate::wasm::crypto::sha256(data);
    let within = crate::deadline::within(ctx.clock.as_ref(), ctx.config.timeout_ms, hashing);
    within.await.ok()?.ok()
}

/// The outcome of an exchange whose code the stored record says was
/// redeemed already (it carries `fingerprint`), in another process or
/// before this one's redemptions remember: `session` adopts that record
/// (or a successor written since) and nothing is sent.
async fn redeemed_in_store(session: &Attached, stored: &Record, fingerprint: &str) -> Outcome {
    let conflict = |what: &str| Error::Conflict {
        message: format!(
            "this code was redeemed already (the stored record is the one it issued), and \
             {what}; nothing was sent"
        ),
    };
    if let Some(reason) = stored.reauth {
        // The session this code made has ended since (revoked, refused):
        // the code is spent, and nothing usable is stored.
        return Outcome {
            sent: true,
            issued: None,
            result: Err(Error::reauth(reason)),
        };
    }
    let adopted = if session.cell.lock().unpersisted {
        // Saving it would replace the record the code issued.
        Err(conflict("this session holds a record not saved yet"))
    } else {
        match session.sync().await {
            Ok(()) => {
                let st = session.cell.lock();
                let holds = st.record.as_ref().is_some_and(|r| {
                    r.from_code.as_deref() == Some(fingerprint)
                        || live_since(r, stored.updated_at_ms)
                });
                if holds {
                    Ok(())
                } else {
                    Err(conflict("the store changed while it was read"))
                }
            }
            Err(e) => Err(e),
        }
    };
    match adopted {
        // Remembered as sent (it was, by whoever redeemed it): a repeat in
        // this process joins this outcome, through another client it reads
        // the store.
        Ok(()) => Outcome {
            sent: true,
            issued: Some(Issued::of(stored)),
            result: Ok(()),
        },
        // Not remembered: a repeat reads the store again.
        Err(e) => Outcome::unsent(e),
    }
}

/// What the record `session` holds unsaved issued, when it is the one the
/// code with `fingerprint` issued.
fn held_unsaved(session: &Attached, fingerprint: Option<&str>) -> Option<Issued> {
    let st = session.cell.lock();
    // A dead one (revoked since) is the stored record's business.
    let record = (st.record.as_ref()).filter(|r| st.unpersisted && r.reauth.is_none())?;
    (fingerprint.is_some() && record.from_code.as_deref() == fingerprint)
        .then(|| Issued::of(record))
}

/// Whether `verifier` is a PKCE code verifier (RFC 7636 §4.1).
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// [`send_and_save`], under the fleet lease of the key when the store
/// offers one. Another process handling the same code meanwhile (a double
/// submit sent to two instances) waits for the lease, then finds the
/// record this one saved and adopts it; sent twice, the code would be
/// refused and what the first use issued revoked. Another process
/// refreshing the old link holds the lease until its rotated record is
/// saved: the re-link then lands after it, not under it. A lease not taken
/// within the wait sends nothing (`conflict`: the code can be exchanged
/// again). The lease is renewed just before the code is sent, so that it
/// outlasts the request and the save. It is the exchange's until it ends
/// ([`holds_lease`]): a refresh of this state that runs under it meanwhile
/// does not give it back, and the exchange gives it back once no such
/// refresh runs.
async fn under_lease(ctx: Arc<Context>, session: Attached, code: Code, serial: u64) -> Outcome {
    if !session.store.supports_lease() {
        return send_and_save(ctx, session, code, None).await;
    }
    let asked = crate::elapsed::Started::now(ctx.clock.as_ref());
    let taken = crate::fleet::take_lease(&session, None).await;
    let outcome = match taken {
        Ok(_) => {
            hold_lease(&session, serial);
            let leased = Leased { serial, asked };
            send_and_save(ctx, session.clone(), code, Some(leased)).await
        }
        Err(error) => Outcome::unsent(match error {
            Error::Conflict { message } => Error::Conflict {
                message: format!("{message}; the code was not sent"),
            },
            error => error,
        }),
    };
    redemptions(|list| set_lease_until(list, serial, 0));
    // Once no flight of the state runs: a refresh that runs under the
    // lease now ends first, and gives it back itself.
    session.end_code_lease().await;
    outcome
}

/// The fleet lease an exchange holds: its redemption's serial, and when it
/// was asked for.
struct Leased {
    serial: u64,
    asked: crate::elapsed::Started,
}

impl Leased {
    /// Renews the lease just before the code is sent (an acquire by the
    /// holding owner extends it): the reads before took part of it, and
    /// the request and the save need the rest. `None`: send. Otherwise
    /// what the exchange ends with, nothing sent: the lease lost to
    /// another process, or, should it have lapsed before the renewal, the
    /// stored record changed since `stored` (at `version`) was read:
    /// another process may have exchanged this very code meanwhile. A
    /// record that now carries this code's fingerprint is adopted.
    async fn renew(
        &self,
        session: &Attached,
        stored: Option<&Arc<Record>>,
        version: &Option<Option<String>>,
        fingerprint: Option<&str>,
    ) -> Option<Outcome> {
        let not_sent = |error| Some(Outcome::unsent(error));
        let clock = session.ctx.clock.as_ref();
        let lapsed = |what: &str| Error::Conflict {
            message: format!(
                "the refresh lease lapsed before the code was sent, and {what}; the code was \
                 not sent"
            ),
        };
        match session.acquire().await {
            Ok(true) => {}
            Ok(false) => return not_sent(lapsed("another process holds it")),
            Err(error) => return not_sent(error),
        }
        hold_lease(session, self.serial);
        if self.asked.elapsed_ms(clock) < session.ctx.config.lease_ttl_ms {
            return None;
        }
        match session.load_with_version().await {
            Ok((Ok(now), now_version)) => {
                if let (Some(now), Some(fingerprint)) = (&now, fingerprint) {
                    if now.from_code.as_deref() == Some(fingerprint) {
                        return Some(redeemed_in_store(session, now, fingerprint).await);
                    }
                }
                if now.as_deref() == stored.map(|r| &**r) && *version == now_version {
                    return None;
                }
                not_sent(lapsed("the stored record changed meanwhile"))
            }
            _ => not_sent(lapsed("the stored record could not be read again")),
        }
    }
}

/// Notes that redemption `serial` holds `session`'s lease, taken or
/// renewed now, for the lease's TTL.
fn hold_lease(session: &Attached, serial: u64) {
    // The monotonic clock: a step of the wall clock must not end it early.
    let until = (session.ctx.clock.monotonic_ms()).saturating_add(session.ctx.config.lease_ttl_ms);
    redemptions(|list| set_lease_until(list, serial, until));
}

fn set_lease_until(list: &mut [Redemption], serial: u64, until: u64) {
    (list.iter_mut().filter(|r| r.serial == serial)).for_each(|r| r.lease_until_ms = until);
}

/// Whether a code exchange of this process holds `session`'s fleet lease
/// (see [`under_lease`]): a flight of the state that ran under it
/// meanwhile leaves it to the exchange to give back. Only for as long as
/// the lease it took lasts: an exchange that panicked, or that nothing
/// drives any more (its callers gone, no spawner), keeps no lease held.
pub(crate) fn holds_lease(session: &Attached) -> bool {
    let now = session.ctx.clock.monotonic_ms();
    let cell = Arc::as_ptr(&session.cell);
    redemptions(|list| {
        list.iter().any(|r| {
            std::ptr::eq(r.cell.as_ptr(), cell) && now < r.lease_until_ms && !r.by.elsewhere()
        })
    })
}

/// Sends the code and saves the record it brings into `session`: the first
/// tokens, or the refresh token of an unusable answer that still carries
/// one (kept, or the user has to log in again). Also says whether the
/// server issued anything. Sends nothing when the stored record is the one
/// this code issued (see [`redeemed_in_store`]).
///
/// `leased`: when it holds the key's lease (see [`under_lease`]).
async fn send_and_save(
    ctx: Arc<Context>,
    session: Attached,
    code: Code,
    leased: Option<Leased>,
) -> Outcome {
    let config = &ctx.config;
    let from_code = fingerprint(&ctx, &code).await;
    if let Some(held) = held_unsaved(&session, from_code.as_deref()) {
        // This code's tokens, issued to an earlier call whose save failed
        // and held in memory since (past what this process's redemptions
        // remember): saved now, and nothing is sent. Sent again, the code
        // would be refused and what it issued revoked.
        return Outcome {
            sent: true,
            issued: Some(held),
            result: session.save_pending().await,
        };
    }
    // The stored record, to tell whether this code issued it, and its
    // version: the save after the exchange compares and swaps against the
    // stored version, and the code is single use, so a store that cannot
    // tell the version fails the exchange here, with nothing sent (as the
    // write-ahead save of a refresh does). The version read now is the
    // fallback should the store fail to tell it again once the tokens are
    // issued. A record that cannot be read (an encrypted one no key opens)
    // is none this code issued: the version alone is read then.
    let (stored, read, known) = match session.load_with_version().await {
        Ok((Ok(stored), version)) => (stored, Some(version), true),
        // Damaged text is no record this code issued; its version was read.
        Ok((Err(_), version)) => (None, Some(version), false),
        // A store with versions is asked for the version alone (below): a
        // record that store cannot open (one no key of an EncryptedStore
        // opens) is replaced by the re-link. A store without them tells
        // nothing more, and the record this code may have issued was not
        // read: sent again, the code would be refused and what it issued
        // revoked. Nothing is sent.
        Err(error) if session.store.in_memory().is_none() && !session.store.supports_versions() => {
            return Outcome::unsent(error)
        }
        Err(_) => (None, None, false),
    };
    if let (Some(stored), Some(fingerprint)) = (&stored, &from_code) {
        if stored.from_code.as_deref() == Some(fingerprint.as_str()) {
            return redeemed_in_store(&session, stored, fingerprint).await;
        }
    }
    let read_before = match read {
        Some(version) => version,
        None => match session.stored_version().await {
            Ok(version) => version,
            Err(error) => return Outcome::unsent(error),
        },
    };
    // What the user did before this link: a revocation stored now is a
    // sign-out this re-link follows (see `Attached::signed_out_since`).
    let revoked = crate::error::ReauthReason::Revoked;
    session.cell.lock().read_before_code = Some(Box::new(ReadBeforeCode {
        revoked: known.then(|| stored.as_ref().is_some_and(|r| r.reauth == Some(revoked))),
        version: read_before.clone(),
    }));
    if let Some(leased) = leased {
        let fingerprint = from_code.as_deref();
        let renewed = leased.renew(&session, stored.as_ref(), &read_before, fingerprint);
        if let Some(outcome) = renewed.await {
            return outcome;
        }
    }
    let grant = Grant::AuthorizationCode {
        code: code.code.expose(),
        code_verifier: code.code_verifier.expose(),
        redirect_uri: &code.redirect_uri,
    };
    let issued = match exchange::call(&ctx, &grant).await {
        Ok(issued) => issued,
        Err(mut failure) => {
            let Some(refresh_token) = failure.salvaged.take() else {
                // A code that may have been redeemed (an answer lost, one
                // not understood) is kept too: sent again, it would revoke
                // what the first request issued.
                return Outcome {
                    sent: failure.maybe_processed,
                    issued: None,
                    result: Err(failure.into_error()),
                };
            };
            // An answer otherwise unusable that carries a refresh token:
            // the link is made. Saved, the session refreshes at its first
            // call; not saved, the caller gets `storage` and the record
            // waits in memory, as for any issued record.
            let key = ctx.logged_key(&session.key);
            let error = failure.into_error();
            log::warn!(
                "freshtoken: session {key}: kept the refresh token of the code's answer: {error}"
            );
            let now = ctx.clock.now_ms();
            let record = Record {
                refresh_token: Some(refresh_token),
                refresh_expires_at_ms: Some(now.saturating_add(config.refresh_token_lifetime_ms)),
                updated_at_ms: now,
                from_code,
                ..Record::default()
            };
            return Outcome {
                sent: true,
                issued: Some(Issued {
                    token: None,
                    at_ms: now,
                }),
                result: session.replace(record, Some(read_before)).await,
            };
        }
    };
    let response = issued.response;
    let token = digest(&[response.access_token.expose()]);
    let record = Record {
        access_token: Some(AccessToken::new(
            response.access_token,
            issued.sent_at_ms,
            response.expires_in,
            config.user_token_lifetime_secs,
        )),
        scope: response.scope,
        id_token: response.id_token,
        refresh_expires_at_ms: response.refresh_token.as_ref().map(|_| {
            issued
                .sent_at_ms
                .saturating_add(config.refresh_token_lifetime_ms)
        }),
        refresh_token: response.refresh_token,
        reauth: None,
        in_doubt: false,
        updated_at_ms: ctx.clock.now_ms(),
        from_code,
    };
    let issued = Issued {
        token: Some(token),
        at_ms: record.updated_at_ms,
    };
    Outcome {
        sent: true,
        issued: Some(issued),
        result: session.replace(record, Some(read_before)).await,
    }
}
