//! The authorization-code flow with PKCE against the emulator: authorize URL,
//! a non-interactive approval, the code exchange storing the first record.

mod common;

use common::authorize::{approve, approved_for, REDIRECT};
use common::{Harness, TestStore};
use freshtoken::{AuthorizationParams, ErrorCode, TokenClient, UserSession};
use freshtoken_emulator::{Fault, TokenState};
use std::time::Duration;

/// Exchanges `code` for session `u1` in the harness store.
async fn exchange(
    client: &TokenClient,
    h: &Harness,
    code: &str,
    verifier: &str,
) -> Result<UserSession, freshtoken::Error> {
    client
        .exchange_code(code, verifier, REDIRECT, "u1", h.store.clone())
        .await
}

/// The scopes `params` asks for.
const SCOPES: &[&str] = &["openid", "accounts"];

fn params() -> AuthorizationParams {
    AuthorizationParams {
        redirect_uri: REDIRECT.into(),
        scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
        ..AuthorizationParams::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_exchange_stores_the_first_record_and_the_session_refreshes() {
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    assert!(request.url.starts_with(&h.emu.authorization_endpoint()));
    let (code, state) = approve(&request.url).await;
    assert_eq!(state, request.state);

    let session = exchange(&h.client, &h, &code, &request.code_verifier)
        .await
        .unwrap();
    let record = h.store.record("u1").unwrap();
    let rt = record.refresh_token.unwrap().expose().to_owned();
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    let info = session.tokens().await.unwrap();
    assert!(info.scope.unwrap().contains("offline_access"));
    assert!(info.id_token.is_some());
    assert_eq!(h.refresh_requests(), 0);

    session.refresh().await.unwrap();
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_verifier_is_an_oauth_error_and_stores_nothing() {
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    let wrong = "a-different-verifier-of-sufficient-length-000000";
    let error = exchange(&h.client, &h, &code, wrong).await.unwrap_err();
    assert_eq!(
        (error.code().as_str(), error.oauth_error()),
        ("oauth", Some("invalid_grant"))
    );
    assert!(h.store.inner.get("u1").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_client_uses_pkce_without_a_secret() {
    let h = Harness::with(Default::default(), |b| b);
    let config = freshtoken::Config::builder(h.emu.token_endpoint(), "public-client")
        .build()
        .unwrap();
    let client = Harness::client_on(&h.emu, config, h.clock.clone());
    let request = client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    let session = exchange(&client, &h, &code, &request.code_verifier)
        .await
        .unwrap();
    session.refresh().await.unwrap();
    assert_eq!(h.emu.counters().refresh_success, 1);
    assert_eq!(
        client
            .client_token(&["accounts"])
            .await
            .unwrap_err()
            .oauth_error(),
        Some("unauthorized_client")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_unsaved_waits_for_a_code_exchange_still_out_and_saves_what_its_store_refused() {
    // The caller gave up while the code was out, and the exchange's save
    // fails after save_unsaved() began: it is waited for, then saved, so
    // a client closed right after keeps the user's new link.
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, SCOPES).await;
    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    h.store
        .fail_saves
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let (client, store) = (h.client.clone(), h.store.clone());
    let caller = tokio::spawn(async move {
        client
            .exchange_code(&code, &verifier, REDIRECT, "u1", store)
            .await
    });
    common::abandoned_once_held(&h.emu, caller).await;

    let mut saving = Box::pin(h.client.save_unsaved());
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(saving.as_mut(), cx))
    })
    .await;
    assert!(first.is_pending(), "waits for the exchange");
    assert_eq!(h.emu.release_held(), 1);
    let guard = Duration::from_secs(10); // fails the test instead of hanging it
    tokio::time::timeout(guard, saving).await.unwrap().unwrap();
    let rt = h.store.refresh_token("u1").expect("the new link is saved");
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    assert_eq!(h.grant_requests("authorization_code"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_exchange_saves_as_the_sessions_flight_so_no_rotation_is_saved_over() {
    // The exchange's save fails; the callback is handled again (a reload)
    // and the repeat saves what the first issued. That save used to run
    // beside the session's flight: a refresh meanwhile rotated the issued
    // token and saved the rotation, then the slow save landed and put the
    // spent token back in the store.
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, SCOPES).await;
    h.store
        .fail_saves
        .store(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        again(&h.client, &h.store, &code, &verifier)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Storage
    );
    let session = h.client.session("u1", h.store.clone()).unwrap();
    assert!(session.holds_unsaved());

    let (mut saving, release_save) = h.store.gate_saves();
    let repeat = exchanging(&h, &code, &verifier);
    let guard = Duration::from_secs(10); // fails the test instead of hanging it
    let issued = tokio::time::timeout(guard, saving.recv())
        .await
        .unwrap()
        .unwrap();
    let refresh = tokio::spawn({
        let session = session.clone();
        async move { session.refresh().await }
    });
    // No other save may start while the repeat's save is out: the refresh
    // waits for it. (A wrong build's rotation save gets here in
    // milliseconds; a right one never does, so this wait cannot fail it.)
    let during = tokio::time::timeout(Duration::from_millis(500), saving.recv()).await;
    assert!(
        during.is_err(),
        "a refresh saved its rotation while the repeat's save was out"
    );
    release_save.notify_one();
    let rotation = tokio::time::timeout(guard, saving.recv())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(rotation, issued);
    release_save.notify_one();
    refresh.await.unwrap().expect("refreshed after the save");
    repeat
        .await
        .unwrap()
        .expect("the repeat saved the issued record");
    let rt = h.store.refresh_token("u1").expect("a refresh token");
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    assert_eq!(h.refresh_requests(), 1);
    assert_eq!(h.grant_requests("authorization_code"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_after_the_code_was_sent_still_gets_its_tokens_saved() {
    // The code is single use: a caller that stops waiting (a timeout, a
    // closed screen) after sending it must not throw away what it brings.
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let (mut saving, release_save) = h.store.gate_saves();
    let client = h.client.clone();
    let store = h.store.clone();
    let verifier = request.code_verifier.clone();
    let caller = tokio::spawn(async move {
        client
            .exchange_code(&code, &verifier, REDIRECT, "u1", store)
            .await
    });
    common::abandoned_once_held(&h.emu, caller).await;

    // The server answers after the caller left; the answer is still saved.
    assert_eq!(h.emu.release_held(), 1);
    let guard = Duration::from_secs(10); // fails the test instead of hanging it
    let record = tokio::time::timeout(guard, saving.recv())
        .await
        .expect("the exchange went on and saved what the code brought")
        .unwrap();
    release_save.notify_one();
    tokio::time::timeout(guard, h.store.landed.notified())
        .await
        .unwrap();
    let rt = h
        .store
        .refresh_token("u1")
        .expect("the first refresh token");
    assert!(record.contains("refresh_token"));
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    // Another process (a new client on the store) uses it. Not this
    // client: the exchange may still be between its save and marking the
    // record saved, and a call now would save it again, into the gate.
    let restarted = Harness::client_on(&h.emu, h.client.config().clone(), h.clock.clone());
    let session = restarted.session("u1", h.store.clone()).unwrap();
    session.access_token().await.unwrap();
    assert_eq!(
        h.refresh_requests(),
        0,
        "the exchanged access token is fresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mirror_copies_the_replaced_token_while_an_abandoned_exchange_runs_on() {
    // A host mirror (Kotlin, Swift, Python) fills itself from
    // cached_token() and drops the key when its caller's call ends. A
    // caller that gave up ends before the exchange that runs on: a token
    // copied then would be served, after the re-link, as the new account's.
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let old = session.access_token().await.unwrap();
    assert!(session.cached_token().is_some());
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let (client, store) = (h.client.clone(), h.store.clone());
    let (first_code, verifier) = (code.clone(), request.code_verifier.clone());
    let caller = tokio::spawn(async move {
        client
            .exchange_code(&first_code, &verifier, REDIRECT, "u1", store)
            .await
    });
    common::abandoned_once_held(&h.emu, caller).await;

    assert!(
        session.cached_token().is_none(),
        "nothing to mirror while the exchange runs"
    );
    assert_eq!(
        session.cached_access_token().as_deref(),
        Some(old.as_str()),
        "the core's own callers still get the token it has not yet replaced"
    );

    assert_eq!(h.emu.release_held(), 1);
    // A repeat of the callback joins the exchange: its end is this one's.
    let joined = exchange(&h.client, &h, &code, &request.code_verifier)
        .await
        .unwrap();
    let new = joined
        .cached_token()
        .expect("the exchanged token, mirrorable");
    assert_ne!(new.token, old);
    assert_eq!(session.cached_token().unwrap().token, new.token);
}

// A callback handled twice (a reload, a double submit, a retried request)
// or twice at once: servers refuse a code's second use and revoke what its
// first brought (RFC 6749 §4.1.2; the emulator and oidc-provider do), so
// sending it again would kill the session the first call saved.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_exchanged_again_for_the_same_session_is_not_sent_again() {
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    exchange(&h.client, &h, &code, &request.code_verifier)
        .await
        .unwrap();
    let rt = h.store.refresh_token("u1").unwrap();
    // The same callback again, through another client of the process.
    let other = Harness::client_on(&h.emu, h.client.config().clone(), h.clock.clone());
    for client in [&h.client, &other] {
        exchange(client, &h, &code, &request.code_verifier)
            .await
            .expect("the first exchange's outcome");
    }
    assert_eq!(h.grant_requests("authorization_code"), 1);
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    h.session("u1").refresh().await.unwrap();
}

/// Redemptions are forgotten by the clock of the client that made them:
/// another client's clock reading an hour ahead (a fake one in a test, a
/// host clock) used to prune them all, and a repeat sent the code again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_clock_does_not_forget_a_redemption() {
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, SCOPES).await;
    again(&h.client, &h.store, &code, &verifier).await.unwrap();
    let ahead = Harness::new();
    ahead.clock.advance(3_600_000);
    let (other, other_verifier) = approved_for(&ahead.client, SCOPES).await;
    again(&ahead.client, &ahead.store, &other, &other_verifier)
        .await
        .unwrap();
    again(&h.client, &h.store, &code, &verifier)
        .await
        .expect("the first exchange's outcome");
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exchanges_of_one_code_send_it_once() {
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let verifier = request.code_verifier.as_str();
    let results = common::joined_then_released(
        &h.emu,
        [
            exchange(&h.client, &h, &code, verifier),
            exchange(&h.client, &h, &code, verifier),
        ],
    )
    .await;
    for result in results {
        result.expect("both callers get the one exchange's tokens");
    }
    assert_eq!(h.grant_requests("authorization_code"), 1);
    let rt = h.store.refresh_token("u1").unwrap();
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeemed_code_for_another_session_key_is_refused_unsent() {
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    exchange(&h.client, &h, &code, &request.code_verifier)
        .await
        .unwrap();
    let rt = h.store.refresh_token("u1").unwrap();
    let error = h
        .client
        .exchange_code(
            &code,
            &request.code_verifier,
            REDIRECT,
            "u2",
            h.store.clone(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, freshtoken::Error::Config { field, .. } if field == "code"),
        "{error}"
    );
    assert_eq!(h.grant_requests("authorization_code"), 1);
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    assert!(h.store.record("u2").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_whose_exchange_failed_can_be_sent_again() {
    // Surely never redeemed (429: not processed): a retry is sent.
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    h.emu
        .push_fault(Fault::status(429).for_grant("authorization_code").times(4));
    let error = exchange(&h.client, &h, &code, &request.code_verifier)
        .await
        .unwrap_err();
    assert_eq!(error.code().as_str(), "transient");
    h.emu.clear_faults();
    exchange(&h.client, &h, &code, &request.code_verifier)
        .await
        .expect("the code was never accepted: sent again");
    assert!(h.store.refresh_token("u1").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_rfc_7636_forbids_is_a_config_error_and_the_code_is_kept() {
    // A conformant server refuses such a verifier, and some drop the
    // single-use code before checking it (IdentityServer4's token request
    // validator removes the code, then checks redirect_uri and PKCE).
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    let good = request.code_verifier.as_str();
    for bad in [
        "v".repeat(42),
        "v".repeat(129),
        format!("{}+/=", &good[..40]),
        format!("{}é", &good[..42]),
        format!("{} ", &good[..42]),
    ] {
        let error = exchange(&h.client, &h, &code, &bad).await.unwrap_err();
        assert!(
            matches!(&error, freshtoken::Error::Config { field, .. } if field == "code_verifier"),
            "{error}"
        );
        assert!(
            !error.to_string().contains(&bad[..20]),
            "the verifier is shown"
        );
    }
    assert_eq!(h.grant_requests("authorization_code"), 0, "nothing sent");
    exchange(&h.client, &h, &code, good)
        .await
        .expect("the code is still good");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_code_leaves_the_existing_session_and_its_refresh_token() {
    let h = Harness::new();
    let (session, rt) = h.seeded("u1").await;
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    let error = exchange(
        &h.client,
        &h,
        &format!("{code}-not-issued"),
        &request.code_verifier,
    )
    .await
    .unwrap_err();
    assert_eq!(error.oauth_error(), Some("invalid_grant"));
    assert_eq!(h.store.refresh_token("u1").as_deref(), Some(rt.as_str()));
    assert!(session.status().await.unwrap().reauth.is_none());
    session.access_token().await.unwrap();
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Consumed);
}

/// A compare-and-swap store whose reads fail after the first `reads` (a
/// database that went down for reads); its writes work.
struct UnreadableVersions(freshtoken::MemoryStore, std::sync::atomic::AtomicU32);

impl UnreadableVersions {
    fn after(reads: u32) -> std::sync::Arc<Self> {
        std::sync::Arc::new(UnreadableVersions(
            freshtoken::MemoryStore::new(),
            reads.into(),
        ))
    }
}

#[async_trait::async_trait]
impl freshtoken::TokenStore for UnreadableVersions {
    async fn load(&self, _key: &str) -> Result<Option<String>, freshtoken::StoreError> {
        Err(freshtoken::StoreError("reads are down".into()))
    }
    async fn save(&self, key: &str, record: &str) -> Result<(), freshtoken::StoreError> {
        self.0.save(key, record).await
    }
    fn supports_versions(&self) -> bool {
        true
    }
    async fn load_versioned(
        &self,
        key: &str,
    ) -> Result<Option<freshtoken::Versioned>, freshtoken::StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self
            .1
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(freshtoken::StoreError("reads are down".into()));
        }
        self.0.load_versioned(key).await
    }
    async fn save_versioned(
        &self,
        key: &str,
        record: &str,
        expected: Option<&str>,
    ) -> Result<freshtoken::CasOutcome, freshtoken::StoreError> {
        self.0.save_versioned(key, record, expected).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_tell_its_version_fails_the_exchange_before_the_code_is_sent() {
    // The save after the exchange compares and swaps against the stored
    // version: asked only then, the issued tokens were refused after the
    // server gave them, and the single-use code was spent.
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    let down = UnreadableVersions::after(0);
    let error = h
        .client
        .exchange_code(&code, &request.code_verifier, REDIRECT, "u1", down)
        .await
        .unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(
        h.grant_requests("authorization_code"),
        0,
        "the code was not sent"
    );
    exchange(&h.client, &h, &code, &request.code_verifier)
        .await
        .expect("the code is still good once the store answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_exchange_replaces_an_encrypted_record_no_key_opens() {
    use freshtoken::{EncryptedStore, EncryptionKey, EncryptionKeys, MemoryStore, TokenStore};
    let h = Harness::new();
    let inner = std::sync::Arc::new(MemoryStore::new());
    let sealed_by = |id: &str, byte: u8| {
        std::sync::Arc::new(EncryptedStore::new(
            inner.clone(),
            EncryptionKeys::new(EncryptionKey::new(id, &[byte; 32]).unwrap()),
        ))
    };
    sealed_by("2025", 0x25)
        .save("u1", r#"{"schema":"freshtoken.record/1","refresh_token":"rt-under-a-removed-key","updated_at":1}"#)
        .await
        .unwrap();
    let current = sealed_by("2026", 0x26);
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    let session = h
        .client
        .exchange_code(
            &code,
            &request.code_verifier,
            REDIRECT,
            "u1",
            current.clone(),
        )
        .await
        .expect("the re-link replaces the record no key opens");
    assert_eq!(h.grant_requests("authorization_code"), 1);
    let stored = current
        .load("u1")
        .await
        .unwrap()
        .expect("saved under the current key");
    let record = freshtoken::Record::decode(&stored).unwrap();
    assert!(record.refresh_token.is_some() && record.access_token.is_some());
    session.access_token().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_tokens_are_saved_when_the_store_stops_telling_its_version_during_the_exchange() {
    // The store answered before the code was sent and fails to after the
    // server issued the tokens: they are saved against the version read
    // before, not thrown away with the spent code.
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    let store = UnreadableVersions::after(1);
    h.client
        .exchange_code(&code, &request.code_verifier, REDIRECT, "u1", store.clone())
        .await
        .expect("the issued tokens are saved");
    assert_eq!(h.grant_requests("authorization_code"), 1);
    let stored = store.0.get("u1").expect("a stored record");
    let record = freshtoken::Record::decode(&stored).unwrap();
    assert!(record.refresh_token.is_some() && record.access_token.is_some());
}

/// The same code again for session `u1` of `h.client`, as a task of its own.
fn exchanging(
    h: &Harness,
    code: &str,
    verifier: &str,
) -> tokio::task::JoinHandle<Result<UserSession, freshtoken::Error>> {
    let (client, store) = (h.client.clone(), h.store.clone());
    let (code, verifier) = (code.to_owned(), verifier.to_owned());
    tokio::spawn(async move { again(&client, &store, &code, &verifier).await })
}

/// The same code again for session `u1` of `client` on `store`.
async fn again(
    client: &TokenClient,
    store: &std::sync::Arc<TestStore>,
    code: &str,
    verifier: &str,
) -> Result<UserSession, freshtoken::Error> {
    client
        .exchange_code(code, verifier, REDIRECT, "u1", store.clone())
        .await
}

/// An exchange whose answer was lost (its deadline passed while the server
/// held it) may have redeemed the code: a repeat (the user reloads the
/// callback) gets the same error and sends nothing. It used to send the
/// code again, and the server, seeing it reused, revoked what the first
/// request issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_whose_answer_was_lost_is_never_sent_again() {
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, SCOPES).await;
    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let first = exchanging(&h, &code, &verifier);
    h.emu.wait_held(1);
    h.expire_deadline(32_000).await; // the request's 30 s and its grace
    let error = first.await.unwrap().unwrap_err();
    assert_eq!(error.code(), ErrorCode::Timeout);

    let repeat = again(&h.client, &h.store, &code, &verifier).await;
    assert_eq!(repeat.unwrap_err().code(), ErrorCode::Timeout);
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
    assert_eq!(h.emu.release_held(), 1);
}

/// A 5xx to the code grant (a gateway's, while the server went on) may
/// have redeemed it: it is not retried, and a repeat sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_to_the_code_grant_is_not_retried() {
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, SCOPES).await;
    h.emu
        .push_fault(Fault::status(502).for_grant("authorization_code"));
    let error = exchange(&h.client, &h, &code, &verifier).await.unwrap_err();
    assert!(
        matches!(
            error,
            freshtoken::Error::Transient {
                status: 502,
                attempts: 1,
                ..
            }
        ),
        "{error:?}"
    );
    let repeat = exchange(&h.client, &h, &code, &verifier).await;
    assert_eq!(repeat.unwrap_err().code(), ErrorCode::Transient);
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
    assert!(h.store.record("u1").is_none());
}

/// A redemption is remembered for as long as it runs: one still waiting
/// for its answer more than ten minutes on (a long request timeout, a clock
/// stepped forward) used to be forgotten, and a repeat sent the code again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_joins_an_exchange_that_runs_longer_than_ten_minutes() {
    let h = Harness::with(Default::default(), |b| b.timeout_ms(600_000));
    let (code, verifier) = approved_for(&h.client, SCOPES).await;
    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let first = exchanging(&h, &code, &verifier);
    h.emu.wait_held(1);
    // Past the ten minutes, short of the request's deadline (and grace).
    h.clock.advance(600_500);
    let repeat = exchanging(&h, &code, &verifier);
    // Only the first request is ever held: release it once it is the one.
    assert_eq!(h.emu.release_held(), 1);
    first.await.unwrap().expect("the first exchange");
    repeat.await.unwrap().expect("the repeat joined it");
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
}

/// A code exchanged for `u1` whose issued record's save failed (`storage`),
/// and its verifier.
async fn exchanged_with_a_failed_save(h: &Harness) -> (String, String) {
    let (code, verifier) = approved_for(&h.client, SCOPES).await;
    h.store
        .fail_saves
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let error = exchange(&h.client, h, &code, &verifier).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Storage);
    (code, verifier)
}

/// The issued record's save failed: a repeat saves it (DESIGN point 4)
/// instead of answering `storage` for ten minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_after_the_issued_record_could_not_be_saved_saves_it() {
    let h = Harness::new();
    let (code, verifier) = exchanged_with_a_failed_save(&h).await;
    assert!(h.store.record("u1").is_none());
    let session = exchange(&h.client, &h, &code, &verifier)
        .await
        .expect("the repeat saves the record");
    assert!(h.store.refresh_token("u1").is_some());
    session.access_token().await.unwrap();
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
    assert_eq!(h.refresh_requests(), 0);
}

/// A repeat through another client of the process (its own state for the
/// key, here holding the previous account's token) used to resolve while
/// that client kept serving the old token. It now reads what the first
/// exchange saved; with a store that does not hold it, it is a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_through_another_client_reads_the_record_the_first_saved() {
    let h = Harness::new();
    let twin = h.twin();
    h.seeded("u1").await;
    let old = twin
        .session("u1", h.store.clone())
        .unwrap()
        .access_token()
        .await
        .unwrap();
    let (code, verifier) = approved_for(&h.client, SCOPES).await;
    let first = exchange(&h.client, &h, &code, &verifier).await.unwrap();
    let issued = first.access_token().await.unwrap();
    assert_ne!(issued, old);

    let repeat = again(&twin, &h.store, &code, &verifier)
        .await
        .expect("the repeat reads the saved record");
    assert_eq!(repeat.access_token().await.unwrap(), issued);

    let elsewhere = twin.clone();
    let empty = TestStore::new();
    let session = elsewhere.session("u2", empty.clone()).unwrap();
    drop(session);
    let error = h
        .twin()
        .exchange_code(&code, &verifier, REDIRECT, "u1", empty)
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::Conflict, "{error}");
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
}

/// A redirect URI with a character no URI has (a trailing newline from a
/// config file, a space, a NUL) is refused before the code is sent: the
/// server would refuse it, and a code refused is spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_uri_with_characters_no_uri_has_is_refused_unsent() {
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, SCOPES).await;
    for bad in [
        "https://app.example/callback\n",
        "https://app.example/call back",
        "https://app.example/cb\0",
        "https://app.example/caf\u{e9}",
    ] {
        let error = h
            .client
            .exchange_code(&code, &verifier, bad, "u1", h.store.clone())
            .await
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::Config, "{bad:?}");
        let mut params = params();
        params.redirect_uri = bad.into();
        assert_eq!(
            h.client.authorization_url(params).unwrap_err().code(),
            ErrorCode::Config
        );
    }
    assert_eq!(h.grant_requests("authorization_code"), 0);
    exchange(&h.client, &h, &code, &verifier)
        .await
        .expect("the code is still good");
}

/// An exchange whose caller went away with nothing to drive it (a client
/// without a spawner, the handler dropped) is forgotten once it has been
/// running longer than a driven one can (at the next redemption in the
/// process), and its key is no longer held as being replaced: it used to
/// be kept for good, and the key served no cached token ever again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_left_with_nothing_to_drive_it_is_forgotten_in_time() {
    let h = Harness::new();
    let plain = common::plain_client(&h.emu, h.clock.clone());
    let (code, verifier) = approved_for(&h.client, SCOPES).await;
    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let store = TestStore::new();
    {
        let exchange = again(&plain, &store, &code, &verifier);
        let held = h.emu.held_requests();
        let sent = tokio::task::spawn_blocking(move || held.wait(1));
        tokio::select! {
            _ = exchange => panic!("the server holds it"),
            _ = sent => {}
        }
    }
    assert_eq!(h.emu.release_held(), 1);
    h.clock.advance(3_600_000);
    // Another user's login an hour later (redemptions are pruned then).
    let (other, other_verifier) = approved_for(&plain, SCOPES).await;
    plain
        .exchange_code(&other, &other_verifier, REDIRECT, "u2", store.clone())
        .await
        .unwrap();
    let family = h
        .emu
        .seed(common::CLIENT_ID, "openid offline_access accounts");
    let session = plain.session("u1", store.clone()).unwrap();
    common::seed_refresh_token(&session, &family.refresh_token).await;
    session.access_token().await.unwrap();
    assert!(
        session.cached_token().is_some(),
        "the key serves its cached token"
    );
}

/// A repeat through another client after the first client's save failed
/// and its session saved the record since: the store holds it, so the
/// repeat reads it (it used to answer `storage` for ten minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_through_another_client_after_a_failed_save_reads_the_saved_record() {
    let h = Harness::new();
    let twin = h.twin();
    let (code, verifier) = exchanged_with_a_failed_save(&h).await;
    let issued = h.session("u1").access_token().await.unwrap();
    assert!(
        h.store.record("u1").is_some(),
        "saved by the session's call"
    );
    let repeat = again(&twin, &h.store, &code, &verifier)
        .await
        .expect("the store holds the record");
    assert_eq!(repeat.access_token().await.unwrap(), issued);
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
}

/// A repeat through another client once the linked session refreshed: the
/// store holds the record's successor, written since, which is the linked
/// session (it used to be a conflict, the issued access token gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_through_another_client_after_a_refresh_reads_the_successor() {
    let h = Harness::new();
    let twin = h.twin();
    let (code, verifier) = approved_for(&h.client, SCOPES).await;
    let first = exchange(&h.client, &h, &code, &verifier).await.unwrap();
    let refreshed = first.refresh().await.unwrap();
    let repeat = again(&twin, &h.store, &code, &verifier)
        .await
        .expect("the linked session's successor");
    assert_eq!(repeat.access_token().await.unwrap(), refreshed.access_token);
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
}
