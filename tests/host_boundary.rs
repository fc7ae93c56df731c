//! The boundary between the core and its host (issue 11, DESIGN points
//! 14–16): store calls that never answer, answers that come late, callers
//! that give up, write-ahead, host messages that quote secrets, stored
//! records of any size, and session state bounded whatever handles exist.
//! The emulator is real; the clock and the misbehaving store are the mocks.

mod common;

use common::{joined_then_released, Harness, CLIENT_ID, CLIENT_SECRET};
use freshtoken::{
    async_trait, ClientAuthMethod, Config, Error, HttpClient, HttpError, HttpRequest, HttpResponse,
    MemoryStore, ReauthReason, Record, Seed, StoreError, TokenClient, TokenStore, UserSession,
};
use freshtoken_emulator::{Fault, TokenState};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const STORE_TIMEOUT_MS: u64 = 2_000;
const SCOPE: &str = "openid offline_access accounts";

/// What the store does with the next matching call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    /// Never answer.
    Stall,
    /// Answer only once the test lets it; the write itself is done by the
    /// host on its own (a task), so it lands even if the core stopped waiting.
    Late,
    /// Fail with a message that quotes the record.
    FailQuoting,
}

/// Which saves an act applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    /// The write-ahead save (the record marked in doubt).
    WriteAhead,
    /// Any other save (a rotation, a withdrawal of the marker).
    Settled,
    /// Loads.
    Load,
}

/// A store over [`MemoryStore`] whose next call of one kind misbehaves.
#[derive(Default)]
struct HostStore {
    inner: Arc<MemoryStore>,
    plan: Mutex<Option<(Which, Act)>>,
    /// Told when a misbehaving call began (the record it was given, if any).
    entered: Mutex<Option<mpsc::UnboundedSender<String>>>,
    /// Lets a `Late` call go on.
    release: Mutex<Option<oneshot::Receiver<()>>>,
    /// Told when a `Late` write landed in the inner store.
    landed: Mutex<Option<oneshot::Sender<()>>>,
    /// Saves begun so far.
    saves: AtomicUsize,
}

impl HostStore {
    fn new() -> Arc<Self> {
        Arc::new(HostStore::default())
    }

    /// The next call of kind `which` does `act`; returns where it is
    /// reported as begun.
    fn next(&self, which: Which, act: Act) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.entered.lock().unwrap() = Some(tx);
        *self.plan.lock().unwrap() = Some((which, act));
        rx
    }

    /// For `Late`: the switch that lets the call go on, and the signal that
    /// its write landed.
    fn late_controls(&self) -> (oneshot::Sender<()>, oneshot::Receiver<()>) {
        let (go, release) = oneshot::channel();
        let (landed, has_landed) = oneshot::channel();
        *self.release.lock().unwrap() = Some(release);
        *self.landed.lock().unwrap() = Some(landed);
        (go, has_landed)
    }

    fn take(&self, which: Which, record: &str) -> Option<Act> {
        let mut plan = self.plan.lock().unwrap();
        match *plan {
            Some((w, act)) if w == which => {
                *plan = None;
                if let Some(tx) = self.entered.lock().unwrap().as_ref() {
                    let _ = tx.send(record.to_owned());
                }
                Some(act)
            }
            _ => None,
        }
    }

    fn record(&self, key: &str) -> Option<Record> {
        self.inner.get(key).map(|t| Record::decode(&t).unwrap())
    }

    async fn act(&self, act: Act, key: &str, record: Option<&str>) -> Result<(), StoreError> {
        match act {
            Act::Stall => std::future::pending().await,
            Act::FailQuoting => Err(StoreError(format!(
                "constraint violated for row {key}: {}",
                record.map_or_else(|| self.inner.get(key).unwrap_or_default(), str::to_owned)
            ))),
            Act::Late => {
                let release = self.release.lock().unwrap().take().expect("late_controls");
                let landed = self.landed.lock().unwrap().take().expect("late_controls");
                let (inner, key) = (self.inner.clone(), key.to_owned());
                let record = record.map(str::to_owned);
                // The host's own work: it goes on whether or not the core waits.
                let write = tokio::spawn(async move {
                    let _ = release.await;
                    if let Some(record) = record {
                        inner.save(&key, &record).await.unwrap();
                    }
                    let _ = landed.send(());
                });
                write.await.unwrap();
                Ok(())
            }
        }
    }
}

#[async_trait]
impl TokenStore for HostStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        if let Some(act) = self.take(Which::Load, "") {
            self.act(act, key, None).await?;
        }
        self.inner.load(key).await
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        let which = if Record::decode(record).unwrap().in_doubt {
            Which::WriteAhead
        } else {
            Which::Settled
        };
        match self.take(which, record) {
            Some(act) => self.act(act, key, Some(record)).await,
            None => self.inner.save(key, record).await,
        }
    }
}

fn harness() -> Harness {
    Harness::with(Default::default(), |b| {
        b.store_timeout_ms(STORE_TIMEOUT_MS as i64)
    })
}

/// A session on `store`, seeded with a new emulator family (no access
/// token, so its first use refreshes); returns the seeded refresh token.
async fn seeded(h: &Harness, store: &Arc<HostStore>, key: &str) -> (UserSession, String) {
    let family = h.emu.seed(CLIENT_ID, SCOPE);
    let session = h.client.session(key, store.clone()).unwrap();
    session
        .seed(Seed {
            refresh_token: family.refresh_token.clone().into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    (session, family.refresh_token)
}

/// `session.access_token()` as a task of its own.
fn in_background(session: &UserSession) -> JoinHandle<Result<String, Error>> {
    let session = session.clone();
    tokio::spawn(async move { session.access_token().await })
}

/// Starts a refresh whose save of the rotated record is `Late`: returns
/// the caller, the rotated record the core is saving, the switch that lets
/// the host's write go on and the signal that it landed.
async fn late_rotation_save(
    store: &HostStore,
    session: &UserSession,
) -> (
    JoinHandle<Result<String, Error>>,
    Record,
    oneshot::Sender<()>,
    oneshot::Receiver<()>,
) {
    let (go, landed) = store.late_controls();
    let mut entered = store.next(Which::Settled, Act::Late);
    let caller = in_background(session);
    let rotated = Record::decode(&entered.recv().await.unwrap()).unwrap();
    (caller, rotated, go, landed)
}

/// [`late_rotation_save`] past the store deadline: the caller has had its
/// `storage` error, and the host is still writing the rotated record.
async fn abandoned_rotation_save(
    h: &Harness,
    store: &HostStore,
    session: &UserSession,
) -> (Record, oneshot::Sender<()>, oneshot::Receiver<()>) {
    let (caller, rotated, go, landed) = late_rotation_save(store, session).await;
    h.expire_deadline(STORE_TIMEOUT_MS).await;
    storage_message(caller.await.unwrap());
    (rotated, go, landed)
}

/// A session of `client` on a memory store, seeded with `refresh_token`.
async fn memory_session(
    client: &TokenClient,
    refresh_token: &str,
) -> (UserSession, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let session = client.session("u1", store.clone()).unwrap();
    session
        .seed(Seed {
            refresh_token: refresh_token.into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    (session, store)
}

/// Runs `call` as a task, moves time past the store deadline it waits on
/// (unless it ends first: then it never waited), and returns its storage
/// error's message.
async fn held_back<T: std::fmt::Debug + Send + 'static>(
    h: &Harness,
    call: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
) -> String {
    let task = tokio::spawn(call);
    while h.clock.pending_timers() == 0 && !task.is_finished() {
        tokio::task::yield_now().await;
    }
    h.clock.advance(STORE_TIMEOUT_MS);
    storage_message(task.await.unwrap())
}

fn storage_message(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(e @ Error::Storage { .. }) => e.to_string(),
        other => panic!("expected a storage error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_never_answers_ends_the_flight_and_loses_nothing() {
    let h = harness();
    let store = HostStore::new();
    let (session, seeded_rt) = seeded(&h, &store, "u1").await;
    let mut entered = store.next(Which::Settled, Act::Stall);
    let caller = in_background(&session);
    let rotated = Record::decode(&entered.recv().await.unwrap()).unwrap();
    h.expire_deadline(STORE_TIMEOUT_MS).await;
    let message = storage_message(caller.await.unwrap());
    assert!(
        message.contains(&format!("did not answer within {STORE_TIMEOUT_MS} ms")),
        "{message}"
    );
    assert_eq!(h.refresh_requests(), 1);
    let stored = store.record("u1").unwrap();
    assert!(
        stored.in_doubt,
        "the write-ahead marker is what the store holds"
    );
    assert_eq!(stored.refresh_token.unwrap().expose(), seeded_rt);
    // (Not status(): it would save the record first, as every call does.)
    assert!(
        session.cached_access_token().is_none(),
        "the renewed record waits in memory, unsaved, and is not served"
    );

    // Not stuck: a new handle (the store answers again) gets the renewed
    // token, which is saved first, with no second refresh.
    let again = h.client.session("u1", store.clone()).unwrap();
    let token = again.access_token().await.unwrap();
    assert_eq!(token, rotated.access_token.unwrap().value.expose());
    assert_eq!(h.refresh_requests(), 1);
    let stored = store.record("u1").unwrap();
    assert_eq!(stored.refresh_token, rotated.refresh_token);
    assert!(!stored.in_doubt);
    let rt = stored.refresh_token.unwrap();
    assert_eq!(h.emu.refresh_token_state(rt.expose()), TokenState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_never_answers_sends_nothing() {
    let h = harness();
    let store = HostStore::new();
    seeded(&h, &store, "u1").await;
    let other = Harness::client_on(&h.emu, h.client.config().clone(), h.clock.clone());
    let session = other.session("u1", store.clone()).unwrap();
    let _entered = store.next(Which::Load, Act::Stall);
    let caller = in_background(&session);
    h.expire_deadline(STORE_TIMEOUT_MS).await;
    let message = storage_message(caller.await.unwrap());
    assert!(message.contains("load did not answer"), "{message}");
    assert_eq!(h.refresh_requests(), 0);
    session
        .access_token()
        .await
        .expect("the next call reads again");
    assert_eq!(h.refresh_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_from_an_abandoned_save_changes_nothing() {
    let h = harness();
    let store = HostStore::new();
    let (session, _) = seeded(&h, &store, "u1").await;
    let (rotated, go, landed) = abandoned_rotation_save(&h, &store, &session).await;
    // The host finishes its write after the core gave up on it.
    go.send(()).unwrap();
    landed.await.unwrap();
    assert!(
        session.cached_access_token().is_none(),
        "the late answer did not reach the core: the record is still unsaved"
    );
    let token = session.access_token().await.unwrap();
    assert_eq!(token, rotated.access_token.unwrap().value.expose());
    assert_eq!(h.refresh_requests(), 1);
    assert!(!session.status().await.unwrap().unpersisted);
    assert_eq!(
        store.record("u1").unwrap().refresh_token,
        rotated.refresh_token
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_abandoned_at_its_deadline_holds_back_every_newer_refresh_token() {
    let h = harness();
    let store = HostStore::new();
    let (session, _) = seeded(&h, &store, "u1").await;
    // The rotated record's save outlives its deadline; the host is still writing it.
    let (rotated, go, landed) = abandoned_rotation_save(&h, &store, &session).await;
    // Re-saving the same refresh token is harmless: the session serves it.
    let token = session.access_token().await.unwrap();
    assert_eq!(token, rotated.access_token.unwrap().value.expose());

    // A forced refresh would make a newer refresh token that the late write
    // could replace: it waits for the abandoned save, and sends nothing.
    let forced = session.clone();
    let message = held_back(&h, async move { forced.refresh().await }).await;
    assert!(message.contains("abandoned at its deadline"), "{message}");
    assert_eq!(
        h.refresh_requests(),
        1,
        "no refresh while the save may land"
    );
    // So is a seed of another refresh token.
    let other = h.client.session("u1", store.clone()).unwrap();
    let seed = Seed {
        refresh_token: "another-login".to_owned().into(),
        ..Seed::default()
    };
    held_back(&h, async move { other.seed(seed).await }).await;
    // A code exchange is refused before its code is redeemed (the tokens it
    // brings could not be saved safely) ...
    let (client, held) = (h.client.clone(), store.clone());
    held_back(&h, async move {
        let verifier = "v".repeat(43);
        let redirect = "https://app.example/callback";
        let exchanged = client.exchange_code("code-1", &verifier, redirect, "u1", held);
        exchanged.await.map(drop)
    })
    .await;
    assert_eq!(
        h.grant_requests("authorization_code"),
        0,
        "the code was not sent"
    );
    // ... and so is a revocation: the late write would bring the token back.
    let revoking = session.clone();
    held_back(&h, async move { revoking.revoke().await }).await;
    assert_eq!(h.emu.counters().revocation_requests, 0);

    // The late write lands (the same refresh token); then refreshes go on,
    // and the newest refresh token is what the store keeps.
    go.send(()).unwrap();
    landed.await.unwrap();
    let renewed = session.refresh().await.unwrap();
    assert_eq!(h.refresh_requests(), 2);
    let stored = store.record("u1").unwrap();
    assert_eq!(
        stored.access_token.unwrap().value.expose(),
        renewed.access_token
    );
    let rt = stored.refresh_token.unwrap();
    assert_ne!(Some(&rt), rotated.refresh_token.as_ref());
    assert_eq!(h.emu.refresh_token_state(rt.expose()), TokenState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_ahead_that_fails_sends_nothing() {
    let h = harness();
    let store = HostStore::new();
    let (session, seeded_rt) = seeded(&h, &store, "u1").await;
    let _entered = store.next(Which::WriteAhead, Act::FailQuoting);
    let message = storage_message(session.access_token().await);
    assert!(!message.contains(&seeded_rt), "{message}");
    assert_eq!(h.refresh_requests(), 0, "nothing was sent");
    assert_eq!(h.emu.refresh_token_state(&seeded_rt), TokenState::Active);
    let status = session.status().await.unwrap();
    assert!(!status.in_doubt && !status.unpersisted, "{status:?}");
    session.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 1);
    assert_eq!(h.emu.refresh_token_state(&seeded_rt), TokenState::Consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_server_rotated_reads_lost_rotation_without_a_lease() {
    let h = harness();
    let store = HostStore::new();
    seeded(&h, &store, "u1").await;
    {
        // This "process" dies while saving the rotated record.
        let dying = Harness::client_on(&h.emu, h.client.config().clone(), h.clock.clone());
        let session = dying.session("u1", store.clone()).unwrap();
        let mut entered = store.next(Which::Settled, Act::Stall);
        let caller = tokio::spawn(async move { session.access_token().await });
        entered.recv().await.unwrap();
        caller.abort();
    }
    assert_eq!(h.refresh_requests(), 1);
    // The restarted process's client. In this test process the dying flight
    // still runs; a client of the same endpoint would wait for it (one
    // flight per refresh token per process), so this one names the
    // endpoint differently, which keeps the two apart as two processes are.
    let endpoint = format!("{}?restarted", h.emu.token_endpoint());
    let config = Config::builder(endpoint, CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .store_timeout_ms(STORE_TIMEOUT_MS as i64)
        .build()
        .unwrap();
    let restarted = Harness::client_on(&h.emu, config, h.clock.clone());
    let session = restarted.session("u1", store.clone()).unwrap();
    let error = session.access_token().await.unwrap_err();
    assert_eq!(
        error.reason(),
        Some(ReauthReason::LostRotation),
        "the write-ahead marker tells a lost rotation from a plain invalid_grant: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_never_stops_the_refresh_or_its_save() {
    let h = harness();
    let store = HostStore::new();
    let (session, seeded_rt) = seeded(&h, &store, "u1").await;
    let (caller, rotated, go, landed) = late_rotation_save(&store, &session).await;
    caller.abort(); // the only caller gives up while the save is under way
    assert!(caller.await.unwrap_err().is_cancelled());
    go.send(()).unwrap();
    landed.await.unwrap();
    let token = session.access_token().await.unwrap();
    assert_eq!(token, rotated.access_token.unwrap().value.expose());
    assert_eq!(h.refresh_requests(), 1, "the refresh finished for everyone");
    // A restart finds the rotated record and sends nothing.
    let restarted = Harness::client_on(&h.emu, h.client.config().clone(), h.clock.clone());
    let again = restarted.session("u1", store.clone()).unwrap();
    assert_eq!(again.access_token().await.unwrap(), token);
    assert_eq!(h.refresh_requests(), 1);
    assert_eq!(h.emu.refresh_token_state(&seeded_rt), TokenState::Consumed);
    let rt = store.record("u1").unwrap().refresh_token.unwrap();
    assert_eq!(h.emu.refresh_token_state(rt.expose()), TokenState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_messages_that_quote_the_record_show_no_token() {
    let h = harness();
    let store = HostStore::new();
    let (session, seeded_rt) = seeded(&h, &store, "u1").await;
    session.access_token().await.unwrap();
    let held = store.record("u1").unwrap();
    let secrets = [
        seeded_rt,
        held.refresh_token.unwrap().expose().to_owned(),
        held.access_token.unwrap().value.expose().to_owned(),
        held.id_token.unwrap().expose().to_owned(),
    ];
    h.clock.advance(900_000);
    let mut entered = store.next(Which::Settled, Act::FailQuoting);
    let error = session.access_token().await.unwrap_err();
    let quoted = entered.recv().await.unwrap();
    let rotated = Record::decode(&quoted).unwrap();
    let new_rt = rotated.refresh_token.unwrap().expose().to_owned();
    let shown = format!("{error} {error:?}");
    for secret in secrets.iter().chain([&new_rt]) {
        assert!(!shown.contains(secret.as_str()), "{shown}");
    }
    assert!(shown.contains("[redacted]"), "{shown}");

    // A load quoting the stored record (read again before the next refresh).
    session
        .access_token()
        .await
        .expect("the kept record is saved first");
    h.clock.advance(900_000);
    let stored = store.record("u1").unwrap();
    let stored_rt = stored.refresh_token.unwrap().expose().to_owned();
    let _entered = store.next(Which::Load, Act::FailQuoting);
    let error = session.access_token().await.unwrap_err();
    let shown = format!("{error} {error:?}");
    assert_eq!(error.code().as_str(), "storage");
    assert!(shown.contains("constraint violated"), "{shown}");
    for secret in secrets.iter().chain([&new_rt, &stored_rt]) {
        assert!(!shown.contains(secret.as_str()), "{shown}");
    }
    assert!(!shown.contains(CLIENT_SECRET), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_quoting_a_record_this_process_never_saw_shows_no_token() {
    let h = harness();
    let store = HostStore::new();
    let (session, _) = seeded(&h, &store, "u1").await;
    session.access_token().await.unwrap();
    let stored = store.record("u1").unwrap();
    // Another process: it knows none of the record's tokens.
    let other = Harness::client_on(&h.emu, h.client.config().clone(), h.clock.clone());
    let _entered = store.next(Which::Load, Act::FailQuoting);
    let error = other
        .session("u1", store.clone())
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("constraint violated"), "{shown}");
    let secrets = [
        stored.refresh_token.unwrap().expose().to_owned(),
        stored.access_token.unwrap().value.expose().to_owned(),
        stored.id_token.unwrap().expose().to_owned(),
    ];
    for secret in &secrets {
        assert!(!shown.contains(secret.as_str()), "{shown}");
    }
}

/// HTTP from the host that fails quoting the request it was given.
struct QuotingHttp;

#[async_trait]
impl HttpClient for QuotingHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // As a logging proxy or middleware does: the body and the headers.
        Err(HttpError::Interrupted(format!(
            "connection reset while sending {} with headers {:?}",
            request.body, request.headers
        )))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_messages_that_quote_the_request_show_no_secret() {
    for auth in [
        ClientAuthMethod::ClientSecretPost,
        ClientAuthMethod::ClientSecretBasic,
    ] {
        let h = Harness::with(Default::default(), |b| b.client_auth(auth));
        let client = TokenClient::new(
            h.client.config().clone(),
            Arc::new(QuotingHttp),
            h.clock.clone(),
        );
        let (session, _) = memory_session(&client, "rt-SENTINEL-0123456789").await;
        let error = session.access_token().await.unwrap_err();
        assert_eq!(error.code().as_str(), "network");
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("connection reset while sending"), "{shown}");
        // Basic carries the secret inside base64(id ":" secret) (RFC 6749 §2.3.1).
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        assert_eq!(
            shown.contains("Authorization"),
            auth == ClientAuthMethod::ClientSecretBasic,
            "the headers are quoted: {shown}"
        );
        for secret in ["rt-SENTINEL-0123456789", CLIENT_SECRET, basic.as_str()] {
            assert!(!shown.contains(secret), "{auth:?}: {shown}");
        }
    }
}

/// HTTP from the host that sends the request for real, then reports the
/// answer with a status that is not an HTTP status (as a client does whose
/// answer was not understood).
struct GarbledStatusHttp(freshtoken::NativeHttp, u16);

#[async_trait]
impl HttpClient for GarbledStatusHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let mut answer = self.0.send(request).await?;
        answer.status = self.1;
        Ok(answer)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_not_http_may_have_rotated_the_token() {
    for status in [0, 99, 600, 65_535] {
        an_unusable_status_may_have_rotated_the_token(status, "not an HTTP status").await;
    }
}

/// An interim answer (1xx: Early Hints, a protocol switch) handed back as
/// the final one, as a custom fetch or a host HTTP client can: the server
/// got the request and was working on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interim_answer_as_the_final_one_may_have_rotated_the_token() {
    for status in [100, 101, 103, 199] {
        an_unusable_status_may_have_rotated_the_token(status, "interim").await;
    }
}

async fn an_unusable_status_may_have_rotated_the_token(status: u16, says: &str) {
    {
        let h = harness();
        let http = GarbledStatusHttp(freshtoken::NativeHttp::new().unwrap(), status);
        let client = TokenClient::new(h.client.config().clone(), Arc::new(http), h.clock.clone());
        let family = h.emu.seed(CLIENT_ID, SCOPE);
        let (session, store) = memory_session(&client, &family.refresh_token).await;
        let error = session.access_token().await.unwrap_err();
        assert_eq!(
            error.code().as_str(),
            "invalid_response",
            "{status}: {error}"
        );
        assert!(error.to_string().contains(says), "{error}");
        assert_eq!(h.refresh_requests(), 1);
        let stored = Record::decode(&store.get("u1").unwrap()).unwrap();
        assert!(stored.in_doubt, "{status}: the server may have rotated");

        // The server did rotate: the token it consumed now reads lost_rotation.
        let again = h.client.session("u1", store.clone()).unwrap();
        match again.access_token().await {
            Err(Error::ReauthorizationRequired { reason, .. }) => {
                assert_eq!(reason, ReauthReason::LostRotation, "{status}")
            }
            other => panic!("{status}: expected lost_rotation, got {other:?}"),
        }
    }
}

/// HTTP from the host that never answers, whatever its timeout says.
struct SilentHttp;

#[async_trait]
impl HttpClient for SilentHttp {
    async fn send(&self, _request: HttpRequest) -> Result<HttpResponse, HttpError> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_http_that_never_answers_times_out_in_doubt() {
    let h = Harness::with(Default::default(), |b| b.timeout_ms(1_000));
    let client = TokenClient::new(
        h.client.config().clone(),
        Arc::new(SilentHttp),
        h.clock.clone(),
    );
    let (session, store) = memory_session(&client, "rt-0123456789").await;
    let caller = in_background(&session);
    h.expire_deadline(2_000).await;
    assert_eq!(caller.await.unwrap().unwrap_err(), Error::Timeout);
    assert!(session.status().await.unwrap().in_doubt);
    let stored = Record::decode(&store.get("u1").unwrap()).unwrap();
    assert!(stored.in_doubt, "the token may have been consumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_stored_record_is_refused_unread() {
    let h = harness();
    let store = Arc::new(MemoryStore::new());
    let padding = " ".repeat(5 * 1024 * 1024);
    let text = format!(r#"{{"schema":"freshtoken.record/1","refresh_token":"rt"}}{padding}"#);
    store.save("u1", &text).await.unwrap();
    let session = h.client.session("u1", store).unwrap();
    let message = storage_message(session.access_token().await);
    assert!(message.contains("larger than"), "{message}");
    assert_eq!(h.refresh_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_bounds_state_whatever_handles_exist() {
    let h = Harness::with(Default::default(), |b| b.max_sessions(1_000));
    let store = Arc::new(MemoryStore::new());
    let first = h.client.session("user-0", store.clone()).unwrap();
    let family = h.emu.seed(CLIENT_ID, SCOPE);
    first
        .seed(Seed {
            refresh_token: family.refresh_token.into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    // The one-handle-per-request pattern, with every handle kept alive.
    let mut handles = Vec::new();
    for i in 1..100_000 {
        let handle = h
            .client
            .session(&format!("user-{i}"), store.clone())
            .unwrap();
        assert!(handle.cached_access_token().is_none());
        handles.push(handle);
    }
    let held = h.client.session_count();
    assert!(held <= 1_100, "{held} session states held");
    // The first handle's state was evicted; it re-attaches by key and
    // shares one flight with a new handle of the same key.
    let second = h.client.session("user-0", store.clone()).unwrap();
    h.emu.push_fault(Fault::hold());
    let results = joined_then_released(&h.emu, [first.access_token(), second.access_token()]).await;
    let tokens: Vec<String> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(h.refresh_requests(), 1);
    assert!(h.client.session_count() <= 1_100);
}

/// A host clock that, once given a session, reads that session's cached
/// token whenever it is read (not from inside its own reading).
struct ReentrantClock {
    inner: Arc<freshtoken::ManualClock>,
    session: std::sync::OnceLock<UserSession>,
    inside: std::sync::atomic::AtomicBool,
    reentered: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl freshtoken::Clock for ReentrantClock {
    fn now_ms(&self) -> u64 {
        use std::sync::atomic::Ordering::SeqCst;
        if let Some(session) = self.session.get() {
            if !self.inside.swap(true, SeqCst) {
                let _ = session.cached_access_token();
                self.reentered.fetch_add(1, SeqCst);
                self.inside.store(false, SeqCst);
            }
        }
        self.inner.now_ms()
    }

    async fn sleep(&self, ms: u64) {
        self.inner.sleep(ms).await
    }

    async fn timer(&self, ms: u64) {
        self.inner.timer(ms).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_that_reads_the_same_session_does_not_deadlock_it() {
    let h = harness();
    let clock = Arc::new(ReentrantClock {
        inner: h.clock.clone(),
        session: Default::default(),
        inside: Default::default(),
        reentered: Default::default(),
    });
    let http = Arc::new(freshtoken::NativeHttp::new().unwrap());
    let client = TokenClient::new(h.client.config().clone(), http, clock.clone());
    let family = h.emu.seed(CLIENT_ID, SCOPE);
    let (session, store) = memory_session(&client, &family.refresh_token).await;
    let token = session.access_token().await.unwrap();
    let _ = clock.session.set(client.session("u1", store).unwrap());
    // The cached path reads the clock, which re-enters the session. On a
    // thread of its own, so a deadlock fails the test instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel();
    let reader = session.clone();
    std::thread::spawn(move || {
        let cached = reader.cached_access_token();
        let _ = done.send(cached);
    });
    let cached = finished
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the cached read returned: the session was not locked by its own clock");
    assert_eq!(cached.as_deref(), Some(token.as_str()));
    assert!(clock.reentered.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    // So does a seed, which reads the clock while it holds the state to
    // look for an abandoned save.
    let relink = h.emu.seed(CLIENT_ID, SCOPE);
    let (done, finished) = std::sync::mpsc::channel();
    let seeding = session.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let seeded = runtime.block_on(seeding.seed(Seed {
            refresh_token: relink.refresh_token.into(),
            ..Seed::default()
        }));
        let _ = done.send(seeded.is_ok());
    });
    let seeded = finished
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the seed returned: the session was not locked by its own clock");
    assert!(seeded);
}

/// Polls `call` once: a caller joins the session's flight, or starts one,
/// on its first poll. Returns whether it is still pending.
async fn polled_once<F: Future + Unpin>(call: &mut F) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *call).poll(cx).is_pending()))
        .await
}

/// A client on the harness's emulator and clock whose flights are driven
/// by their callers (no spawner): a first poll runs a flight as far as it
/// can go at once.
fn caller_driven(h: &Harness) -> TokenClient {
    let config = Config::builder(h.emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .store_timeout_ms(STORE_TIMEOUT_MS as i64)
        .build()
        .unwrap();
    let http = Arc::new(freshtoken::NativeHttp::new().unwrap());
    TokenClient::new(config, http, h.clock.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_asked_for_while_a_seed_saves_starts_after_that_save() {
    let h = harness();
    let client = caller_driven(&h);
    let store = HostStore::new();
    let family = h.emu.seed(CLIENT_ID, SCOPE);
    let session = client.session("u1", store.clone()).unwrap();
    // The seed's save is being written (a pooled connection, a worker thread).
    let (go, landed) = store.late_controls();
    let mut entered = store.next(Which::Settled, Act::Late);
    let seeding = {
        let session = session.clone();
        let seed = Seed {
            refresh_token: family.refresh_token.clone().into(),
            ..Seed::default()
        };
        tokio::spawn(async move { session.seed(seed).await })
    };
    entered.recv().await.unwrap();

    // A caller that needs a token meanwhile waits for that save: a refresh
    // started now would save after it, and the seed's late write would then
    // put the spent refresh token back.
    let mut asking = Box::pin(session.access_token());
    assert!(polled_once(&mut asking).await);
    assert_eq!(
        store.saves.load(Ordering::SeqCst),
        1,
        "nothing else saved while the seed's save is written"
    );
    assert_eq!(h.refresh_requests(), 0);

    go.send(()).unwrap();
    landed.await.unwrap();
    seeding.await.unwrap().unwrap();
    let token = asking.await.unwrap();
    assert_eq!(h.refresh_requests(), 1);
    let stored = store.record("u1").unwrap();
    assert_eq!(stored.access_token.unwrap().value.expose(), token);
    let rt = stored.refresh_token.unwrap();
    assert_eq!(h.emu.refresh_token_state(rt.expose()), TokenState::Active);
    assert_eq!(
        h.emu.refresh_token_state(&family.refresh_token),
        TokenState::Consumed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_waiting_for_a_refresh_waits_for_the_save_that_refresh_abandoned() {
    let h = harness();
    let store = HostStore::new();
    let (session, _) = seeded(&h, &store, "u1").await;
    // A refresh is saving its rotated record, slowly.
    let (caller, rotated, go, landed) = late_rotation_save(&store, &session).await;
    // A re-link arrives and waits for that refresh.
    let relink = h.emu.seed(CLIENT_ID, SCOPE);
    let seed = |token: &str| Seed {
        refresh_token: token.to_owned().into(),
        ..Seed::default()
    };
    let mut seeding = {
        let session = session.clone();
        let seed = seed(&relink.refresh_token);
        Box::pin(async move { session.seed(seed).await })
    };
    assert!(polled_once(&mut seeding).await);
    // The rotated record's save outlives its deadline; the host still writes it.
    h.expire_deadline(STORE_TIMEOUT_MS).await;
    storage_message(caller.await.unwrap());

    // The seed does not replace the record while that write may land over it.
    let message = held_back(&h, seeding).await;
    assert!(message.contains("abandoned at its deadline"), "{message}");
    go.send(()).unwrap();
    landed.await.unwrap();
    assert_eq!(
        store.record("u1").unwrap().refresh_token,
        rotated.refresh_token
    );

    // Once it landed, the re-link replaces it, and stays.
    session.seed(seed(&relink.refresh_token)).await.unwrap();
    let stored = store.record("u1").unwrap().refresh_token.unwrap();
    assert_eq!(stored.expose(), relink.refresh_token);
    assert!(!session.status().await.unwrap().unpersisted);
}

/// HTTP whose refresh answers wait for a gate; a code exchange is answered
/// at once. Answers are numbered in the order they are given.
struct GatedRefresh {
    gate: Mutex<Option<oneshot::Receiver<()>>>,
    answered: AtomicUsize,
}

#[async_trait]
impl HttpClient for GatedRefresh {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        if request.body.contains("grant_type=refresh_token") {
            let gate = self.gate.lock().unwrap().take();
            if let Some(gate) = gate {
                let _ = gate.await;
            }
        }
        let n = self.answered.fetch_add(1, Ordering::SeqCst);
        let body = format!(
            r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":900,"refresh_token":"rt-{n}","scope":"offline_access"}}"#
        );
        Ok(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into_bytes(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_exchanged_while_a_refresh_of_the_key_runs_is_saved_after_it() {
    let (go, gate) = oneshot::channel();
    let http = Arc::new(GatedRefresh {
        gate: Mutex::new(Some(gate)),
        answered: AtomicUsize::new(0),
    });
    let config = Config::builder("https://bank.example/connect/token", CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    let clock = Arc::new(freshtoken::ManualClock::new(common::wall_ms()));
    let client = TokenClient::new(config, http, clock);
    let store = Arc::new(MemoryStore::new()); // compare-and-swap
    let session = client.session("u1", store.clone()).unwrap();
    session
        .seed(Seed {
            refresh_token: "rt-seed".to_owned().into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    // A refresh is on the wire; a re-link's code is exchanged meanwhile
    // (answered first: at-0/rt-0) and waits for the refresh to end.
    let mut refreshing = Box::pin(session.refresh());
    assert!(polled_once(&mut refreshing).await);
    let verifier = "v".repeat(43);
    let redirect = "https://app.example/callback";
    let mut linking =
        Box::pin(client.exchange_code("code-1", &verifier, redirect, "u1", store.clone()));
    assert!(polled_once(&mut linking).await);

    // The refresh saves its rotation (the stored version moves on); the
    // exchange then compares against that version, not the one it read
    // before waiting, and the new link is saved.
    go.send(()).unwrap();
    refreshing.await.unwrap();
    let linked = linking.await.expect("the new link is saved");
    assert_eq!(linked.access_token().await.unwrap(), "at-0");
    let stored = Record::decode(&store.get("u1").unwrap()).unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-0");
}
