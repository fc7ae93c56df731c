//! Shared harness for the integration tests: the emulator on loopback, a
//! manual clock for the core, and a store whose failures and timing the
//! test controls (the only mocked parts: time and a failing store).
#![allow(dead_code)]

use freshtoken::{
    async_trait, CasOutcome, Config, ConfigBuilder, ManualClock, MemoryStore, Seed, StoreError,
    TokenClient, TokenStore, UserSession, Versioned,
};
use freshtoken_emulator::{Emulator, Options};
use futures_util::future::{join_all, maybe_done, poll_fn, MaybeDone};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use tokio::sync::{mpsc, Notify};

pub mod authorize;
pub mod slow_fleet;
pub mod warnings;

pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-secret";

/// Wall-clock now in ms; the manual clock starts here so records look real.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A store over [`MemoryStore`] that can fail loads/saves and hold saves at
/// a gate until the test opens it (saves of the write-ahead marker excepted).
#[derive(Default)]
pub struct TestStore {
    pub inner: MemoryStore,
    /// Upcoming saves to fail (`u32::MAX`: all of them).
    pub fail_saves: AtomicU32,
    /// Upcoming loads to fail.
    pub fail_loads: AtomicU32,
    /// Upcoming loads to answer with a corrupt record (the stored one cut
    /// in half, as after a torn write).
    pub corrupt_loads: AtomicU32,
    /// Upcoming saves of the write-ahead marker to fail.
    pub fail_write_ahead: AtomicU32,
    /// Upcoming loads that never answer.
    pub stall_loads: AtomicU32,
    /// Upcoming saves (write-ahead marker excepted) that never answer.
    pub stall_saves: AtomicU32,
    /// Calls that began stalling so far.
    pub stalled: AtomicU32,
    pub saves: AtomicU32,
    pub loads: AtomicU32,
    gate: Mutex<Option<(mpsc::UnboundedSender<String>, Arc<Notify>)>>,
    /// Notified after each save (write-ahead marker excepted) that landed.
    pub landed: Notify,
    /// The record of the latest save attempt, whether it succeeded or not.
    last_attempt: Mutex<Option<String>>,
}

impl TestStore {
    pub fn new() -> Arc<Self> {
        Arc::new(TestStore::default())
    }

    /// From now on every save reports its record on the returned channel and
    /// waits until the returned `Notify` is notified.
    pub fn gate_saves(&self) -> (mpsc::UnboundedReceiver<String>, Arc<Notify>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        *self.gate.lock().unwrap() = Some((tx, release.clone()));
        (rx, release)
    }

    pub fn record(&self, key: &str) -> Option<freshtoken::Record> {
        self.inner
            .get(key)
            .map(|t| freshtoken::Record::decode(&t).unwrap())
    }

    pub fn refresh_token(&self, key: &str) -> Option<String> {
        self.record(key)?
            .refresh_token
            .map(|s| s.expose().to_owned())
    }

    /// The record of the latest save attempt, saved or failed (a failed
    /// write-ahead marker excepted: the core withdraws it). With this store
    /// as a session's only writer, that is the record the session holds in
    /// memory (the core saves every record it adopts).
    pub fn attempted(&self) -> Option<freshtoken::Record> {
        let text = self.last_attempt.lock().unwrap().clone()?;
        Some(freshtoken::Record::decode(&text).unwrap())
    }
}

/// A token endpoint on a loopback port nobody listens on (bound, then let
/// go): a connection to it is refused, so the request surely never left.
pub fn refused_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}/connect/token")
}

/// Takes one of `counter`'s upcoming failures (`u32::MAX`: all of them);
/// false when none is left.
pub fn take_failure(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
            0 => None,
            u32::MAX => Some(u32::MAX),
            n => Some(n - 1),
        })
        .is_ok()
}

#[async_trait]
impl TokenStore for TestStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if take_failure(&self.stall_loads) {
            self.stalled.fetch_add(1, Ordering::SeqCst);
            return std::future::pending().await;
        }
        if take_failure(&self.fail_loads) {
            return Err(StoreError("database unavailable".into()));
        }
        if take_failure(&self.corrupt_loads) {
            let text = self.inner.load(key).await?.unwrap_or_default();
            let cut = (0..=text.len() / 2)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            return Ok(Some(text[..cut].to_owned()));
        }
        self.inner.load(key).await
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        // The write-ahead marker saved before each refresh request passes the
        // gate and the other injected failures, which target the saves that
        // settle a refresh; it fails only through `fail_write_ahead`.
        let write_ahead = freshtoken::Record::decode(record).is_ok_and(|r| r.in_doubt);
        if write_ahead {
            if take_failure(&self.fail_write_ahead) {
                // The core withdraws a marker it could not save.
                return Err(StoreError("disk full".into()));
            }
            *self.last_attempt.lock().unwrap() = Some(record.to_owned());
            return self.inner.save(key, record).await;
        }
        *self.last_attempt.lock().unwrap() = Some(record.to_owned());
        if take_failure(&self.stall_saves) {
            self.stalled.fetch_add(1, Ordering::SeqCst);
            return std::future::pending().await;
        }
        let gate = self.gate.lock().unwrap().clone();
        if let Some((entered, release)) = gate {
            let _ = entered.send(record.to_owned());
            release.notified().await;
        }
        if take_failure(&self.fail_saves) {
            return Err(StoreError("disk full".into()));
        }
        self.inner.save(key, record).await?;
        self.landed.notify_one();
        Ok(())
    }
}

/// What a [`ForwardingStore`] does with the calls a test intercepts: each
/// member is given the call (the inner store and the arguments) and answers
/// in the store's place. The defaults forward, so a test's hooks spell out
/// only the calls it delays, counts, fails or lets another process act
/// during, and keep what they note (to assert on) in fields of their own.
#[async_trait]
pub trait StoreHooks: Send + Sync {
    async fn load(&self, call: Load<'_>) -> Result<Option<String>, StoreError> {
        call.forward().await
    }

    async fn save(&self, call: Save<'_>) -> Result<(), StoreError> {
        call.forward().await
    }

    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        call.forward().await
    }

    async fn load_versioned(
        &self,
        call: LoadVersioned<'_>,
    ) -> Result<Option<Versioned>, StoreError> {
        call.forward().await
    }

    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        call.forward().await
    }
}

/// A [`TokenStore::load`] call, as [`StoreHooks`] see it.
#[derive(Clone, Copy)]
pub struct Load<'a> {
    pub inner: &'a MemoryStore,
    pub key: &'a str,
}

impl Load<'_> {
    /// The call, made on the inner store.
    pub async fn forward(&self) -> Result<Option<String>, StoreError> {
        self.inner.load(self.key).await
    }
}

/// A [`TokenStore::save`] call, as [`StoreHooks`] see it (a store without
/// versions saves this way).
#[derive(Clone, Copy)]
pub struct Save<'a> {
    pub inner: &'a MemoryStore,
    pub key: &'a str,
    pub record: &'a str,
}

impl Save<'_> {
    /// The call, made on the inner store.
    pub async fn forward(&self) -> Result<(), StoreError> {
        self.inner.save(self.key, self.record).await
    }
}

/// A [`TokenStore::acquire`] call, as [`StoreHooks`] see it.
#[derive(Clone, Copy)]
pub struct Acquire<'a> {
    pub inner: &'a MemoryStore,
    pub key: &'a str,
    pub owner: &'a str,
    pub ttl_ms: u64,
}

impl Acquire<'_> {
    /// The call, made on the inner store.
    pub async fn forward(&self) -> Result<bool, StoreError> {
        self.inner.acquire(self.key, self.owner, self.ttl_ms).await
    }
}

/// A [`TokenStore::load_versioned`] call, as [`StoreHooks`] see it.
#[derive(Clone, Copy)]
pub struct LoadVersioned<'a> {
    pub inner: &'a MemoryStore,
    pub key: &'a str,
}

impl LoadVersioned<'_> {
    /// The call, made on the inner store.
    pub async fn forward(&self) -> Result<Option<Versioned>, StoreError> {
        self.inner.load_versioned(self.key).await
    }
}

/// A [`TokenStore::save_versioned`] call, as [`StoreHooks`] see it.
#[derive(Clone, Copy)]
pub struct SaveVersioned<'a> {
    pub inner: &'a MemoryStore,
    pub key: &'a str,
    pub record: &'a str,
    pub expected: Option<&'a str>,
}

impl SaveVersioned<'_> {
    /// The call, made on the inner store.
    pub async fn forward(&self) -> Result<CasOutcome, StoreError> {
        let (key, record, expected) = (self.key, self.record, self.expected);
        self.inner.save_versioned(key, record, expected).await
    }
}

/// A store that forwards to `inner` (a [`MemoryStore`], perhaps shared with
/// other processes' sessions), except for the calls its `hooks` intercept.
/// It offers leases, compare-and-swap or both, as made; a capability it does
/// not offer answers as [`TokenStore`]'s defaults do. `release` always
/// forwards. It is not the crate's own `MemoryStore` to the
/// core (`in_memory()` is `None`), so records go through it as text, as
/// through any host's store.
pub struct ForwardingStore<H> {
    pub inner: Arc<MemoryStore>,
    pub hooks: H,
    leases: bool,
    versions: bool,
}

impl<H: StoreHooks> ForwardingStore<H> {
    /// A fleet store: leases and compare-and-swap (`inner` should have leases).
    pub fn fleet(inner: impl Into<Arc<MemoryStore>>, hooks: H) -> Arc<Self> {
        Self::offering(inner, hooks, true, true)
    }

    /// Leases, no compare-and-swap.
    pub fn lease_only(inner: impl Into<Arc<MemoryStore>>, hooks: H) -> Arc<Self> {
        Self::offering(inner, hooks, true, false)
    }

    /// Compare-and-swap, no leases.
    pub fn versioned_only(inner: impl Into<Arc<MemoryStore>>, hooks: H) -> Arc<Self> {
        Self::offering(inner, hooks, false, true)
    }

    fn offering(
        inner: impl Into<Arc<MemoryStore>>,
        hooks: H,
        leases: bool,
        versions: bool,
    ) -> Arc<Self> {
        Arc::new(ForwardingStore {
            inner: inner.into(),
            hooks,
            leases,
            versions,
        })
    }
}

#[async_trait]
impl<H: StoreHooks> TokenStore for ForwardingStore<H> {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        let inner = &*self.inner;
        self.hooks.load(Load { inner, key }).await
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        let inner = &*self.inner;
        self.hooks.save(Save { inner, key, record }).await
    }

    fn supports_lease(&self) -> bool {
        self.leases
    }

    async fn acquire(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        if !self.leases {
            return Ok(true);
        }
        let inner = &*self.inner;
        let call = Acquire {
            inner,
            key,
            owner,
            ttl_ms,
        };
        self.hooks.acquire(call).await
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        if !self.leases {
            return Ok(());
        }
        self.inner.release(key, owner).await
    }

    fn supports_versions(&self) -> bool {
        self.versions
    }

    async fn load_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        if !self.versions {
            let record = self.load(key).await?;
            return Ok(record.map(|record| Versioned {
                record,
                version: String::new(),
            }));
        }
        let inner = &*self.inner;
        self.hooks
            .load_versioned(LoadVersioned { inner, key })
            .await
    }

    async fn save_versioned(
        &self,
        key: &str,
        record: &str,
        expected: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        if !self.versions {
            self.save(key, record).await?;
            let version = String::new();
            return Ok(CasOutcome::Saved { version });
        }
        let inner = &*self.inner;
        let call = SaveVersioned {
            inner,
            key,
            record,
            expected,
        };
        self.hooks.save_versioned(call).await
    }
}

/// The emulator, a client on a manual clock, and one test store.
pub struct Harness {
    pub emu: Emulator,
    pub clock: Arc<ManualClock>,
    pub client: TokenClient,
    pub store: Arc<TestStore>,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(Options::default(), |b| b)
    }

    pub fn with(options: Options, configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Self {
        let emu = Emulator::start(options).expect("emulator starts");
        let clock = Arc::new(ManualClock::new(wall_ms()));
        let builder = Config::builder(emu.token_endpoint(), CLIENT_ID).client_secret(CLIENT_SECRET);
        let config = configure(builder).build().expect("valid config");
        let client = Self::client_on(&emu, config, clock.clone());
        Harness {
            emu,
            clock,
            client,
            store: TestStore::new(),
        }
    }

    /// Another client (as if another process) on the same emulator and clock.
    /// Its refreshes run as tokio tasks, as with `TokenClient::native`.
    pub fn client_on(
        _emu: &Emulator,
        config: Config,
        clock: Arc<dyn freshtoken::Clock>,
    ) -> TokenClient {
        let http = Arc::new(freshtoken::NativeHttp::new().expect("http client"));
        let spawn = Arc::new(freshtoken::TokioSpawner::current().expect("inside tokio"));
        TokenClient::with_spawner(config, http, clock, spawn)
    }

    /// A second client with the test credentials, in this process: each
    /// keeps its own session states (as a client made per request does).
    pub fn twin(&self) -> TokenClient {
        let config = Config::builder(self.emu.token_endpoint(), CLIENT_ID)
            .client_secret(CLIENT_SECRET)
            .build()
            .unwrap();
        Self::client_on(&self.emu, config, self.clock.clone())
    }

    /// A client standing for another process's. A client of this process
    /// would wait for, or take up, what this process's flights do with a
    /// refresh token (one refresh per token per process), so this one names
    /// the endpoint differently (a query the emulator ignores), which keeps
    /// the two apart as two processes are.
    pub fn other_process(&self) -> TokenClient {
        let endpoint = format!("{}?other-process", self.emu.token_endpoint());
        let config = Config::builder(endpoint, CLIENT_ID)
            .client_secret(CLIENT_SECRET)
            .build()
            .unwrap();
        Self::client_on(&self.emu, config, self.clock.clone())
    }

    pub fn session(&self, key: &str) -> UserSession {
        self.client.session(key, self.store.clone()).unwrap()
    }

    /// A session seeded with a new emulator token family but no access
    /// token, so its first use refreshes. Returns the seeded refresh token.
    pub async fn seeded(&self, key: &str) -> (UserSession, String) {
        let family = self.emu.seed(CLIENT_ID, "openid offline_access accounts");
        let session = self.session(key);
        seed_refresh_token(&session, &family.refresh_token).await;
        (session, family.refresh_token)
    }

    /// Waits until the core has armed the deadline of the call under way
    /// (its timer is registered with the manual clock), then moves time
    /// past it.
    pub async fn expire_deadline(&self, ms: u64) {
        while self.clock.pending_timers() == 0 {
            tokio::task::yield_now().await;
        }
        self.clock.advance(ms);
    }

    /// Refresh-grant requests the emulator has received.
    pub fn refresh_requests(&self) -> u64 {
        self.grant_requests("refresh_token")
    }

    pub fn grant_requests(&self, grant: &str) -> u64 {
        self.emu
            .counters()
            .by_grant
            .get(grant)
            .copied()
            .unwrap_or(0)
    }
}

/// Runs `callers` concurrently on this task while the emulator holds the
/// one token request they are to share, so that none can come late: each
/// caller is polled once (a caller joins the shared flight, or starts it,
/// on its first poll) before the held request is released. Queue
/// `Fault::hold()` (and whatever the request should meet next) first.
/// Asserts that exactly one request was held; returns the outputs in order.
/// Waits until the emulator holds `caller`'s request, then aborts the
/// caller (a caller that gives up) and checks that it was cancelled; the
/// request stays held for the test to release.
pub async fn abandoned_once_held<T: std::fmt::Debug>(
    emu: &Emulator,
    caller: tokio::task::JoinHandle<T>,
) {
    let held = emu.held_requests();
    tokio::task::spawn_blocking(move || held.wait(1))
        .await
        .unwrap();
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
}

pub async fn joined_then_released<F: Future>(
    emu: &Emulator,
    callers: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut callers: Vec<Pin<Box<MaybeDone<F>>>> = callers
        .into_iter()
        .map(|f| Box::pin(maybe_done(f)))
        .collect();
    poll_fn(|cx| {
        for caller in &mut callers {
            let _ = caller.as_mut().poll(cx);
        }
        Poll::Ready(())
    })
    .await;
    // Waited for on another thread while this task keeps driving the callers.
    let held = emu.held_requests();
    let release = async move {
        tokio::task::spawn_blocking(move || {
            held.wait(1);
            held.release()
        })
        .await
        .expect("the held-request waiter")
    };
    let (_, released) = tokio::join!(join_all(callers.iter_mut()), release);
    assert_eq!(released, 1, "the callers' one request was held");
    callers
        .iter_mut()
        .map(|caller| caller.as_mut().take_output().expect("every caller ended"))
        .collect()
}

/// Asserts that no secret-looking value appears in an error's message or Debug.
pub fn assert_no_secret(error: &freshtoken::Error, secrets: &[&str]) {
    let shown = format!("{error} {error:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "secret leaked in: {shown}");
    }
}

/// Real time plus an offset the test can advance, with real sleeps: for
/// tests where waiting matters (leases), unlike [`ManualClock`] whose
/// sleeps return at once and would let a waiter spin time forward.
#[derive(Default)]
pub struct OffsetClock {
    offset: std::sync::atomic::AtomicU64,
}

impl OffsetClock {
    pub fn advance(&self, ms: u64) {
        self.offset.fetch_add(ms, Ordering::SeqCst);
    }
}

#[async_trait]
impl freshtoken::Clock for OffsetClock {
    fn now_ms(&self) -> u64 {
        wall_ms() + self.offset.load(Ordering::SeqCst)
    }

    async fn sleep(&self, ms: u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// A client of the emulator with the test credentials on `clock`, its
/// refreshes driven by their callers (as another process's would be).
pub fn plain_client(emu: &Emulator, clock: Arc<dyn freshtoken::Clock>) -> TokenClient {
    plain_client_at(&emu.token_endpoint(), clock)
}

/// [`plain_client`] of the token endpoint `endpoint` (another process's
/// client spells the emulator's differently: see [`Harness::other_process`]).
pub fn plain_client_at(endpoint: &str, clock: Arc<dyn freshtoken::Clock>) -> TokenClient {
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

/// Refresh-grant requests the emulator has received.
pub fn refreshes(emu: &Emulator) -> u64 {
    emu.counters()
        .by_grant
        .get("refresh_token")
        .copied()
        .unwrap_or(0)
}

/// A fleet's expiry windows: in each, 25 callers per client ask for
/// `key`'s token at once through `store`; every caller gets the same token
/// and exactly one refresh is sent (counting from none); then `clock`
/// moves past the token's life. Returns each window's token.
pub async fn one_refresh_per_window(
    emu: &Emulator,
    clients: &[TokenClient],
    store: Arc<dyn TokenStore>,
    clock: &OffsetClock,
    windows: u64,
) -> Vec<String> {
    let mut per_window = Vec::new();
    for window in 1..=windows {
        let mut calls = Vec::new();
        for c in clients {
            for _ in 0..25 {
                let session = c.session("u1", store.clone()).unwrap();
                calls.push(async move { session.access_token().await });
            }
        }
        let tokens: Vec<String> = join_all(calls)
            .await
            .into_iter()
            .map(|r| r.expect("every call is served"))
            .collect();
        assert!(
            tokens.iter().all(|t| *t == tokens[0]),
            "window {window}: one token"
        );
        assert_eq!(
            refreshes(emu),
            window,
            "window {window}: exactly one refresh"
        );
        per_window.push(tokens[0].clone());
        clock.advance(900_000); // the next window starts stale
    }
    per_window
}

/// Seeds `session` with a new emulator family (scope `offline_access`: a
/// refresh token, no access token) and returns its refresh token.
pub async fn seed_family(emu: &Emulator, session: &UserSession) -> String {
    let refresh_token = emu.seed(CLIENT_ID, "offline_access").refresh_token;
    seed_refresh_token(session, &refresh_token).await;
    refresh_token
}

/// Seeds `session` with `refresh_token` alone (no access token, so its
/// first use refreshes); panics if the seed is not saved.
pub async fn seed_refresh_token(session: &UserSession, refresh_token: &str) {
    session
        .seed(Seed {
            refresh_token: refresh_token.to_owned().into(),
            ..Seed::default()
        })
        .await
        .expect("seed saves");
}

/// Two processes on one store without a lease (DESIGN 9 allows it): the
/// first sends the token and is held; the second reads the in-doubt
/// record, sends the same token, rotates and saves; then the first is
/// refused. Returns the first process's outcome, the second's access token
/// and the rotated refresh token.
pub async fn raced_without_a_lease(
    h: &Harness,
) -> (Result<String, freshtoken::Error>, String, String) {
    let (first, _) = h.seeded("u1").await;
    h.emu.push_fault(freshtoken_emulator::Fault::hold());
    let sending = tokio::spawn(async move { first.access_token().await });
    let held = h.emu.held_requests();
    tokio::task::spawn_blocking(move || held.wait(1))
        .await
        .unwrap();
    let second = h.other_process().session("u1", h.store.clone()).unwrap();
    let theirs = second
        .access_token()
        .await
        .expect("the second process rotates");
    let rotated = h.store.refresh_token("u1").expect("its rotated record");
    assert_eq!(h.emu.release_held(), 1);
    (sending.await.unwrap(), theirs, rotated)
}
