//! Events (issue 14) against the emulator: the kinds a refresh, a failure,
//! a re-link, a failing store, a fleet lease wait, a client token and a
//! revocation emit,
//! in the order they happen; key redaction; a sink that panics changes
//! nothing; and no event of any kind carries a token or a secret.

mod common;

use common::{seed_family, wall_ms, Harness, CLIENT_ID, CLIENT_SECRET};
use freshtoken::{
    AuthorizationParams, Clock, Config, ErrorCode, Event, EventKeys, EventKind, EventSink,
    ManualClock, MemoryStore, ReauthReason, Record, Seed, TokenClient, TokenStore,
};
use freshtoken_emulator::{Fault, Options};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Keeps every event it receives.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl EventSink for Recorder {
    fn on_event(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Recorder {
    /// The events so far, forgetting them.
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn find(events: &[Event], kind: EventKind) -> &Event {
    events
        .iter()
        .find(|e| e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", kinds(events)))
}

/// A harness whose client sends its events to a new recorder.
fn recorded() -> (Harness, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let sink = recorder.clone();
    let h = Harness::with(Options::default(), |b| b.on_event(sink));
    (h, recorder)
}

/// A client on `clock` with events to `recorder`, no spawner (as in tests/fleet.rs).
fn fleet_client(
    emu: &freshtoken_emulator::Emulator,
    clock: Arc<ManualClock>,
    recorder: &Arc<Recorder>,
    lease_wait_ms: Option<i64>,
) -> TokenClient {
    let mut b = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .on_event(recorder.clone());
    if let Some(ms) = lease_wait_ms {
        b = b.lease_wait_ms(ms);
    }
    let http = Arc::new(freshtoken::NativeHttp::new().unwrap());
    TokenClient::new(b.build().unwrap(), http, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_emits_the_write_ahead_save_started_saved_refreshed() {
    let (h, events) = recorded();
    let (session, _) = h.seeded("u1").await;
    assert_eq!(kinds(&events.take()), ["saved"], "the seed's save");

    session.access_token().await.unwrap();
    let seen = events.take();
    assert_eq!(
        kinds(&seen),
        ["saved", "refresh_started", "saved", "refreshed"],
        "write-ahead marker, request, rotated record, done"
    );
    let refreshed = find(&seen, EventKind::Refreshed);
    assert_eq!(refreshed.key.as_deref(), Some("u1"));
    assert_eq!(refreshed.attempts, Some(1));
    assert_eq!(
        refreshed.duration_ms,
        Some(0),
        "a manual clock that did not move"
    );
    assert_eq!(refreshed.error_code, None);
    assert_eq!(refreshed.at_ms, h.clock.now_ms());
    assert!(seen.iter().all(|e| e.key.as_deref() == Some("u1")));

    // The cached path emits nothing.
    session.access_token().await.unwrap();
    assert!(events.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_count_as_attempts_and_their_backoff_as_duration() {
    let (h, events) = recorded();
    let (session, _) = h.seeded("u1").await;
    events.take();
    h.emu.push_fault(Fault::status(503).times(2));
    let slept_before: u64 = h.clock.sleeps().iter().sum();
    session.access_token().await.unwrap();
    let slept: u64 = h.clock.sleeps().iter().sum::<u64>() - slept_before;
    let seen = events.take();
    let refreshed = find(&seen, EventKind::Refreshed);
    assert_eq!(refreshed.attempts, Some(3));
    assert!(slept > 0);
    assert_eq!(
        refreshed.duration_ms,
        Some(slept),
        "the backoff is the time spent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_emits_refresh_failed_with_its_code_and_attempts() {
    let (h, events) = recorded();
    let (session, _) = h.seeded("u1").await;
    events.take();
    h.emu.push_fault(Fault::status(503).times(4));
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Transient);
    let seen = events.take();
    assert_eq!(kinds(&seen), ["saved", "refresh_started", "refresh_failed"]);
    let failed = find(&seen, EventKind::RefreshFailed);
    assert_eq!(failed.error_code, Some(ErrorCode::Transient));
    assert_eq!(
        failed.attempts,
        Some(4),
        "the default policy's four requests"
    );
    assert_eq!(
        failed.duration_ms,
        Some(h.clock.sleeps().iter().sum()),
        "three backoffs"
    );
    assert_eq!(failed.reason, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_emits_reauthorization_required_once_with_its_reason() {
    let (h, events) = recorded();
    let session = h.session("u1");
    session
        .seed(Seed {
            refresh_token: "a-refresh-token-the-server-never-issued".into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    events.take();
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.reason(), Some(ReauthReason::InvalidGrant));
    let seen = events.take();
    assert_eq!(
        kinds(&seen),
        [
            "saved",
            "refresh_started",
            "saved",
            "reauthorization_required"
        ],
        "no refresh_failed: the re-link is the event"
    );
    let dead = find(&seen, EventKind::ReauthorizationRequired);
    assert_eq!(dead.reason, Some(ReauthReason::InvalidGrant));
    assert_eq!(dead.key.as_deref(), Some("u1"));

    // A dead session fails fast, and says nothing new.
    session.access_token().await.unwrap_err();
    assert!(events.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_refresh_token_emits_reauthorization_required_without_a_request() {
    let (h, events) = recorded();
    let (session, _) = h.seeded("u1").await;
    events.take();
    h.clock
        .advance(h.client.config().refresh_token_lifetime_ms());
    session.access_token().await.unwrap_err();
    let seen = events.take();
    // Nothing is saved: the lapse is this clock's judgement, not stored.
    assert_eq!(kinds(&seen), ["reauthorization_required"]);
    assert_eq!(
        find(&seen, EventKind::ReauthorizationRequired).reason,
        Some(ReauthReason::RefreshExpired)
    );

    // Every later call fails the same way, and says nothing new (a host
    // prompting the user on the event prompts once).
    let again = session.access_token().await.unwrap_err();
    assert_eq!(again.reason(), Some(ReauthReason::RefreshExpired));
    session.refresh().await.unwrap_err();
    assert!(events.take().is_empty());

    // A re-link that lapses in turn is reported again.
    h.seeded("u1").await;
    h.clock
        .advance(h.client.config().refresh_token_lifetime_ms());
    events.take();
    session.access_token().await.unwrap_err();
    assert_eq!(kinds(&events.take()), ["reauthorization_required"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_emits_save_failed() {
    let (h, events) = recorded();
    let (session, _) = h.seeded("u1").await;
    events.take();

    // The rotated record cannot be saved: the refresh fails with storage.
    h.store.fail_saves.store(1, Ordering::SeqCst);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Storage);
    let seen = events.take();
    assert_eq!(
        kinds(&seen),
        ["saved", "refresh_started", "save_failed", "refresh_failed"]
    );
    assert_eq!(
        find(&seen, EventKind::SaveFailed).error_code,
        Some(ErrorCode::Storage)
    );
    let failed = find(&seen, EventKind::RefreshFailed);
    assert_eq!(
        (failed.error_code, failed.attempts),
        (Some(ErrorCode::Storage), Some(1))
    );

    // The next call saves the pending record first.
    session.access_token().await.unwrap();
    assert_eq!(kinds(&events.take()), ["saved"]);

    // A write-ahead that fails sends nothing, so no refresh starts.
    h.clock.advance(900_000);
    h.store.fail_write_ahead.store(1, Ordering::SeqCst);
    let requests = h.refresh_requests();
    session.access_token().await.unwrap_err();
    let seen = events.take();
    assert_eq!(kinds(&seen), ["save_failed"]);
    assert_eq!(h.refresh_requests(), requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_another_process_lease_emits_lease_waited() {
    let emu = freshtoken_emulator::Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let store = Arc::new(MemoryStore::with_leases(clock.clone()));
    let events = Arc::new(Recorder::default());
    let client = fleet_client(&emu, clock.clone(), &events, None);
    let session = client.session("u1", store.clone()).unwrap();
    seed_family(&emu, &session).await;

    // Free lease: no wait, no event.
    session.access_token().await.unwrap();
    assert!(!kinds(&events.take()).contains(&"lease_waited"));

    // Another process holds the lease for a minute.
    clock.advance(900_000);
    assert!(store.acquire("u1", "other-process", 60_000).await.unwrap());
    let started = clock.now_ms();
    session.access_token().await.unwrap();
    let waited = clock.now_ms() - started;
    let seen = events.take();
    assert_eq!(
        kinds(&seen),
        [
            "lease_waited",
            "saved",
            "refresh_started",
            "saved",
            "refreshed"
        ]
    );
    let wait = find(&seen, EventKind::LeaseWaited);
    assert_eq!(wait.error_code, None);
    assert_eq!(wait.key.as_deref(), Some("u1"));
    let ms = wait.duration_ms.unwrap();
    assert!(
        (60_000..=waited).contains(&ms),
        "waited {ms} ms of {waited}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_on_a_lease_emits_lease_waited_with_conflict() {
    let emu = freshtoken_emulator::Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let store = Arc::new(MemoryStore::with_leases(clock.clone()));
    let events = Arc::new(Recorder::default());
    let client = fleet_client(&emu, clock.clone(), &events, Some(5_000));
    let session = client.session("u1", store.clone()).unwrap();
    seed_family(&emu, &session).await;
    events.take();
    assert!(store.acquire("u1", "busy", 3_600_000).await.unwrap());
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Conflict);
    let seen = events.take();
    assert_eq!(kinds(&seen), ["lease_waited"]);
    let wait = &seen[0];
    assert_eq!(wait.error_code, Some(ErrorCode::Conflict));
    assert!(wait.duration_ms.unwrap() >= 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_client_token_request_emits_client_token_failed() {
    // A rotated client secret, a provider down: visible to monitoring as a
    // session's failed refresh is.
    let (h, events) = recorded();
    h.emu
        .push_fault(Fault::body(401, r#"{"error":"invalid_client"}"#));
    let error = h
        .client
        .client_token(&["payments", "accounts"])
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::InvalidClient);
    let seen = events.take();
    assert_eq!(kinds(&seen), ["client_token_failed"]);
    let failed = &seen[0];
    assert_eq!(failed.scope.as_deref(), Some("accounts payments"));
    assert_eq!(failed.error_code, Some(ErrorCode::InvalidClient));
    assert_eq!(failed.attempts, Some(1));
    assert_eq!(failed.key, None);

    // The next call is issued as usual.
    h.client
        .client_token(&["accounts", "payments"])
        .await
        .unwrap();
    assert_eq!(kinds(&events.take()), ["client_token_issued"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_emits_client_token_issued_with_its_scope() {
    let (h, events) = recorded();
    h.client
        .client_token(&["payments", "accounts"])
        .await
        .unwrap();
    let seen = events.take();
    assert_eq!(kinds(&seen), ["client_token_issued"]);
    let issued = &seen[0];
    assert_eq!(issued.scope.as_deref(), Some("accounts payments"));
    assert_eq!(issued.key, None);
    assert_eq!(issued.attempts, Some(1));
    assert_eq!(issued.duration_ms, Some(0));

    // Cached: nothing.
    h.client
        .client_token(&["accounts", "payments"])
        .await
        .unwrap();
    assert!(events.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_sink_changes_nothing() {
    let panics = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = panics.clone();
    let sink = move |_: &Event| {
        counted.fetch_add(1, Ordering::SeqCst);
        panic!("an event sink that fails");
    };
    let h = Harness::with(Options::default(), |b| b.on_event(Arc::new(sink)));
    let (session, old) = h.seeded("u1").await;
    let token = session.access_token().await.expect("the refresh succeeds");
    let record = h.store.record("u1").unwrap();
    assert_eq!(record.access_token.unwrap().value.expose(), token);
    assert_ne!(record.refresh_token.unwrap().expose(), old);
    assert_eq!(h.refresh_requests(), 1);
    assert_eq!(session.access_token().await.unwrap(), token, "then cached");
    // The seed's save, and the refresh's four events.
    assert_eq!(panics.load(Ordering::SeqCst), 5);

    // A failure is reported as itself too.
    h.clock.advance(900_000);
    h.emu
        .push_fault(Fault::body(400, r#"{"error":"invalid_scope"}"#).times(1));
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::OAuth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_keys_leave_the_key_out_of_every_event() {
    let events = Arc::new(Recorder::default());
    let sink = events.clone();
    let h = Harness::with(Options::default(), |b| {
        b.on_event(sink).event_keys(EventKeys::Hidden)
    });
    let (session, _) = h.seeded("user-with-a-name").await;
    session.access_token().await.unwrap();
    let seen = events.take();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|e| e.key.is_none()), "{seen:?}");
    assert!(!format!("{seen:?}").contains("user-with-a-name"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_emits_revoked() {
    let (h, events) = recorded();
    let (session, _) = h.seeded("u1").await;
    session.access_token().await.unwrap();
    events.take();
    session.revoke().await.unwrap();
    let seen = events.take();
    assert_eq!(
        kinds(&seen),
        ["saved", "saved", "revoked"],
        "dead before the server hears of it, the tokens dropped, then revoked (after the last save)"
    );
    let revoked = find(&seen, EventKind::Revoked);
    assert_eq!(revoked.key.as_deref(), Some("u1"));
    assert_eq!(revoked.error_code, None);
    assert_eq!(revoked.duration_ms, Some(0));

    // A revocation the server could not take says why.
    let (other, _) = h.seeded("u2").await;
    events.take();
    h.emu
        .push_fault(Fault::status(503).for_revocation().times(4));
    let error = other.revoke().await.unwrap_err();
    assert!(error.server_may_hold_token());
    let seen = events.take();
    assert_eq!(kinds(&seen), ["saved", "revoked"]);
    assert_eq!(seen[1].error_code, Some(ErrorCode::Transient));

    // Client tokens: one event per token, with its scope.
    h.client.client_token(&["accounts"]).await.unwrap();
    events.take();
    h.client.revoke_client_tokens().await.unwrap();
    let seen = events.take();
    assert_eq!(kinds(&seen), ["revoked"]);
    assert_eq!(
        (seen[0].scope.as_deref(), seen[0].key.as_deref()),
        (Some("accounts"), None)
    );
}

// --- The secret scan: every kind, from a scenario that produces it. ---

/// Every token, secret, code and verifier a scenario saw.
#[derive(Default)]
struct Secrets(Vec<String>);

impl Secrets {
    fn add(&mut self, value: impl Into<String>) {
        self.0.push(value.into());
    }

    fn record(&mut self, record: Option<Record>) {
        let Some(r) = record else { return };
        let access = r.access_token.map(|a| a.value.expose().to_owned());
        let refresh = r.refresh_token.map(|s| s.expose().to_owned());
        let id = r.id_token.map(|s| s.expose().to_owned());
        self.0.extend([access, refresh, id].into_iter().flatten());
    }

    /// The records a test store holds and last tried to save.
    fn store(&mut self, h: &Harness) {
        self.record(h.store.record("u1"));
        self.record(h.store.attempted());
    }
}

/// Follows the authorize URL (the emulator approves at once) to its code.
async fn approve(url: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http.get(url).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let query = location.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned()
}

/// Runs a scenario that emits `kind` (and others) and returns its events and
/// the secrets it saw; `None` for a kind with no scenario yet.
async fn scenario(kind: EventKind) -> Option<(Vec<Event>, Secrets)> {
    let mut secrets = Secrets::default();
    secrets.add(CLIENT_SECRET);
    let (h, events) = recorded();
    match kind {
        // A code exchange, then two refreshes.
        EventKind::RefreshStarted | EventKind::Refreshed | EventKind::Saved => {
            let request = h
                .client
                .authorization_url(AuthorizationParams {
                    redirect_uri: "https://app.example/callback".into(),
                    scopes: vec!["openid".into()],
                    ..AuthorizationParams::default()
                })
                .unwrap();
            let code = approve(&request.url).await;
            secrets.add(code.clone());
            secrets.add(request.code_verifier.clone());
            let session = h
                .client
                .exchange_code(
                    &code,
                    &request.code_verifier,
                    "https://app.example/callback",
                    "u1",
                    h.store.clone(),
                )
                .await
                .unwrap();
            secrets.store(&h);
            for _ in 0..2 {
                let info = session.refresh().await.unwrap();
                secrets.add(info.access_token);
                secrets.store(&h);
            }
        }
        EventKind::RefreshFailed => {
            let (session, rt) = h.seeded("u1").await;
            secrets.add(rt);
            h.emu.push_fault(Fault::status(503).times(4));
            session.access_token().await.unwrap_err();
            secrets.store(&h);
        }
        EventKind::ReauthorizationRequired => {
            let (session, rt) = h.seeded("u1").await;
            secrets.add(rt.clone());
            // The server refuses the token (as after its use elsewhere).
            h.emu.push_fault(
                Fault::body(400, r#"{"error":"invalid_grant"}"#).for_grant("refresh_token"),
            );
            session.access_token().await.unwrap_err();
            secrets.store(&h);
        }
        EventKind::SaveFailed => {
            let (session, rt) = h.seeded("u1").await;
            secrets.add(rt);
            h.store.fail_saves.store(1, Ordering::SeqCst);
            session.access_token().await.unwrap_err();
            secrets.store(&h);
        }
        EventKind::LeaseWaited => {
            let clock = Arc::new(ManualClock::new(wall_ms()));
            let store = Arc::new(MemoryStore::with_leases(clock.clone()));
            let client = fleet_client(&h.emu, clock, &events, None);
            let rt = h.emu.seed(CLIENT_ID, "offline_access").refresh_token;
            secrets.add(rt.clone());
            let session = client.session("u1", store.clone()).unwrap();
            session
                .seed(Seed {
                    refresh_token: rt.into(),
                    ..Seed::default()
                })
                .await
                .unwrap();
            assert!(store.acquire("u1", "other", 30_000).await.unwrap());
            secrets.add(session.access_token().await.unwrap());
            let text = store.get("u1").unwrap();
            secrets.record(Some(Record::decode(&text).unwrap()));
        }
        EventKind::ClientTokenIssued => {
            secrets.add(h.client.client_token(&["accounts"]).await.unwrap());
            secrets.add(h.client.client_token(&["payments"]).await.unwrap());
        }
        EventKind::ClientTokenFailed => {
            secrets.add(h.client.client_token(&["accounts"]).await.unwrap());
            h.emu.push_fault(Fault::status(401));
            h.client.client_token(&["payments"]).await.unwrap_err();
        }
        EventKind::Revoked => {
            let (session, rt) = h.seeded("u1").await;
            secrets.add(rt);
            secrets.add(session.access_token().await.unwrap());
            secrets.store(&h);
            session.revoke().await.unwrap();
            secrets.add(h.client.client_token(&["accounts"]).await.unwrap());
            h.client.revoke_client_tokens().await.unwrap();
        }
        // Each new kind gets its scenario here.
        _ => return None,
    }
    Some((events.take(), secrets))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_of_any_kind_carries_a_token_or_a_secret() {
    for kind in EventKind::ALL {
        let Some((events, secrets)) = scenario(kind).await else {
            panic!("{kind} has no scenario");
        };
        assert!(
            events.iter().any(|e| e.kind == kind),
            "the {kind} scenario emitted {:?}",
            kinds(&events)
        );
        assert!(secrets.0.len() >= 2, "{kind}: the scenario saw its secrets");
        for event in &events {
            let fields = [
                Some(event.kind.as_str()),
                event.key.as_deref(),
                event.scope.as_deref(),
                event.error_code.map(ErrorCode::as_str),
                event.reason.map(ReauthReason::as_str),
            ];
            let shown = format!("{event:?} {fields:?}");
            for secret in &secrets.0 {
                assert!(
                    !shown.contains(secret.as_str()),
                    "a {kind}-scenario event shows a secret: {}",
                    shown.replace(secret.as_str(), "<the secret>")
                );
            }
        }
    }
}

/// A revocation of a record whose last refresh lost its answer: the call's
/// error carries the reason (`lost_rotation`), and so does the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revoked_event_carries_the_reason_of_the_calls_error() {
    let (h, events) = recorded();
    let (session, _) = h.seeded("u1").await;
    h.emu.push_fault(Fault::drop_after_commit().times(4));
    session.access_token().await.unwrap_err();
    events.take();
    let error = session.revoke().await.unwrap_err();
    assert_eq!(error.reason(), Some(ReauthReason::LostRotation), "{error}");
    let seen = events.take();
    let revoked = find(&seen, EventKind::Revoked);
    assert_eq!(revoked.error_code, Some(error.code()));
    assert_eq!(revoked.reason, error.reason());
}

/// Two processes without a lease: the second rotates while the first's
/// request for the same token is out; the server refuses the first, which
/// serves the second's record. Its refresh failed: `refresh_failed`
/// (`conflict`), not `refreshed` — a listener counting refresh failures
/// sees it (at a server that revokes a reused token's family, the adopted
/// record is dead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_whose_call_adopts_another_process_record_is_a_refresh_failure() {
    let (h, events) = recorded();
    let (served, theirs, _) = common::raced_without_a_lease(&h).await;
    assert_eq!(served.expect("served the second's token"), theirs);
    let seen = events.take();
    assert!(
        !kinds(&seen).contains(&"refreshed"),
        "the refused refresh is no success: {:?}",
        kinds(&seen)
    );
    let failed = find(&seen, EventKind::RefreshFailed);
    assert_eq!(failed.error_code, Some(ErrorCode::Conflict));
    assert_eq!(failed.attempts, Some(1));
}
