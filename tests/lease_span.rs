//! The fleet lease spans the whole refresh: the request with its retries
//! and the save of the rotated record after it, however the store and the
//! server take their time within their deadlines. Against the emulator with
//! reuse detection on: a lease that lapses while its holder may still land
//! lets another process send the spent refresh token (a revoked grant).

mod common;

use common::{refreshes, seed_family, wall_ms, CLIENT_ID, CLIENT_SECRET};
use freshtoken::{
    async_trait, CasOutcome, Clock, Config, HttpClient, HttpError, HttpRequest, HttpResponse,
    ManualClock, MemoryStore, StoreError, TokenClient, TokenStore, UserSession, Versioned,
};
use freshtoken_emulator::{Emulator, Fault, Options, TokenState};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// HTTP over the emulator whose requests take time: before each request
/// the clock advances by the next of `takes` (ms).
struct SlowHttp {
    inner: freshtoken::NativeHttp,
    clock: Arc<ManualClock>,
    takes: Mutex<VecDeque<u64>>,
}

impl SlowHttp {
    fn new(clock: &Arc<ManualClock>, takes: impl IntoIterator<Item = u64>) -> Arc<Self> {
        Arc::new(SlowHttp {
            inner: freshtoken::NativeHttp::new().unwrap(),
            clock: clock.clone(),
            takes: Mutex::new(takes.into_iter().collect()),
        })
    }
}

#[async_trait]
impl HttpClient for SlowHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let ms = self.takes.lock().unwrap().pop_front().unwrap_or(0);
        self.clock.advance(ms);
        self.inner.send(request).await
    }
}

/// A client standing for another process (a differently spelled endpoint
/// keeps this process's per-token bookkeeping apart) on `clock`.
fn other_process(emu: &Emulator, clock: Arc<dyn Clock>) -> TokenClient {
    let endpoint = format!("{}?other-process", emu.token_endpoint());
    let config = Config::builder(endpoint, CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    TokenClient::new(
        config,
        Arc::new(freshtoken::NativeHttp::new().unwrap()),
        clock,
    )
}

/// A fleet store (leases and compare-and-swap over `inner`) whose answers
/// take time, each well within the 5 s store deadline: the re-read under
/// the lease and the write-ahead 4.4 s each, the renewal of the lease
/// `renewal_ms`, the save of the rotated record 4 s, during which another
/// process (`other`) asks for a token.
struct SlowFleetStore {
    inner: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    loads: AtomicU32,
    acquires: AtomicU32,
    renewal_ms: u64,
    other: Mutex<Option<UserSession>>,
    other_result: Mutex<Option<Result<String, freshtoken::Error>>>,
}

impl SlowFleetStore {
    fn new(
        inner: &Arc<MemoryStore>,
        clock: &Arc<ManualClock>,
        renewal_ms: u64,
        other: Option<UserSession>,
    ) -> Arc<Self> {
        Arc::new(SlowFleetStore {
            inner: inner.clone(),
            clock: clock.clone(),
            loads: AtomicU32::new(0),
            acquires: AtomicU32::new(0),
            renewal_ms,
            other: Mutex::new(other),
            other_result: Mutex::new(None),
        })
    }
}

#[async_trait]
impl TokenStore for SlowFleetStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.load(key).await
    }
    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        self.inner.save(key, record).await
    }
    fn supports_lease(&self) -> bool {
        true
    }
    async fn acquire(&self, key: &str, owner: &str, ttl: u64) -> Result<bool, StoreError> {
        if self.acquires.fetch_add(1, Ordering::SeqCst) == 1 {
            self.clock.advance(self.renewal_ms); // the renewal
        }
        self.inner.acquire(key, owner, ttl).await
    }
    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.release(key, owner).await
    }
    fn supports_versions(&self) -> bool {
        true
    }
    async fn load_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        if self.loads.fetch_add(1, Ordering::SeqCst) == 1 {
            self.clock.advance(4_400); // the re-read under the lease
        }
        self.inner.load_versioned(key).await
    }
    async fn save_versioned(
        &self,
        key: &str,
        record: &str,
        expected: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        let rec = freshtoken::Record::decode(record).unwrap();
        if rec.in_doubt {
            self.clock.advance(4_400); // the write-ahead
        } else if rec.access_token.is_some() {
            self.clock.advance(4_000); // the rotated record
            let other = self.other.lock().unwrap().take();
            if let Some(other) = other {
                let result = other.access_token().await;
                *self.other_result.lock().unwrap() = Some(result);
            }
        }
        self.inner.save_versioned(key, record, expected).await
    }
}

/// The default configuration (timeout 30 s, retry budget 20 s, lease TTL
/// 60 s, store deadline 5 s). Slow store answers before the request leave
/// it 51.2 s of lease: enough for the request with its retries (51 s with
/// the HTTP grace), not for the save after it. The holder must renew the
/// lease before sending, so that the other process, asking while the
/// rotated record is being saved, finds it held and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_outlasts_the_save_of_the_rotated_record() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let shared = Arc::new(MemoryStore::with_leases(clock.clone()));
    // The other process's own clock: its waits for the lease do not move
    // the time the lease is judged by.
    let other_clock = Arc::new(ManualClock::new(clock.now_ms()));
    let b_session = other_process(&emu, other_clock)
        .session("u1", shared.clone())
        .unwrap();
    let seeded = seed_family(&emu, &b_session).await;
    emu.push_fault(Fault::status(503).for_grant("refresh_token"));
    // The 503 after 19.7 s (a retry still fits the 20 s budget), then the
    // answer after 29.9 s (within the 30 s timeout).
    let http = SlowHttp::new(&clock, [19_700, 29_900]);
    let config = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    let a = TokenClient::new(config, http, clock.clone());
    let store = SlowFleetStore::new(&shared, &clock, 0, Some(b_session));
    let started = clock.now_ms();

    let held = a.session("u1", store.clone()).unwrap().access_token().await;

    assert!(
        clock.now_ms() - started > 60_000,
        "the first lease's TTL passed"
    );
    let token = held.expect("the holder refreshed and saved");
    let other = store.other_result.lock().unwrap().take();
    let other = other.expect("the other process asked during the save");
    let error = other.expect_err("the lease was held: the other process waited");
    assert_eq!(error.code().as_str(), "conflict", "{error}");
    let c = emu.counters();
    assert_eq!(
        c.reuse_detected, 0,
        "the spent refresh token was sent again"
    );
    assert_eq!(refreshes(&emu), 2, "the 503 and the answered retry");
    assert_eq!(emu.refresh_token_state(&seeded), TokenState::Consumed);
    let stored = freshtoken::Record::decode(&shared.get("u1").unwrap()).unwrap();
    assert_eq!(
        stored.access_token.unwrap().value.expose(),
        token,
        "the rotated record is the one saved"
    );
    let rotated = stored.refresh_token.unwrap();
    assert_eq!(
        emu.refresh_token_state(rotated.expose()),
        TokenState::Active
    );
}

/// The default configuration again, the same slow answers before the
/// request, and a renewal of the lease that takes 4.5 s: the renewed lease
/// (60 s from when it was asked for) no longer covers the 56 s the request
/// and the save may take from now. Nothing is sent, and the caller gets
/// `storage`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_too_slow_to_cover_the_request_sends_nothing() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let shared = Arc::new(MemoryStore::with_leases(clock.clone()));
    let config = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    let http = SlowHttp::new(&clock, []);
    let a = TokenClient::new(config, http, clock.clone());
    let store = SlowFleetStore::new(&shared, &clock, 4_500, None);
    let session = a.session("u1", store.clone()).unwrap();
    let seeded = seed_family(&emu, &session).await;

    let error = session.access_token().await.unwrap_err();

    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert!(error.to_string().contains("nothing was sent"), "{error}");
    assert_eq!(store.acquires.load(Ordering::SeqCst), 2, "taken, renewed");
    assert_eq!(refreshes(&emu), 0, "nothing was sent");
    assert_eq!(emu.refresh_token_state(&seeded), TokenState::Active);
    assert!(
        shared
            .acquire("u1", "another-process", 60_000)
            .await
            .unwrap(),
        "the lease was given back"
    );
}
