//! A code exchange under the fleet lease of its key, and the refreshes of
//! the same session state around it: the lease is given back only once
//! neither runs, an exchange that stopped holds it no longer than the
//! lease lasts, the lease is renewed just before the code is sent, and a
//! sign-out made while the code is at the server is not saved over.

mod common;

use common::authorize::{approved_for, REDIRECT};
use common::{Acquire, ForwardingStore, Harness, LoadVersioned, StoreHooks, CLIENT_ID};
use freshtoken::{
    Clock, ErrorCode, ManualClock, MemoryStore, ReauthReason, Record, StoreError, TokenClient,
    TokenStore, UserSession, Versioned,
};
use freshtoken_emulator::Fault;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The record `shared` holds for `u1`.
fn stored(shared: &MemoryStore) -> Record {
    Record::decode(&shared.get("u1").expect("a record")).unwrap()
}

/// `client`'s exchange of `code` (with `verifier`) for `u1` into `store`,
/// as a task of its own.
fn spawn_exchange(
    client: &TokenClient,
    code: &str,
    verifier: &str,
    store: Arc<dyn TokenStore>,
) -> JoinHandle<Result<UserSession, freshtoken::Error>> {
    let (client, code, verifier) = (client.clone(), code.to_owned(), verifier.to_owned());
    tokio::spawn(async move {
        client
            .exchange_code(&code, &verifier, REDIRECT, "u1", store)
            .await
    })
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
    let refused = "a-code-the-server-refuses";
    let mut exchanging = spawn_exchange(&h.client, refused, &verifier, store.clone());
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
    let exchanged = spawn_exchange(&h.client, &code, &verifier, store.clone()).await;
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
    let exchanging = spawn_exchange(&h.client, &code, &verifier, store.clone());
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
    let relinking = spawn_exchange(&h.client, &code, &verifier, store.clone());
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

/// Hooks whose next versioned read fails once `fail_read` is set, and
/// whose next versioned save fails once `fail_save` is set.
#[derive(Default)]
struct Blips {
    fail_read: AtomicBool,
    fail_save: AtomicBool,
}

#[async_trait::async_trait]
impl StoreHooks for Blips {
    async fn load_versioned(
        &self,
        call: LoadVersioned<'_>,
    ) -> Result<Option<Versioned>, StoreError> {
        if self.fail_read.swap(false, Ordering::SeqCst) {
            return Err(StoreError("connection reset".into()));
        }
        call.forward().await
    }

    async fn save_versioned(
        &self,
        call: common::SaveVersioned<'_>,
    ) -> Result<freshtoken::CasOutcome, StoreError> {
        if self.fail_save.swap(false, Ordering::SeqCst) {
            return Err(StoreError("disk full".into()));
        }
        call.forward().await
    }
}

/// The user signed out, then links again; the exchange's read of the
/// stored record before it sends its code fails (a blip; the version read
/// after it works), so it cannot tell the revocation was there before. The
/// re-link is saved, as any re-link after a sign-out; it used to be taken
/// for a sign-out made since, dropped and its tokens revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relink_after_a_sign_out_whose_first_read_failed_is_saved() {
    let h = Harness::new();
    let shared = Arc::new(MemoryStore::new());
    let other = h.other_process();
    let (code, verifier) = approved_for(&other, &["openid", "offline_access"]).await;
    let theirs = ForwardingStore::versioned_only(shared.clone(), Plain);
    let old = other
        .exchange_code(&code, &verifier, REDIRECT, "u1", theirs)
        .await
        .expect("linked");
    old.revoke().await.expect("signed out");

    let store = ForwardingStore::versioned_only(shared.clone(), Blips::default());
    store.hooks.fail_read.store(true, Ordering::SeqCst);
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    h.client
        .exchange_code(&code, &verifier, REDIRECT, "u1", store.clone())
        .await
        .expect("the re-link is saved");
    let record = stored(&shared);
    assert!(record.reauth.is_none() && record.refresh_token.is_some());
    assert_eq!(h.emu.counters().tokens_revoked, 1, "only the old link's");
}

/// Hooks whose first lease acquire's answer takes 9 s and whose first
/// versioned read's answer takes 5 s more (slow, within the deadlines),
/// during which the test lets another process act.
struct SlowAnswers {
    clock: Arc<ManualClock>,
    slow_acquire: AtomicBool,
    slow_read: AtomicBool,
    reading: tokio::sync::Notify,
    go_on: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl StoreHooks for SlowAnswers {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        let taken = call.forward().await;
        if self.slow_acquire.swap(false, Ordering::SeqCst) {
            self.clock.advance(9_000);
        }
        taken
    }

    async fn load_versioned(
        &self,
        call: LoadVersioned<'_>,
    ) -> Result<Option<Versioned>, StoreError> {
        let read = call.forward().await;
        if self.slow_read.swap(false, Ordering::SeqCst) {
            self.clock.advance(5_000);
            self.reading.notify_one();
            self.go_on.notified().await;
        }
        read
    }
}

/// Slow store answers before the code is sent outlast the lease (a valid
/// config: a 13 s TTL), and another process handling the same code (a
/// double submit) takes the lapsed lease, redeems the code and saves. The
/// renewal then finds the lease may have lapsed and reads the store again:
/// the record carries this code's fingerprint, and is adopted. The renewal
/// used to take a new lease and send the code a second time (refused, and
/// the other process's link revoked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lapsed_before_the_code_is_sent_is_checked_against_the_store() {
    let h = Harness::with(freshtoken_emulator::Options::default(), |b| {
        b.timeout_ms(1_000)
            .retry(freshtoken::RetryPolicy {
                max_attempts: 1,
                initial_backoff_ms: 0,
                max_backoff_ms: 0,
                budget_ms: 0,
            })
            .store_timeout_ms(10_000)
            .lease_ttl_ms(13_000)
    });
    let shared = Arc::new(MemoryStore::with_leases(h.clock.clone()));
    let hooks = SlowAnswers {
        clock: h.clock.clone(),
        slow_acquire: AtomicBool::new(true),
        slow_read: AtomicBool::new(true),
        reading: tokio::sync::Notify::new(),
        go_on: tokio::sync::Notify::new(),
    };
    let store = ForwardingStore::fleet(shared.clone(), hooks);
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    let exchanging = spawn_exchange(&h.client, &code, &verifier, store.clone());
    store.hooks.reading.notified().await;
    let theirs = ForwardingStore::fleet(shared.clone(), Plain);
    let elsewhere = h
        .other_process()
        .exchange_code(&code, &verifier, REDIRECT, "u1", theirs)
        .await
        .expect("the other process links");
    store.hooks.go_on.notify_one();
    let ours = exchanging
        .await
        .unwrap()
        .expect("adopts the other's record");
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
    assert_eq!(
        ours.access_token().await.unwrap(),
        elsewhere.access_token().await.unwrap()
    );
    elsewhere.refresh().await.expect("the link lives");
}

/// A step of the wall clock (an NTP step, a resumed VM) while the code is
/// at the server does not end the exchange's hold on the lease: a refresh
/// of the same state that ends meanwhile leaves it held. It is judged by
/// the monotonic clock; by the wall clock it used to end early, and the
/// refresh gave the lease back under the exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_step_does_not_end_the_exchanges_hold_on_the_lease() {
    let h = Harness::new();
    let clock = Arc::new(common::OffsetClock::default());
    let config = freshtoken::Config::builder(h.emu.token_endpoint(), CLIENT_ID)
        .client_secret(common::CLIENT_SECRET)
        .build()
        .unwrap();
    let client = Harness::client_on(&h.emu, config, clock.clone());
    let store_clock = Arc::new(common::OffsetClock::default());
    let shared = Arc::new(MemoryStore::with_leases(store_clock));
    let store = ForwardingStore::fleet(shared.clone(), Plain);
    let session = client.session("u1", store.clone()).unwrap();
    let rt = h.emu.seed(CLIENT_ID, "openid offline_access").refresh_token;
    common::seed_refresh_token(&session, &rt).await;

    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let (code, verifier) = approved_for(&client, &["openid", "offline_access"]).await;
    let exchanging = spawn_exchange(&client, &code, &verifier, store.clone());
    tokio::task::block_in_place(|| h.emu.wait_held(1));
    assert!(
        !lease_is_free(&shared).await,
        "the exchange holds the lease"
    );

    clock.advance(70_000); // the wall clock steps forward past the TTL
    session
        .access_token()
        .await
        .expect("a refresh of the old link");
    assert!(
        !lease_is_free(&shared).await,
        "still held while the code is out"
    );
    h.emu.release_held();
    exchanging.await.unwrap().expect("linked");
    assert!(lease_is_free(&shared).await);
}

/// An `EncryptedStore` holds a record no key given opens (a key removed
/// too early); a re-link replaces it, and when its first save fails the
/// kept re-link is saved by the next call. Each later save used to read
/// the stored record first, fail to open it, and give up: never saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_relink_over_a_record_no_key_opens_is_saved_by_the_next_call() {
    use freshtoken::{EncryptedStore, EncryptionKey, EncryptionKeys};
    let h = Harness::new();
    let shared = Arc::new(MemoryStore::new());
    let old_key = EncryptionKeys::new(EncryptionKey::new("k1", &[1u8; 32]).unwrap());
    let record = Record {
        updated_at_ms: 1,
        ..Record::default()
    };
    let sealed = EncryptedStore::new(Arc::new(MemoryStore::new()), old_key)
        .seal("u1", &record.encode())
        .await
        .unwrap();
    shared.save("u1", &sealed).await.unwrap();

    let hooks = Blips::default();
    hooks.fail_save.store(true, Ordering::SeqCst);
    let inner = ForwardingStore::versioned_only(shared.clone(), hooks);
    let key = EncryptionKeys::new(EncryptionKey::new("k2", &[2u8; 32]).unwrap());
    let store: Arc<dyn TokenStore> = Arc::new(EncryptedStore::new(inner, key));
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    let first = h
        .client
        .exchange_code(&code, &verifier, REDIRECT, "u1", store.clone())
        .await;
    assert_eq!(first.map(drop).unwrap_err().code(), ErrorCode::Storage);
    let session = h.client.session("u1", store.clone()).unwrap();
    session
        .access_token()
        .await
        .expect("the kept re-link is saved and serves its token");
    assert!(!session.status().await.unwrap().unpersisted);
}

/// `u1` linked by another process sharing `shared` (compare-and-swap, no
/// lease): that process's session.
async fn linked_elsewhere(h: &Harness, shared: &Arc<MemoryStore>) -> UserSession {
    let other = h.other_process();
    let (code, verifier) = approved_for(&other, &["openid", "offline_access"]).await;
    let theirs = ForwardingStore::versioned_only(shared.clone(), Plain);
    other
        .exchange_code(&code, &verifier, REDIRECT, "u1", theirs)
        .await
        .expect("linked elsewhere")
}

/// A re-link kept unsaved (its save failed), then the user signs out in
/// another process, and the next call's read of the store fails once (a
/// blip): the stored version moved since the exchange read it, so the
/// kept re-link is not saved over what could not be read (the call gets
/// `storage`), and the call after finds the sign-out, which wins. A
/// readable version used to be enough to save over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_relink_is_not_saved_over_a_later_sign_out_it_could_not_read() {
    let h = Harness::new();
    let shared = Arc::new(MemoryStore::new());
    let elsewhere = linked_elsewhere(&h, &shared).await;
    let store = ForwardingStore::versioned_only(shared.clone(), Blips::default());
    store.hooks.fail_save.store(true, Ordering::SeqCst);
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    let first = spawn_exchange(&h.client, &code, &verifier, store.clone());
    let error = first.await.unwrap().map(drop).unwrap_err();
    assert_eq!(error.code(), ErrorCode::Storage, "kept: {error}");
    elsewhere.revoke().await.expect("the user signs out");

    store.hooks.fail_read.store(true, Ordering::SeqCst);
    let session = h.client.session("u1", store.clone()).unwrap();
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Storage, "{error}");
    assert!(stored(&shared).reauth.is_some(), "the sign-out stands");
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::ReauthorizationRequired, "{error}");
    assert!(stored(&shared).reauth.is_some(), "the sign-out stands");
}

/// The exchange's read before sending fails once (a blip; the version read
/// after it works), and the user signs out in another process while the
/// code is at the server: the revocation is stored under another version
/// than the one the exchange read, so it is a sign-out made since, and it
/// wins. Not knowing what it read, the exchange used to save over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_while_the_code_is_out_wins_after_a_first_read_blip() {
    let h = Harness::new();
    let shared = Arc::new(MemoryStore::new());
    let elsewhere = linked_elsewhere(&h, &shared).await;
    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let store = ForwardingStore::versioned_only(shared.clone(), Blips::default());
    store.hooks.fail_read.store(true, Ordering::SeqCst);
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    let relinking = spawn_exchange(&h.client, &code, &verifier, store.clone());
    tokio::task::block_in_place(|| h.emu.wait_held(1));
    elsewhere.revoke().await.expect("the user signs out");
    h.emu.release_held();
    let error = relinking.await.unwrap().map(drop).unwrap_err();
    assert_eq!(error.code(), ErrorCode::ReauthorizationRequired, "{error}");
    let record = stored(&shared);
    assert!(record.reauth.is_some() && record.refresh_token.is_none());
}
