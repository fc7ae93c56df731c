//! A code exchange under the fleet lease of its key, and the refreshes of
//! the same session state around it: the lease is given back only once
//! neither runs, an exchange that stopped holds it no longer than the
//! lease lasts, the lease is renewed just before the code is sent, and a
//! sign-out made while the code is at the server is not saved over.

mod common;

use common::authorize::{approved_for, REDIRECT};
use common::{Acquire, ForwardingStore, Harness, LoadVersioned, StoreHooks, CLIENT_ID};
use freshtoken::{
    Clock, ErrorCode, ManualClock, MemoryStore, ReauthReason, Record, StoreError, TokenStore,
    Versioned,
};
use freshtoken_emulator::Fault;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The record `shared` holds for `u1`.
fn stored(shared: &MemoryStore) -> Record {
    Record::decode(&shared.get("u1").expect("a record")).unwrap()
}

/// Whether another process could take `u1`'s lease now (it gives it back).
async fn lease_is_free(shared: &MemoryStore) -> bool {
    let free = shared.acquire("u1", "probe", 1_000).await.unwrap();
    if free {
        shared.release("u1", "probe").await.unwrap();
    }
    free
}

struct Plain;
impl StoreHooks for Plain {}

/// A fleet store (`versions`: with compare-and-swap) over `shared`.
fn fleet_store<H: StoreHooks>(
    shared: &Arc<MemoryStore>,
    hooks: H,
    versions: bool,
) -> Arc<ForwardingStore<H>> {
    match versions {
        true => ForwardingStore::fleet(shared.clone(), hooks),
        false => ForwardingStore::lease_only(shared.clone(), hooks),
    }
}

/// A refresh of `u1` is out under the lease (its answer held at the
/// server) when the user's callback arrives in the same process, with a
/// code the server refuses. The exchange ends first; it used to give the
/// lease back then, under the running refresh, and another process could
/// take it and send the same refresh token again (a revoked family at a
/// server that detects reuse). The lease is given back once the refresh
/// has ended.
async fn the_lease_outlives_a_refresh_that_outlives_the_exchange(versions: bool) {
    let h = Harness::new();
    let shared = Arc::new(MemoryStore::with_leases(h.clock.clone()));
    let store = fleet_store(&shared, Plain, versions);
    let session = h.client.session("u1", store.clone()).unwrap();
    let rt = h.emu.seed(CLIENT_ID, "openid offline_access").refresh_token;
    common::seed_refresh_token(&session, &rt).await;

    h.emu.push_fault(Fault::hold().for_grant("refresh_token"));
    let refreshing = tokio::spawn(async move { session.access_token().await });
    tokio::task::block_in_place(|| h.emu.wait_held(1));
    assert!(!lease_is_free(&shared).await, "the refresh holds the lease");

    let (_, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    let mut exchanging = tokio::spawn({
        let (client, store) = (h.client.clone(), store.clone());
        async move {
            client
                .exchange_code(
                    "a-code-the-server-refuses",
                    &verifier,
                    REDIRECT,
                    "u1",
                    store,
                )
                .await
                .map(drop)
        }
    });
    tokio::time::timeout(Duration::from_secs(30), async {
        while h.grant_requests("authorization_code") == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the code is sent");
    // Unfixed, the exchange ends at once and gives the lease back; fixed,
    // it waits for the refresh (a regression is caught within the bound).
    if let Ok(ended) = tokio::time::timeout(Duration::from_millis(500), &mut exchanging).await {
        let error = ended.unwrap().unwrap_err();
        assert_eq!(error.code(), ErrorCode::OAuth, "{error}");
    }
    assert!(
        !lease_is_free(&shared).await,
        "the lease is held while the refresh is out"
    );

    assert_eq!(h.emu.release_held(), 1);
    refreshing.await.unwrap().expect("the refresh ends well");
    if !exchanging.is_finished() {
        let error = exchanging.await.unwrap().unwrap_err();
        assert_eq!(error.code(), ErrorCode::OAuth, "{error}");
    }
    assert!(lease_is_free(&shared).await, "given back once both ended");
    assert_eq!(h.refresh_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_outlives_a_refresh_that_outlives_the_exchange_on_a_fleet_store() {
    the_lease_outlives_a_refresh_that_outlives_the_exchange(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_outlives_a_refresh_that_outlives_the_exchange_on_a_lease_only_store() {
    the_lease_outlives_a_refresh_that_outlives_the_exchange(false).await;
}

/// Hooks whose first versioned read panics once armed (a host store bug).
#[derive(Default)]
struct PanicsOnce {
    armed: AtomicBool,
}

#[async_trait::async_trait]
impl StoreHooks for PanicsOnce {
    async fn load_versioned(
        &self,
        call: LoadVersioned<'_>,
    ) -> Result<Option<Versioned>, StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("a host store bug");
        }
        call.forward().await
    }
}

/// An exchange that panicked under the lease (a store bug) holds it no
/// longer than the lease it took lasts: a later refresh of the session
/// gives the lease back. It used to stay marked as the exchange's, and
/// every later refresh kept the lease held, other processes waiting out
/// its TTL at each refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_that_panicked_under_the_lease_holds_it_no_longer_than_it_lasts() {
    let h = Harness::new();
    let shared = Arc::new(MemoryStore::with_leases(h.clock.clone()));
    let store = ForwardingStore::fleet(shared.clone(), PanicsOnce::default());
    let session = h.client.session("u1", store.clone()).unwrap();
    let rt = h.emu.seed(CLIENT_ID, "openid offline_access").refresh_token;
    common::seed_refresh_token(&session, &rt).await;

    store.hooks.armed.store(true, Ordering::SeqCst);
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    let exchanged = tokio::spawn({
        let (client, store) = (h.client.clone(), store.clone());
        async move {
            client
                .exchange_code(&code, &verifier, REDIRECT, "u1", store)
                .await
                .map(drop)
        }
    })
    .await;
    assert!(exchanged.is_err(), "the store's panic reached the caller");
    assert_eq!(
        h.grant_requests("authorization_code"),
        0,
        "nothing was sent"
    );

    h.clock.advance(10 * 60_000); // past the lease the exchange took
    session.refresh().await.expect("a later refresh");
    assert!(lease_is_free(&shared).await, "the refresh gave it back");
}

/// Hooks whose next versioned read takes `slow_ms` of `clock` (a slow
/// store, within its deadline), and which note when each lease acquire
/// was made.
struct SlowRead {
    clock: Arc<ManualClock>,
    slow: AtomicBool,
    acquired_at: Mutex<Vec<u64>>,
}

const SLOW_MS: u64 = 4_000;

#[async_trait::async_trait]
impl StoreHooks for SlowRead {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        self.acquired_at.lock().unwrap().push(self.clock.now_ms());
        call.forward().await
    }

    async fn load_versioned(
        &self,
        call: LoadVersioned<'_>,
    ) -> Result<Option<Versioned>, StoreError> {
        if self.slow.swap(false, Ordering::SeqCst) {
            self.clock.advance(SLOW_MS);
        }
        call.forward().await
    }
}

/// The reads before the code is sent take some of the lease: it is
/// renewed (an acquire by its holder) just before the code is sent, so
/// that it outlasts the request and the save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_renewed_just_before_the_code_is_sent() {
    let h = Harness::new();
    let shared = Arc::new(MemoryStore::with_leases(h.clock.clone()));
    let hooks = SlowRead {
        clock: h.clock.clone(),
        slow: AtomicBool::new(true),
        acquired_at: Mutex::new(Vec::new()),
    };
    let store = ForwardingStore::fleet(shared.clone(), hooks);
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let started = h.clock.now_ms();
    let exchanging = tokio::spawn({
        let (client, store) = (h.client.clone(), store.clone());
        async move {
            client
                .exchange_code(&code, &verifier, REDIRECT, "u1", store)
                .await
                .map(drop)
        }
    });
    tokio::task::block_in_place(|| h.emu.wait_held(1));
    let acquired_at = store.hooks.acquired_at.lock().unwrap().clone();
    assert_eq!(
        acquired_at,
        [started, started + SLOW_MS],
        "taken, then renewed after the slow read, before the code was sent"
    );
    h.emu.release_held();
    exchanging.await.unwrap().expect("linked");
    assert!(lease_is_free(&shared).await);
}

/// A sign-out in another process while this process's code is at the
/// server (a store with compare-and-swap, no lease). The exchange reads
/// the stored version again once the tokens are issued, so its save does
/// not conflict; it used to be saved over the sign-out, bringing the
/// session back. The sign-out wins: the re-link is dropped, its tokens
/// revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_made_while_the_code_is_at_the_server_is_not_saved_over() {
    let h = Harness::new();
    let shared = Arc::new(MemoryStore::new());
    let other = h.other_process();
    let (code, verifier) = approved_for(&other, &["openid", "offline_access"]).await;
    let theirs = ForwardingStore::versioned_only(shared.clone(), Plain);
    let elsewhere = other
        .exchange_code(&code, &verifier, REDIRECT, "u1", theirs)
        .await
        .expect("linked elsewhere");

    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    let store = ForwardingStore::versioned_only(shared.clone(), Plain);
    let relinking = tokio::spawn({
        let (client, store) = (h.client.clone(), store.clone());
        async move {
            client
                .exchange_code(&code, &verifier, REDIRECT, "u1", store)
                .await
                .map(drop)
        }
    });
    tokio::task::block_in_place(|| h.emu.wait_held(1));
    elsewhere
        .revoke()
        .await
        .expect("the user signs out elsewhere");
    h.emu.release_held();

    let error = relinking.await.unwrap().unwrap_err();
    assert_eq!(error.code(), ErrorCode::ReauthorizationRequired, "{error}");
    assert_eq!(error.reason(), Some(ReauthReason::Revoked));
    let record = stored(&shared);
    assert!(record.reauth.is_some(), "the sign-out stands");
    assert!(record.refresh_token.is_none());
    assert_eq!(h.emu.counters().tokens_revoked, 2, "one family per link");
}
