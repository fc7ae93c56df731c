//! A rotation whose save failed under the fleet lease: the rotated refresh
//! token is only in this process's memory. The core keeps trying the save
//! in the background, renewing the lease before each try, and releases the
//! lease once the record is saved and no earlier save of it can still land,
//! without waiting for another call of this process (in a fleet the user's
//! next request usually reaches another one, which would read the in-doubt
//! record once the lease lapsed and send the spent token). It gives up
//! after ten minutes (of time or of pauses asked for), letting the lease
//! lapse; the record stays in memory for a later call to save. A client
//! without a spawner keeps no such task.

mod common;

use common::warnings::{capture_warnings, warning_lines};
use common::{take_failure, Harness, CLIENT_ID, CLIENT_SECRET};
use freshtoken::{Clock, ManualClock, MemoryStore, Record, Spawn, StoreError, TokenStore};
use freshtoken_emulator::TokenState;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::sync::Notify;

/// A leasing store over `inner` (shared with other processes' stores).
/// Its next `fail_saves` saves of a settled (not in-doubt) record fail, and
/// its next `hang_saves` ones wait for `let_land` before they land. With
/// `probe`, each failed save checks that no other process could take the
/// lease at that moment.
struct Stranding {
    /// The key its helpers look at.
    key: &'static str,
    inner: Arc<MemoryStore>,
    /// Settled saves that land before `fail_saves` applies.
    pass_saves: AtomicU32,
    fail_saves: AtomicU32,
    hang_saves: AtomicU32,
    probe: AtomicBool,
    /// Times another process could have taken the lease.
    lease_was_free: AtomicU32,
    failed: AtomicU32,
    acquires: AtomicU32,
    /// Set once the test has seeded: only later settled saves notify `landed`.
    watching: AtomicBool,
    landed: Notify,
    hung: Notify,
    let_land: Notify,
    released: Notify,
}

impl Stranding {
    fn over(inner: Arc<MemoryStore>) -> Arc<Self> {
        Self::keyed(inner, "u1")
    }

    /// [`Stranding::over`], its helpers looking at `key`.
    fn keyed(inner: Arc<MemoryStore>, key: &'static str) -> Arc<Self> {
        Arc::new(Stranding {
            key,
            inner,
            pass_saves: AtomicU32::new(0),
            fail_saves: AtomicU32::new(0),
            hang_saves: AtomicU32::new(0),
            probe: AtomicBool::new(false),
            lease_was_free: AtomicU32::new(0),
            failed: AtomicU32::new(0),
            acquires: AtomicU32::new(0),
            watching: AtomicBool::new(false),
            landed: Notify::new(),
            hung: Notify::new(),
            let_land: Notify::new(),
            released: Notify::new(),
        })
    }

    /// The stored record's refresh token.
    fn stored_refresh_token(&self) -> String {
        let record = self.stored();
        record.refresh_token.unwrap().expose().to_owned()
    }

    /// The stored record.
    fn stored(&self) -> Record {
        Record::decode(&self.inner.get(self.key).expect("a record")).unwrap()
    }

    /// Whether another process could take the lease now (it gives it back).
    async fn lease_is_free(&self) -> bool {
        let free = self.inner.acquire(self.key, "probe", 60_000).await.unwrap();
        if free {
            self.inner.release(self.key, "probe").await.unwrap();
        }
        free
    }
}

#[async_trait::async_trait]
impl TokenStore for Stranding {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.load(key).await
    }
    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        let settled = Record::decode(record).is_ok_and(|r| !r.in_doubt);
        let passing = settled && take_failure(&self.pass_saves);
        if settled && !passing && take_failure(&self.fail_saves) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            if self.probe.load(Ordering::SeqCst) && self.lease_is_free().await {
                self.lease_was_free.fetch_add(1, Ordering::SeqCst);
            }
            return Err(StoreError("database unavailable".into()));
        }
        if settled && take_failure(&self.hang_saves) {
            self.hung.notify_one();
            self.let_land.notified().await;
        }
        self.inner.save(key, record).await?;
        if settled && self.watching.load(Ordering::SeqCst) {
            self.landed.notify_one();
        }
        Ok(())
    }
    fn supports_lease(&self) -> bool {
        true
    }
    async fn acquire(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        self.acquires.fetch_add(1, Ordering::SeqCst);
        self.inner.acquire(key, owner, ttl_ms).await
    }
    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.release(key, owner).await?;
        self.released.notify_one();
        Ok(())
    }
}

/// The lease TTL and store deadline of a default config.
const DEFAULT_LEASE_TTL_MS: u64 = 65_000;
const DEFAULT_STORE_TIMEOUT_MS: u64 = 5_000;

/// Waits for `notify`, failing the test (instead of hanging) should it
/// never come.
async fn within(notify: &Notify, what: &str) {
    tokio::time::timeout(Duration::from_secs(30), notify.notified())
        .await
        .unwrap_or_else(|_| panic!("{what} never happened"));
}

/// Seeds `session` with a new emulator family, then watches `store`'s
/// later saves; returns the seeded refresh token.
async fn seed(h: &Harness, session: &freshtoken::UserSession, store: &Stranding) -> String {
    let refresh_token = common::seed_family(&h.emu, session).await;
    store.watching.store(true, Ordering::SeqCst);
    refresh_token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_save_failed_is_saved_in_the_background_and_its_lease_released() {
    let h = Harness::new();
    let store = Stranding::over(Arc::new(MemoryStore::with_leases(h.clock.clone())));
    let session = h.client.session("u1", store.clone()).unwrap();
    let seeded = seed(&h, &session, &store).await;

    // The rotated record's save fails, and so does the first try after it.
    store.fail_saves.store(2, Ordering::SeqCst);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(h.refresh_requests(), 1);

    // With no other call, the record is saved, and then the lease released.
    within(&store.landed, "the background save").await;
    within(&store.released, "the lease's release").await;
    assert_eq!(store.failed.load(Ordering::SeqCst), 2);
    assert!(
        store.acquires.load(Ordering::SeqCst) >= 3,
        "renewed before each background try"
    );
    let stored = Record::decode(&store.inner.get("u1").unwrap()).unwrap();
    assert!(
        !stored.in_doubt,
        "the settled record, not the write-ahead marker"
    );
    let rotated = store.stored_refresh_token();
    assert_eq!(h.emu.refresh_token_state(&rotated), TokenState::Active);
    assert_eq!(h.emu.refresh_token_state(&seeded), TokenState::Consumed);
    assert!(
        store.lease_is_free().await,
        "the lease is free for the others"
    );

    // This process serves the saved token, with no new request.
    assert!(!session.status().await.unwrap().unpersisted);
    session.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_renewed_while_the_saves_fail_for_longer_than_its_ttl() {
    let h = Harness::new();
    let store = Stranding::over(Arc::new(MemoryStore::with_leases(h.clock.clone())));
    let session = h.client.session("u1", store.clone()).unwrap();
    seed(&h, &session, &store).await;
    let ttl = DEFAULT_LEASE_TTL_MS;
    let from = h.clock.now_ms();

    // Eight failed saves: the background pauses (the manual clock moves by
    // each) add up to more than the lease TTL.
    store.probe.store(true, Ordering::SeqCst);
    store.fail_saves.store(8, Ordering::SeqCst);
    session.access_token().await.unwrap_err();
    within(&store.landed, "the background save").await;
    within(&store.released, "the lease's release").await;

    assert_eq!(store.failed.load(Ordering::SeqCst), 8);
    assert!(
        h.clock.now_ms() - from > ttl,
        "the saves failed for longer than the TTL"
    );
    assert_eq!(
        store.lease_was_free.load(Ordering::SeqCst),
        0,
        "no other process could take the lease while the record was unsaved"
    );
    let sleeps = h.clock.sleeps();
    assert!(
        sleeps.iter().all(|&ms| ms <= ttl / 3),
        "no pause as long as the lease: {sleeps:?}"
    );
}

/// A manual clock whose pauses, recorded in `sleeps`, move its time by
/// `pace` times what they ask for: 1 is [`ManualClock`]'s own; 0 a host's
/// fake clock whose `sleep` returns at once and whose time stands still; 2
/// an event loop that stalls, so that every pause overshoots. Unless
/// `open`, each pause first waits for the test (`wake`): the test acts
/// between two background tries.
struct GatedSleeps {
    clock: ManualClock,
    pace: u64,
    sleeps: Mutex<Vec<u64>>,
    sleeping: Notify,
    wake: Notify,
    /// Set: pauses no longer wait for the test.
    open: AtomicBool,
}

#[async_trait::async_trait]
impl Clock for GatedSleeps {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        self.clock.monotonic_ms()
    }
    async fn sleep(&self, ms: u64) {
        if !self.open.load(Ordering::SeqCst) {
            self.sleeping.notify_one();
            self.wake.notified().await;
        }
        self.sleeps.lock().unwrap().push(ms);
        self.clock.advance(ms * self.pace);
        // Back to the runtime, as a host's timer callback would be: a task
        // that would pause forever then still lets the test time out,
        // instead of holding its worker thread (every store call here
        // answers at once, so nothing else in its loop would yield).
        tokio::task::yield_now().await;
    }
    async fn timer(&self, ms: u64) {
        self.clock.timer(ms).await
    }
}

impl GatedSleeps {
    /// Pauses that wait for the test, then move the time by what they ask.
    fn at(now_ms: u64) -> Arc<Self> {
        Self::new(now_ms, 1, false)
    }

    /// Pauses that move the time by `pace` times what they ask, at once.
    fn paced(now_ms: u64, pace: u64) -> Arc<Self> {
        Self::new(now_ms, pace, true)
    }

    fn new(now_ms: u64, pace: u64, open: bool) -> Arc<Self> {
        Arc::new(GatedSleeps {
            clock: ManualClock::new(now_ms),
            pace,
            sleeps: Mutex::new(Vec::new()),
            sleeping: Notify::new(),
            wake: Notify::new(),
            open: AtomicBool::new(open),
        })
    }
}

/// A client of `endpoint` on `clock`, its flights run as tokio tasks.
fn client_on(endpoint: String, clock: Arc<dyn Clock>) -> freshtoken::TokenClient {
    let spawn = Arc::new(freshtoken::TokioSpawner::current().unwrap());
    client_spawning(endpoint, clock, spawn)
}

/// A client of `endpoint` on `clock`, its tasks started by `spawn`.
fn client_spawning(
    endpoint: String,
    clock: Arc<dyn Clock>,
    spawn: Arc<dyn Spawn>,
) -> freshtoken::TokenClient {
    let config = freshtoken::Config::builder(endpoint, CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    freshtoken::TokenClient::with_spawner(
        config,
        Arc::new(freshtoken::NativeHttp::new().unwrap()),
        clock,
        spawn,
    )
}

/// A spawner that runs its tasks on tokio, any of which the test can hold:
/// a held task is not polled (its wake-ups are kept for later) until let
/// go, while the others (the flights) go on. The test then acts between
/// two steps of the background task.
#[derive(Default)]
struct Holding {
    tasks: Mutex<Vec<Arc<Hold>>>,
}

/// One task of a [`Holding`] spawner.
#[derive(Default)]
struct Hold(Mutex<HoldState>);

/// Where a [`Hold`]'s task is.
#[derive(Default)]
struct HoldState {
    /// Not to be polled.
    held: bool,
    /// In a poll now.
    polling: bool,
    /// Its last poll was ready.
    ended: bool,
    /// The wake-up that came while held.
    woken: Option<Waker>,
}

impl Holding {
    /// The one task still running, once every other has ended.
    async fn lone_running(&self) -> Arc<Hold> {
        let running = || {
            let tasks = self.tasks.lock().unwrap();
            let running = tasks.iter().filter(|t| !t.0.lock().unwrap().ended);
            running.cloned().collect::<Vec<_>>()
        };
        until("all tasks but one ending", || running().len() == 1).await;
        running().pop().unwrap()
    }
}

impl Hold {
    /// Holds the task, once it is out of the poll it may be in.
    async fn hold(&self) {
        self.0.lock().unwrap().held = true;
        until("the task's poll ending", || !self.0.lock().unwrap().polling).await;
    }

    /// Lets the task go on.
    fn let_go(&self) {
        let mut state = self.0.lock().unwrap();
        state.held = false;
        if let Some(waker) = state.woken.take() {
            waker.wake();
        }
    }
}

impl Spawn for Holding {
    fn spawn(&self, mut task: freshtoken::BoxFuture<'static, ()>) {
        let hold = Arc::new(Hold::default());
        self.tasks.lock().unwrap().push(hold.clone());
        tokio::spawn(std::future::poll_fn(move |cx| {
            {
                let mut state = hold.0.lock().unwrap();
                if state.held {
                    state.woken = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                state.polling = true;
            }
            let poll = task.as_mut().poll(cx);
            let mut state = hold.0.lock().unwrap();
            state.polling = false;
            state.ended = poll.is_ready();
            poll
        }));
    }
}

/// A session `u1` of a client on a [`GatedSleeps`] clock (its flights run
/// as tokio tasks), seeded, on a [`Stranding`] store over a leasing store
/// timed by that clock: the clock, the inner store, the store, the session.
async fn gated(
    h: &Harness,
) -> (
    Arc<GatedSleeps>,
    Arc<MemoryStore>,
    Arc<Stranding>,
    freshtoken::UserSession,
) {
    gated_on(h, Arc::new(freshtoken::TokioSpawner::current().unwrap())).await
}

/// [`gated`], the client's tasks started by `spawn`.
async fn gated_on(
    h: &Harness,
    spawn: Arc<dyn Spawn>,
) -> (
    Arc<GatedSleeps>,
    Arc<MemoryStore>,
    Arc<Stranding>,
    freshtoken::UserSession,
) {
    let clock = GatedSleeps::at(h.clock.now_ms());
    let client = client_spawning(h.emu.token_endpoint(), clock.clone(), spawn);
    let inner = Arc::new(MemoryStore::with_leases(clock.clone()));
    let store = Stranding::over(inner.clone());
    let session = client.session("u1", store.clone()).unwrap();
    seed(h, &session, &store).await;
    (clock, inner, store, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_released_when_a_later_call_saved_the_record_first() {
    let h = Harness::new();
    let (clock, _, store, session) = gated(&h).await;

    // The rotation's save and the first background try fail; the task then
    // pauses.
    store.fail_saves.store(2, Ordering::SeqCst);
    session.access_token().await.unwrap_err();
    within(&clock.sleeping, "the background pause").await;

    // A call meanwhile saves the record first (its flight serves the token
    // and leaves the lease alone).
    session.access_token().await.expect("served");
    assert!(!session.status().await.unwrap().unpersisted);
    assert!(!store.lease_is_free().await, "still held");

    // The next background try finds it saved, and gives the lease back.
    clock.wake.notify_one();
    within(&store.released, "the lease's release").await;
    assert!(store.lease_is_free().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_kept_until_an_abandoned_save_of_the_rotation_has_landed() {
    // A plain (unversioned) store: a save abandoned at its deadline that
    // lands after another process rotated would put the spent token back.
    let h = Harness::new();
    let (clock, inner, store, session) = gated(&h).await;

    // The rotated record's save hangs past its deadline (abandoned, still
    // running in the host); the first background try saves it meanwhile,
    // and the task pauses.
    store.hang_saves.store(1, Ordering::SeqCst);
    let asking = tokio::spawn({
        let session = session.clone();
        async move { session.access_token().await }
    });
    within(&store.hung, "the rotated save").await;
    while clock.clock.pending_timers() == 0 {
        tokio::task::yield_now().await;
    }
    clock.clock.advance(DEFAULT_STORE_TIMEOUT_MS + 1);
    let error = asking.await.unwrap().unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    within(&store.landed, "the background save").await;
    within(&clock.sleeping, "the background pause").await;
    let rotated = store.stored_refresh_token();

    // While the abandoned save may land, no other process gets the lease
    // (on a clock of its own: its waits do not move this one's).
    let endpoint = format!("{}?other-process", h.emu.token_endpoint());
    let other = client_on(endpoint, Arc::new(ManualClock::new(h.clock.now_ms())));
    let theirs = Stranding::over(inner.clone());
    let refused = other
        .session("u1", theirs.clone())
        .unwrap()
        .refresh()
        .await
        .unwrap_err();
    assert_eq!(refused.code().as_str(), "conflict", "{refused}");
    assert_eq!(h.emu.refresh_token_state(&rotated), TokenState::Active);

    // Once it has landed, a next try gives the lease back (the core may
    // see that save end a try later: pauses stop waiting for the test); the
    // other process rotates, and the store keeps its record.
    store.let_land.notify_one();
    within(&store.landed, "the late write").await;
    clock.open.store(true, Ordering::SeqCst);
    clock.wake.notify_one();
    within(&store.released, "the lease's release").await;
    other
        .session("u1", theirs.clone())
        .unwrap()
        .refresh()
        .await
        .expect("the other process refreshes");
    let after = theirs.stored_refresh_token();
    assert_ne!(after, rotated);
    assert_eq!(h.emu.refresh_token_state(&after), TokenState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_stops_without_releasing_when_another_process_took_the_lapsed_lease() {
    let h = Harness::new();
    let (clock, inner, store, session) = gated(&h).await;

    // Every settled save fails; the task pauses after its first try.
    store.fail_saves.store(u32::MAX, Ordering::SeqCst);
    session.access_token().await.unwrap_err();
    within(&clock.sleeping, "the background pause").await;

    // The lease lapses meanwhile (a pause longer than it, as a stalled
    // event loop makes), and another process takes it.
    clock.clock.advance(DEFAULT_LEASE_TTL_MS + 1);
    assert!(inner
        .acquire("u1", "another-process", 60_000)
        .await
        .unwrap());

    // The next try finds it taken: it saves nothing and leaves it alone.
    let acquires = store.acquires.load(Ordering::SeqCst);
    let failed = store.failed.load(Ordering::SeqCst);
    clock.wake.notify_one();
    tokio::time::timeout(Duration::from_secs(30), async {
        while store.acquires.load(Ordering::SeqCst) == acquires {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the next try asks for the lease");
    // status() waits for that try (the session's flight) to end; its own
    // save fails too, so the record stays unsaved.
    let status = session.status().await.unwrap();
    assert!(status.unpersisted);
    assert_eq!(store.acquires.load(Ordering::SeqCst), acquires + 1);
    assert_eq!(
        store.failed.load(Ordering::SeqCst),
        failed + 1,
        "only status()'s own save was tried"
    );
    assert!(
        !store.lease_is_free().await,
        "the other process still holds it"
    );
}

/// How long the core keeps trying such a save in the background (ms):
/// `KEEP_STRANDED_MS` in src/fleet.rs.
const KEEP_STRANDED_MS: u64 = 10 * 60_000;

/// How many warnings about session `key` say `what`.
fn warnings(key: &str, what: &str) -> usize {
    let session = format!("session {key}: ");
    warning_lines()
        .iter()
        .filter(|line| line.contains(&session) && line.contains(what))
        .count()
}

/// Waits until `done`, yielding between looks, failing the test (instead
/// of hanging) should it never be.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !done() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} never happened"));
}

/// Heals `store`; then a call of `session` saves the rotated record first
/// and serves its token, sending nothing: the store holds the rotated
/// refresh token (active), and `seeded` is spent.
async fn a_healed_store_gets_the_record_first(
    h: &Harness,
    session: &freshtoken::UserSession,
    store: &Stranding,
    seeded: &str,
) {
    store.fail_saves.store(0, Ordering::SeqCst);
    let token = session.access_token().await.expect("served");
    assert_eq!(h.refresh_requests(), 1);
    let stored = store.stored();
    assert!(!stored.in_doubt);
    assert_eq!(stored.access_token.unwrap().value.expose(), token);
    let rotated = store.stored_refresh_token();
    assert_eq!(h.emu.refresh_token_state(&rotated), TokenState::Active);
    assert_eq!(h.emu.refresh_token_state(seeded), TokenState::Consumed);
}

/// A rotation whose every save fails: the background task gives up once
/// ten minutes have passed on `pace`'s clock or been asked for in pauses,
/// whichever comes first, with its warning; it lets the lease lapse (one
/// TTL after its last try renewed it) and keeps the record in memory, so a
/// later call of the session still saves it first, sending nothing.
async fn the_background_save_gives_up(pace: u64) {
    capture_warnings();
    let key = ["lapsing-still", "lapsing", "lapsing-stalled"][pace as usize];
    let h = Harness::new();
    let clock = GatedSleeps::paced(h.clock.now_ms(), pace);
    let client = client_on(h.emu.token_endpoint(), clock.clone());
    let store = Stranding::keyed(Arc::new(MemoryStore::with_leases(clock.clone())), key);
    let session = client.session(key, store.clone()).unwrap();
    let seeded = seed(&h, &session, &store).await;
    // The test's and the session's: a running task (a flight, the
    // background one) holds one more.
    let idle = Arc::strong_count(&store);
    let ttl = DEFAULT_LEASE_TTL_MS;

    store.fail_saves.store(u32::MAX, Ordering::SeqCst);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(h.refresh_requests(), 1);

    // The task stops on its own, with one warning; it tries nothing after it.
    until("the give-up warning", || warnings(key, "is let lapse") > 0).await;
    let acquires = store.acquires.load(Ordering::SeqCst);
    let failed = store.failed.load(Ordering::SeqCst);
    // (The session's state keeps the store while its record is unsaved,
    // for `save_unsaved`: one more than idle once the task has ended.)
    until("the background task's end", || {
        Arc::strong_count(&store) == idle + 1
    })
    .await;
    assert_eq!(store.acquires.load(Ordering::SeqCst), acquires);
    assert_eq!(store.failed.load(Ordering::SeqCst), failed);
    assert_eq!(warnings(key, "is let lapse"), 1);

    // It stopped at its first try past ten minutes, counted as the larger
    // of the time that passed and the pauses it asked for.
    let pauses = clock.sleeps.lock().unwrap().clone();
    let asked: u64 = pauses.iter().sum();
    let last = *pauses.last().expect("paused between tries");
    let counted = |asked: u64| asked.max(asked * pace);
    assert!(
        counted(asked) >= KEEP_STRANDED_MS,
        "stopped before ten minutes: {pauses:?}"
    );
    assert!(
        counted(asked - last) < KEEP_STRANDED_MS,
        "went on past ten minutes: {pauses:?}"
    );
    assert_eq!(pauses[0], 1_000, "{pauses:?}");
    assert!(
        pauses.windows(2).all(|w| w[0] <= w[1]) && pauses.iter().all(|&ms| ms <= ttl / 3),
        "pauses double up to a third of the lease: {pauses:?}"
    );
    // One try after each pause and one before them; each renewed the lease
    // (as did the flight that took it) and failed to save (as did the
    // flight's own save).
    let tries = pauses.len() + 1;
    assert_eq!(failed as usize, tries + 1, "{pauses:?}");
    assert_eq!(acquires as usize, tries + 1, "{pauses:?}");
    assert!((10..=60).contains(&tries), "{tries} tries: {pauses:?}");

    // Nothing landed; the lease was not released: it lapses one TTL after
    // the last try renewed it.
    assert!(store.stored().in_doubt, "the write-ahead marker is stored");
    assert!(
        !store.lease_is_free().await,
        "the give-up released the lease"
    );
    clock.clock.advance(ttl - 1);
    assert!(!store.lease_is_free().await, "renewed at the last try");
    clock.clock.advance(2);
    assert!(store.lease_is_free().await, "lapsed at its TTL");

    // Once the store heals, a later call saves the record first and serves
    // its token, sending nothing.
    a_healed_store_gets_the_record_first(&h, &session, &store, &seeded).await;
    assert!(!session.status().await.unwrap().unpersisted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_save_gives_up_after_ten_minutes_and_lets_the_lease_lapse() {
    the_background_save_gives_up(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_save_gives_up_after_ten_minutes_of_pauses_on_a_clock_standing_still() {
    the_background_save_gives_up(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_save_gives_up_after_ten_minutes_of_time_when_its_pauses_overshoot() {
    the_background_save_gives_up(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_spawner_keeps_no_background_save() {
    // `TokenClient::new`: flights are driven by their callers.
    let h = Harness::new();
    let client = common::plain_client(&h.emu, h.clock.clone());
    let store = Stranding::over(Arc::new(MemoryStore::with_leases(h.clock.clone())));
    let session = client.session("u1", store.clone()).unwrap();
    let seeded = seed(&h, &session, &store).await;
    let idle = Arc::strong_count(&store);

    store.fail_saves.store(u32::MAX, Ordering::SeqCst);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(h.refresh_requests(), 1);

    // No task holds the session, and nothing is tried meanwhile.
    // The session's state keeps the store while its record is unsaved (for
    // `save_unsaved`); a task would hold one more.
    assert_eq!(
        Arc::strong_count(&store),
        idle + 1,
        "a task holds the session"
    );
    let acquires = store.acquires.load(Ordering::SeqCst);
    let failed = store.failed.load(Ordering::SeqCst);
    for _ in 0..1_000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(store.acquires.load(Ordering::SeqCst), acquires);
    assert_eq!(store.failed.load(Ordering::SeqCst), failed);
    assert!(h.clock.sleeps().is_empty(), "{:?}", h.clock.sleeps());
    assert!(store.stored().in_doubt, "the write-ahead marker is stored");
    assert!(!store.lease_is_free().await, "the lease is kept");

    // A later call saves the record first and serves its token, sending
    // nothing.
    a_healed_store_gets_the_record_first(&h, &session, &store, &seeded).await;

    // The lease lapses at its TTL.
    h.clock.advance(DEFAULT_LEASE_TTL_MS + 1);
    assert!(store.lease_is_free().await);
}

/// A forced refresh of `session` sends A's refresh token, and the save of
/// its rotation B fails (the store set to fail it): B is stranded, and the
/// one running background task is told (the store's count past `idle`: the
/// task's, and the session state's while its record is unsaved).
async fn strand_b(
    h: &Harness,
    store: &Arc<Stranding>,
    session: &freshtoken::UserSession,
    idle: usize,
) {
    let error = session.refresh().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(h.refresh_requests(), 2);
    assert_eq!(
        Arc::strong_count(store),
        idle + 2,
        "still one task, told of B"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_stranded_while_a_background_save_runs_is_kept_by_that_one_task() {
    let h = Harness::new();
    let (clock, _, store, session) = gated(&h).await;
    // The test's and the session's: each running task holds one more.
    let idle = Arc::strong_count(&store);

    // Rotation A's save and the first background try fail; the task pauses.
    store.fail_saves.store(2, Ordering::SeqCst);
    session.access_token().await.unwrap_err();
    within(&clock.sleeping, "the background pause").await;
    // The task's, and the session state's while A is unsaved.
    assert_eq!(Arc::strong_count(&store), idle + 2, "one task");

    // A forced refresh meanwhile saves A (the store answers again), sends
    // A's refresh token, and the save of its rotation B fails: B is
    // stranded too, under the same lease.
    store.pass_saves.store(1, Ordering::SeqCst);
    store.fail_saves.store(1, Ordering::SeqCst);
    strand_b(&h, &store, &session, idle).await;

    // The running task saves B and releases the lease, then ends.
    clock.open.store(true, Ordering::SeqCst);
    clock.wake.notify_one();
    within(&store.released, "the lease's release").await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while Arc::strong_count(&store) != idle {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the task ends");
    let stored = store.stored();
    assert!(!stored.in_doubt);
    let b = store.stored_refresh_token();
    assert_eq!(
        h.emu.refresh_token_state(&b),
        TokenState::Active,
        "B is stored"
    );
    assert!(store.lease_is_free().await);
    session.access_token().await.expect("served");
    assert_eq!(h.refresh_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_stranded_after_a_background_try_began_is_saved_before_that_task_ends() {
    let h = Harness::new();
    let tasks = Arc::new(Holding::default());
    let (clock, _, store, session) = gated_on(&h, tasks.clone()).await;
    // The test's and the session's: each running task holds one more.
    let idle = Arc::strong_count(&store);

    // Rotation A's save and the first background try fail; the task pauses.
    store.fail_saves.store(2, Ordering::SeqCst);
    session.access_token().await.unwrap_err();
    within(&clock.sleeping, "the background pause").await;
    let background = tasks.lone_running().await;

    // The next try (a flight, a task of its own) counts the stranded
    // rotations, and its save of A hangs; the background task is held
    // from here, while the try saves A and releases the lease.
    store.hang_saves.store(1, Ordering::SeqCst);
    clock.wake.notify_one();
    within(&store.hung, "the background save of A").await;
    background.hold().await;
    store.let_land.notify_one();
    within(&store.landed, "the background save of A").await;
    within(&store.released, "the lease's release").await;

    // Before the task has seen its try's end, a forced refresh sends A's
    // refresh token, and the save of its rotation B fails: B is stranded
    // after the try counted, and the task (still marked) is told of it.
    store.fail_saves.store(1, Ordering::SeqCst);
    strand_b(&h, &store, &session, idle).await;
    assert!(store.stored().in_doubt, "B is not saved");

    // Let go, the task finds its try done but B stranded since it began:
    // it tries again at once, saves B and releases the lease, then ends.
    background.let_go();
    until("the task's end", || Arc::strong_count(&store) == idle).await;
    assert!(
        !store.stored().in_doubt,
        "the task ended with B still unsaved"
    );
    let b = store.stored_refresh_token();
    assert_eq!(
        h.emu.refresh_token_state(&b),
        TokenState::Active,
        "B is stored"
    );
    within(&store.released, "the lease's release").await;
    assert!(store.lease_is_free().await);
    assert_eq!(
        clock.sleeps.lock().unwrap().len(),
        1,
        "no pause before B's try"
    );
    assert!(!session.status().await.unwrap().unpersisted);
    session.access_token().await.expect("served");
    assert_eq!(h.refresh_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_stranded_late_in_the_tasks_ten_minutes_gets_ten_minutes_of_its_own() {
    capture_warnings();
    let h = Harness::new();
    let clock = GatedSleeps::at(h.clock.now_ms());
    let client = client_on(h.emu.token_endpoint(), clock.clone());
    let key = "stranded-late";
    let store = Stranding::keyed(Arc::new(MemoryStore::with_leases(clock.clone())), key);
    let session = client.session(key, store.clone()).unwrap();
    seed(&h, &session, &store).await;

    // Rotation A: its save and the first background try fail; the task
    // pauses while A's ten minutes pass.
    store.fail_saves.store(2, Ordering::SeqCst);
    session.access_token().await.unwrap_err();
    within(&clock.sleeping, "the background pause").await;
    clock.clock.advance(KEEP_STRANDED_MS);

    // Rotation B: a forced refresh saves A, sends its refresh token, and
    // B's save fails, as does every save from now on.
    store.pass_saves.store(1, Ordering::SeqCst);
    store.fail_saves.store(u32::MAX, Ordering::SeqCst);
    let error = session.refresh().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(h.refresh_requests(), 2);
    let b_stranded_at = clock.now_ms();

    // The one task keeps B for ten minutes of its own, not what was left of A's.
    clock.open.store(true, Ordering::SeqCst);
    clock.wake.notify_one();
    until("the give-up warning", || warnings(key, "is let lapse") > 0).await;
    let kept_for = clock.now_ms() - b_stranded_at;
    assert!(
        kept_for >= KEEP_STRANDED_MS,
        "B was kept only {kept_for} ms"
    );
    assert_eq!(warnings(key, "is let lapse"), 1);
}

/// A re-link (a code exchange) whose save failed under the lease is saved
/// in the background too; should the lease lapse between two tries and
/// the user sign out meanwhile in another process, the next try finds the
/// sign-out: it wins, the re-link is dropped and its tokens revoked. The
/// try used to save the re-link over it, bringing the session back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_save_of_a_relink_yields_to_a_sign_out_made_since() {
    use common::authorize::{approved_for, REDIRECT};
    let h = Harness::new();
    let clock = GatedSleeps::at(h.clock.now_ms());
    let spawn = Arc::new(freshtoken::TokioSpawner::current().unwrap());
    let client = client_spawning(h.emu.token_endpoint(), clock.clone(), spawn);
    let inner = Arc::new(MemoryStore::with_leases(clock.clone()));
    let store = Stranding::over(inner.clone());

    // Linked in another process (on a clock of its own).
    let endpoint = format!("{}?other-process", h.emu.token_endpoint());
    let other = client_on(endpoint, Arc::new(ManualClock::new(h.clock.now_ms())));
    let (code, verifier) = approved_for(&other, &["openid", "offline_access"]).await;
    let theirs = Stranding::over(inner.clone());
    let elsewhere = other
        .exchange_code(&code, &verifier, REDIRECT, "u1", theirs)
        .await
        .expect("linked elsewhere");

    // Linked again here: the save and the first background try fail.
    store.fail_saves.store(2, Ordering::SeqCst);
    let (code, verifier) = approved_for(&client, &["openid", "offline_access"]).await;
    let error = client
        .exchange_code(&code, &verifier, REDIRECT, "u1", store.clone())
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    within(&clock.sleeping, "the background pause").await;

    // The lease lapses; the user signs out in the other process.
    clock.clock.advance(DEFAULT_LEASE_TTL_MS + 1);
    elsewhere
        .revoke()
        .await
        .expect("the user signs out elsewhere");

    clock.open.store(true, Ordering::SeqCst);
    clock.wake.notify_one();
    within(&store.released, "the lease's release").await;
    let stored = store.stored();
    assert!(stored.reauth.is_some(), "the sign-out stands");
    assert!(stored.refresh_token.is_none());
    assert_eq!(h.grant_requests("authorization_code"), 2);
    assert_eq!(h.emu.counters().tokens_revoked, 2, "one family per link");
    let session = client.session("u1", store.clone()).unwrap();
    assert!(!session.holds_unsaved(), "the re-link was dropped");
}
