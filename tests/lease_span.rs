//! The fleet lease spans the whole refresh: the request with its retries
//! and the save of the rotated record after it, however the store and the
//! server take their time within their deadlines, and however the process
//! clock steps meanwhile. Against the emulator with reuse detection on: a
//! lease that lapses while its holder may still land lets another process
//! send the spent refresh token (a revoked grant).

mod common;

use common::slow_fleet::{fleet, other_process, Clocks, Meanwhile, SlowHttp};
use common::{
    refreshes, seed_family, Acquire, ForwardingStore, LoadVersioned, SaveVersioned, StoreHooks,
    CLIENT_ID, CLIENT_SECRET,
};
use freshtoken::{
    async_trait, CasOutcome, Clock, Config, MemoryStore, StoreError, TokenClient, TokenStore,
    Versioned,
};
use freshtoken_emulator::{Emulator, Fault, Options, TokenState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

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
    let (emu, shared, b_session, seeded) = fleet(&clocks).await;
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

/// A store whose write-ahead takes `write_ahead_ms`, and whose answers
/// after it (a renewal of the lease, a read of the version) take
/// `renewal_ms` and `version_ms`.
struct AfterWriteAhead {
    clocks: Arc<Clocks>,
    write_ahead_ms: u64,
    renewal_ms: u64,
    version_ms: u64,
    wrote_ahead: std::sync::atomic::AtomicBool,
    renewals: AtomicU32,
    version_reads: AtomicU32,
}

#[async_trait]
impl StoreHooks for AfterWriteAhead {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        if self.wrote_ahead.load(Ordering::SeqCst)
            && self.renewals.fetch_add(1, Ordering::SeqCst) == 0
        {
            self.clocks.pass(self.renewal_ms);
        }
        call.forward().await
    }
    async fn load_versioned(
        &self,
        call: LoadVersioned<'_>,
    ) -> Result<Option<Versioned>, StoreError> {
        if self.wrote_ahead.load(Ordering::SeqCst)
            && self.version_reads.fetch_add(1, Ordering::SeqCst) == 0
        {
            self.clocks.pass(self.version_ms);
        }
        call.forward().await
    }
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        let rec = freshtoken::Record::decode(call.record).unwrap();
        if rec.in_doubt {
            self.clocks.pass(self.write_ahead_ms);
            self.wrote_ahead.store(true, Ordering::SeqCst);
        }
        call.forward().await
    }
}

/// An explicit lease TTL of 62 s with the other defaults: 1 s more than
/// the request, the save after it and one more store deadline (61 s), so
/// a holder whose write-ahead took 1.5 s renews before it sends. The
/// renewal, answered 3.5 s later, still within the lease it renews, needs
/// no read of the stored version (nobody else could have held the lease),
/// and the renewed lease covers the 56 s the request and the save take.
/// Were the version read (3 s more) counted, 6.5 s + 56 s would not fit in
/// 62 s, and a TTL longer than one that works (61 s) would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_renewal_within_the_lease_reads_no_version() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clocks = Clocks::one();
    let shared = Arc::new(MemoryStore::with_leases(clocks.truth.clone()));
    let config = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .lease_ttl_ms(62_000)
        .build()
        .unwrap();
    let http = Arc::new(SlowHttp::new(&clocks, []));
    let a = TokenClient::new(config, http, clocks.local.clone());
    let hooks = AfterWriteAhead {
        clocks: clocks.clone(),
        write_ahead_ms: 1_500,
        renewal_ms: 3_500,
        version_ms: 3_000,
        wrote_ahead: Default::default(),
        renewals: AtomicU32::new(0),
        version_reads: AtomicU32::new(0),
    };
    let store = ForwardingStore::fleet(shared.clone(), hooks);
    let session = a.session("u1", store.clone()).unwrap();
    seed_family(&emu, &session).await;

    let token = session.access_token().await;

    token.expect("renewed once, sent, saved");
    assert_eq!(
        store.hooks.renewals.load(Ordering::SeqCst),
        1,
        "renewed once"
    );
    assert_eq!(
        store.hooks.version_reads.load(Ordering::SeqCst),
        0,
        "no version read after the write-ahead"
    );
    assert_eq!(refreshes(&emu), 1);
}
