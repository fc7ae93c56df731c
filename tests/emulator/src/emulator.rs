//! [`Emulator`]: an in-process server on its own thread and tokio runtime,
//! and the methods tests use to drive it.

use std::io;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::counters::Counters;
use crate::discovery::DiscoveryMode;
use crate::endless::EndlessStream;
use crate::faults::Fault;
use crate::hold::HeldRequests;
use crate::options::Options;
use crate::server;
use crate::state::{Seeded, Shared, TokenState};

/// How long the blocking waits ([`Emulator::wait_held`],
/// [`Emulator::wait_endless_ended`]) wait before they panic rather than
/// hang a test.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// A running emulator on 127.0.0.1. Dropping it stops the server.
pub struct Emulator {
    shared: Arc<Shared>,
    port: u16,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Binds 127.0.0.1:`opts.port` and serves on a background thread with
    /// its own tokio runtime; returns once listening. Works inside or
    /// outside a tokio runtime.
    pub fn start(opts: Options) -> io::Result<Emulator> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", opts.port))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::new(&opts, format!("http://127.0.0.1:{port}")));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("freshtoken-emulator".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("freshtoken-emulator-worker")
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let _ = ready_tx.send(Ok(()));
                            server::serve(listener, server_shared, shutdown_rx).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })?;
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("emulator thread exited early")));
        if let Err(e) = ready {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Emulator {
            shared,
            port,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (also the issuer).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `{base}/connect/token`.
    pub fn token_endpoint(&self) -> String {
        self.shared.token_endpoint()
    }

    /// `{base}/connect/authorize`.
    pub fn authorization_endpoint(&self) -> String {
        self.shared.authorization_endpoint()
    }

    /// `{base}/connect/revocation` (RFC 7009).
    pub fn revocation_endpoint(&self) -> String {
        self.shared.revocation_endpoint()
    }

    /// `{base}/.well-known/openid-configuration`.
    pub fn discovery_endpoint(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.shared.base_url)
    }

    /// `{base}/graphql`.
    pub fn api_endpoint(&self) -> String {
        format!("{}/graphql", self.shared.base_url)
    }

    /// `{base}/admin`.
    pub fn admin_endpoint(&self) -> String {
        format!("{}/admin", self.shared.base_url)
    }

    /// The one JSON line a served emulator prints when it is ready, keys in
    /// the documented order (serde_json's map would sort them).
    pub fn ready_line(&self) -> String {
        let quoted = |s: String| serde_json::Value::from(s).to_string();
        format!(
            "{{\"ready\":true,\"port\":{},\"issuer\":{},\"token_endpoint\":{},\
             \"authorization_endpoint\":{},\"api_endpoint\":{},\"admin_endpoint\":{},\
             \"revocation_endpoint\":{},\"discovery_endpoint\":{}}}",
            self.port(),
            quoted(self.base_url()),
            quoted(self.token_endpoint()),
            quoted(self.authorization_endpoint()),
            quoted(self.api_endpoint()),
            quoted(self.admin_endpoint()),
            quoted(self.revocation_endpoint()),
            quoted(self.discovery_endpoint()),
        )
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Mints a new token family for `client_id` (which need not be
    /// configured), as if a user had just granted `scope`.
    pub fn seed(&self, client_id: &str, scope: &str) -> Seeded {
        self.shared
            .lock()
            .seed(&self.shared.base_url, client_id, scope)
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// Appends a fault to the FIFO queue.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// The faults still queued, first first.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.shared.lock().faults.pending()
    }

    /// Forgets every queued fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Moves the emulator's clock forward by `secs` (no real sleeping).
    pub fn advance_clock(&self, secs: u64) {
        self.shared.lock().advance_clock(secs);
    }

    /// The emulator's clock, in seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.shared.lock().now()
    }

    /// Turns refresh-token reuse detection on or off.
    pub fn set_reuse_detection(&self, on: bool) {
        self.shared.lock().config.reuse_detection = on;
    }

    /// Makes the discovery endpoint answer in `mode` (until changed or
    /// reset).
    pub fn set_discovery(&self, mode: DiscoveryMode) {
        self.shared.lock().discovery = mode;
    }

    /// What the discovery endpoint answers now.
    pub fn discovery(&self) -> DiscoveryMode {
        self.shared.lock().discovery.clone()
    }

    /// Changes the lifetimes of tokens issued from now on (`None` keeps one).
    pub fn set_ttls(&self, access: Option<u64>, client: Option<u64>, refresh: Option<u64>) {
        let mut st = self.shared.lock();
        let c = &mut st.config;
        c.access_ttl_secs = access.unwrap_or(c.access_ttl_secs);
        c.client_ttl_secs = client.unwrap_or(c.client_ttl_secs);
        c.refresh_ttl_secs = refresh.unwrap_or(c.refresh_ttl_secs);
    }

    /// The state of a refresh token.
    pub fn refresh_token_state(&self, token: &str) -> TokenState {
        self.shared.lock().refresh_state(token)
    }

    /// The state of the refresh token that replaced `token` (`None` if none
    /// did, or `token` is unknown).
    pub fn successor_state(&self, token: &str) -> Option<TokenState> {
        self.shared.lock().lineage(token)?.successor_state
    }

    /// How many token and revocation requests the `hold` fault holds now.
    pub fn held(&self) -> usize {
        self.shared.holds.count()
    }

    /// Blocks until at least `count` token requests are held; returns how
    /// many are. Panics after [`WAIT_LIMIT`] rather than hang.
    pub fn wait_held(&self, count: usize) -> usize {
        self.held_requests().wait(count)
    }

    /// Lets every held request go on, to the next queued fault or to normal
    /// processing; returns how many there were.
    pub fn release_held(&self) -> usize {
        self.shared.holds.release()
    }

    /// The held requests, as a handle that can move to another thread
    /// (e.g. into `tokio::task::spawn_blocking`).
    pub fn held_requests(&self) -> HeldRequests {
        HeldRequests(Arc::clone(&self.shared))
    }

    /// The `endless` fault's responses so far, first first, with the bytes
    /// each one wrote.
    pub fn endless_streams(&self) -> Vec<EndlessStream> {
        self.shared.streams.list()
    }

    /// Blocks until at least `count` endless responses have ended and none
    /// is still being written; returns them all. Panics after
    /// [`WAIT_LIMIT`] rather than hang (e.g. when a client never closes).
    pub fn wait_endless_ended(&self, count: usize) -> Vec<EndlessStream> {
        self.shared
            .streams
            .wait_ended_blocking(count, WAIT_LIMIT)
            .unwrap_or_else(|streams| {
                panic!(
                    "freshtoken-emulator: waited {} s for {count} endless response(s) to end; \
                     they are {streams:?}",
                    WAIT_LIMIT.as_secs()
                )
            })
    }

    /// Forgets tokens, codes, counters, faults and endless streams, and
    /// restores the clock, lifetimes and reuse detection given at start and
    /// the normal discovery document; then releases the held requests.
    /// Clients are kept.
    pub fn reset(&self) {
        self.shared.reset();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}
