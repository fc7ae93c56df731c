//! The fleet lease spans the whole refresh: the request with its retries
//! and the save of the rotated record after it, however the store and the
//! server take their time within their deadlines, and however the process
//! clock steps meanwhile. Against the emulator with reuse detection on: a
//! lease that lapses while its holder may still land lets another process
//! send the spent refresh token (a revoked grant).

mod common;

use common::{
    plain_client_at, refreshes, seed_family, wall_ms, Acquire, ForwardingStore, LoadVersioned,
    SaveVersioned, StoreHooks, CLIENT_ID, CLIENT_SECRET,
};
use freshtoken::{
    async_trait, CasOutcome, Clock, Config, HttpClient, HttpError, HttpRequest, HttpResponse,
    ManualClock, MemoryStore, StoreError, TokenClient, TokenStore, UserSession, Versioned,
};
use freshtoken_emulator::{Emulator, Fault, Options, TokenState};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// One hour: how far the process clock steps back (an NTP step).
const HOUR_MS: u64 = 3_600_000;

/// Time as the test tells it: the true time (the store's leases) and the
/// holder's process clock, the same one unless the process clock steps.
struct Clocks {
    truth: Arc<ManualClock>,
    local: Arc<ManualClock>,
}

impl Clocks {
    /// One clock for all.
    fn one() -> Arc<Self> {
        let truth = Arc::new(ManualClock::new(wall_ms()));
        Arc::new(Clocks {
            local: truth.clone(),
            truth,
        })
    }

    /// A process clock apart from the true time, reading the same for now.
    fn two() -> Arc<Self> {
        let truth = Arc::new(ManualClock::new(wall_ms()));
        let local = Arc::new(ManualClock::new(truth.now_ms()));
        Arc::new(Clocks { truth, local })
    }

    /// Lets `ms` pass, on every clock.
    fn pass(&self, ms: u64) {
        self.truth.advance(ms);
        if !Arc::ptr_eq(&self.truth, &self.local) {
            self.local.advance(ms);
        }
    }

    /// Sets the process clock back an hour (time does not go back).
    fn step_back(&self) {
        self.local.set(self.local.now_ms() - HOUR_MS);
    }
}

/// Another process's call and its result, run by a slow host callback.
#[derive(Default)]
struct Meanwhile {
    session: Mutex<Option<UserSession>>,
    result: Mutex<Option<Result<String, freshtoken::Error>>>,
}

impl Meanwhile {
    fn of(session: UserSession) -> Self {
        Meanwhile {
            session: Mutex::new(Some(session)),
            result: Mutex::new(None),
        }
    }

    /// Runs the other process's `access_token()`, once.
    async fn run(&self) {
        let session = self.session.lock().unwrap().take();
        if let Some(session) = session {
            let result = session.access_token().await;
            *self.result.lock().unwrap() = Some(result);
        }
    }

    fn result(&self) -> Option<Result<String, freshtoken::Error>> {
        self.result.lock().unwrap().take()
    }
}

/// HTTP over the emulator whose requests take time: before request n
/// (from 1) the time passes by the next of `takes` (ms); before request
/// `other_before` the other process runs; after request `step_back_after`
/// the process clock steps back an hour.
struct SlowHttp {
    inner: freshtoken::NativeHttp,
    clocks: Arc<Clocks>,
    takes: Mutex<VecDeque<u64>>,
    step_back_after: Option<u32>,
    other_before: Option<u32>,
    other: Meanwhile,
    sent: AtomicU32,
}

impl SlowHttp {
    fn new(clocks: &Arc<Clocks>, takes: impl IntoIterator<Item = u64>) -> Self {
        SlowHttp {
            inner: freshtoken::NativeHttp::new().unwrap(),
            clocks: clocks.clone(),
            takes: Mutex::new(takes.into_iter().collect()),
            step_back_after: None,
            other_before: None,
            other: Meanwhile::default(),
            sent: AtomicU32::new(0),
        }
    }
}

#[async_trait]
impl HttpClient for SlowHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        let ms = self.takes.lock().unwrap().pop_front().unwrap_or(0);
        self.clocks.pass(ms);
        if Some(n) == self.other_before {
            self.other.run().await;
        }
        let answer = self.inner.send(request).await;
        if Some(n) == self.step_back_after {
            self.clocks.step_back();
        }
        answer
    }
}

/// A client standing for another process (a differently spelled endpoint
/// keeps this process's per-token bookkeeping apart) on `clock`.
fn other_process(emu: &Emulator, clock: Arc<dyn Clock>) -> TokenClient {
    plain_client_at(&format!("{}?other-process", emu.token_endpoint()), clock)
}

/// The holder: the default configuration (timeout 30 s, retry budget 20 s,
/// lease TTL 60 s, store deadline 5 s) on the process clock.
fn holder(emu: &Emulator, clocks: &Arc<Clocks>, http: Arc<SlowHttp>) -> TokenClient {
    let config = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    TokenClient::new(config, http, clocks.local.clone())
}

/// How a fleet store's answers take time, each well within the 5 s store
/// deadline: the re-read under the lease and the write-ahead 4.4 s each (the
/// process clock stepping back an hour during the write-ahead if
/// `step_back_in_write_ahead`), the renewal of the lease `renewal_ms`, the
/// save of the rotated record 4 s, during which another process asks for a
/// token.
struct SlowAnswers {
    clocks: Arc<Clocks>,
    loads: AtomicU32,
    acquires: AtomicU32,
    renewal_ms: u64,
    step_back_in_write_ahead: bool,
    other: Meanwhile,
}

impl SlowAnswers {
    fn new(clocks: &Arc<Clocks>) -> Self {
        SlowAnswers {
            clocks: clocks.clone(),
            loads: AtomicU32::new(0),
            acquires: AtomicU32::new(0),
            renewal_ms: 0,
            step_back_in_write_ahead: false,
            other: Meanwhile::default(),
        }
    }
}

#[async_trait]
impl StoreHooks for SlowAnswers {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        if self.acquires.fetch_add(1, Ordering::SeqCst) == 1 {
            self.clocks.pass(self.renewal_ms); // the renewal
        }
        call.forward().await
    }
    async fn load_versioned(
        &self,
        call: LoadVersioned<'_>,
    ) -> Result<Option<Versioned>, StoreError> {
        if self.loads.fetch_add(1, Ordering::SeqCst) == 1 {
            self.clocks.pass(4_400); // the re-read under the lease
        }
        call.forward().await
    }
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        let rec = freshtoken::Record::decode(call.record).unwrap();
        if rec.in_doubt {
            self.clocks.pass(4_400); // the write-ahead
            if self.step_back_in_write_ahead {
                self.clocks.step_back();
            }
        } else if rec.access_token.is_some() {
            self.clocks.pass(4_000); // the rotated record
            self.other.run().await;
        }
        call.forward().await
    }
}

/// The holder of a lease refreshes through a 503 (after 19.7 s: a retry
/// still fits the 20 s budget) and an answer after 29.9 s (within the 30 s
/// timeout), the store answering slowly as [`SlowAnswers`] has it; the
/// other process (on a clock of its own: its waits do not move the time
/// the lease is judged by) asks for a token while the rotated record is
/// being saved, past the first lease's 60 s. It must find the lease held
/// (renewed before the holder sent) and send nothing.
async fn refresh_through_a_slow_fleet_store(clocks: Arc<Clocks>, step_back: bool) {
    let emu = Emulator::start(Options::default()).unwrap();
    let shared = Arc::new(MemoryStore::with_leases(clocks.truth.clone()));
    let other_clock = Arc::new(ManualClock::new(clocks.truth.now_ms()));
    let b_session = other_process(&emu, other_clock)
        .session("u1", shared.clone())
        .unwrap();
    let seeded = seed_family(&emu, &b_session).await;
    emu.push_fault(Fault::status(503).for_grant("refresh_token"));
    let http = Arc::new(SlowHttp::new(&clocks, [19_700, 29_900]));
    let a = holder(&emu, &clocks, http);
    let slow = SlowAnswers {
        step_back_in_write_ahead: step_back,
        other: Meanwhile::of(b_session),
        ..SlowAnswers::new(&clocks)
    };
    let store = ForwardingStore::fleet(shared.clone(), slow);
    let started = clocks.truth.now_ms();

    let held = a.session("u1", store.clone()).unwrap().access_token().await;

    let truly_elapsed = clocks.truth.now_ms() - started;
    assert!(truly_elapsed > 60_000, "the first lease's TTL passed");
    let token = held.expect("the holder refreshed and saved");
    let other = store.hooks.other.result();
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

/// Slow store answers before the request leave it 51.2 s of the 60 s
/// lease: enough for the request with its retries (51 s with the HTTP
/// grace), not for the save after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_outlasts_the_save_of_the_rotated_record() {
    refresh_through_a_slow_fleet_store(Clocks::one(), false).await;
}

/// The same, with the process clock set back an hour during the
/// write-ahead: the lease's age is still counted in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_set_back_before_sending_does_not_hide_the_lease_age() {
    refresh_through_a_slow_fleet_store(Clocks::two(), true).await;
}

/// A 503 after 25 s, then the process clock steps back an hour: the 20 s
/// retry budget is spent all the same, so no retry is sent (one would
/// outlive the 60 s lease: another process, asking before it, would take
/// the lapsed lease and the holder's retry would send the spent token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_set_back_during_the_retries_does_not_extend_the_budget() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clocks = Clocks::two();
    let shared = Arc::new(MemoryStore::with_leases(clocks.truth.clone()));
    let b_session = other_process(&emu, clocks.truth.clone())
        .session("u1", shared.clone())
        .unwrap();
    let seeded = seed_family(&emu, &b_session).await;
    emu.push_fault(Fault::status(503).for_grant("refresh_token").times(2));
    let http = Arc::new(SlowHttp {
        step_back_after: Some(1),
        other_before: Some(3),
        other: Meanwhile::of(b_session),
        ..SlowHttp::new(&clocks, [25_000, 25_000, 25_000])
    });
    let a = holder(&emu, &clocks, http.clone());

    let held = a
        .session("u1", shared.clone())
        .unwrap()
        .access_token()
        .await;

    let error = held.expect_err("the server answered 503");
    assert_eq!(error.code().as_str(), "transient", "{error}");
    assert_eq!(
        http.sent.load(Ordering::SeqCst),
        1,
        "no retry past the budget"
    );
    assert!(http.other.result().is_none(), "no retry, no other process");
    assert_eq!(emu.counters().reuse_detected, 0);
    assert_eq!(emu.refresh_token_state(&seeded), TokenState::Active);
}

/// The default configuration again, the same slow answers before the
/// request, and a renewal of the lease that takes 4.5 s: the renewed lease
/// (60 s from when it was asked for) no longer covers the 56 s the request
/// and the save may take from now. Nothing is sent, and the caller gets
/// `storage`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_too_slow_to_cover_the_request_sends_nothing() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clocks = Clocks::one();
    let shared = Arc::new(MemoryStore::with_leases(clocks.truth.clone()));
    let a = holder(&emu, &clocks, Arc::new(SlowHttp::new(&clocks, [])));
    let slow = SlowAnswers {
        renewal_ms: 4_500,
        ..SlowAnswers::new(&clocks)
    };
    let store = ForwardingStore::fleet(shared.clone(), slow);
    let session = a.session("u1", store.clone()).unwrap();
    let seeded = seed_family(&emu, &session).await;

    let error = session.access_token().await.unwrap_err();

    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert!(error.to_string().contains("nothing was sent"), "{error}");
    assert_eq!(
        store.hooks.acquires.load(Ordering::SeqCst),
        2,
        "taken, renewed"
    );
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
