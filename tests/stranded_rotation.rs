//! A rotation whose save failed under the fleet lease: the rotated refresh
//! token is only in this process's memory. The core keeps trying the save
//! in the background, renewing the lease before each try, and releases the
//! lease once the record is saved, without waiting for another call of this
//! process (in a fleet the user's next request usually reaches another one,
//! which would read the in-doubt record once the lease lapsed and send the
//! spent token).

mod common;

use common::Harness;
use freshtoken::{Clock, MemoryStore, Record, Seed, StoreError, TokenStore};
use freshtoken_emulator::TokenState;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A leasing store whose next `fail_saves` saves of a settled record fail
/// (the write-ahead marker's saves pass).
struct FailingSaves {
    inner: MemoryStore,
    fail_saves: AtomicU32,
    failed: AtomicU32,
    acquires: AtomicU32,
    landed: Notify,
    released: Notify,
}

impl FailingSaves {
    fn new(clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(FailingSaves {
            inner: MemoryStore::with_leases(clock),
            fail_saves: AtomicU32::new(0),
            failed: AtomicU32::new(0),
            acquires: AtomicU32::new(0),
            landed: Notify::new(),
            released: Notify::new(),
        })
    }
}

#[async_trait::async_trait]
impl TokenStore for FailingSaves {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.load(key).await
    }
    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        let write_ahead = Record::decode(record).is_ok_and(|r| r.in_doubt);
        if !write_ahead {
            let failing = self
                .fail_saves
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                self.failed.fetch_add(1, Ordering::SeqCst);
                return Err(StoreError("database unavailable".into()));
            }
        }
        self.inner.save(key, record).await?;
        if !write_ahead {
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

/// Waits for `notify`, failing the test (instead of hanging) should it
/// never come.
async fn within(notify: &Notify, what: &str) {
    tokio::time::timeout(Duration::from_secs(30), notify.notified())
        .await
        .unwrap_or_else(|_| panic!("{what} never happened"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_save_failed_is_saved_in_the_background_and_its_lease_released() {
    let h = Harness::new();
    let store = FailingSaves::new(h.clock.clone());
    let session = h.client.session("u1", store.clone()).unwrap();
    let family = h
        .emu
        .seed(common::CLIENT_ID, "openid offline_access accounts");
    session
        .seed(Seed {
            refresh_token: family.refresh_token.clone().into(),
            ..Seed::default()
        })
        .await
        .unwrap();

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
    let stored = store.inner.get("u1").map(|t| Record::decode(&t).unwrap());
    let stored = stored.expect("a stored record");
    assert!(
        !stored.in_doubt,
        "the settled record, not the write-ahead marker"
    );
    let rotated = stored.refresh_token.unwrap().expose().to_owned();
    assert_eq!(h.emu.refresh_token_state(&rotated), TokenState::Active);
    assert_eq!(
        h.emu.refresh_token_state(&family.refresh_token),
        TokenState::Consumed
    );
    assert!(
        store
            .inner
            .acquire("u1", "another-process", 60_000)
            .await
            .unwrap(),
        "the lease is free for the other processes"
    );

    // This process serves the saved token, with no new request.
    assert!(!session.status().await.unwrap().unpersisted);
    session.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 1);
}
