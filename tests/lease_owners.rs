//! Lease calls the core gave up on at their store deadline that the host
//! still carries out: a release landing late must not end a lease taken
//! since (another process would then send the same refresh token, and the
//! provider revoke the grant), and an acquire that may have landed is
//! given back rather than left to block the fleet for its whole TTL.

mod common;

use common::{Harness, CLIENT_ID};
use freshtoken::{async_trait, Clock, MemoryStore, Record, StoreError, TokenStore};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Notify};

const STORE_TIMEOUT_MS: u64 = 5_000;
const TTL_MS: u64 = 65_000;

/// A lease store whose next release (or acquire) the host carries out on
/// its own, late, while the call itself never answers.
struct LateHost {
    inner: Arc<MemoryStore>,
    acquired_by: Mutex<Vec<String>>,
    /// The next release stalls; its write lands when `go` is sent.
    hold_release: AtomicBool,
    go: Mutex<Option<oneshot::Sender<()>>>,
    landed: Mutex<Option<oneshot::Receiver<()>>>,
    /// The next acquire lands, but never answers.
    stall_acquire: AtomicBool,
    /// The next acquire lands, but its answer is lost (an error).
    lose_acquire_answer: AtomicBool,
    /// The next release fails, unwritten.
    fail_release: AtomicBool,
    /// Saves of a record with an access token (a rotation's) fail.
    fail_rotated_saves: AtomicBool,
    entered: Notify,
    /// Whether another process could take the lease right after the late
    /// release landed (measured at the next acquire).
    free_after_late_release: Mutex<Option<bool>>,
}

impl LateHost {
    fn new(h: &Harness) -> Arc<Self> {
        Arc::new(LateHost {
            inner: Arc::new(MemoryStore::with_leases(h.clock.clone())),
            acquired_by: Mutex::default(),
            hold_release: AtomicBool::new(false),
            go: Mutex::default(),
            landed: Mutex::default(),
            stall_acquire: AtomicBool::new(false),
            lose_acquire_answer: AtomicBool::new(false),
            fail_release: AtomicBool::new(false),
            fail_rotated_saves: AtomicBool::new(false),
            entered: Notify::new(),
            free_after_late_release: Mutex::default(),
        })
    }

    async fn lease_is_free(&self, key: &str) -> bool {
        let taken = self.inner.acquire(key, "another-process", TTL_MS).await;
        let free = taken.unwrap();
        if free {
            self.inner.release(key, "another-process").await.unwrap();
        }
        free
    }
}

#[async_trait]
impl TokenStore for LateHost {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.load(key).await
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        let rotated = Record::decode(record).is_ok_and(|r| r.access_token.is_some());
        if rotated && self.fail_rotated_saves.load(Ordering::SeqCst) {
            return Err(StoreError("disk full".into()));
        }
        self.inner.save(key, record).await
    }

    fn supports_lease(&self) -> bool {
        true
    }

    async fn acquire(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        self.acquired_by.lock().unwrap().push(owner.to_owned());
        if self.stall_acquire.swap(false, Ordering::SeqCst) {
            self.inner.acquire(key, owner, ttl_ms).await?;
            self.entered.notify_one();
            return std::future::pending().await;
        }
        let taken = self.inner.acquire(key, owner, ttl_ms).await?;
        if self.lose_acquire_answer.swap(false, Ordering::SeqCst) {
            return Err(StoreError("connection reset by peer".into()));
        }
        // The release held back lands now, while this lease is held.
        let go = self.go.lock().unwrap().take_if(|_| taken);
        if let Some(go) = go {
            go.send(()).unwrap();
            let landed = self.landed.lock().unwrap().take().unwrap();
            landed.await.unwrap();
            let free = self.lease_is_free(key).await;
            *self.free_after_late_release.lock().unwrap() = Some(free);
        }
        Ok(taken)
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        if self.fail_release.swap(false, Ordering::SeqCst) {
            return Err(StoreError("connection reset by peer".into()));
        }
        if !self.hold_release.swap(false, Ordering::SeqCst) {
            return self.inner.release(key, owner).await;
        }
        let (go, wait) = oneshot::channel();
        let (land, landed) = oneshot::channel();
        *self.go.lock().unwrap() = Some(go);
        *self.landed.lock().unwrap() = Some(landed);
        let (inner, key, owner) = (self.inner.clone(), key.to_owned(), owner.to_owned());
        tokio::spawn(async move {
            wait.await.unwrap();
            inner.release(&key, &owner).await.unwrap();
            land.send(()).unwrap();
        });
        self.entered.notify_one();
        std::future::pending().await
    }
}

/// The harness, a [`LateHost`] on its clock, and a session of its client
/// there, seeded with a new emulator family.
async fn seeded_on_a_late_host() -> (Harness, Arc<LateHost>, freshtoken::UserSession) {
    let h = Harness::new();
    let store = LateHost::new(&h);
    let family = h.emu.seed(CLIENT_ID, "openid offline_access");
    let session = h.client.session("u1", store.clone()).unwrap();
    common::seed_refresh_token(&session, &family.refresh_token).await;
    (h, store, session)
}

/// `session.access_token()` once the lease call the store stalls has
/// entered the store and its store deadline has passed.
async fn past_the_store_call(
    h: &Harness,
    store: &LateHost,
    session: &freshtoken::UserSession,
) -> Result<String, freshtoken::Error> {
    let caller = tokio::spawn({
        let session = session.clone();
        async move { session.access_token().await }
    });
    store.entered.notified().await;
    h.expire_deadline(STORE_TIMEOUT_MS).await;
    caller.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_lands_late_does_not_end_a_lease_taken_since() {
    let (h, store, session) = seeded_on_a_late_host().await;
    store.hold_release.store(true, Ordering::SeqCst);
    let first = past_the_store_call(&h, &store, &session).await;
    first.expect("a failed release only delays the others");
    // The first lease lapses; the next refresh takes the lease anew.
    h.clock.advance(TTL_MS);

    session.refresh().await.expect("the second refresh");
    let free = store.free_after_late_release.lock().unwrap().take();
    assert_eq!(
        free,
        Some(false),
        "the late release left the new lease held"
    );
    let owners = store.acquired_by.lock().unwrap().clone();
    assert_eq!(owners.len(), 2, "{owners:?}");
    assert_ne!(owners[0], owners[1], "each lease has its own owner name");
    let prefix = format!("{}.", h.client.lease_owner());
    assert!(owners.iter().all(|o| o.starts_with(&prefix)), "{owners:?}");
    assert_eq!(h.emu.counters().reuse_detected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_abandoned_at_its_deadline_is_given_back() {
    let (h, store, session) = seeded_on_a_late_host().await;
    store.stall_acquire.store(true, Ordering::SeqCst);
    let error = past_the_store_call(&h, &store, &session).await.unwrap_err();
    assert_eq!(error.code(), freshtoken::ErrorCode::Storage, "{error}");
    assert!(
        store.lease_is_free("u1").await,
        "another process can take the lease"
    );
    assert_eq!(h.refresh_requests(), 0, "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_release_failed_is_renewed_by_this_process_not_waited_for() {
    // The acquire landed but its answer was lost, and the release that gave
    // it back failed: the lease stays under its name until the TTL. This
    // process's next call renews it rather than wait for itself.
    let (h, store, session) = seeded_on_a_late_host().await;
    store.lose_acquire_answer.store(true, Ordering::SeqCst);
    store.fail_release.store(true, Ordering::SeqCst);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code(), freshtoken::ErrorCode::Storage, "{error}");
    assert!(!store.lease_is_free("u1").await, "still held");

    let before = h.clock.now_ms();
    session
        .access_token()
        .await
        .expect("the next call refreshes");
    assert_eq!(h.clock.now_ms(), before, "no wait for its own lease");
    let owners = store.acquired_by.lock().unwrap().clone();
    assert_eq!(
        owners[0], owners[1],
        "renewed under the same name: {owners:?}"
    );
    assert!(
        store.lease_is_free("u1").await,
        "released after the refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_keeps_the_lease_guarding_a_rotation_not_saved_yet() {
    // A rotation whose save failed lives only in this process; its lease
    // keeps the other processes from sending the spent token. A later call
    // (here a revocation) whose renewal of that lease fails must not give
    // it back.
    let h = Harness::new();
    let store = LateHost::new(&h);
    // No spawner: no background save renews the kept lease meanwhile (it
    // would take the store's failure meant for the revocation).
    let config = freshtoken::Config::builder(h.emu.token_endpoint(), CLIENT_ID)
        .client_secret(common::CLIENT_SECRET)
        .build()
        .unwrap();
    let http = Arc::new(freshtoken::NativeHttp::new().unwrap());
    let client = freshtoken::TokenClient::new(config, http, h.clock.clone());
    let family = h.emu.seed(CLIENT_ID, "openid offline_access");
    let session = client.session("u1", store.clone()).unwrap();
    common::seed_refresh_token(&session, &family.refresh_token).await;
    store.fail_rotated_saves.store(true, Ordering::SeqCst);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code(), freshtoken::ErrorCode::Storage, "{error}");
    assert!(!store.lease_is_free("u1").await, "kept for the rotation");

    store.lose_acquire_answer.store(true, Ordering::SeqCst);
    session.revoke().await.unwrap_err();
    assert!(!store.lease_is_free("u1").await, "still kept");
    assert_eq!(h.emu.counters().reuse_detected, 0);
}
