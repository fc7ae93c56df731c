//! Revocation (RFC 7009) against the emulator's revocation endpoint:
//! `session.revoke()` and `client.revoke_client_tokens()`.

mod common;

use common::{refreshes, seed_family, Harness, OffsetClock, TestStore, CLIENT_ID, CLIENT_SECRET};
use freshtoken::{
    async_trait, Config, ErrorCode, NativeHttp, ReauthReason, RetryPolicy, StoreError, TokenClient,
    TokenStore,
};
use freshtoken_emulator::{Emulator, Fault, Options, TokenState};
use futures_util::future::{maybe_done, poll_fn};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::Notify;

fn reason(result: Result<String, freshtoken::Error>) -> Option<ReauthReason> {
    result.unwrap_err().reason()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_revokes_both_tokens_marks_the_record_dead_and_fails_fast() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    session.access_token().await.unwrap();
    let live_rt = h.store.refresh_token("u1").unwrap();

    session.revoke().await.expect("revoked");

    let counters = h.emu.counters();
    assert_eq!(
        counters.revocation_requests, 2,
        "refresh token, then access token"
    );
    assert_eq!(counters.revocation_by_hint.get("refresh_token"), Some(&1));
    assert_eq!(counters.revocation_by_hint.get("access_token"), Some(&1));
    assert_eq!(h.emu.refresh_token_state(&live_rt), TokenState::Revoked);
    let stored = h.store.record("u1").unwrap();
    assert_eq!(stored.reauth, Some(ReauthReason::Revoked));
    assert!(stored.refresh_token.is_none() && stored.access_token.is_none());

    let before = h.emu.counters().token_requests;
    assert_eq!(
        reason(session.access_token().await),
        Some(ReauthReason::Revoked)
    );
    assert_eq!(
        session.status().await.unwrap().reauth,
        Some(ReauthReason::Revoked)
    );
    assert_eq!(h.emu.counters().token_requests, before, "nothing sent");
    // A second revoke has nothing left to send.
    session.revoke().await.unwrap();
    assert_eq!(h.emu.counters().revocation_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_sees_the_revocation_through_the_store() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    session.revoke().await.unwrap();
    // Another process: its own client, the same store.
    let config = Config::builder(h.emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    let other = Harness::client_on(&h.emu, config, h.clock.clone());
    let there = other.session("u1", h.store.clone()).unwrap();
    let before = h.emu.counters().token_requests;
    assert_eq!(
        reason(there.access_token().await),
        Some(ReauthReason::Revoked)
    );
    assert_eq!(h.emu.counters().token_requests, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_by_another_client_waits_for_its_refresh_and_revokes_the_rotated_token() {
    // A logout through one client while another client of the process
    // refreshes the same session: the token revoked is the new one, not the
    // one being replaced (which left the rotation live at the server).
    let h = Harness::new();
    let (a, _) = h.seeded("u1").await;
    let twin = h.twin();
    let b = twin.session("u1", h.store.clone()).unwrap();
    h.emu.push_fault(Fault::hold().for_grant("refresh_token"));
    let refresh = tokio::spawn(async move { a.access_token().await });
    let held = h.emu.held_requests();
    tokio::task::spawn_blocking(move || held.wait(1))
        .await
        .unwrap();
    // B reads the store while A's request is out (the record in doubt).
    let loads = h.store.loads.load(Ordering::SeqCst);
    let revoke = tokio::spawn(async move { b.revoke().await });
    while h.store.loads.load(Ordering::SeqCst) == loads {
        tokio::task::yield_now().await;
    }
    assert_eq!(h.emu.release_held(), 1);
    let token = refresh.await.unwrap().expect("the refresh succeeded");
    revoke.await.unwrap().expect("revoked");
    assert!(
        !api_accepts(&h, &token).await,
        "the rotated family is revoked"
    );
    assert_eq!(
        h.emu.counters().revocation_by_hint.get("refresh_token"),
        Some(&1)
    );
    assert_eq!(
        h.store.record("u1").unwrap().reauth,
        Some(ReauthReason::Revoked)
    );
}

/// Whether the emulator's REST API takes `token`.
async fn api_accepts(h: &Harness, token: &str) -> bool {
    use freshtoken::HttpClient;
    let response = NativeHttp::new()
        .unwrap()
        .send(freshtoken::HttpRequest {
            method: "GET".into(),
            url: format!("{}/api/accounts", h.emu.base_url()),
            headers: vec![("Authorization".into(), format!("Bearer {token}"))],
            body: String::new(),
            timeout_ms: 5_000,
            max_response_bytes: 65_536,
        })
        .await
        .unwrap();
    response.status == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_waits_for_a_refresh_in_flight_and_revokes_the_rotated_token() {
    let h = Harness::new();
    let (session, seeded_rt) = h.seeded("u1").await;
    // Every settling save reports its record (and is let through at once).
    let (mut saves, release) = h.store.gate_saves();
    let records = tokio::spawn(async move {
        let mut records = Vec::new();
        while let Some(record) = saves.recv().await {
            records.push(freshtoken::Record::decode(&record).unwrap());
            release.notify_one();
            if records.len() == 3 {
                break;
            }
        }
        records
    });
    h.emu.push_fault(Fault::hold());
    let refreshing = tokio::spawn({
        let session = session.clone();
        async move { session.access_token().await }
    });
    h.emu.wait_held(1);
    let revoking = tokio::spawn({
        let session = session.clone();
        async move { session.revoke().await }
    });
    // A smoke check only (a revoke that did not wait would rarely have sent
    // yet): the order is proven by the end state below, the rotated token
    // revoked and the seeded one consumed.
    tokio::task::yield_now().await;
    assert_eq!(h.emu.counters().revocation_requests, 0, "held back");
    h.emu.release_held();
    refreshing.await.unwrap().expect("the refresh completes");
    revoking.await.unwrap().expect("then the revocation");
    // Saved in order: the rotation, the dead record, the record emptied.
    let records = records.await.unwrap();
    let rotated = records[0].refresh_token.as_ref().unwrap().expose();
    assert_ne!(rotated, seeded_rt);
    assert_eq!(records[1].reauth, Some(ReauthReason::Revoked));
    assert!(records[2].refresh_token.is_none());
    assert_eq!(h.emu.refresh_token_state(rotated), TokenState::Revoked);
    assert_eq!(h.emu.refresh_token_state(&seeded_rt), TokenState::Consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_revocation_failures_are_retried() {
    let h = Harness::new();
    let (session, rt) = h.seeded("u1").await;
    h.emu.push_fault(Fault::status(503).for_revocation());
    session.revoke().await.expect("the retry succeeds");
    assert_eq!(h.emu.counters().revocation_requests, 2);
    assert_eq!(h.clock.sleeps().len(), 1, "one backoff");
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Revoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_that_fails_for_good_still_kills_the_session_and_says_so() {
    let h = Harness::with(Options::default(), |b| {
        b.retry(RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        })
    });
    let (session, rt) = h.seeded("u1").await;
    h.emu
        .push_fault(Fault::status(503).for_revocation().times(2));
    let err = session.revoke().await.unwrap_err();
    assert!(err.server_may_hold_token(), "{err}");
    assert_eq!(err.code(), ErrorCode::Transient);
    assert!(err.to_string().contains("may still hold"), "{err}");
    assert!(!err.to_string().contains(&rt), "no token in the message");
    // Dead locally, and the token kept so that revoke() can be retried.
    let stored = h.store.record("u1").unwrap();
    assert_eq!(stored.reauth, Some(ReauthReason::Revoked));
    assert!(stored.refresh_token.is_some());
    assert_eq!(
        reason(session.access_token().await),
        Some(ReauthReason::Revoked)
    );
    let status = session.status().await.unwrap();
    assert!(status.revocation_pending, "the server may hold the token");
    assert_eq!(status.reauth, Some(ReauthReason::Revoked));
    // Read from the record: another process's client of the store sees it too.
    let config = Config::builder(h.emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    let other = Harness::client_on(&h.emu, config, h.clock.clone());
    let there = other.session("u1", h.store.clone()).unwrap();
    assert!(there.status().await.unwrap().revocation_pending);
    session.revoke().await.expect("the retry goes through");
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Revoked);
    assert!(h.store.record("u1").unwrap().refresh_token.is_none());
    assert!(!session.status().await.unwrap().revocation_pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_client_credentials_are_invalid_client() {
    let h = Harness::with(Options::default(), |b| b.client_secret("wrong-secret"));
    let store = TestStore::new();
    let family = h.emu.seed(CLIENT_ID, "openid offline_access");
    let session = h.client.session("u1", store.clone()).unwrap();
    session
        .seed(freshtoken::Seed {
            refresh_token: family.refresh_token.clone().into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = session.revoke().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidClient);
    assert!(err.server_may_hold_token());
    assert_eq!(
        store.record("u1").unwrap().reauth,
        Some(ReauthReason::Revoked)
    );
    assert_eq!(
        h.emu.refresh_token_state(&family.refresh_token),
        TokenState::Active
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_save_the_dead_record_is_reported() {
    let (tx, revoked) = std::sync::mpsc::channel();
    let sink = Arc::new(RevokedEvents(std::sync::Mutex::new(tx)));
    let h = Harness::with(Options::default(), |b| b.on_event(sink));
    let (session, rt) = h.seeded("u1").await;
    h.store.fail_saves.store(u32::MAX, Ordering::SeqCst);
    let err = session.revoke().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Storage);
    // The event says what the call says: not a revocation that went through.
    let event = revoked.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(event, Ok(Some(ErrorCode::Storage)));
    // The server revoked all the same; the session is dead in memory, and
    // every call saves the pending record first (storage until it can).
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Revoked);
    let before = h.emu.counters().token_requests;
    let again = session.access_token().await.unwrap_err();
    assert_eq!(again.code(), ErrorCode::Storage);
    assert_eq!(h.emu.counters().token_requests, before, "nothing sent");
    h.store.fail_saves.store(0, Ordering::SeqCst);
    session.revoke().await.expect("saved on the next call");
    assert_eq!(
        h.store.record("u1").unwrap().reauth,
        Some(ReauthReason::Revoked)
    );
    assert!(
        revoked.try_recv().is_err(),
        "a revoked session is not revoked again"
    );
}

/// Another process rotated the token since this one read it, and the store
/// cannot be read when `revoke()` asks for the newest record: revoking the
/// older token in memory and saving it dead would overwrite the live one,
/// which the server would keep for its whole lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_store_stops_revoke_before_it_sends_or_saves_anything() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    session.access_token().await.unwrap();
    let other = h.other_process();
    let there = other.session("u1", h.store.clone()).unwrap();
    there.refresh().await.unwrap();
    let newest = h.store.refresh_token("u1").unwrap();

    h.store.fail_loads.store(1, Ordering::SeqCst);
    let err = session.revoke().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Storage, "{err}");
    assert_eq!(h.emu.counters().revocation_requests, 0, "nothing sent");
    assert_eq!(
        h.store.refresh_token("u1").as_deref(),
        Some(newest.as_str()),
        "the newest token is still stored"
    );
    assert_eq!(h.store.record("u1").unwrap().reauth, None);

    session.revoke().await.expect("the store reads again");
    assert_eq!(h.emu.refresh_token_state(&newest), TokenState::Revoked);
    let stored = h.store.record("u1").unwrap();
    assert_eq!(stored.reauth, Some(ReauthReason::Revoked));
    assert!(stored.refresh_token.is_none());
}

/// A caller that joins a revocation which stopped before it marked the
/// session revoked gets that error, not `revoked`: the session lives on,
/// and a host told `reauthorization_required` would have the user re-link
/// for nothing. (The store's load stalls until its deadline, so the
/// revocation is surely still running when the second caller arrives.)
#[tokio::test(flavor = "current_thread")]
async fn a_caller_joining_a_revocation_that_stopped_early_gets_its_error() {
    let emu = Emulator::start(Options::default()).unwrap();
    let config = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .store_timeout_ms(300)
        .build()
        .unwrap();
    let client = TokenClient::new(
        config,
        Arc::new(NativeHttp::new().unwrap()),
        Arc::new(OffsetClock::default()),
    );
    let store = TestStore::new();
    let session = client.session("u1", store.clone()).unwrap();
    seed_family(&emu, &session).await;
    store.stall_loads.store(1, Ordering::SeqCst);
    let mut revoking = Box::pin(maybe_done(session.revoke()));
    let mut joining = Box::pin(maybe_done(session.access_token()));
    poll_fn(|cx| {
        let _ = revoking.as_mut().poll(cx);
        let _ = joining.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
    assert_eq!(
        store.stalled.load(Ordering::SeqCst),
        1,
        "the revocation is reading"
    );
    tokio::join!(revoking.as_mut(), joining.as_mut());
    let revoked = revoking.as_mut().take_output().unwrap().unwrap_err();
    assert_eq!(revoked.code(), ErrorCode::Storage, "{revoked}");
    let joined = joining.as_mut().take_output().unwrap().unwrap_err();
    assert_eq!(joined.code(), ErrorCode::Storage, "{joined}");
    assert_eq!(emu.counters().revocation_requests, 0);
    assert_eq!(refreshes(&emu), 0, "it joined the revocation");
    session.access_token().await.expect("the session is alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_brings_a_revoked_session_back() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    session.revoke().await.unwrap();
    let family = h.emu.seed(CLIENT_ID, "openid offline_access");
    session
        .seed(freshtoken::Seed {
            refresh_token: family.refresh_token.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    session.access_token().await.expect("live again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_client_tokens_revokes_each_cached_token_and_forgets_it() {
    let h = Harness::new();
    let a = h.client.client_token(&["accounts"]).await.unwrap();
    h.client.client_token(&["balances"]).await.unwrap();
    h.client.revoke_client_tokens().await.unwrap();
    let counters = h.emu.counters();
    assert_eq!(counters.revocation_requests, 2);
    assert_eq!(counters.revocation_by_hint.get("access_token"), Some(&2));
    let b = h.client.client_token(&["accounts"]).await.unwrap();
    assert_ne!(a, b, "a new token after revocation");
    assert_eq!(h.grant_requests("client_credentials"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_asked_while_revoke_client_tokens_runs_is_a_new_one() {
    // Before, revoke_client_tokens() forgot each scope set's token only when
    // its turn came, after the revocations before it: a call meanwhile was
    // served a token about to be revoked, and its API calls failed.
    let h = Harness::new();
    let a = h.client.client_token(&["accounts"]).await.unwrap();
    let b = h.client.client_token(&["balances"]).await.unwrap();
    h.emu.push_fault(Fault::hold().for_revocation());
    let client = h.client.clone();
    let revoking = tokio::spawn(async move { client.revoke_client_tokens().await });
    let held = h.emu.held_requests();
    tokio::task::spawn_blocking(move || held.wait(1))
        .await
        .unwrap();

    // One revocation is held: both tokens are forgotten all the same.
    let a2 = h.client.client_token(&["accounts"]).await.unwrap();
    let b2 = h.client.client_token(&["balances"]).await.unwrap();
    assert!(
        a2 != a && b2 != b,
        "new tokens, not ones about to be revoked"
    );
    assert_eq!(h.grant_requests("client_credentials"), 4);
    assert_eq!(h.emu.release_held(), 1);
    revoking.await.unwrap().unwrap();
    assert_eq!(h.emu.counters().tokens_revoked, 2, "the two old ones");
    assert_eq!(h.client.client_token(&["accounts"]).await.unwrap(), a2);
    assert_eq!(h.client.client_token(&["balances"]).await.unwrap(), b2);
    assert_eq!(h.grant_requests("client_credentials"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_asked_after_revoke_client_tokens_began_never_joins_a_request_it_will_revoke(
) {
    // Before, a call made after the revocation began joined the request
    // still in flight, whose token the revocation then revoked: its API
    // calls failed though it asked after the revocation.
    let h = Harness::new();
    h.emu
        .push_fault(Fault::hold().for_grant("client_credentials"));
    let client = h.client.clone();
    let before = tokio::spawn(async move { client.client_token(&["accounts"]).await });
    let held = h.emu.held_requests();
    tokio::task::spawn_blocking(move || held.wait(1))
        .await
        .unwrap();
    // The revocation begins: polled once, it has taken the request.
    let mut revoking = Box::pin(h.client.revoke_client_tokens());
    poll_fn(|cx| {
        assert!(revoking.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;

    let after = h.client.client_token(&["accounts"]).await.unwrap();
    assert_eq!(
        h.grant_requests("client_credentials"),
        2,
        "a request of its own"
    );
    assert_eq!(h.emu.release_held(), 1);
    let joined_before = before.await.unwrap().unwrap();
    assert_ne!(after, joined_before);
    revoking.await.unwrap();
    assert_eq!(
        h.emu.counters().tokens_revoked,
        1,
        "the token of the request it took"
    );
    assert_eq!(
        h.client.client_token(&["accounts"]).await.unwrap(),
        after,
        "the new token stays cached; the revoked one was never cached"
    );
    assert_eq!(h.grant_requests("client_credentials"), 2);
}

/// Sends each `revoked` event's error code (`None`: revoked) to a channel.
struct RevokedEvents(std::sync::Mutex<std::sync::mpsc::Sender<Option<ErrorCode>>>);

impl freshtoken::EventSink for RevokedEvents {
    fn on_event(&self, event: &freshtoken::Event) {
        if event.kind == freshtoken::EventKind::Revoked {
            let _ = self.0.lock().unwrap().send(event.error_code);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_token_revocations_whose_caller_gave_up_still_revoke_every_token() {
    // DESIGN point 15, as for a session's revocation: a caller that gives
    // up (a cancelled coroutine, an aborted task) does not stop it. Before,
    // the revocations stopped with the caller, and the tokens it had
    // already forgotten stayed live at the server, untracked.
    let (tx, revoked) = std::sync::mpsc::channel();
    let sink = Arc::new(RevokedEvents(std::sync::Mutex::new(tx)));
    let h = Harness::with(Options::default(), |b| b.on_event(sink));
    h.client.client_token(&["accounts"]).await.unwrap();
    h.client.client_token(&["balances"]).await.unwrap();
    h.emu.push_fault(Fault::hold().for_revocation());
    let client = h.client.clone();
    let caller = tokio::spawn(async move { client.revoke_client_tokens().await });
    common::abandoned_once_held(&h.emu, caller).await;

    assert_eq!(h.emu.release_held(), 1);
    let outcomes = tokio::task::spawn_blocking(move || {
        (0..2)
            .map(|_| revoked.recv_timeout(std::time::Duration::from_secs(10)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .unwrap()
    .expect("both revocations went on without their caller");
    assert_eq!(outcomes, [None, None]);
    assert_eq!(h.emu.counters().tokens_revoked, 2);
}

/// A harness whose client sends each request once: one fault, one failure.
fn without_retries() -> Harness {
    Harness::with(Options::default(), |b| {
        b.retry(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_whose_revocation_failed_is_tried_again_not_forgotten() {
    let h = without_retries();
    let first = h.client.client_token(&["accounts"]).await.unwrap();
    h.emu.push_fault(Fault::status(503).for_revocation());
    let err = h.client.revoke_client_tokens().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Transient, "{err}");
    assert_eq!(h.emu.counters().tokens_revoked, 0);
    // Not served again, though the server may still hold it.
    let second = h.client.client_token(&["accounts"]).await.unwrap();
    assert_ne!(first, second);

    h.client
        .revoke_client_tokens()
        .await
        .expect("both go through");
    let counters = h.emu.counters();
    assert_eq!(
        counters.revocation_requests, 3,
        "the failed one again, then the new one"
    );
    assert_eq!(counters.tokens_revoked, 2);
    h.client.revoke_client_tokens().await.unwrap();
    assert_eq!(
        h.emu.counters().revocation_requests,
        3,
        "nothing left to send"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_whose_revocation_failed_twice_is_never_served_again() {
    // Before, when the earlier token's second try failed, the token just
    // taken for revocation went back in the cache and was served.
    let h = without_retries();
    let first = h.client.client_token(&["accounts"]).await.unwrap();
    h.emu.push_fault(Fault::status(503).for_revocation());
    h.client.revoke_client_tokens().await.unwrap_err();
    let second = h.client.client_token(&["accounts"]).await.unwrap();
    h.emu.push_fault(Fault::status(503).for_revocation());
    let err = h.client.revoke_client_tokens().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Transient, "{err}");
    let third = h.client.client_token(&["accounts"]).await.unwrap();
    assert!(
        third != first && third != second,
        "a token being revoked was served"
    );
    assert_eq!(
        h.emu.counters().revocation_requests,
        2,
        "one failed try each"
    );

    h.client
        .revoke_client_tokens()
        .await
        .expect("all go through");
    let counters = h.emu.counters();
    assert_eq!(counters.revocation_requests, 5, "first, second, then third");
    assert_eq!(counters.tokens_revoked, 3);
}

#[test]
fn the_revocation_endpoint_is_stitchs_by_default() {
    let c = Config::builder("https://secure.stitch.money/connect/token", "id")
        .client_secret("s")
        .build()
        .unwrap();
    assert_eq!(
        c.revocation_endpoint().unwrap(),
        "https://secure.stitch.money/connect/revocation"
    );
}

/// The emulator's token endpoint under a path no revocation endpoint can be
/// derived from (`…/connect/oauth2-token`, which this transport sends to
/// `…/connect/token`).
struct AliasedTokenPath(freshtoken::NativeHttp);

const ALIAS: &str = "/connect/oauth2-token";

#[freshtoken::async_trait]
impl freshtoken::HttpClient for AliasedTokenPath {
    async fn send(
        &self,
        mut request: freshtoken::HttpRequest,
    ) -> Result<freshtoken::HttpResponse, freshtoken::HttpError> {
        request.url = request.url.replace(ALIAS, "/connect/token");
        self.0.send(request).await
    }
}

/// With nowhere to send a revocation (none given, and a token endpoint it
/// cannot be derived from), `revoke()` and `revoke_client_tokens()` are
/// config errors naming it, and change nothing: marked revoked first, the
/// session would make its user re-link while the server, never told, kept
/// a token no later `revoke()` could revoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_revocation_endpoint_revoke_is_a_config_error_that_changes_nothing() {
    let h = Harness::new();
    let endpoint = h.emu.token_endpoint().replace("/connect/token", ALIAS);
    let config = Config::builder(endpoint, CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .audience(h.emu.token_endpoint())
        .build()
        .unwrap();
    let http = Arc::new(AliasedTokenPath(NativeHttp::new().unwrap()));
    let client = TokenClient::with_spawner(
        config,
        http,
        h.clock.clone(),
        Arc::new(freshtoken::TokioSpawner::current().unwrap()),
    );
    let names_the_endpoint = |e: &freshtoken::Error| {
        e.code() == ErrorCode::Config
            && !e.server_may_hold_token()
            && matches!(e, freshtoken::Error::Config { field, .. } if field == "revocation_endpoint")
    };

    let rt = h.emu.seed(CLIENT_ID, "openid offline_access").refresh_token;
    let session = client.session("u1", h.store.clone()).unwrap();
    let seed = freshtoken::Seed {
        refresh_token: rt.clone().into(),
        ..Default::default()
    };
    session.seed(seed).await.unwrap();
    let token = session.access_token().await.unwrap();
    let err = session.revoke().await.unwrap_err();
    assert!(names_the_endpoint(&err), "{err}");
    let stored = h.store.record("u1").unwrap();
    assert_eq!(stored.reauth, None, "not marked revoked");
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Consumed);
    assert!(!session.status().await.unwrap().revocation_pending);
    assert_eq!(session.access_token().await.unwrap(), token, "still served");

    let cached = client.client_token(&["accounts"]).await.unwrap();
    let err = client.revoke_client_tokens().await.unwrap_err();
    assert!(names_the_endpoint(&err), "{err}");
    assert_eq!(client.client_token(&["accounts"]).await.unwrap(), cached);
    assert_eq!(
        h.grant_requests("client_credentials"),
        1,
        "the token was kept"
    );
    assert_eq!(h.emu.counters().revocation_requests, 0);
}

/// The last refresh lost its answer (the record in doubt), so the server may
/// have rotated the token into one this client never received: `revoke()`
/// revokes what it holds and marks the session revoked, but says the server
/// may still hold a token (reason `lost_rotation`), never a silent success,
/// and says it again when called again, sending nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_session_whose_last_refresh_lost_its_answer_says_a_successor_may_be_live() {
    let h = Harness::new();
    let (session, rt) = h.seeded("u1").await;
    h.emu.push_fault(Fault::drop_after_commit());
    let lost = session.access_token().await.unwrap_err();
    assert_eq!(lost.code(), ErrorCode::Network, "{lost}");
    assert!(session.status().await.unwrap().in_doubt);
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Consumed);
    assert_eq!(h.emu.successor_state(&rt), Some(TokenState::Active));

    let says_a_successor_may_be_live = |e: &freshtoken::Error| {
        e.server_may_hold_token() && e.reason() == Some(ReauthReason::LostRotation)
    };
    let err = session.revoke().await.unwrap_err();
    assert!(says_a_successor_may_be_live(&err), "{err}");
    assert_eq!(
        h.emu.counters().revocation_requests,
        1,
        "the token held was revoked"
    );
    assert_eq!(
        h.emu.successor_state(&rt),
        Some(TokenState::Active),
        "the successor this client never saw is live: the error is true"
    );
    let status = session.status().await.unwrap();
    assert_eq!(status.reauth, Some(ReauthReason::Revoked));
    assert!(
        status.in_doubt,
        "the record still says its last rotation was lost"
    );
    let stored = h.store.record("u1").unwrap();
    assert!(stored.refresh_token.is_none() && stored.in_doubt);

    let again = session.revoke().await.unwrap_err();
    assert!(says_a_successor_may_be_live(&again), "{again}");
    assert_eq!(
        h.emu.counters().revocation_requests,
        1,
        "nothing sent again"
    );
    let reason = reason(session.access_token().await);
    assert_eq!(reason, Some(ReauthReason::Revoked));
}

/// The lost answer's retry was refused (`invalid_grant`), so the session
/// died of `lost_rotation`: the successor the server rotated to may still
/// be live, and `revoke()` says so, as for a record still in doubt (before,
/// the death cleared the doubt and the revocation reported success).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_session_dead_of_a_lost_rotation_says_a_successor_may_be_live() {
    let options = Options {
        reuse_detection: false,
        ..Options::default()
    };
    let h = Harness::with(options, |b| b);
    let (session, rt) = h.seeded("u1").await;
    h.emu.push_fault(Fault::drop_after_commit());
    session.access_token().await.unwrap_err();
    let dead = session.access_token().await.unwrap_err();
    assert_eq!(dead.reason(), Some(ReauthReason::LostRotation), "{dead}");
    assert_eq!(h.emu.successor_state(&rt), Some(TokenState::Active));

    for call in ["revoke", "revoke again"] {
        let err = session.revoke().await.unwrap_err();
        assert!(
            err.server_may_hold_token() && err.reason() == Some(ReauthReason::LostRotation),
            "{call}: {err}"
        );
    }
    assert_eq!(h.emu.counters().revocation_requests, 1, "sent once");
    assert_eq!(h.emu.successor_state(&rt), Some(TokenState::Active));
}

/// A save of the revoked mark fails, the save of the token-less record
/// after the server took the tokens succeeds: the session is revoked and
/// saved, and `revoke()` resolves (it rejected with the first failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_whose_first_save_failed_and_second_landed_succeeds() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    session.access_token().await.unwrap();
    let rt = h.store.refresh_token("u1").unwrap();
    h.store.fail_saves.store(1, Ordering::SeqCst);
    session.revoke().await.expect("revoked and saved");
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Revoked);
    let stored = h.store.record("u1").unwrap();
    assert_eq!(stored.reauth, Some(ReauthReason::Revoked));
    assert!(stored.refresh_token.is_none());
    assert!(!session.status().await.unwrap().unpersisted);
}

/// A store whose next load, once armed, reads at once but answers only
/// when released: a read made just before another client's save landed.
struct HeldRead {
    inner: Arc<TestStore>,
    armed: AtomicBool,
    entered: Notify,
    release: Notify,
}

#[async_trait]
impl TokenStore for HeldRead {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        let read = self.inner.load(key).await;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        read
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        self.inner.save(key, record).await
    }
}

/// Client A of this process read the live record just before client B
/// marked it revoked (a plain store: no lease, no versions). A's refresh
/// used to write that older read over the revoked mark and send the
/// token: `revoke()` succeeded and the session was alive again, its
/// rotated token live at the server. Now the revocation claims the token
/// it revokes, so A waits for it, reads again and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_read_the_store_before_another_clients_revocation_sends_nothing() {
    let h = Harness::new();
    let (b, rt) = h.seeded("u1").await;
    let held = Arc::new(HeldRead {
        inner: h.store.clone(),
        armed: AtomicBool::new(true),
        entered: Notify::new(),
        release: Notify::new(),
    });
    let twin = h.twin();
    let a = twin.session("u1", held.clone()).unwrap();
    let refresh = tokio::spawn(async move { a.access_token().await });
    held.entered.notified().await;

    h.emu.push_fault(Fault::hold().for_revocation());
    let revoke = tokio::spawn(async move { b.revoke().await });
    h.emu.wait_held(1);
    assert_eq!(
        h.store.record("u1").unwrap().reauth,
        Some(ReauthReason::Revoked),
        "marked dead before the server hears of it"
    );
    held.release.notify_one();
    assert_eq!(h.emu.release_held(), 1);

    revoke.await.unwrap().expect("revoked");
    let err = refresh.await.unwrap().unwrap_err();
    assert_eq!(err.reason(), Some(ReauthReason::Revoked), "{err}");
    assert_eq!(h.refresh_requests(), 0, "the revoked token was never sent");
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Revoked);
    let stored = h.store.record("u1").unwrap();
    assert_eq!(stored.reauth, Some(ReauthReason::Revoked));
    assert!(stored.refresh_token.is_none());
}

/// A server's error body is scrubbed of every token the session holds, not
/// only of the one the request carries (DESIGN points 10 and 16): the
/// refresh token's revocation quoting the access and ID tokens, the access
/// token's quoting the refresh token, and a refresh quoting the access and
/// ID tokens it replaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_bodies_are_scrubbed_of_every_token_the_session_holds() {
    let h = without_retries();
    let (session, _) = h.seeded("u1").await;
    session.access_token().await.unwrap();
    let record = h.store.record("u1").unwrap();
    let rt = record.refresh_token.unwrap().expose().to_owned();
    let at = record.access_token.unwrap().value.expose().to_owned();
    let id = record.id_token.expect("an ID token").expose().to_owned();
    let echo =
        |text: String| format!(r#"{{"error":"invalid_request","error_description":"{text}"}}"#);
    let shown = |err: &freshtoken::Error| format!("{err} {err:?}");

    h.emu.push_fault(
        Fault::body(400, echo(format!("access {at} id {id}"))).for_grant("refresh_token"),
    );
    let err = session.refresh().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::OAuth);
    assert!(shown(&err).contains("[redacted]"), "{err}");
    assert!(!shown(&err).contains(&at) && !shown(&err).contains(&id));

    h.emu
        .push_fault(Fault::body(400, echo(format!("access {at} id {id}"))).for_revocation());
    let err = session.revoke().await.unwrap_err();
    assert!(shown(&err).contains("[redacted]"), "{err}");
    assert!(!shown(&err).contains(&at) && !shown(&err).contains(&id));

    h.emu.push_fault(Fault::delay(0).for_revocation());
    h.emu
        .push_fault(Fault::body(400, echo(format!("family of {rt}"))).for_revocation());
    let err = session.revoke().await.unwrap_err();
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Revoked);
    assert!(shown(&err).contains("[redacted]"), "{err}");
    assert!(!shown(&err).contains(&rt));
}
