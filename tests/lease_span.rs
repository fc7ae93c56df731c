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
/// store deadline 5 s) but for a lease TTL of 60 s, the shortest one with
/// a round number that covers the request with its retries and the save
/// after it (the default, 65 s, also covers a renewal after that save), on
/// the process clock.
fn holder(emu: &Emulator, clocks: &Arc<Clocks>, http: Arc<SlowHttp>) -> TokenClient {
    let config = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .lease_ttl_ms(60_000)
        .build()
        .unwrap();
    TokenClient::new(config, http, clocks.local.clone())
}

/// A holder as a backend has it: the default configuration but for
/// `store_timeout_ms`, its background saves run as tokio tasks.
fn spawning_holder(
    emu: &Emulator,
    clocks: &Arc<Clocks>,
    http: Arc<SlowHttp>,
    store_timeout_ms: i64,
) -> TokenClient {
    let config = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .store_timeout_ms(store_timeout_ms)
        .build()
        .unwrap();
    let spawn = Arc::new(freshtoken::TokioSpawner::current().unwrap());
    TokenClient::with_spawner(config, http, clocks.local.clone(), spawn)
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

/// The same configuration again, the same slow answers before the
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

/// How one renewal of the lease by a holder's background save takes time.
#[derive(Clone, Copy)]
enum Renewal {
    /// It lands at once and is answered this late (ms).
    AnsweredLate(u64),
    /// It lands this late (ms); just before it does, the other process
    /// asks for a token.
    LandsLate(u64),
}

/// A fleet store on which the rotated record's save fails, and what the
/// holder does after that takes time, each step within the store deadline:
/// the re-read under the lease and the write-ahead take `before_send_ms`
/// each; the rotated record's first save fails after `first_save_ms`, its
/// second (if `second_save_ms`) after that long, and any later one lands;
/// the renewals after the first failure go as `renewals` has them, later
/// ones at once. `done` is told once the rotated record is saved, or a
/// renewal found the lease taken.
struct StrandedSlowly {
    clocks: Arc<Clocks>,
    before_send_ms: u64,
    first_save_ms: u64,
    second_save_ms: Option<u64>,
    renewals: Mutex<VecDeque<Renewal>>,
    loads: AtomicU32,
    rotated_saves: AtomicU32,
    /// Renewals (acquires) since the first rotated save failed.
    renewed: AtomicU32,
    other: Meanwhile,
    done: tokio::sync::Notify,
}

impl StrandedSlowly {
    fn new(clocks: &Arc<Clocks>, other: Option<UserSession>) -> Self {
        StrandedSlowly {
            clocks: clocks.clone(),
            before_send_ms: 0,
            first_save_ms: 0,
            second_save_ms: None,
            renewals: Mutex::new(VecDeque::new()),
            loads: AtomicU32::new(0),
            rotated_saves: AtomicU32::new(0),
            renewed: AtomicU32::new(0),
            other: other.map(Meanwhile::of).unwrap_or_default(),
            done: tokio::sync::Notify::new(),
        }
    }
}

#[async_trait]
impl StoreHooks for StrandedSlowly {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        let renewal = if self.rotated_saves.load(Ordering::SeqCst) > 0 {
            self.renewed.fetch_add(1, Ordering::SeqCst);
            self.renewals.lock().unwrap().pop_front()
        } else {
            None
        };
        if let Some(Renewal::LandsLate(ms)) = renewal {
            self.clocks.pass(ms);
            self.other.run().await;
        }
        let taken = call.forward().await;
        if let Some(Renewal::AnsweredLate(ms)) = renewal {
            self.clocks.pass(ms);
        }
        if matches!(taken, Ok(false)) {
            self.done.notify_one();
        }
        taken
    }
    async fn load_versioned(
        &self,
        call: LoadVersioned<'_>,
    ) -> Result<Option<Versioned>, StoreError> {
        if self.loads.fetch_add(1, Ordering::SeqCst) == 1 {
            self.clocks.pass(self.before_send_ms); // the re-read under the lease
        }
        call.forward().await
    }
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        let rec = freshtoken::Record::decode(call.record).unwrap();
        if rec.in_doubt {
            self.clocks.pass(self.before_send_ms); // the write-ahead
            return call.forward().await;
        }
        if rec.access_token.is_none() {
            return call.forward().await; // a seed
        }
        let failing = match self.rotated_saves.fetch_add(1, Ordering::SeqCst) {
            0 => Some(self.first_save_ms),
            1 => self.second_save_ms,
            _ => None,
        };
        if let Some(ms) = failing {
            self.clocks.pass(ms);
            return Err(StoreError("connection reset by peer".into()));
        }
        let saved = call.forward().await;
        self.done.notify_one();
        saved
    }
}

/// After `holder`'s call failed to save its rotation: waits for its
/// background save to end (saved, or the lease found taken), then checks
/// that the other process, asking while the lease could have lapsed, found
/// it held and sent nothing, and that the rotated record was saved and its
/// refresh token works.
async fn the_rotation_is_kept(
    emu: &Emulator,
    shared: &MemoryStore,
    store: &ForwardingStore<StrandedSlowly>,
    seeded: &str,
) {
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        store.hooks.done.notified(),
    )
    .await
    .expect("the background save ended");
    let other = store.hooks.other.result();
    let other = other.expect("the other process asked while the lease was renewed");
    let error = other.expect_err("the lease was held: the other process waited");
    assert_eq!(error.code().as_str(), "conflict", "{error}");
    assert_eq!(
        emu.counters().reuse_detected,
        0,
        "the spent refresh token was sent again"
    );
    assert_eq!(emu.refresh_token_state(seeded), TokenState::Consumed);
    let stored = freshtoken::Record::decode(&shared.get("u1").unwrap()).unwrap();
    assert!(!stored.in_doubt, "the rotated record was saved");
    let rotated = stored.refresh_token.unwrap();
    assert_eq!(
        emu.refresh_token_state(rotated.expose()),
        TokenState::Active
    );
}

/// The default configuration. The request with its retries takes 49.6 s
/// (a 503 after 19.7 s, an answer after 29.9 s), after `before_send_ms`
/// twice (the re-read and the write-ahead); the rotated record's save then
/// fails after 4.9 s, and the background save's first renewal of the lease
/// lands 4.9 s late, as the other process asks. With 1 s each before the
/// request, that lands at 61.4 s: past a 60 s lease, within the default
/// 65 s. With 3 s each, at 65.4 s: the holder must have renewed the lease
/// before it sent.
async fn a_rotated_save_failing_at_its_deadline(before_send_ms: u64) {
    let emu = Emulator::start(Options::default()).unwrap();
    let clocks = Clocks::one();
    let shared = Arc::new(MemoryStore::with_leases(clocks.truth.clone()));
    let other_clock = Arc::new(ManualClock::new(clocks.truth.now_ms()));
    let b_session = other_process(&emu, other_clock)
        .session("u1", shared.clone())
        .unwrap();
    let seeded = seed_family(&emu, &b_session).await;
    emu.push_fault(Fault::status(503).for_grant("refresh_token"));
    let http = Arc::new(SlowHttp::new(&clocks, [19_700, 29_900]));
    let a = spawning_holder(&emu, &clocks, http, 5_000);
    let slow = StrandedSlowly {
        before_send_ms,
        first_save_ms: 4_900,
        renewals: Mutex::new([Renewal::LandsLate(4_900)].into()),
        ..StrandedSlowly::new(&clocks, Some(b_session))
    };
    let store = ForwardingStore::fleet(shared.clone(), slow);

    let held = a.session("u1", store.clone()).unwrap().access_token().await;

    let error = held.expect_err("the rotated record's save failed");
    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(refreshes(&emu), 2, "the 503 and the answered retry");
    the_rotation_is_kept(&emu, &shared, &store, &seeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_lease_outlasts_a_failed_rotated_save_and_the_renewal_after_it() {
    a_rotated_save_failing_at_its_deadline(1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_renews_the_lease_before_sending_when_it_may_not_outlast_that_renewal() {
    a_rotated_save_failing_at_its_deadline(3_000).await;
}

/// A store deadline of 60 s (the default lease TTL then 175 s). The rotated
/// record's save fails at once; the background save's first renewal is
/// answered 59 s late, so its save (up to 60 s more) and the next renewal
/// (up to 60 s to land) might not fit in the renewed lease: that try must
/// leave the save to the next. The next renewal lands 59 s late as the
/// other process asks (so it is late too, but a save is left at most once
/// in a row); its save fails after 59 s; the next try saves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_try_whose_renewal_answered_late_leaves_the_save_to_the_next() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clocks = Clocks::one();
    let shared = Arc::new(MemoryStore::with_leases(clocks.truth.clone()));
    let other_clock = Arc::new(ManualClock::new(clocks.truth.now_ms()));
    let b_session = other_process(&emu, other_clock)
        .session("u1", shared.clone())
        .unwrap();
    let seeded = seed_family(&emu, &b_session).await;
    let a = spawning_holder(&emu, &clocks, Arc::new(SlowHttp::new(&clocks, [])), 60_000);
    let slow = StrandedSlowly {
        second_save_ms: Some(59_000),
        renewals: Mutex::new([Renewal::AnsweredLate(59_000), Renewal::LandsLate(59_000)].into()),
        ..StrandedSlowly::new(&clocks, Some(b_session))
    };
    let store = ForwardingStore::fleet(shared.clone(), slow);

    let held = a.session("u1", store.clone()).unwrap().access_token().await;

    let error = held.expect_err("the rotated record's save failed");
    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(refreshes(&emu), 1);
    the_rotation_is_kept(&emu, &shared, &store, &seeded).await;
    assert_eq!(
        store.hooks.rotated_saves.load(Ordering::SeqCst),
        3,
        "the flight's save, the background one that failed, the one that landed"
    );
}

/// A store deadline of 60 s, and a store that answers every renewal of the
/// lease 59 s late but saves: the background save leaves the save once,
/// then saves at its second try instead of waiting on for a quick renewal
/// until the lease is given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_answers_every_renewal_late_still_gets_the_rotation_saved() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clocks = Clocks::one();
    let shared = Arc::new(MemoryStore::with_leases(clocks.truth.clone()));
    let a = spawning_holder(&emu, &clocks, Arc::new(SlowHttp::new(&clocks, [])), 60_000);
    let slow = StrandedSlowly {
        renewals: Mutex::new([Renewal::AnsweredLate(59_000); 8].into()),
        ..StrandedSlowly::new(&clocks, None)
    };
    let store = ForwardingStore::fleet(shared.clone(), slow);
    let session = a.session("u1", store.clone()).unwrap();
    seed_family(&emu, &session).await;

    let error = session.access_token().await.unwrap_err();

    assert_eq!(error.code().as_str(), "storage", "{error}");
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        store.hooks.done.notified(),
    )
    .await
    .expect("the background save ended");
    assert_eq!(
        store.hooks.renewed.load(Ordering::SeqCst),
        2,
        "one try left the save, the next saved"
    );
    let stored = freshtoken::Record::decode(&shared.get("u1").unwrap()).unwrap();
    assert!(!stored.in_doubt, "the rotated record was saved");
    assert_eq!(refreshes(&emu), 1);
}
