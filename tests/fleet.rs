//! Several clients (as if several processes) sharing one session through a
//! store with leases and compare-and-swap (DESIGN point 9), against the
//! emulator with reuse detection on: any double use of a refresh token
//! would revoke the whole family and show as invalid_grant.

mod common;

use common::{
    one_refresh_per_window, plain_client as client, refreshes, seed_family, wall_ms, Acquire,
    ForwardingStore, Load, OffsetClock, Save, SaveVersioned, StoreHooks, CLIENT_ID, CLIENT_SECRET,
};
use freshtoken::{
    async_trait, CasOutcome, Clock, Config, ManualClock, MemoryStore, Seed, StoreError,
    TokenClient, TokenStore,
};
use freshtoken_emulator::{Emulator, Options, TokenState};
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_clients_share_one_refresh_per_expiry_window() {
    let emu = Emulator::start(Options::default()).unwrap();
    // Real sleeps: waiting for another client's lease takes real time.
    let clock = Arc::new(OffsetClock::default());
    let store = Arc::new(MemoryStore::with_leases(clock.clone()));
    let clients: Vec<TokenClient> = (0..4).map(|_| client(&emu, clock.clone())).collect();
    let family = emu.seed(CLIENT_ID, "openid offline_access");
    clients[0]
        .session("u1", store.clone())
        .unwrap()
        .seed(Seed {
            refresh_token: family.refresh_token.into(),
            ..Seed::default()
        })
        .await
        .unwrap();

    one_refresh_per_window(&emu, &clients, store.clone(), &clock, 20).await;
    let c = emu.counters();
    assert_eq!((c.reuse_detected, c.invalid_grant), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lease_holder_delays_the_others_by_at_most_the_lease_ttl() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let store = Arc::new(MemoryStore::with_leases(clock.clone()));
    let a = client(&emu, clock.clone());
    let family = emu.seed(CLIENT_ID, "offline_access");
    let session = a.session("u1", store.clone()).unwrap();
    session
        .seed(Seed {
            refresh_token: family.refresh_token.into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    // A process took the lease and died.
    let ttl = a.config().refresh_token_lifetime_ms().min(60_000);
    assert!(store.acquire("u1", "dead-process", ttl).await.unwrap());
    let started = clock.now_ms();
    session
        .access_token()
        .await
        .expect("served once the lease expired");
    let waited = clock.now_ms() - started;
    assert!(waited >= ttl, "waited {waited} ms for a {ttl} ms lease");
    assert!(
        waited <= ttl + 2_000,
        "waited {waited} ms, at most the TTL plus one poll"
    );
    assert_eq!(refreshes(&emu), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_too_long_is_a_conflict_and_sends_nothing() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let store = Arc::new(MemoryStore::with_leases(clock.clone()));
    let config = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .lease_wait_ms(5_000)
        .build()
        .unwrap();
    let a = TokenClient::new(
        config,
        Arc::new(freshtoken::NativeHttp::new().unwrap()),
        clock.clone(),
    );
    let session = a.session("u1", store.clone()).unwrap();
    seed_family(&emu, &session).await;
    assert!(store
        .acquire("u1", "busy-process", 3_600_000)
        .await
        .unwrap());
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "conflict", "{error}");
    assert_eq!(refreshes(&emu), 0);
}

/// A host clock that stands still and whose sleeps return at once (the
/// shape of many fake clocks); its deadlines never fire.
struct Frozen(u64);

#[async_trait]
impl Clock for Frozen {
    fn now_ms(&self) -> u64 {
        self.0
    }
    async fn sleep(&self, _ms: u64) {}
    async fn timer(&self, _ms: u64) {
        std::future::pending::<()>().await
    }
}

/// A lease store's looks at the lease, counted; one past `LOOKS_ALLOWED`
/// fails (a wait that would never end ends there, as `storage`).
struct CountsLooks {
    looks: Mutex<u64>,
}

#[async_trait]
impl StoreHooks for CountsLooks {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        let looks = {
            let mut looks = self.looks.lock().unwrap();
            *looks += 1;
            *looks
        };
        if looks > LOOKS_ALLOWED {
            return Err(StoreError("asked for the lease too often".into()));
        }
        call.forward().await
    }
}

const LOOKS_ALLOWED: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_clock_that_stands_still_the_lease_wait_still_ends() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(Frozen(wall_ms()));
    let store = ForwardingStore::lease_only(
        MemoryStore::with_leases(clock.clone()),
        CountsLooks {
            looks: Mutex::new(0),
        },
    );
    let config = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .lease_wait_ms(5_000)
        .build()
        .unwrap();
    let a = TokenClient::new(
        config,
        Arc::new(freshtoken::NativeHttp::new().unwrap()),
        clock,
    );
    let session = a.session("u1", store.clone()).unwrap();
    seed_family(&emu, &session).await;
    assert!(store
        .inner
        .acquire("u1", "busy-process", 3_600_000)
        .await
        .unwrap());
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "conflict", "{error}");
    let looks = *store.hooks.looks.lock().unwrap();
    assert!(looks <= 5_000 / 50 + 1, "{looks} looks at the lease");
    assert_eq!(refreshes(&emu), 0);
}

/// Another writer, who saves `next` just before this process's next
/// compare-and-swap save lands.
struct Interloper {
    next: Mutex<Option<String>>,
}

#[async_trait]
impl StoreHooks for Interloper {
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        let interloping = self.next.lock().unwrap().take();
        if let Some(other) = interloping {
            call.inner.save(call.key, &other).await?;
        }
        call.forward().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_lost_the_race_is_a_conflict_not_an_overwrite() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let store = ForwardingStore::versioned_only(
        MemoryStore::new(),
        Interloper {
            next: Mutex::new(None),
        },
    );
    let a = client(&emu, clock.clone());
    let session = a.session("u1", store.clone()).unwrap();
    seed_family(&emu, &session).await;
    // A new login elsewhere lands while this process refreshes.
    let relinked = emu.seed(CLIENT_ID, "offline_access").refresh_token;
    let other = freshtoken::Record {
        refresh_token: Some(relinked.clone().into()),
        ..freshtoken::Record::default()
    };
    *store.hooks.next.lock().unwrap() = Some(other.encode());
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "conflict", "{error}");
    let stored = freshtoken::Record::decode(&store.inner.get("u1").unwrap()).unwrap();
    assert_eq!(
        stored.refresh_token.unwrap().expose(),
        relinked,
        "not overwritten"
    );
    // The next call reads the new login and uses it.
    session.access_token().await.unwrap();
    assert_eq!(emu.refresh_token_state(&relinked), TokenState::Consumed);
}

/// A fleet store's witness: notes, for each save, whether the record was
/// marked in doubt and how many token requests the emulator had seen by then.
struct Witness {
    emu_requests: Box<dyn Fn() -> u64 + Send + Sync>,
    saves: Mutex<Vec<(bool, u64)>>,
}

#[async_trait]
impl StoreHooks for Witness {
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        let in_doubt = freshtoken::Record::decode(call.record).unwrap().in_doubt;
        self.saves
            .lock()
            .unwrap()
            .push((in_doubt, (self.emu_requests)()));
        call.forward().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_marks_the_token_in_doubt_before_sending_it() {
    let emu = Arc::new(Emulator::start(Options::default()).unwrap());
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let counted = emu.clone();
    let store = ForwardingStore::fleet(
        MemoryStore::with_leases(clock.clone()),
        Witness {
            emu_requests: Box::new(move || counted.counters().token_requests),
            saves: Mutex::new(Vec::new()),
        },
    );
    let holder = client(&emu, clock.clone());
    let session = holder.session("u1", store.clone()).unwrap();
    seed_family(&emu, &session).await;
    // The server rotates, but the answer never arrives (as if the holder died).
    emu.push_fault(freshtoken_emulator::Fault::drop_after_commit());
    assert_eq!(
        session.access_token().await.unwrap_err().code().as_str(),
        "network"
    );
    let saves = store.hooks.saves.lock().unwrap().clone();
    assert!(
        saves.contains(&(true, 0)),
        "the in-doubt marker was saved before any request reached the server: {saves:?}"
    );
    // Another process takes over: the stored marker tells it what happened.
    let survivor = client(&emu, clock.clone());
    let error = survivor
        .session("u1", store.clone())
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(error.reason(), Some(freshtoken::ReauthReason::LostRotation));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_left_withdraws_the_in_doubt_marker() {
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let store = Arc::new(MemoryStore::with_leases(clock.clone()));
    let config = Config::builder(common::refused_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    let a = TokenClient::new(
        config,
        Arc::new(freshtoken::NativeHttp::new().unwrap()),
        clock,
    );
    let session = a.session("u1", store.clone()).unwrap();
    session
        .seed(Seed {
            refresh_token: "rt".into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    let error = session.access_token().await.unwrap_err();
    assert!(
        matches!(
            error,
            freshtoken::Error::Network {
                maybe_sent: false,
                ..
            }
        ),
        "{error:?}"
    );
    let stored = freshtoken::Record::decode(&store.get("u1").unwrap()).unwrap();
    assert!(
        !stored.in_doubt,
        "connection refused: the token was never sent"
    );
}

/// A fleet store's answers to the lease and to the write-ahead (the save
/// that marks the token in doubt) come back late, each within the store
/// deadline: the writes land, the clock moves past the lease TTL, and
/// another process acts before the write-ahead answers.
struct LateWriteAhead {
    clock: Arc<ManualClock>,
    /// How late each of the two answers comes (ms).
    late_ms: u64,
    acquired_late: std::sync::atomic::AtomicBool,
    meanwhile: Mutex<Option<Meanwhile>>,
    taker_result: Mutex<Option<Result<String, freshtoken::Error>>>,
}

/// What the other process does while the write-ahead's answer is late.
enum Meanwhile {
    /// Takes the lapsed lease and refreshes through this session.
    Refresh(freshtoken::UserSession),
    /// Takes the lapsed lease and is still busy with it.
    HoldLease,
}

#[async_trait]
impl StoreHooks for LateWriteAhead {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        let taken = call.forward().await;
        // The holder's lease is taken now, its answer comes late.
        if self.meanwhile.lock().unwrap().is_some()
            && !self
                .acquired_late
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.clock.advance(self.late_ms);
        }
        taken
    }
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        let outcome = call.forward().await;
        let in_doubt = freshtoken::Record::decode(call.record).unwrap().in_doubt;
        let meanwhile = in_doubt
            .then(|| self.meanwhile.lock().unwrap().take())
            .flatten();
        if let Some(meanwhile) = meanwhile {
            self.clock.advance(self.late_ms);
            let result = match meanwhile {
                Meanwhile::Refresh(taker) => taker.access_token().await,
                Meanwhile::HoldLease => {
                    let taken = call.inner.acquire(call.key, "busy-process", 60_000).await;
                    assert!(taken.unwrap(), "the holder's lease lapsed");
                    Ok(String::new())
                }
            };
            *self.taker_result.lock().unwrap() = Some(result);
        }
        outcome
    }
}

/// A client on `clock` whose configuration is valid (the lease outlives
/// the request, its retries and a store call after it) but whose lease does
/// not outlive that plus two slow store answers before it.
fn tight_lease_client(emu: &Emulator, clock: &Arc<ManualClock>) -> TokenClient {
    tight_lease_client_at(emu.token_endpoint(), clock)
}

/// [`tight_lease_client`] standing for a client in another process. The
/// process-wide refresh claims (one flight per refresh token in a process)
/// are keyed by token endpoint, client id and token: this client reaches
/// the same emulator by another spelling of the endpoint (the emulator
/// ignores the query), so its claims are apart from this process's, as
/// another process's would be.
fn other_process_client(emu: &Emulator, clock: &Arc<ManualClock>) -> TokenClient {
    tight_lease_client_at(format!("{}?process=other", emu.token_endpoint()), clock)
}

fn tight_lease_client_at(token_endpoint: String, clock: &Arc<ManualClock>) -> TokenClient {
    let config = Config::builder(token_endpoint, CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .timeout_ms(1_000)
        .retry(freshtoken::RetryPolicy {
            budget_ms: 0,
            ..freshtoken::RetryPolicy::none()
        })
        .store_timeout_ms(2_500)
        // timeout 1 s + no retries + HTTP grace 1 s + store deadline 2.5 s.
        .lease_ttl_ms(4_600)
        .build()
        .unwrap();
    let http = Arc::new(UnhurriedHttp(freshtoken::NativeHttp::new().unwrap()));
    TokenClient::new(config, http, clock.clone())
}

/// Native HTTP whose own (real-time) timeout is a minute: the 1 s deadline
/// the tight clients' arithmetic counts on runs on the test's manual clock
/// (the core's), so a loaded machine cannot turn a request that must
/// succeed into a timeout.
struct UnhurriedHttp(freshtoken::NativeHttp);

#[async_trait]
impl freshtoken::HttpClient for UnhurriedHttp {
    async fn send(
        &self,
        mut request: freshtoken::HttpRequest,
    ) -> Result<freshtoken::HttpResponse, freshtoken::HttpError> {
        request.timeout_ms = request.timeout_ms.max(60_000);
        self.0.send(request).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_lease_lapsed_before_it_sent_sends_nothing() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let shared = Arc::new(MemoryStore::with_leases(clock.clone()));
    let (a, b) = (
        tight_lease_client(&emu, &clock),
        other_process_client(&emu, &clock),
    );
    let taker = b.session("u1", shared.clone()).unwrap();
    seed_family(&emu, &taker).await;
    let late = LateWriteAhead {
        clock: clock.clone(),
        late_ms: 2_400, // within the store deadline (2.5 s); twice, past the lease
        acquired_late: Default::default(),
        meanwhile: Mutex::new(Some(Meanwhile::Refresh(taker))),
        taker_result: Mutex::new(None),
    };
    let store = ForwardingStore::fleet(shared.clone(), late);
    let holder = a.session("u1", store.clone()).unwrap();

    let held = holder.access_token().await.map(drop);

    let taken = store.hooks.taker_result.lock().unwrap().take();
    let taken = taken.expect("the other process ran while the answer was late");
    taken.expect("the process that took the lapsed lease refreshed");
    let error = held.expect_err("the holder's lease lapsed: it must not send");
    assert_eq!(error.code().as_str(), "conflict", "{error}");
    assert_eq!(refreshes(&emu), 1, "the refresh token was sent once");
    assert_eq!(
        emu.counters().reuse_detected,
        0,
        "no reuse, no revoked family"
    );
    let stored = freshtoken::Record::decode(&shared.get("u1").unwrap()).unwrap();
    let rotated = stored.refresh_token.unwrap();
    assert_eq!(
        emu.refresh_token_state(rotated.expose()),
        TokenState::Active,
        "the rotated token in the store still works"
    );
    holder
        .access_token()
        .await
        .expect("the holder reads it next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_lapsed_lease_another_process_holds_sends_nothing() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let shared = Arc::new(MemoryStore::with_leases(clock.clone()));
    let late = LateWriteAhead {
        clock: clock.clone(),
        late_ms: 2_400,
        acquired_late: Default::default(),
        meanwhile: Mutex::new(Some(Meanwhile::HoldLease)),
        taker_result: Mutex::new(None),
    };
    let store = ForwardingStore::fleet(shared.clone(), late);
    let holder = tight_lease_client(&emu, &clock)
        .session("u1", store.clone())
        .unwrap();
    let seeded = seed_family(&emu, &holder).await;

    let error = holder.access_token().await.err();

    let error = error.expect("the holder's lease lapsed: it must not send");
    assert!(
        store.hooks.taker_result.lock().unwrap().is_some(),
        "taken meanwhile"
    );
    assert_eq!(error.code().as_str(), "conflict", "{error}");
    assert_eq!(refreshes(&emu), 0, "nothing was sent");
    assert_eq!(emu.refresh_token_state(&seeded), TokenState::Active);
}

/// A lease-only store (no versions) whose answers to the holder's lease and
/// to its read under the lease each come `late_ms` late: the lease lapses
/// before the holder writes ahead, and meanwhile `taker` (another process)
/// takes it, refreshes, saves and releases it.
struct LateReadUnderLease {
    clock: Arc<ManualClock>,
    late_ms: u64,
    leased: std::sync::atomic::AtomicBool,
    taker: Mutex<Option<freshtoken::UserSession>>,
    taker_result: Mutex<Option<Result<String, freshtoken::Error>>>,
}

#[async_trait]
impl StoreHooks for LateReadUnderLease {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        let taken = call.forward().await;
        let first = !self.leased.swap(true, std::sync::atomic::Ordering::SeqCst);
        if first {
            self.clock.advance(self.late_ms);
        }
        taken
    }
    async fn load(&self, call: Load<'_>) -> Result<Option<String>, StoreError> {
        let read = call.forward().await;
        let under_lease = self.leased.load(std::sync::atomic::Ordering::SeqCst);
        let taker = under_lease
            .then(|| self.taker.lock().unwrap().take())
            .flatten();
        if let Some(taker) = taker {
            self.clock.advance(self.late_ms);
            *self.taker_result.lock().unwrap() = Some(taker.access_token().await);
        }
        read
    }
}

/// The emulator, the shared store seeded with a new family, and a holder
/// on a lease-only view of it whose lease and read answer late while the
/// other process (on the shared store) rotates (see [`LateReadUnderLease`]).
async fn holder_whose_lease_lapses_as_it_reads() -> (
    Emulator,
    Arc<MemoryStore>,
    Arc<ForwardingStore<LateReadUnderLease>>,
    freshtoken::UserSession,
) {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let shared = Arc::new(MemoryStore::with_leases(clock.clone()));
    let taker = other_process_client(&emu, &clock)
        .session("u1", shared.clone())
        .unwrap();
    seed_family(&emu, &taker).await;
    let store = ForwardingStore::lease_only(
        shared.clone(),
        LateReadUnderLease {
            clock: clock.clone(),
            late_ms: 2_400, // within the store deadline (2.5 s); twice, past the lease
            leased: Default::default(),
            taker: Mutex::new(Some(taker)),
            taker_result: Mutex::new(None),
        },
    );
    let holder = tight_lease_client(&emu, &clock)
        .session("u1", store.clone())
        .unwrap();
    (emu, shared, store, holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_on_a_store_without_versions_whose_lease_lapsed_before_it_wrote_ahead_sends_nothing(
) {
    // Without compare-and-swap the write-ahead would overwrite the rotated
    // record with the spent token, and nothing after it could tell.
    let (emu, shared, store, holder) = holder_whose_lease_lapses_as_it_reads().await;

    let error = holder.access_token().await.map(drop).unwrap_err();

    let taken = store.hooks.taker_result.lock().unwrap().take();
    taken
        .expect("the other process ran while the read was late")
        .expect("the process that took the lapsed lease refreshed");
    assert_eq!(error.code().as_str(), "conflict", "{error}");
    assert_eq!(refreshes(&emu), 1, "the refresh token was sent once");
    assert_eq!(emu.counters().reuse_detected, 0);
    let stored = freshtoken::Record::decode(&shared.get("u1").unwrap()).unwrap();
    assert!(!stored.in_doubt, "the rotated record was not overwritten");
    let rotated = stored.refresh_token.unwrap();
    assert_eq!(
        emu.refresh_token_state(rotated.expose()),
        TokenState::Active
    );
    holder
        .access_token()
        .await
        .expect("the holder reads the rotated record next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_a_store_without_versions_whose_lease_lapsed_as_it_read_revokes_nothing_yet(
) {
    // Saved dead over the rotated record, the spent token would be revoked
    // (a no-op at the server) and the rotated one left live, unreferenced.
    let (emu, shared, store, holder) = holder_whose_lease_lapses_as_it_reads().await;

    let error = holder.revoke().await.unwrap_err();

    let taken = store.hooks.taker_result.lock().unwrap().take();
    taken
        .expect("the other process ran while the read was late")
        .expect("the process that took the lapsed lease refreshed");
    assert_eq!(error.code().as_str(), "conflict", "{error}");
    assert_eq!(emu.counters().revocation_requests, 0, "nothing sent");
    let stored = freshtoken::Record::decode(&shared.get("u1").unwrap()).unwrap();
    assert_eq!(
        stored.reauth, None,
        "the rotated record was not overwritten"
    );
    let rotated = stored.refresh_token.unwrap();

    holder.revoke().await.expect("revoked once retried");
    assert_eq!(
        emu.refresh_token_state(rotated.expose()),
        TokenState::Revoked,
        "the retry revokes the rotated token"
    );
}

/// A lease-only store whose first in-doubt save (a write-ahead) lands
/// only once `land` is notified, long after the core gave up on it.
#[derive(Default)]
struct WriteAheadLandsLate {
    hang: std::sync::atomic::AtomicBool,
    land: tokio::sync::Notify,
}

#[async_trait]
impl StoreHooks for WriteAheadLandsLate {
    async fn save(&self, call: Save<'_>) -> Result<(), StoreError> {
        let in_doubt = freshtoken::Record::decode(call.record).unwrap().in_doubt;
        if in_doubt && self.hang.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.land.notified().await;
        }
        call.forward().await
    }
}

/// Tells when an `acquire` found the lease held.
#[derive(Default)]
struct TellsRefusals {
    refused: tokio::sync::Notify,
}

#[async_trait]
impl StoreHooks for TellsRefusals {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        let taken = call.forward().await;
        if let Ok(false) = taken {
            self.refused.notify_one();
        }
        taken
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_kept_while_an_abandoned_write_ahead_may_still_land() {
    // Released at once, another process would rotate, and the late
    // write-ahead (in doubt, the spent token) would land over its record
    // on a store without versions: the next reader sends the spent token.
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(OffsetClock::default());
    let shared = Arc::new(MemoryStore::with_leases(clock.clone()));
    let config = Config::builder(emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        // The lease is kept for 12 store deadlines after the holder's error
        // (real time): 12 s of slack for the other process to try it.
        .store_timeout_ms(1_000)
        .build()
        .unwrap();
    let http = Arc::new(freshtoken::NativeHttp::new().unwrap());
    let spawn = Arc::new(freshtoken::TokioSpawner::current().unwrap());
    let holder_store = ForwardingStore::lease_only(shared.clone(), WriteAheadLandsLate::default());
    let holder = TokenClient::with_spawner(config, http, clock.clone(), spawn)
        .session("u1", holder_store.clone())
        .unwrap();
    let seeded = seed_family(&emu, &holder).await;
    holder_store
        .hooks
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);

    let error = holder.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(
        refreshes(&emu),
        0,
        "nothing sent after a write-ahead that did not land"
    );

    let other_store = ForwardingStore::lease_only(shared.clone(), TellsRefusals::default());
    let other = common::plain_client_at(
        &format!("{}?process=other", emu.token_endpoint()),
        clock.clone(),
    )
    .session("u1", other_store.clone())
    .unwrap();
    let mut other_call = tokio::spawn(async move { other.access_token().await });
    tokio::select! {
        _ = other_store.hooks.refused.notified() => {}
        done = &mut other_call => panic!(
            "the other process refreshed while the abandoned write-ahead could still land: \
             {done:?}"
        ),
    }
    holder_store.hooks.land.notify_one();
    other_call
        .await
        .unwrap()
        .expect("the other process refreshes once the late write landed");

    assert_eq!(refreshes(&emu), 1);
    assert_eq!(emu.counters().reuse_detected, 0);
    assert_eq!(emu.refresh_token_state(&seeded), TokenState::Consumed);
    let stored = freshtoken::Record::decode(&shared.get("u1").unwrap()).unwrap();
    assert!(!stored.in_doubt);
    let rotated = stored.refresh_token.unwrap();
    assert_eq!(
        emu.refresh_token_state(rotated.expose()),
        TokenState::Active
    );
}

/// A fleet store's first save after a refresh (the rotated record) fails
/// as a connection reset, if `fail_next_rotation`; its first refused
/// `acquire` runs `meanwhile` (the lease holder's caller trying again).
struct FailsRotatedSave {
    fail_next_rotation: std::sync::atomic::AtomicBool,
    meanwhile: Mutex<Option<freshtoken::UserSession>>,
    meanwhile_result: Mutex<Option<Result<(), freshtoken::Error>>>,
}

#[async_trait]
impl StoreHooks for FailsRotatedSave {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        let taken = call.forward().await?;
        let meanwhile = (!taken)
            .then(|| self.meanwhile.lock().unwrap().take())
            .flatten();
        if let Some(session) = meanwhile {
            let result = session.access_token().await.map(drop);
            *self.meanwhile_result.lock().unwrap() = Some(result);
        }
        Ok(taken)
    }
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        let rotated = freshtoken::Record::decode(call.record)
            .unwrap()
            .access_token
            .is_some();
        if rotated
            && self
                .fail_next_rotation
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError("connection reset by peer".into()));
        }
        call.forward().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_save_failed_keeps_the_lease_until_it_is_saved() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let shared = Arc::new(MemoryStore::with_leases(clock.clone()));
    let (a, b) = (client(&emu, clock.clone()), client(&emu, clock.clone()));
    let a_fails = FailsRotatedSave {
        fail_next_rotation: true.into(),
        meanwhile: Mutex::new(None),
        meanwhile_result: Mutex::new(None),
    };
    let a_store = ForwardingStore::fleet(shared.clone(), a_fails);
    let holder = a.session("u1", a_store.clone()).unwrap();
    seed_family(&emu, &holder).await;
    // The holder refreshes; the rotated record's save fails (the store blipped).
    let error = holder.access_token().await.map(drop).unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(refreshes(&emu), 1);
    // Another process asks for the same user at once; while it finds the
    // lease held, the holder's caller tries again (and saves the rotation).
    let b_fails = FailsRotatedSave {
        fail_next_rotation: false.into(),
        meanwhile: Mutex::new(Some(holder.clone())),
        meanwhile_result: Mutex::new(None),
    };
    let b_store = ForwardingStore::fleet(shared.clone(), b_fails);
    let other = b.session("u1", b_store.clone()).unwrap();

    let served = other.access_token().await.map(drop);

    assert_eq!(refreshes(&emu), 1, "the consumed token was not sent again");
    assert_eq!(
        emu.counters().reuse_detected,
        0,
        "no reuse, no revoked family"
    );
    let retried = b_store.hooks.meanwhile_result.lock().unwrap().take();
    let retried = retried.expect("the other process found the holder's lease held");
    retried.expect("the holder's retry saved its rotation");
    served.expect("the other process is served the saved rotation");
    let stored = freshtoken::Record::decode(&shared.get("u1").unwrap()).unwrap();
    let rotated = stored.refresh_token.unwrap();
    assert_eq!(
        emu.refresh_token_state(rotated.expose()),
        TokenState::Active
    );
}

/// A fleet store's first refused `acquire` lets the emulator's held
/// request go on and waits for the lease holder's call to end.
struct AwaitsHolder {
    emu: Arc<Emulator>,
    holder: tokio::sync::Mutex<Option<tokio::task::JoinHandle<Result<(), freshtoken::Error>>>>,
    holder_result: Mutex<Option<Result<(), freshtoken::Error>>>,
}

#[async_trait]
impl StoreHooks for AwaitsHolder {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        let taken = call.forward().await?;
        if !taken {
            if let Some(holder) = self.holder.lock().await.take() {
                assert_eq!(self.emu.release_held(), 1);
                *self.holder_result.lock().unwrap() = Some(holder.await.unwrap());
            }
        }
        Ok(taken)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapse_seen_while_another_process_refreshes_waits_for_its_rotation() {
    let emu = Arc::new(Emulator::start(Options::default()).unwrap());
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let shared = Arc::new(MemoryStore::with_leases(clock.clone()));
    let client = || {
        let config = Config::builder(emu.token_endpoint(), CLIENT_ID)
            .client_secret(CLIENT_SECRET)
            .refresh_token_lifetime_secs(3_600)
            .build()
            .unwrap();
        let http = Arc::new(freshtoken::NativeHttp::new().unwrap());
        TokenClient::new(config, http, clock.clone())
    };
    let (a, b) = (client(), client());
    let holder = a.session("u1", shared.clone()).unwrap();
    seed_family(&emu, &holder).await;
    // A second before the refresh token's lifetime ends (by this fleet's
    // reckoning), a refreshes; its request is held at the server.
    clock.advance(3_600_000 - 1_000);
    emu.push_fault(freshtoken_emulator::Fault::hold());
    let refreshing = tokio::spawn(async move { holder.access_token().await.map(drop) });
    let held = emu.clone();
    tokio::task::spawn_blocking(move || held.wait_held(1))
        .await
        .unwrap();
    // Two seconds later b finds the lifetime over while a's request is out.
    clock.advance(2_000);
    let awaits = AwaitsHolder {
        emu: emu.clone(),
        holder: tokio::sync::Mutex::new(Some(refreshing)),
        holder_result: Mutex::new(None),
    };
    let store = ForwardingStore::fleet(shared.clone(), awaits);
    let other = b.session("u1", store.clone()).unwrap();

    let served = other.access_token().await.map(drop);

    // Otherwise: b marks the record dead, a's rotation loses the
    // compare-and-swap and is dropped, and the user must re-link although
    // the server had just renewed the refresh token.
    let holder_result = store.hooks.holder_result.lock().unwrap().take();
    let holder_result = holder_result.expect("b found a's lease held and waited");
    holder_result.expect("a's rotation is saved");
    served.expect("b is served a's rotation");
    let stored = freshtoken::Record::decode(&shared.get("u1").unwrap()).unwrap();
    assert_eq!(stored.reauth, None, "the session is alive");
    let rotated = stored.refresh_token.unwrap();
    assert_eq!(
        emu.refresh_token_state(rotated.expose()),
        TokenState::Active
    );
}
