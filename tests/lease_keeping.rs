//! The fleet lease kept while a rotated record is saved again: after the
//! rotated save fails, the holder renews its lease and saves in the
//! background (and so does any call meanwhile) until the record lands. The
//! lease must not lapse between two renewals, however the store takes its
//! time within its deadline: another process would take it, read the
//! in-doubt write-ahead and send the spent refresh token (the emulator, with
//! reuse detection on, revokes the grant: a re-link for the user).

mod common;

use common::slow_fleet::{fleet, Clocks, Meanwhile, SlowHttp};
use common::{
    refreshes, Acquire, ForwardingStore, LoadVersioned, SaveVersioned, StoreHooks, CLIENT_ID,
    CLIENT_SECRET,
};
use freshtoken::{
    async_trait, CasOutcome, Clock, Config, ManualClock, MemoryStore, StoreError, TokenClient,
    UserSession, Versioned,
};
use freshtoken_emulator::{Emulator, Fault, TokenState};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// A holder as a backend has it: the default configuration but for
/// `store_timeout_ms` (and `lease_ttl_ms`, if given), its background saves
/// run as tokio tasks, on `clock`.
fn holder(
    emu: &Emulator,
    clock: Arc<dyn Clock>,
    http: Arc<SlowHttp>,
    store_timeout_ms: i64,
    lease_ttl_ms: Option<i64>,
) -> TokenClient {
    let mut config = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .store_timeout_ms(store_timeout_ms);
    if let Some(ttl) = lease_ttl_ms {
        config = config.lease_ttl_ms(ttl);
    }
    let spawn = Arc::new(freshtoken::TokioSpawner::current().unwrap());
    TokenClient::with_spawner(config.build().unwrap(), http, clock, spawn)
}

/// How one renewal of the lease after the first failed rotated save (by
/// the background save, or by a call meanwhile) takes time.
#[derive(Clone, Copy)]
enum Renewal {
    /// It lands at once and is answered this late (ms).
    AnsweredLate(u64),
    /// It lands this late (ms); just before it does, the other process
    /// asks for a token.
    LandsLate(u64),
    /// It never answers (`stalled` is told once it is asked).
    Stalls,
}

/// A fleet store on which the rotated record's saves fail, and what the
/// holder does after the first failure takes time, each step within the
/// store deadline: the re-read under the lease and the write-ahead take
/// `before_send_ms` each; the rotated record's saves fail after the times
/// in `saves` (then land); the renewals go as `renewals` has them (then at
/// once). `done` is told once the rotated record is saved, or a renewal
/// found the lease taken.
struct StrandedSlowly {
    clocks: Arc<Clocks>,
    before_send_ms: u64,
    saves: Mutex<VecDeque<u64>>,
    renewals: Mutex<VecDeque<Renewal>>,
    loads: AtomicU32,
    rotated_saves: AtomicU32,
    /// Renewals (acquires) since the first rotated save failed.
    renewed: AtomicU32,
    other: Meanwhile,
    done: Notify,
    stalled: Notify,
}

impl StrandedSlowly {
    fn new(clocks: &Arc<Clocks>, other: Option<UserSession>) -> Self {
        StrandedSlowly {
            clocks: clocks.clone(),
            before_send_ms: 0,
            saves: Mutex::new([0].into()),
            renewals: Mutex::new(VecDeque::new()),
            loads: AtomicU32::new(0),
            rotated_saves: AtomicU32::new(0),
            renewed: AtomicU32::new(0),
            other: other.map(Meanwhile::of).unwrap_or_default(),
            done: Notify::new(),
            stalled: Notify::new(),
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
        if let Some(Renewal::Stalls) = renewal {
            self.stalled.notify_one();
            std::future::pending::<()>().await;
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
        self.rotated_saves.fetch_add(1, Ordering::SeqCst);
        let failing = self.saves.lock().unwrap().pop_front();
        if let Some(ms) = failing {
            self.clocks.pass(ms);
            return Err(StoreError("connection reset by peer".into()));
        }
        let saved = call.forward().await;
        self.done.notify_one();
        saved
    }
}

/// A process clock whose first pause once `armed` (the background save's,
/// between two tries) waits for the test, which calls meanwhile.
struct GatedPause {
    clock: Arc<ManualClock>,
    armed: AtomicBool,
    paused: Notify,
    go_on: Notify,
}

#[async_trait]
impl Clock for GatedPause {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        self.clock.monotonic_ms()
    }
    async fn sleep(&self, ms: u64) {
        self.clock.sleep(ms).await;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.paused.notify_one();
            self.go_on.notified().await;
        }
    }
    async fn timer(&self, ms: u64) {
        self.clock.timer(ms).await
    }
}

/// A holder with the default configuration but for `store_timeout_ms`,
/// whose background save's first pause waits for the test.
fn gated_holder(
    emu: &Emulator,
    clocks: &Arc<Clocks>,
    store_timeout_ms: i64,
) -> (Arc<GatedPause>, TokenClient) {
    let gated = Arc::new(GatedPause {
        clock: clocks.local.clone(),
        armed: AtomicBool::new(true),
        paused: Notify::new(),
        go_on: Notify::new(),
    });
    let http = Arc::new(SlowHttp::new(clocks, []));
    let a = holder(emu, gated.clone(), http, store_timeout_ms, None);
    (gated, a)
}

/// `session`'s call whose rotated save fails (`storage`), then the pause
/// after its background save's first try, which waits for the test.
async fn stranded_until_paused(session: &UserSession, gated: &GatedPause) {
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    within(&gated.paused, "the background save's pause").await;
}

/// Waits for `notify`, failing the test (instead of hanging) should it
/// never come.
async fn within(notify: &Notify, what: &str) {
    tokio::time::timeout(Duration::from_secs(60), notify.notified())
        .await
        .unwrap_or_else(|_| panic!("{what} never came"));
}

/// After the holder's call failed to save its rotation: waits for its
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
    within(&store.hooks.done, "the end of the background save").await;
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
    let clocks = Clocks::one();
    let (emu, shared, b_session, seeded) = fleet(&clocks).await;
    emu.push_fault(Fault::status(503).for_grant("refresh_token"));
    let http = Arc::new(SlowHttp::new(&clocks, [19_700, 29_900]));
    let a = holder(&emu, clocks.local.clone(), http, 5_000, None);
    let slow = StrandedSlowly {
        before_send_ms,
        saves: Mutex::new([4_900].into()),
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

/// A store deadline of 60 s, longer than the request's timeout and retry
/// budget: the default lease TTL is then three deadlines and 5 s (185 s).
/// The background save's renewals are answered 59 s late twice, each
/// followed by a save that fails after 59 s; the third renewal lands 59 s
/// late, as the other process asks: 178 s after the second landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_lease_outlasts_a_late_renewal_a_failed_save_and_the_next_renewal() {
    let clocks = Clocks::one();
    let (emu, shared, b_session, seeded) = fleet(&clocks).await;
    let http = Arc::new(SlowHttp::new(&clocks, []));
    let a = holder(&emu, clocks.local.clone(), http, 60_000, None);
    let slow = StrandedSlowly {
        saves: Mutex::new([0, 59_000, 59_000].into()),
        renewals: Mutex::new(
            [
                Renewal::AnsweredLate(59_000),
                Renewal::AnsweredLate(59_000),
                Renewal::LandsLate(59_000),
            ]
            .into(),
        ),
        ..StrandedSlowly::new(&clocks, Some(b_session))
    };
    let store = ForwardingStore::fleet(shared.clone(), slow);

    let held = a.session("u1", store.clone()).unwrap().access_token().await;

    assert_eq!(held.unwrap_err().code().as_str(), "storage");
    the_rotation_is_kept(&emu, &shared, &store, &seeded).await;
}

/// A store deadline of 60 s (the default lease, 185 s). The background
/// save's first renewal is answered 59 s late and its save fails after
/// 59 s; during the pause after it the user calls, and that call's save of
/// the pending record fails after 59 s too. Had the call saved without
/// renewing, the background save's next renewal (landing 59 s late, as the
/// other process asks) would come 237 s after the last one landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_between_background_tries_renews_the_lease_before_it_saves() {
    let clocks = Clocks::one();
    let (emu, shared, b_session, seeded) = fleet(&clocks).await;
    let (gated, a) = gated_holder(&emu, &clocks, 60_000);
    let slow = StrandedSlowly {
        saves: Mutex::new([0, 59_000, 59_000].into()),
        renewals: Mutex::new([Renewal::AnsweredLate(59_000), Renewal::LandsLate(59_000)].into()),
        ..StrandedSlowly::new(&clocks, Some(b_session))
    };
    let store = ForwardingStore::fleet(shared.clone(), slow);
    let session = a.session("u1", store.clone()).unwrap();
    stranded_until_paused(&session, &gated).await;

    let during = session.access_token().await;

    let error = during.expect_err("the call's save of the pending record failed");
    assert_eq!(error.code().as_str(), "storage", "{error}");
    gated.go_on.notify_one();
    the_rotation_is_kept(&emu, &shared, &store, &seeded).await;
}

/// A store deadline of 60 s and an explicit lease TTL of 175 s, shorter
/// than three deadlines. The rotated record's save fails at once; the
/// background save's first renewal is answered 59 s late, so its save (up
/// to 60 s more) and the next renewal (up to 60 s to land) might not fit in
/// the renewed lease: that try must leave the save to the next. The next
/// renewal lands 59 s late as the other process asks (so it is late too,
/// but a save is left at most once in a row); its save fails after 59 s;
/// the next try saves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_try_whose_renewal_answered_late_leaves_the_save_to_the_next() {
    let clocks = Clocks::one();
    let (emu, shared, b_session, seeded) = fleet(&clocks).await;
    let http = Arc::new(SlowHttp::new(&clocks, []));
    let a = holder(&emu, clocks.local.clone(), http, 60_000, Some(175_000));
    let slow = StrandedSlowly {
        saves: Mutex::new([0, 59_000].into()),
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

/// The same configuration, and a store that answers every renewal of the
/// lease 59 s late but saves: the background save leaves the save once,
/// then saves at its second try instead of waiting on for a quick renewal
/// until the lease is given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_answers_every_renewal_late_still_gets_the_rotation_saved() {
    let clocks = Clocks::one();
    let (emu, shared, _, _) = fleet(&clocks).await;
    let http = Arc::new(SlowHttp::new(&clocks, []));
    let a = holder(&emu, clocks.local.clone(), http, 60_000, Some(175_000));
    let slow = StrandedSlowly {
        renewals: Mutex::new([Renewal::AnsweredLate(59_000); 8].into()),
        ..StrandedSlowly::new(&clocks, None)
    };
    let store = ForwardingStore::fleet(shared.clone(), slow);
    let session = a.session("u1", store.clone()).unwrap();

    let error = session.access_token().await.unwrap_err();

    assert_eq!(error.code().as_str(), "storage", "{error}");
    within(&store.hooks.done, "the end of the background save").await;
    assert_eq!(
        store.hooks.renewed.load(Ordering::SeqCst),
        2,
        "one try left the save, the next saved"
    );
    let stored = freshtoken::Record::decode(&shared.get("u1").unwrap()).unwrap();
    assert!(!stored.in_doubt, "the rotated record was saved");
    assert_eq!(refreshes(&emu), 1);
}

/// The default configuration. The rotated record's save fails, and so does
/// the background save's first try; during the pause after it the user
/// calls, and the renewal that call makes before saving never answers. The
/// call gets `storage` at the store deadline, having saved nothing over
/// anything; the record stays pending, and the background save's next try
/// renews the lease and saves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_renewal_never_answers_gets_storage_and_the_background_save_goes_on() {
    let clocks = Clocks::one();
    let (emu, shared, _, seeded) = fleet(&clocks).await;
    let (gated, a) = gated_holder(&emu, &clocks, 5_000);
    let slow = StrandedSlowly {
        saves: Mutex::new([0, 0].into()),
        renewals: Mutex::new([Renewal::AnsweredLate(0), Renewal::Stalls].into()),
        ..StrandedSlowly::new(&clocks, None)
    };
    let store = ForwardingStore::fleet(shared.clone(), slow);
    let session = a.session("u1", store.clone()).unwrap();
    stranded_until_paused(&session, &gated).await;

    let during = tokio::spawn({
        let session = session.clone();
        async move { session.access_token().await }
    });
    within(&store.hooks.stalled, "the call's renewal").await;
    // Until the deadline is armed (the renewal's call reaches it on another
    // worker: a count of yields is no bound under load); the timeout only
    // fails the test instead of hanging it.
    let armed = tokio::time::timeout(Duration::from_secs(30), async {
        while clocks.local.pending_timers() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(armed.is_ok(), "the renewal's deadline is armed");
    clocks.pass(5_001);
    let error = during
        .await
        .unwrap()
        .expect_err("the renewal never answered");

    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(
        store.hooks.rotated_saves.load(Ordering::SeqCst),
        2,
        "the call saved nothing after its renewal stalled"
    );
    gated.go_on.notify_one();
    within(&store.hooks.done, "the end of the background save").await;
    let stored = freshtoken::Record::decode(&shared.get("u1").unwrap()).unwrap();
    assert!(!stored.in_doubt, "the rotated record was saved");
    assert_eq!(emu.refresh_token_state(&seeded), TokenState::Consumed);
    let rotated = stored.refresh_token.unwrap();
    assert_eq!(
        emu.refresh_token_state(rotated.expose()),
        TokenState::Active
    );
    assert_eq!(emu.counters().reuse_detected, 0);
}
