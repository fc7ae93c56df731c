//! A fleet whose store and server take their time: the true time the
//! store's leases are judged by and the holder's process clock, HTTP whose
//! requests take as long as a test says, and another process's call run
//! from inside a slow host callback (tests/lease_span.rs,
//! tests/lease_keeping.rs).

use super::{plain_client_at, seed_family, wall_ms};
use freshtoken::{
    async_trait, Clock, HttpClient, HttpError, HttpRequest, HttpResponse, ManualClock, MemoryStore,
    TokenClient, UserSession,
};
use freshtoken_emulator::{Emulator, Options};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// One hour: how far the process clock steps back (an NTP step).
pub const HOUR_MS: u64 = 3_600_000;

/// Time as the test tells it: the true time (the store's leases) and the
/// holder's process clock, the same one unless the process clock steps.
pub struct Clocks {
    pub truth: Arc<ManualClock>,
    pub local: Arc<ManualClock>,
}

impl Clocks {
    /// One clock for all.
    pub fn one() -> Arc<Self> {
        let truth = Arc::new(ManualClock::new(wall_ms()));
        Arc::new(Clocks {
            local: truth.clone(),
            truth,
        })
    }

    /// A process clock apart from the true time, reading the same for now.
    pub fn two() -> Arc<Self> {
        let truth = Arc::new(ManualClock::new(wall_ms()));
        let local = Arc::new(ManualClock::new(truth.now_ms()));
        Arc::new(Clocks { truth, local })
    }

    /// Lets `ms` pass, on every clock.
    pub fn pass(&self, ms: u64) {
        self.truth.advance(ms);
        if !Arc::ptr_eq(&self.truth, &self.local) {
            self.local.advance(ms);
        }
    }

    /// Sets the process clock back an hour (time does not go back).
    pub fn step_back(&self) {
        self.local.set(self.local.now_ms() - HOUR_MS);
    }
}

/// Another process's call and its result, run by a slow host callback.
#[derive(Default)]
pub struct Meanwhile {
    pub session: Mutex<Option<UserSession>>,
    pub result: Mutex<Option<Result<String, freshtoken::Error>>>,
}

impl Meanwhile {
    pub fn of(session: UserSession) -> Self {
        Meanwhile {
            session: Mutex::new(Some(session)),
            result: Mutex::new(None),
        }
    }

    /// Runs the other process's `access_token()`, once.
    pub async fn run(&self) {
        let session = self.session.lock().unwrap().take();
        if let Some(session) = session {
            let result = session.access_token().await;
            *self.result.lock().unwrap() = Some(result);
        }
    }

    pub fn result(&self) -> Option<Result<String, freshtoken::Error>> {
        self.result.lock().unwrap().take()
    }
}

/// HTTP over the emulator whose requests take time: before request n
/// (from 1) the time passes by the next of `takes` (ms); before request
/// `other_before` the other process runs; after request `step_back_after`
/// the process clock steps back an hour.
pub struct SlowHttp {
    pub inner: freshtoken::NativeHttp,
    pub clocks: Arc<Clocks>,
    pub takes: Mutex<VecDeque<u64>>,
    pub step_back_after: Option<u32>,
    pub other_before: Option<u32>,
    pub other: Meanwhile,
    pub sent: AtomicU32,
}

impl SlowHttp {
    pub fn new(clocks: &Arc<Clocks>, takes: impl IntoIterator<Item = u64>) -> Self {
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
pub fn other_process(emu: &Emulator, clock: Arc<dyn Clock>) -> TokenClient {
    plain_client_at(&format!("{}?other-process", emu.token_endpoint()), clock)
}

/// The emulator, the shared store seeded with a new family through the
/// other process's session (on a clock of its own: its waits do not move
/// the time the lease is judged by), and the seeded refresh token.
pub async fn fleet(clocks: &Clocks) -> (Emulator, Arc<MemoryStore>, UserSession, String) {
    let emu = Emulator::start(Options::default()).unwrap();
    let shared = Arc::new(MemoryStore::with_leases(clocks.truth.clone()));
    let other_clock = Arc::new(ManualClock::new(clocks.truth.now_ms()));
    let b_session = other_process(&emu, other_clock)
        .session("u1", shared.clone())
        .unwrap();
    let seeded = seed_family(&emu, &b_session).await;
    (emu, shared, b_session, seeded)
}
