//! The fault matrix (issue 6): every fault the token endpoint, the network
//! or the host's store can produce, run against both token flows:
//!
//! - the **user session**: `UserSession::access_token()` on a session seeded
//!   with a live refresh token and no access token, so the call refreshes;
//! - the **client token**: `TokenClient::client_token()` (`client_credentials`,
//!   no refresh token; the store faults do not apply to it).
//!
//! Each cell runs on its own emulator, store and [`ManualClock`] and records
//! the first call's typed error (or success), how many token requests the
//! emulator received, the waits the core asked the clock for (backoff,
//! `Retry-After`), which refresh token the session holds afterwards and
//! whether the server still accepts it, and then what the next call does.
//! The test prints the whole matrix as a table, then compares every cell
//! with its expectation (DESIGN.md points 3–6 and 10) and fails listing
//! every mismatch, so a failure still shows the complete matrix:
//!
//! ```sh
//! cargo test --features native-http --test fault_matrix -- --nocapture
//! ```
//!
//! Time: the ManualClock's `sleep` returns at once (it only advances the
//! clock and records the wait), so backoff and `Retry-After` cost nothing.
//! Nothing waits in real time: in the timeout cells the emulator holds the
//! request and the test moves the clock past the request's deadline.
#![cfg(feature = "native-http")]

mod common;

use common::{Harness, CLIENT_ID, CLIENT_SECRET};
use freshtoken::{Clock, ConfigBuilder, Error, RetryPolicy, TokenClient, UserSession};
use freshtoken_emulator::{Fault, FaultKind, TokenState};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

/// The session key every user cell uses.
const KEY: &str = "u1";
/// The scope set every client cell asks for.
const SCOPES: [&str; 1] = ["accounts"];
/// The scope the emulator grants seeded families.
const SEED_SCOPE: &str = "openid offline_access accounts";

/// A small retry budget: three attempts, short backoffs.
const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    initial_backoff_ms: 100,
    max_backoff_ms: 400,
    budget_ms: 10_000,
};
/// The request timeout of every cell: generous, so a loaded machine never
/// turns a cell into a timeout. The timeout cells pass it on the test's
/// clock, not in real time.
const TIMEOUT_MS: i64 = 10_000;
/// `Retry-After` of the HTTP-date cell, in seconds ahead of the clock.
const RETRY_AFTER_DATE_SECS: u64 = 2;

// ---------------------------------------------------------------------------
// The faults
// ---------------------------------------------------------------------------

/// One fault of the matrix.
#[derive(Clone, Copy, Debug)]
enum Case {
    /// The token endpoint is a closed loopback port.
    Refused,
    /// The server holds the request longer than the request timeout.
    Timeout,
    /// The server reads the request and closes without processing it.
    DropBefore,
    /// The server processes the grant (rotates) and closes without a byte.
    DropAfterCommit,
    /// `status` (JSON error body) for `times` requests in a row.
    Status { status: u16, times: u32 },
    /// 429 with `Retry-After: 1`.
    RetryAfterSecs,
    /// 429 with `Retry-After` as an HTTP date two seconds ahead.
    RetryAfterDate,
    /// 200 with truncated JSON.
    MalformedJson,
    /// 200, JSON without `access_token` (but with a rotated refresh token).
    NoAccessToken,
    /// 200, `token_type: "mac"` (with a rotated refresh token).
    WrongTokenType,
    /// 200 with this raw `expires_in` value (with a rotated refresh token).
    ExpiresIn(&'static str),
    /// The grant processed (rotated), its answer's `expires_in` this raw
    /// JSON value: a provider's dialect.
    ExpiresInAs(&'static str),
    /// 200 with a 100 kB JSON body (the cap is 64 KiB).
    Oversize,
    /// A `text/html` error page with this status, once.
    Html(u16),
    /// A 100 kB `text/html` 503 page, once (a gateway's page, over the cap).
    OversizeErrorPage,
    /// The store's next load fails.
    LoadFails,
    /// The store's next save fails.
    SaveFailsOnce,
    /// Every save fails until the test heals the store.
    SaveFailsAlways,
    /// The store's next load returns a truncated record.
    CorruptRecord,
    /// The store's next save of the write-ahead marker fails.
    WriteAheadFails,
    /// The store's next load never answers (past the store deadline).
    LoadStalls,
    /// The store's next save of a renewed record never answers.
    SaveStalls,
}

impl Case {
    /// Whether the fault is the store's (no client-token cell).
    fn is_store(self) -> bool {
        matches!(
            self,
            Case::LoadFails
                | Case::SaveFailsOnce
                | Case::SaveFailsAlways
                | Case::CorruptRecord
                | Case::WriteAheadFails
                | Case::LoadStalls
                | Case::SaveStalls
        )
    }

    /// Whether the first call waits for a store deadline to pass.
    fn stalls(self) -> bool {
        matches!(self, Case::LoadStalls | Case::SaveStalls)
    }
}

/// A success body that fails validation in one field but carries a live
/// rotated refresh token, which the session must keep (DESIGN points 3–5).
fn faulty_success_body(rotated: &str, fields: &str) -> String {
    format!(r#"{{{fields},"refresh_token":"{rotated}","scope":"{SEED_SCOPE}"}}"#)
}

/// Queues the cell's fault on the emulator or the store. Returns the
/// rotated refresh token a faulty success body carries, if any.
fn arm(h: &Harness, case: Case) -> Option<String> {
    // A live token of another family stands in for "the server rotated".
    let rotated = || h.emu.seed(CLIENT_ID, SEED_SCOPE).refresh_token;
    let (fault, salvage) = match case {
        Case::Refused => return None,
        // Held until the cell ends: still unprocessed when the cell looks
        // at the server.
        Case::Timeout => (Fault::hold(), None),
        Case::DropBefore => (Fault::drop_before(), None),
        Case::DropAfterCommit => (Fault::drop_after_commit(), None),
        Case::Status { status, times } => (Fault::status(status).times(times), None),
        Case::RetryAfterSecs => (Fault::rate_limit("1"), None),
        Case::RetryAfterDate => {
            // Put the clock on a whole second so the wait is exact.
            let now = h.clock.now_ms();
            h.clock.set(now.div_ceil(1000) * 1000);
            let at = h.clock.now_ms() / 1000 + RETRY_AFTER_DATE_SECS;
            (Fault::rate_limit(http_date(at)), None)
        }
        Case::MalformedJson => (Fault::malformed_json(), None),
        Case::NoAccessToken => {
            let rt = rotated();
            let body = faulty_success_body(&rt, r#""token_type":"Bearer","expires_in":900"#);
            (Fault::body(200, body), Some(rt))
        }
        Case::WrongTokenType => {
            let rt = rotated();
            let fields = r#""access_token":"at-faulty","token_type":"mac","expires_in":900"#;
            (Fault::body(200, faulty_success_body(&rt, fields)), Some(rt))
        }
        Case::ExpiresIn(value) => {
            let rt = rotated();
            let fields =
                format!(r#""access_token":"at-faulty","token_type":"Bearer","expires_in":{value}"#);
            (
                Fault::body(200, faulty_success_body(&rt, &fields)),
                Some(rt),
            )
        }
        Case::ExpiresInAs(value) => {
            let value = serde_json::from_str(value).expect("a JSON value");
            (Fault::expires_in_as(value), None)
        }
        Case::Oversize => (Fault::oversize(100_000), None),
        Case::Html(status) => (Fault::new(FaultKind::Html { status }), None),
        Case::OversizeErrorPage => {
            let page = format!("<html><body>{}</body></html>", "busy ".repeat(20_000));
            let kind = FaultKind::Body {
                status: 503,
                body: page,
                content_type: "text/html".into(),
            };
            (Fault::new(kind), None)
        }
        // The store's knobs count down the loads/saves left to spoil.
        Case::LoadFails => return spoil(&h.store.fail_loads, 1),
        Case::SaveFailsOnce => return spoil(&h.store.fail_saves, 1),
        Case::SaveFailsAlways => return spoil(&h.store.fail_saves, u32::MAX),
        Case::CorruptRecord => return spoil(&h.store.corrupt_loads, 1),
        Case::WriteAheadFails => return spoil(&h.store.fail_write_ahead, 1),
        Case::LoadStalls => return spoil(&h.store.stall_loads, 1),
        Case::SaveStalls => return spoil(&h.store.stall_saves, 1),
    };
    h.emu.push_fault(fault);
    salvage
}

/// Sets a [`common::TestStore`] failure counter (`u32::MAX`: every call).
fn spoil(knob: &AtomicU32, n: u32) -> Option<String> {
    knob.store(n, Ordering::SeqCst);
    None
}

/// An emulator harness with the matrix's retry policy and timeout.
fn harness() -> Harness {
    Harness::with(Default::default(), configure)
}

fn configure(builder: ConfigBuilder) -> ConfigBuilder {
    builder.retry(RETRY).timeout_ms(TIMEOUT_MS)
}

/// A client like the harness's, but whose token endpoint is a loopback port
/// nobody listens on.
fn refused_client(h: &Harness) -> TokenClient {
    let builder = freshtoken::Config::builder(common::refused_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET);
    let config = configure(builder).build().expect("valid config");
    Harness::client_on(&h.emu, config, h.clock.clone())
}

// ---------------------------------------------------------------------------
// Observing a cell
// ---------------------------------------------------------------------------

/// What the user-session flow did under one fault.
#[derive(Debug, Default)]
struct UserSeen {
    /// The first call: `ok` or the error's code (and reason/status).
    first: String,
    /// The first call's error message, if any.
    error: Option<String>,
    /// Refresh requests the emulator received by then.
    requests: u64,
    /// Waits the core asked the clock for (ms).
    waits: Vec<u64>,
    /// The refresh token the session holds afterwards (see [`held`]).
    held: String,
    /// The next call(s) after the fault cleared.
    next: String,
    /// Refresh requests the emulator received by the end.
    requests_after: u64,
    /// The refresh token held at the end.
    held_after: String,
    /// Consumed refresh tokens the emulator saw again.
    reuse: u64,
    /// Invariants that failed inside the cell.
    problems: Vec<String>,
}

/// What the client-token flow did under one fault.
#[derive(Debug, Default)]
struct ClientSeen {
    first: String,
    error: Option<String>,
    /// `client_credentials` requests the emulator received by then.
    requests: u64,
    waits: Vec<u64>,
    next: String,
    requests_after: u64,
    problems: Vec<String>,
}

/// `ok`, or the stable code with what distinguishes it: the reason, the
/// HTTP status, whether a network failure may have reached the server.
fn outcome<T>(result: &Result<T, Error>) -> String {
    let error = match result {
        Ok(_) => return "ok".to_owned(),
        Err(error) => error,
    };
    let code = error.code().as_str();
    match error {
        Error::ReauthorizationRequired { reason, .. } => format!("{code}/{reason}"),
        Error::Network { maybe_sent, .. } => {
            let sent = if *maybe_sent {
                "maybe sent"
            } else {
                "not sent"
            };
            format!("{code} ({sent})")
        }
        Error::Transient {
            status, attempts, ..
        } => format!("{code} ({status} after {attempts})"),
        _ => match error.status() {
            Some(status) => format!("{code} ({status})"),
            None => code.to_owned(),
        },
    }
}

/// The error's message, and a problem if it shows any of `secrets`.
fn message<T>(
    result: &Result<T, Error>,
    secrets: &[&str],
    problems: &mut Vec<String>,
) -> Option<String> {
    let error = result.as_ref().err()?;
    let shown = format!("{error} {error:?}");
    if secrets.iter().any(|s| !s.is_empty() && shown.contains(s)) {
        problems.push(format!("a secret leaked into the error: {shown}"));
    }
    Some(error.to_string())
}

/// The refresh token the session holds, as `kept: which (server state,
/// flags)`: `kept` is `yes` when the server still accepts it; `which` says
/// whether it is the seeded token, the one a faulty body carried
/// (`salvaged`), or one rotated by a successful refresh; the flags are the
/// session's `in doubt`, `unsaved` and `dead` marks.
///
/// The token comes from the store's latest save attempt (failed or not):
/// the core saves every record it adopts, so that is its in-memory record.
async fn held(
    h: &Harness,
    session: &UserSession,
    seeded: &str,
    salvaged: Option<&str>,
    problems: &mut Vec<String>,
) -> String {
    let Some(record) = h.store.attempted() else {
        return "no record".to_owned();
    };
    let status = match session.status().await {
        Ok(status) => status,
        Err(e) => return format!("status failed: {e}"),
    };
    // The status must describe the same record.
    if status.in_doubt != record.in_doubt || status.reauth != record.reauth {
        problems.push(format!(
            "session status {status:?} disagrees with its last saved record"
        ));
    }
    let stored = h.store.record(KEY);
    if !status.unpersisted && stored.as_ref() != Some(&record) {
        problems.push("the session says saved, but the store holds another record".into());
    }
    let Some(token) = record.refresh_token.as_ref().map(|t| t.expose().to_owned()) else {
        return "no refresh token".to_owned();
    };
    let which = if token == seeded {
        "seeded"
    } else if Some(token.as_str()) == salvaged {
        "salvaged"
    } else {
        "rotated"
    };
    let state = h.emu.refresh_token_state(&token);
    let mut flags = vec![format!("{state:?}").to_lowercase()];
    if status.in_doubt {
        flags.push("in doubt".into());
    }
    if status.unpersisted {
        flags.push("unsaved".into());
    }
    if let Some(reason) = status.reauth {
        flags.push(format!("dead: {reason}"));
    }
    let kept = if state == TokenState::Active {
        "yes"
    } else {
        "no"
    };
    format!("{kept}: {which} ({})", flags.join(", "))
}

/// Once the emulator holds the timeout cell's request, moves the test's
/// clock past its deadline (the timeout and the core's grace).
async fn time_out(h: &Harness) {
    let held = h.emu.held_requests();
    tokio::task::spawn_blocking(move || held.wait(1))
        .await
        .expect("the held request");
    h.expire_deadline(TIMEOUT_MS as u64 + 2_000).await;
}

/// Runs one fault against the user session.
async fn user_cell(case: Case) -> UserSeen {
    let h = harness();
    let (mut session, seeded) = h.seeded(KEY).await;
    let refused = matches!(case, Case::Refused).then(|| refused_client(&h));
    if let Some(client) = &refused {
        session = client.session(KEY, h.store.clone()).expect("session");
    }
    let salvaged = arm(&h, case);
    let saves_before = h.store.saves.load(Ordering::SeqCst);

    let mut seen = UserSeen::default();
    let secrets = [
        seeded.as_str(),
        salvaged.as_deref().unwrap_or(""),
        CLIENT_SECRET,
    ];
    let first = if case.stalls() {
        let call = tokio::spawn({
            let session = session.clone();
            async move { session.access_token().await }
        });
        // Once the call stalls and its deadline is armed (no other timer is
        // then: the request's ended with it), time passes the deadline.
        while h.store.stalled.load(Ordering::SeqCst) == 0 || h.clock.pending_timers() == 0 {
            tokio::task::yield_now().await;
        }
        h.clock.advance(freshtoken::DEFAULT_STORE_TIMEOUT_MS as u64);
        call.await.expect("the first call")
    } else if matches!(case, Case::Timeout) {
        let call = tokio::spawn({
            let session = session.clone();
            async move { session.access_token().await }
        });
        time_out(&h).await;
        call.await.expect("the first call")
    } else {
        session.access_token().await
    };
    seen.first = outcome(&first);
    seen.error = message(&first, &secrets, &mut seen.problems);
    seen.requests = h.refresh_requests();
    seen.waits = h.clock.sleeps();
    seen.held = held(
        &h,
        &session,
        &seeded,
        salvaged.as_deref(),
        &mut seen.problems,
    )
    .await;
    if matches!(
        case,
        Case::LoadFails | Case::CorruptRecord | Case::LoadStalls
    ) && h.store.saves.load(Ordering::SeqCst) != saves_before
    {
        seen.problems
            .push("the store was written after a failed or corrupt read".into());
    }

    // The fault has cleared (or the store healed): what happens next.
    seen.next = match case {
        Case::Refused => {
            // The service is reachable again: a client on the live port.
            session = h.session(KEY);
            outcome(&session.access_token().await)
        }
        Case::SaveFailsAlways => {
            let again = outcome(&session.access_token().await);
            // Even a forced refresh must not resend the consumed token.
            let forced = outcome(&session.refresh().await);
            h.store.fail_saves.store(0, Ordering::SeqCst);
            let healed = outcome(&session.access_token().await);
            format!("{again} → {forced} (forced) → {healed} (healed)")
        }
        _ => outcome(&session.access_token().await),
    };
    seen.requests_after = h.refresh_requests();
    seen.held_after = held(
        &h,
        &session,
        &seeded,
        salvaged.as_deref(),
        &mut seen.problems,
    )
    .await;
    seen.reuse = h.emu.counters().reuse_detected;
    seen
}

/// Runs one fault against the client-token flow.
async fn client_cell(case: Case) -> ClientSeen {
    let h = harness();
    let refused = matches!(case, Case::Refused).then(|| refused_client(&h));
    let client = refused.as_ref().unwrap_or(&h.client);
    let salvaged = arm(&h, case);

    let mut seen = ClientSeen::default();
    let secrets = [salvaged.as_deref().unwrap_or(""), CLIENT_SECRET];
    let first = if matches!(case, Case::Timeout) {
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.client_token(&SCOPES).await }
        });
        time_out(&h).await;
        call.await.expect("the first call")
    } else {
        client.client_token(&SCOPES).await
    };
    seen.first = outcome(&first);
    seen.error = message(&first, &secrets, &mut seen.problems);
    seen.requests = h.grant_requests("client_credentials");
    seen.waits = h.clock.sleeps();
    // The live client when the first one pointed at a closed port.
    seen.next = outcome(&h.client.client_token(&SCOPES).await);
    seen.requests_after = h.grant_requests("client_credentials");
    if h.refresh_requests() != 0 {
        seen.problems
            .push("the client-token flow sent a refresh grant".into());
    }
    seen
}

// ---------------------------------------------------------------------------
// Expectations
// ---------------------------------------------------------------------------

/// The waits a cell must ask the clock for.
#[derive(Clone, Copy, Debug)]
enum Waits {
    None,
    /// `n` backoffs of [`RETRY`]: retry `k` waits within the equal-jitter
    /// range `[b/2, b]` of `b = min(initial · 2^(k-1), max)`.
    Backoff(usize),
    /// One wait of exactly this many ms (`Retry-After`).
    Exactly(u64),
}

impl Waits {
    fn admits(self, waits: &[u64]) -> bool {
        match self {
            Waits::None => waits.is_empty(),
            Waits::Exactly(ms) => waits == [ms],
            Waits::Backoff(n) => {
                waits.len() == n
                    && waits.iter().enumerate().all(|(k, &w)| {
                        let b = (RETRY.initial_backoff_ms << k).min(RETRY.max_backoff_ms);
                        (b / 2..=b).contains(&w)
                    })
            }
        }
    }
}

/// The expected user-session cell.
struct UserExpect {
    first: &'static str,
    /// A substring of the first call's error message (`""`: success).
    says: &'static str,
    requests: u64,
    waits: Waits,
    held: &'static str,
    next: &'static str,
    requests_after: u64,
    held_after: &'static str,
    reuse: u64,
}

/// The expected client-token cell.
struct ClientExpect {
    first: &'static str,
    says: &'static str,
    requests: u64,
    waits: Waits,
    next: &'static str,
    requests_after: u64,
}

/// One row: a fault and what each flow must do.
struct Row {
    fault: &'static str,
    case: Case,
    user: UserExpect,
    /// `None`: does not apply (store faults).
    client: Option<ClientExpect>,
}

/// The user session after a fault that cost nothing: the seeded token is
/// still live, and the next call refreshes with it.
const SEEDED_LIVE: &str = "yes: seeded (active)";
/// The same, with the session unsure whether the server acted.
const SEEDED_IN_DOUBT: &str = "yes: seeded (active, in doubt)";
/// A successful refresh, saved.
const ROTATED: &str = "yes: rotated (active)";

/// A fault the core gives up on at once, leaving the seeded token live
/// (possibly in doubt), and that the next call (one more request) recovers
/// from.
fn one_shot(
    first: &'static str,
    says: &'static str,
    held: &'static str,
) -> (UserExpect, ClientExpect) {
    let user = UserExpect {
        first,
        says,
        requests: 1,
        waits: Waits::None,
        held,
        next: "ok",
        requests_after: 2,
        held_after: ROTATED,
        reuse: 0,
    };
    let client = ClientExpect {
        first,
        says,
        requests: 1,
        waits: Waits::None,
        next: "ok",
        requests_after: 2,
    };
    (user, client)
}

/// A fault the retries absorb: success after `requests` requests; the next
/// call is served from memory.
fn absorbed(requests: u64, waits: Waits) -> (UserExpect, ClientExpect) {
    let user = UserExpect {
        first: "ok",
        says: "",
        requests,
        waits,
        held: ROTATED,
        next: "ok",
        requests_after: requests,
        held_after: ROTATED,
        reuse: 0,
    };
    let client = ClientExpect {
        first: "ok",
        says: "",
        requests,
        waits,
        next: "ok",
        requests_after: requests,
    };
    (user, client)
}

/// A 5xx that outlasts all three attempts.
fn outlasting(first: &'static str) -> (UserExpect, ClientExpect) {
    let user = UserExpect {
        first,
        says: "unavailable",
        requests: 3,
        waits: Waits::Backoff(2),
        held: SEEDED_IN_DOUBT,
        next: "ok",
        requests_after: 4,
        held_after: ROTATED,
        reuse: 0,
    };
    let client = ClientExpect {
        first,
        says: "unavailable",
        requests: 3,
        waits: Waits::Backoff(2),
        next: "ok",
        requests_after: 4,
    };
    (user, client)
}

/// A store fault that fails the call before any request.
fn store_read(says: &'static str) -> UserExpect {
    UserExpect {
        first: "storage",
        says,
        requests: 0,
        waits: Waits::None,
        held: SEEDED_LIVE,
        next: "ok",
        requests_after: 1,
        held_after: ROTATED,
        reuse: 0,
    }
}

fn row(fault: &'static str, case: Case, (user, client): (UserExpect, ClientExpect)) -> Row {
    Row {
        fault,
        case,
        user,
        client: Some(client),
    }
}

/// A 200 body carrying a rotated refresh token, invalid in one field: the
/// session keeps that token (not in doubt), and the next call refreshes
/// with it.
fn salvage(says: &'static str) -> (UserExpect, ClientExpect) {
    one_shot("invalid_response (200)", says, "yes: salvaged (active)")
}

/// Every row of the matrix, with its expectations.
fn rows() -> Vec<Row> {
    let not_sent = "network (not sent)";
    let maybe_sent = "network (maybe sent)";
    vec![
        Row {
            fault: "connection refused (closed port; next call on the live one)",
            case: Case::Refused,
            user: UserExpect {
                first: not_sent,
                says: "network error",
                requests: 0,
                waits: Waits::Backoff(2),
                held: SEEDED_LIVE,
                next: "ok",
                requests_after: 1,
                held_after: ROTATED,
                reuse: 0,
            },
            client: Some(ClientExpect {
                first: not_sent,
                says: "network error",
                requests: 0,
                waits: Waits::Backoff(2),
                next: "ok",
                requests_after: 1,
            }),
        },
        row(
            "timeout before any response (the 10 s request timeout)",
            Case::Timeout,
            one_shot("timeout", "timed out", SEEDED_IN_DOUBT),
        ),
        Row {
            fault: "connection closed before processing (drop_before)",
            case: Case::DropBefore,
            user: one_shot(maybe_sent, "network error", SEEDED_IN_DOUBT).0,
            // A client-credentials request spends nothing: it is sent again.
            client: Some(absorbed(2, Waits::Backoff(1)).1),
        },
        Row {
            fault: "connection dropped after the rotation committed",
            case: Case::DropAfterCommit,
            user: UserExpect {
                first: maybe_sent,
                says: "network error",
                requests: 1,
                waits: Waits::None,
                // The server rotated; the answer, and its token, never came.
                held: "no: seeded (consumed, in doubt)",
                next: "reauthorization_required/lost_rotation",
                requests_after: 2,
                held_after: "no: seeded (consumed, dead: lost_rotation)",
                // The in-doubt token is sent once more (DESIGN 5), never again.
                reuse: 1,
            },
            client: Some(absorbed(2, Waits::Backoff(1)).1),
        },
        row(
            "500 ×3 (outlasts the 3 attempts)",
            Case::Status {
                status: 500,
                times: 3,
            },
            outlasting("transient (500 after 3)"),
        ),
        row(
            "502 ×3 (outlasts the 3 attempts)",
            Case::Status {
                status: 502,
                times: 3,
            },
            outlasting("transient (502 after 3)"),
        ),
        row(
            "503 ×1 (one retry)",
            Case::Status {
                status: 503,
                times: 1,
            },
            absorbed(2, Waits::Backoff(1)),
        ),
        row(
            "429, Retry-After: 1",
            Case::RetryAfterSecs,
            absorbed(2, Waits::Exactly(1_000)),
        ),
        row(
            "429, Retry-After: HTTP date 2 s ahead",
            Case::RetryAfterDate,
            absorbed(2, Waits::Exactly(RETRY_AFTER_DATE_SECS * 1000)),
        ),
        row(
            "malformed JSON (200)",
            Case::MalformedJson,
            one_shot(
                "invalid_response (200)",
                "not a JSON object",
                SEEDED_IN_DOUBT,
            ),
        ),
        row(
            "JSON without access_token",
            Case::NoAccessToken,
            salvage("access_token is missing"),
        ),
        row(
            "token_type \"mac\"",
            Case::WrongTokenType,
            salvage("token_type is not Bearer"),
        ),
        row(
            "expires_in -1 (read as absent: the grant's default lifetime)",
            Case::ExpiresInAs("-1"),
            absorbed(1, Waits::None),
        ),
        row(
            "expires_in 2147483647 (read as ten years)",
            Case::ExpiresInAs("2147483647"),
            absorbed(1, Waits::None),
        ),
        row(
            "expires_in \"soon\" (a string, not a number)",
            Case::ExpiresIn("\"soon\""),
            salvage("expires_in is not a number"),
        ),
        row(
            "expires_in \"3599\" (a decimal string: Azure AD v1, SAP)",
            Case::ExpiresInAs("\"3599\""),
            absorbed(1, Waits::None),
        ),
        row(
            "oversize body (100 kB, cap 64 KiB)",
            Case::Oversize,
            one_shot("invalid_response (200)", "65536", SEEDED_IN_DOUBT),
        ),
        row(
            "oversize HTML 503 page (100 kB) ×1: retried like any 503",
            Case::OversizeErrorPage,
            absorbed(2, Waits::Backoff(1)),
        ),
        row(
            "HTML error page, 502 ×1",
            Case::Html(502),
            absorbed(2, Waits::Backoff(1)),
        ),
        row(
            "HTML error page, 403",
            Case::Html(403),
            one_shot(
                "invalid_response (403)",
                "without an RFC 6749 error body",
                SEEDED_LIVE,
            ),
        ),
        Row {
            fault: "store load fails (once)",
            case: Case::LoadFails,
            user: store_read("database unavailable"),
            client: None,
        },
        Row {
            fault: "store save fails (once)",
            case: Case::SaveFailsOnce,
            user: UserExpect {
                first: "storage",
                says: "disk full",
                requests: 1,
                waits: Waits::None,
                // Saved by the status() that looks (every call saves a
                // pending record first, DESIGN point 4), without a request.
                held: "yes: rotated (active)",
                next: "ok",
                requests_after: 1,
                held_after: ROTATED,
                reuse: 0,
            },
            client: None,
        },
        Row {
            fault: "store save fails always (healed before the 4th call)",
            case: Case::SaveFailsAlways,
            user: UserExpect {
                first: "storage",
                says: "disk full",
                requests: 1,
                waits: Waits::None,
                held: "yes: rotated (active, unsaved)",
                next: "storage → storage (forced) → ok (healed)",
                requests_after: 1,
                held_after: ROTATED,
                reuse: 0,
            },
            client: None,
        },
        Row {
            fault: "store returns a corrupt record (once)",
            case: Case::CorruptRecord,
            user: store_read("the stored record is truncated"),
            client: None,
        },
        Row {
            fault: "store load never answers (past store_timeout_ms)",
            case: Case::LoadStalls,
            user: store_read("load did not answer within 5000 ms"),
            client: None,
        },
        Row {
            fault: "store cannot write the write-ahead marker (once)",
            case: Case::WriteAheadFails,
            // Nothing is sent: the refresh token stays unused.
            user: store_read("disk full"),
            client: None,
        },
        Row {
            fault: "store save of the renewed record never answers",
            case: Case::SaveStalls,
            user: UserExpect {
                first: "storage",
                says: "save did not answer within 5000 ms",
                requests: 1,
                waits: Waits::None,
                // Saved by the status() that looks, as above.
                held: "yes: rotated (active)",
                next: "ok",
                requests_after: 1,
                held_after: ROTATED,
                reuse: 0,
            },
            client: None,
        },
    ]
}

// ---------------------------------------------------------------------------
// Comparing and printing
// ---------------------------------------------------------------------------

/// Appends a mismatch when `got` is not `expected`.
fn check<T: PartialEq + std::fmt::Debug>(out: &mut Vec<String>, what: &str, expected: T, got: T) {
    if expected != got {
        out.push(format!("{what}: expected {expected:?}, got {got:?}"));
    }
}

/// The error message must contain `says` (or there must be no error).
fn check_says(out: &mut Vec<String>, what: &str, says: &str, error: &Option<String>) {
    match error {
        None if says.is_empty() => {}
        Some(message) if !says.is_empty() && message.contains(says) => {}
        _ => out.push(format!("{what} message: expected {says:?}, got {error:?}")),
    }
}

fn user_mismatches(e: &UserExpect, s: &UserSeen) -> Vec<String> {
    let mut out = Vec::new();
    check(&mut out, "user first call", e.first, &s.first);
    check_says(&mut out, "user first call", e.says, &s.error);
    check(&mut out, "user requests", e.requests, s.requests);
    if !e.waits.admits(&s.waits) {
        out.push(format!(
            "user waits: expected {:?}, got {:?}",
            e.waits, s.waits
        ));
    }
    check(&mut out, "user refresh token held", e.held, &s.held);
    check(&mut out, "user next call", e.next, &s.next);
    check(
        &mut out,
        "user requests by the end",
        e.requests_after,
        s.requests_after,
    );
    check(
        &mut out,
        "user refresh token held at the end",
        e.held_after,
        &s.held_after,
    );
    check(&mut out, "user reuse detected", e.reuse, s.reuse);
    out.extend(s.problems.iter().map(|p| format!("user: {p}")));
    out
}

fn client_mismatches(e: &ClientExpect, s: &ClientSeen) -> Vec<String> {
    let mut out = Vec::new();
    check(&mut out, "client first call", e.first, &s.first);
    check_says(&mut out, "client first call", e.says, &s.error);
    check(&mut out, "client requests", e.requests, s.requests);
    if !e.waits.admits(&s.waits) {
        out.push(format!(
            "client waits: expected {:?}, got {:?}",
            e.waits, s.waits
        ));
    }
    check(&mut out, "client next call", e.next, &s.next);
    check(
        &mut out,
        "client requests by the end",
        e.requests_after,
        s.requests_after,
    );
    out.extend(s.problems.iter().map(|p| format!("client: {p}")));
    out
}

fn show_waits(waits: &[u64]) -> String {
    if waits.is_empty() {
        return "-".to_owned();
    }
    waits
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders rows of cells as a Markdown table with padded columns.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    out += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for r in rows {
        out += &line(r);
    }
    out
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix() {
    let header = [
        "",
        "fault",
        "user: first call",
        "reqs",
        "waits ms",
        "refresh token held",
        "next call",
        "reqs",
        "held at the end",
        "reuse",
        "client: first call",
        "reqs",
        "waits ms",
        "next call",
        "reqs",
    ];
    let mut lines = Vec::new();
    let mut messages = String::new();
    let mut failures = String::new();
    for row in rows() {
        let user = user_cell(row.case).await;
        let mut wrong = user_mismatches(&row.user, &user);
        let mut line = vec![
            String::new(),
            row.fault.to_owned(),
            user.first.clone(),
            user.requests.to_string(),
            show_waits(&user.waits),
            user.held.clone(),
            user.next.clone(),
            user.requests_after.to_string(),
            user.held_after.clone(),
            user.reuse.to_string(),
        ];
        let client = match (&row.client, row.case.is_store()) {
            (Some(expect), false) => {
                let client = client_cell(row.case).await;
                wrong.extend(client_mismatches(expect, &client));
                line.extend([
                    client.first.clone(),
                    client.requests.to_string(),
                    show_waits(&client.waits),
                    client.next.clone(),
                    client.requests_after.to_string(),
                ]);
                Some(client)
            }
            (None, true) => {
                line.extend(["n/a", "", "", "", ""].map(String::from));
                None
            }
            _ => panic!(
                "{}: a store fault has no client cell, others need one",
                row.fault
            ),
        };
        line[0] = if wrong.is_empty() { "pass" } else { "FAIL" }.to_owned();
        lines.push(line);
        let client_error = client.and_then(|c| c.error);
        if user.error.is_some() || client_error.is_some() {
            let _ = writeln!(
                messages,
                "- {}: user: {} / client: {}",
                row.fault,
                user.error.as_deref().unwrap_or("-"),
                client_error.as_deref().unwrap_or("-")
            );
        }
        for w in wrong {
            let _ = writeln!(failures, "- {}: {w}", row.fault);
        }
    }

    println!("\nFault matrix (reqs: token requests the emulator received, cumulative; waits: clock sleeps asked for;");
    println!("held: the session's refresh token — kept if the server still accepts it):\n");
    println!("{}", table(&header, &lines));
    println!("First-call error messages:\n{messages}");
    if !failures.is_empty() {
        println!("Mismatches:\n{failures}");
        panic!("the fault matrix has mismatches (see the table above)");
    }
}

// ---------------------------------------------------------------------------
// HTTP dates for Retry-After
// ---------------------------------------------------------------------------

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for Unix seconds.
fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}
