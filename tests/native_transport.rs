//! The reqwest transport (`NativeHttp`) at the edges of a request's life:
//! an answer that arrived while the process was paused, a connection that
//! is never made, and a request made outside a tokio runtime.

mod common;

use common::{seed_family, TestStore, CLIENT_ID, CLIENT_SECRET};
use freshtoken::{
    Config, ErrorCode, ManualClock, NativeHttp, RetryPolicy, SystemClock, TokenClient,
};
use freshtoken_emulator::{Emulator, Fault, Options, TokenState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// The request timeout of these tests; the core's own deadline is 1 s more.
const TIMEOUT_MS: u64 = 1_000;

fn config(endpoint: &str) -> freshtoken::ConfigBuilder {
    Config::builder(endpoint, CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .timeout_ms(TIMEOUT_MS as i64)
}

/// A process paused while its refresh was answered (SIGSTOP, a laptop
/// asleep; here the runtime's only thread blocked) keeps the answer that
/// arrived meanwhile: on resume every timer is due, and the request's
/// must not end it, or the rotated refresh token is lost and the spent one
/// left in doubt.
#[tokio::test]
async fn an_answer_that_arrived_while_the_process_was_paused_is_kept() {
    let emu = Emulator::start(Options::default()).unwrap();
    let config = config(&emu.token_endpoint()).build().unwrap();
    let http = Arc::new(NativeHttp::new().unwrap());
    let client = TokenClient::new(config, http, Arc::new(SystemClock));
    let store = TestStore::new();
    let session = client.session("u1", store.clone()).unwrap();
    let sent = seed_family(&emu, &session).await;
    emu.push_fault(Fault::hold());
    let caller = tokio::spawn({
        let session = session.clone();
        async move { session.access_token().await }
    });
    let held = emu.held_requests();
    tokio::task::spawn_blocking(move || held.wait(1))
        .await
        .unwrap();

    // The pause: this thread (the runtime's only one) stops until the
    // answer was sent and every deadline of the request passed.
    let paused = Instant::now();
    assert_eq!(emu.release_held(), 1);
    while emu.counters().rotations == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let past_deadlines = Duration::from_millis(2 * TIMEOUT_MS + 500);
    std::thread::sleep(past_deadlines.saturating_sub(paused.elapsed()));

    let token = caller.await.unwrap();
    assert!(token.is_ok(), "the answer is kept: {token:?}");
    assert_eq!(emu.refresh_token_state(&sent), TokenState::Consumed);
    let rotated = store.refresh_token("u1").expect("the rotation is saved");
    assert_ne!(rotated, sent);
    assert_eq!(emu.refresh_token_state(&rotated), TokenState::Active);
    assert!(!session.status().await.unwrap().in_doubt);
    assert_eq!(emu.counters().by_grant["refresh_token"], 1);
}

/// A loopback "https" server that accepts connections and never says a
/// word (a TLS handshake that stalls); counts the connections.
async fn silent_server() -> (String, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/connect/token", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU32::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            open.push(socket);
        }
    });
    (url, accepted)
}

/// A client config for `endpoint` with `timeout_ms` and at most
/// `max_attempts` requests, retried at once.
fn config_with(endpoint: &str, timeout_ms: i64, max_attempts: u32) -> Config {
    let retry = RetryPolicy {
        max_attempts,
        initial_backoff_ms: 1,
        max_backoff_ms: 1,
        budget_ms: 60_000,
    };
    Config::builder(endpoint, CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .timeout_ms(timeout_ms)
        .retry(retry)
        .build()
        .unwrap()
}

/// Asks `client` for a token with a refresh token that can never be sent
/// (no connection is made): the failure is `network`, `tries` connections
/// were accepted, and the refresh token is not left in doubt.
async fn never_connected(client: &TokenClient, accepted: &AtomicU32, tries: u32) {
    let session = client.session("u1", TestStore::new()).unwrap();
    common::seed_refresh_token(&session, "rt-never-sent-0123456789").await;
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Network, "{error}");
    assert_eq!(accepted.load(Ordering::SeqCst), tries);
    assert!(!session.status().await.unwrap().in_doubt);
}

/// A connection that is never made fails as not sent: it is retried, and
/// the refresh token is not left in doubt (a later `invalid_grant` would
/// otherwise read as a lost rotation).
#[tokio::test]
async fn a_connection_never_made_is_retried_and_leaves_nothing_in_doubt() {
    let (endpoint, accepted) = silent_server().await;
    let connect_timeout = Duration::from_millis(200);
    let http = NativeHttp::configured(|b| b.connect_timeout(connect_timeout)).unwrap();
    let clock = Arc::new(ManualClock::new(common::wall_ms()));
    let client = TokenClient::new(config_with(&endpoint, 1_000, 2), Arc::new(http), clock);
    never_connected(&client, &accepted, 2).await;
}

/// By default too: a connection gets `NativeHttp::CONNECT_TIMEOUT` (10 s),
/// not the whole request timeout, and its failure reads as not sent.
#[tokio::test]
async fn by_default_a_connection_has_its_own_shorter_timeout() {
    let (endpoint, accepted) = silent_server().await;
    let http = Arc::new(NativeHttp::new().unwrap());
    let clock = Arc::new(ManualClock::new(common::wall_ms()));
    let client = TokenClient::new(config_with(&endpoint, 60_000, 1), http, clock);
    let started = Instant::now();
    never_connected(&client, &accepted, 1).await;
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(30), "not the request's 60 s");
}

/// Polls `future` to its end on this thread, with no runtime around it.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Outside a tokio runtime a request fails, as not sent, with a message
/// that says why; reqwest would panic there.
#[test]
fn outside_a_tokio_runtime_a_request_fails_and_nothing_panics() {
    let emu = Emulator::start(Options::default()).unwrap();
    let retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let config = config(&emu.token_endpoint()).retry(retry).build().unwrap();
    let clock = Arc::new(ManualClock::new(common::wall_ms()));
    let client = TokenClient::new(config, Arc::new(NativeHttp::new().unwrap()), clock);
    let session = client.session("u1", TestStore::new()).unwrap();
    let error = block_on(async {
        common::seed_refresh_token(&session, "rt-never-sent-0123456789").await;
        session.access_token().await.unwrap_err()
    });
    assert_eq!(error.code(), ErrorCode::Network, "{error}");
    assert!(error.to_string().contains("tokio runtime"), "{error}");
    assert_eq!(emu.counters().token_requests, 0);
}

/// `TokenClient::native` gives a connection half a short request timeout:
/// with 2 s, a stalled one fails as not sent after 1 s, where the default
/// 10 s would let the request's timeout end it, in doubt.
#[tokio::test]
async fn a_native_client_connects_within_half_a_short_request_timeout() {
    let (endpoint, accepted) = silent_server().await;
    let client = TokenClient::native(config_with(&endpoint, 2_000, 1)).unwrap();
    never_connected(&client, &accepted, 1).await;
}
