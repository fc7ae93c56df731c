//! A re-link (a code exchange replacing a session's record) racing other
//! processes of a fleet. Its tokens are issued already and the code is
//! spent: they are never dropped, and never overwritten by a save of the
//! old link. With a store that offers the fleet lease, the re-link is
//! made and saved under the lease, so another process's refresh of the old
//! link lands before it, not over it; a lease not taken in time sends
//! nothing. Compare-and-swap saves that keep conflicting leave the tokens
//! in memory (`storage`) for the next call to save.

mod common;

use common::authorize::{approved_for, REDIRECT};
use common::warnings::{capture_warnings, warning_lines};
use common::{
    take_failure, Acquire, ForwardingStore, Harness, Save, SaveVersioned, StoreHooks, CLIENT_ID,
};
use freshtoken::{
    CasOutcome, ErrorCode, EventKeys, MemoryStore, Record, StoreError, TokenStore, UserSession,
};
use freshtoken_emulator::{Options, TokenState};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The refresh token a store's record for `key` holds.
fn stored_refresh_token(store: &MemoryStore, key: &str) -> String {
    let record = Record::decode(&store.get(key).expect("a record is stored")).unwrap();
    record
        .refresh_token
        .expect("it holds one")
        .expose()
        .to_owned()
}

struct Plain;
impl StoreHooks for Plain {}

/// Hooks of the other process's store: its save of a rotated record (not
/// of its write-ahead marker) waits for `release` once armed; the record
/// it saves is kept in `rotated`.
#[derive(Default)]
struct HoldsRotatedSave {
    armed: AtomicBool,
    held: Notify,
    release: Notify,
    rotated: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl StoreHooks for HoldsRotatedSave {
    async fn save(&self, call: Save<'_>) -> Result<(), StoreError> {
        if !call.record.contains("\"in_doubt\":true") && self.armed.swap(false, Ordering::SeqCst) {
            let record = Record::decode(call.record).unwrap();
            let rotated = record.refresh_token.unwrap().expose().to_owned();
            *self.rotated.lock().unwrap() = Some(rotated);
            self.held.notify_one();
            self.release.notified().await;
        }
        call.forward().await
    }
}

/// Another process refreshing the old link of `u1` in `shared` (a store
/// with leases and no compare-and-swap): it holds the lease, has sent the
/// old refresh token, and its save of the rotated record is held. Returns
/// its store, its refresh and the old link's refresh token.
async fn old_link_refreshing(
    h: &Harness,
    shared: &Arc<MemoryStore>,
) -> (
    Arc<ForwardingStore<HoldsRotatedSave>>,
    JoinHandle<Result<(), freshtoken::Error>>,
    String,
) {
    let store = ForwardingStore::lease_only(shared.clone(), HoldsRotatedSave::default());
    let session = h.other_process().session("u1", store.clone()).unwrap();
    let old = h.emu.seed(CLIENT_ID, "openid offline_access").refresh_token;
    common::seed_refresh_token(&session, &old).await;
    store.hooks.armed.store(true, Ordering::SeqCst);
    let refreshing = tokio::spawn(async move { session.refresh().await.map(drop) });
    store.hooks.held.notified().await;
    assert_eq!(h.refresh_requests(), 1, "the old link was refreshed");
    assert!(
        !shared.acquire("u1", "probe", 1_000).await.unwrap(),
        "the refreshing process holds the lease"
    );
    (store, refreshing, old)
}

/// Lets the other process's held save land, and checks its refresh ended
/// well. Returns the refresh token it rotated to.
async fn old_link_refreshed(
    store: &ForwardingStore<HoldsRotatedSave>,
    refreshing: JoinHandle<Result<(), freshtoken::Error>>,
) -> String {
    store.hooks.release.notify_one();
    refreshing.await.unwrap().expect("the old link's refresh");
    let rotated = store.hooks.rotated.lock().unwrap().clone();
    rotated.expect("its rotated record was saved")
}

/// Checks that `shared` holds the re-link for `u1` (not the old link, nor
/// the other process's rotation of it), live at the server, and that a
/// process reading the store gets the access token `relinked` holds,
/// sending nothing; and that no lease is left held.
async fn the_store_holds_the_relink(
    h: &Harness,
    shared: &Arc<MemoryStore>,
    relinked: &UserSession,
    old: &str,
    rotated: &str,
) {
    let stored = stored_refresh_token(shared, "u1");
    assert_ne!(stored, old, "the old link was put back");
    assert_ne!(
        stored, rotated,
        "the old link's rotation was saved over the re-link"
    );
    assert_eq!(h.emu.refresh_token_state(&stored), TokenState::Active);
    assert!(!relinked.status().await.unwrap().unpersisted);

    let elsewhere = h.other_process();
    let reader = elsewhere
        .session("u1", ForwardingStore::lease_only(shared.clone(), Plain))
        .unwrap();
    assert_eq!(
        reader.access_token().await.unwrap(),
        relinked.access_token().await.unwrap(),
        "another process reads the re-link"
    );
    assert_eq!(h.refresh_requests(), 1, "nothing was refreshed again");
    assert_eq!(h.grant_requests("authorization_code"), 1);
    assert!(
        shared.acquire("u1", "probe", 1_000).await.unwrap(),
        "the lease was given back"
    );
}

/// Hooks of the re-linking process's store: its first `hold` lease
/// acquires wait for `release` before they reach the store.
#[derive(Default)]
struct HoldsAcquire {
    hold: AtomicU32,
    held: Notify,
    release: Notify,
}

#[async_trait::async_trait]
impl StoreHooks for HoldsAcquire {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        if take_failure(&self.hold) {
            self.held.notify_one();
            self.release.notified().await;
        }
        call.forward().await
    }
}

/// F2: process B refreshes the old link under the lease of a store without
/// compare-and-swap while this process exchanges a code for the same key
/// (the user re-links). The re-link is saved under the lease, once B's
/// rotated record has landed: it replaces that one. It used to be saved
/// at once, and B's save then landed over it, the code spent and the new
/// refresh token held only in this process's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relink_waits_for_the_lease_and_lands_after_a_refresh_of_the_old_link() {
    let h = Harness::new();
    let shared = Arc::new(MemoryStore::with_leases(h.clock.clone()));
    let (b_store, refreshing, old) = old_link_refreshing(&h, &shared).await;

    let store = ForwardingStore::lease_only(shared.clone(), HoldsAcquire::default());
    store.hooks.hold.store(1, Ordering::SeqCst);
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    let (client, a_store) = (h.client.clone(), store.clone());
    let mut relinking = tokio::spawn(async move {
        client
            .exchange_code(&code, &verifier, REDIRECT, "u1", a_store)
            .await
    });
    // The re-link asks for the lease (its acquire is held until B is done),
    // or, unfixed, ends without asking.
    let ended_unleased = tokio::select! {
        () = store.hooks.held.notified() => None,
        relinked = &mut relinking => Some(relinked.unwrap()),
    };
    let rotated = old_link_refreshed(&b_store, refreshing).await;
    store.hooks.release.notify_one();
    let relinked = match ended_unleased {
        Some(relinked) => relinked,
        None => relinking.await.unwrap(),
    };
    let relinked = relinked.expect("the re-link is saved");

    the_store_holds_the_relink(&h, &shared, &relinked, &old, &rotated).await;
}

/// F2, the lease not taken within the wait: the exchange takes the lease
/// before it sends its code, so nothing is sent (`conflict`, the code
/// still good) and nothing is held; the old link's refresh lands
/// meanwhile, and the callback repeated (the same code) links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relink_that_cannot_take_the_lease_in_time_sends_nothing_and_a_repeat_links() {
    let h = Harness::with(Options::default(), |b| b.lease_wait_ms(1_000));
    let shared = Arc::new(MemoryStore::with_leases(h.clock.clone()));
    let (b_store, refreshing, old) = old_link_refreshing(&h, &shared).await;

    let store = ForwardingStore::lease_only(shared.clone(), Plain);
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    let exchange = || {
        h.client
            .exchange_code(&code, &verifier, REDIRECT, "u1", store.clone())
    };
    let error = exchange().await.map(drop).unwrap_err();
    assert_eq!(error.code(), ErrorCode::Conflict, "{error}");
    assert!(
        error.to_string().contains("refresh lease") && error.to_string().contains("not sent"),
        "says why, and that the code is still good: {error}"
    );
    assert_eq!(
        h.grant_requests("authorization_code"),
        0,
        "nothing was sent"
    );
    let session = h.client.session("u1", store.clone()).unwrap();
    assert!(!session.holds_unsaved(), "nothing was issued to hold");
    assert_eq!(
        stored_refresh_token(&shared, "u1"),
        old,
        "nothing was saved under the other process's lease"
    );

    let rotated = old_link_refreshed(&b_store, refreshing).await;
    let relinked = exchange().await.expect("the repeat links");

    the_store_holds_the_relink(&h, &shared, &relinked, &old, &rotated).await;
}

/// Hooks of a compare-and-swap store where another process saves the key
/// just before each of this process's next `interleave` saves, so each of
/// them conflicts.
#[derive(Default)]
struct MovesUnder {
    interleave: AtomicU32,
    saves: AtomicU32,
}

/// What the other process saves: a record of its own.
const THEIRS: &str =
    r#"{"schema":"freshtoken.record/1","refresh_token":"rt-theirs-0123456789","updated_at":1}"#;

#[async_trait::async_trait]
impl StoreHooks for MovesUnder {
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        if take_failure(&self.interleave) {
            call.inner.save(call.key, THEIRS).await?;
        }
        call.forward().await
    }
}

/// A code exchange for `u1` whose next `interleave` saves conflict.
async fn exchange_meeting(
    h: &Harness,
    interleave: u32,
) -> (
    Arc<ForwardingStore<MovesUnder>>,
    impl Fn() -> futures_util::future::BoxFuture<'static, Result<UserSession, freshtoken::Error>>,
) {
    let store = ForwardingStore::versioned_only(MemoryStore::new(), MovesUnder::default());
    store.hooks.interleave.store(interleave, Ordering::SeqCst);
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    let (client, on) = (h.client.clone(), store.clone());
    let exchange = move || {
        let (client, on) = (client.clone(), on.clone());
        let (code, verifier) = (code.clone(), verifier.clone());
        let run = async move {
            client
                .exchange_code(&code, &verifier, REDIRECT, "u1", on)
                .await
        };
        Box::pin(run) as futures_util::future::BoxFuture<'static, _>
    };
    (store, exchange)
}

/// Checks that `store` holds a re-link live at the server (not the other
/// process's record) that refreshes.
async fn saved_over_theirs(h: &Harness, store: &Arc<ForwardingStore<MovesUnder>>) {
    let stored = stored_refresh_token(&store.inner, "u1");
    assert_ne!(stored, "rt-theirs-0123456789");
    assert_eq!(h.emu.refresh_token_state(&stored), TokenState::Active);
    assert_eq!(h.grant_requests("authorization_code"), 1);
    let session = h.client.session("u1", store.clone()).unwrap();
    session
        .refresh()
        .await
        .expect("the saved re-link refreshes");
}

/// F3: an exchange whose three compare-and-swap saves all conflict keeps
/// its tokens in memory, unsaved (`storage`, not `conflict`): the next
/// `save_unsaved` saves them over the other process's record. They used to
/// be dropped by the third conflict's re-read, the code spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relink_whose_saves_keep_conflicting_keeps_its_tokens_for_save_unsaved() {
    let h = Harness::new();
    let (store, exchange) = exchange_meeting(&h, 3).await;
    let error = exchange().await.map(drop).unwrap_err();
    assert_eq!(error.code(), ErrorCode::Storage, "{error}");
    assert_eq!(store.hooks.saves.load(Ordering::SeqCst), 3, "bounded");
    let session = h.client.session("u1", store.clone()).unwrap();
    assert!(session.holds_unsaved(), "the issued tokens are kept");
    assert_eq!(
        stored_refresh_token(&store.inner, "u1"),
        "rt-theirs-0123456789"
    );

    h.client.save_unsaved().await.expect("saved now");
    assert!(!session.holds_unsaved());
    saved_over_theirs(&h, &store).await;
}

/// F3, then the callback repeated: the repeat saves the kept tokens, and a
/// conflict of that save too is saved over, never dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_saves_the_kept_relink_over_one_more_conflicting_save() {
    let h = Harness::new();
    let (store, exchange) = exchange_meeting(&h, 4).await;
    let error = exchange().await.map(drop).unwrap_err();
    assert_eq!(error.code(), ErrorCode::Storage, "{error}");

    let relinked = exchange().await.expect("the repeat saves it");
    assert_eq!(
        store.hooks.saves.load(Ordering::SeqCst),
        5,
        "three saves, then the repeat's conflict and its save"
    );
    assert!(!relinked.holds_unsaved());
    saved_over_theirs(&h, &store).await;
}

/// A kept re-link met by an ordinary call (`access_token`, not a repeat or
/// `save_unsaved`) whose save conflicts once more: saved over the other
/// process's record, as the repeat saves it. The flight's plain save read
/// the conflict as "another process moved on" and dropped the tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_call_saves_the_kept_relink_over_one_more_conflicting_save() {
    let h = Harness::new();
    let (store, exchange) = exchange_meeting(&h, 4).await;
    let error = exchange().await.map(drop).unwrap_err();
    assert_eq!(error.code(), ErrorCode::Storage, "{error}");

    let session = h.client.session("u1", store.clone()).unwrap();
    assert!(session.holds_unsaved());
    session
        .access_token()
        .await
        .expect("the next call saves it and serves its token");
    assert_eq!(
        store.hooks.saves.load(Ordering::SeqCst),
        5,
        "three saves, then the call's conflict and its save"
    );
    assert!(!session.holds_unsaved());
    assert_eq!(h.refresh_requests(), 0, "the re-link's own token served");
    saved_over_theirs(&h, &store).await;
}

/// Hooks of a leasing store whose saves of a settled (not in-doubt) record
/// fail once `fail_settled` is set; after the first such failure, another
/// process holds the lease (every acquire is refused).
#[derive(Default)]
struct LapsesWhileStranded {
    fail_settled: AtomicBool,
    failed: AtomicBool,
    refused: Notify,
}

#[async_trait::async_trait]
impl StoreHooks for LapsesWhileStranded {
    async fn save(&self, call: Save<'_>) -> Result<(), StoreError> {
        let settled = !call.record.contains("\"in_doubt\":true");
        if settled && self.fail_settled.load(Ordering::SeqCst) {
            self.failed.store(true, Ordering::SeqCst);
            return Err(StoreError("disk full".into()));
        }
        call.forward().await
    }

    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        if self.failed.load(Ordering::SeqCst) {
            self.refused.notify_one();
            return Ok(false);
        }
        call.forward().await
    }
}

/// With `EventKeys::Hidden`, the warning that the lease guarding an unsaved
/// rotation was lost to another process names no session key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lost_lease_warning_hides_the_key_when_events_do() {
    capture_warnings();
    let person = "person-relink@example.com";
    let h = Harness::with(Options::default(), |b| b.event_keys(EventKeys::Hidden));
    let shared = Arc::new(MemoryStore::with_leases(h.clock.clone()));
    let store = ForwardingStore::lease_only(shared, LapsesWhileStranded::default());
    let session = h.client.session(person, store.clone()).unwrap();
    common::seed_family(&h.emu, &session).await;
    store.hooks.fail_settled.store(true, Ordering::SeqCst);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Storage, "{error}");

    // The background save's renewal finds the lease held elsewhere.
    store.hooks.refused.notified().await;
    let lost = "the refresh lease lapsed before the rotated record could be saved";
    tokio::time::timeout(Duration::from_secs(30), async {
        while !warning_lines().iter().any(|l| l.contains(lost)) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the warning is logged");
    let lines = warning_lines();
    assert!(
        !lines.iter().any(|l| l.contains(person)),
        "a log line shows a session key the client hides: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(lost) && l.contains("session (key hidden): ")),
        "{lines:?}"
    );
    assert!(session.holds_unsaved(), "the rotation is kept in memory");
}

/// Hooks of a compare-and-swap store where, just before this process's
/// first save, another process signs the key's session out (its
/// `revoke()`, through a store of its own on the same records).
#[derive(Default)]
struct SignsOutFirst {
    elsewhere: Mutex<Option<UserSession>>,
}

#[async_trait::async_trait]
impl StoreHooks for SignsOutFirst {
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        let elsewhere = self.elsewhere.lock().unwrap().take();
        if let Some(session) = elsewhere {
            session
                .revoke()
                .await
                .expect("the user signs out elsewhere");
        }
        call.forward().await
    }
}

/// A sign-out in another process landing between a re-link's version read
/// and its save (a store with compare-and-swap, no lease): the exchange
/// read a live record before sending its code, so the revocation its save
/// then conflicts with is a sign-out made since. It wins, as it does over
/// a re-link kept unsaved: the re-link is dropped and its tokens revoked.
/// Its save used to be made over the sign-out after the conflict, bringing
/// the session back. (One landing while the code is at the server: see
/// tests/code_exchange_lease.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_landing_just_before_the_relinks_save_is_not_saved_over() {
    let h = Harness::new();
    let shared = Arc::new(MemoryStore::new());
    let other = h.other_process();
    let b_store = ForwardingStore::versioned_only(shared.clone(), Plain);
    let (code, verifier) = approved_for(&other, &["openid", "offline_access"]).await;
    let elsewhere = other
        .exchange_code(&code, &verifier, REDIRECT, "u1", b_store)
        .await
        .expect("linked elsewhere");

    let store = ForwardingStore::versioned_only(shared.clone(), SignsOutFirst::default());
    *store.hooks.elsewhere.lock().unwrap() = Some(elsewhere);
    let (code, verifier) = approved_for(&h.client, &["openid", "offline_access"]).await;
    let relinked = h
        .client
        .exchange_code(&code, &verifier, REDIRECT, "u1", store.clone())
        .await;
    let error = relinked.map(drop).unwrap_err();
    assert_eq!(error.code(), ErrorCode::ReauthorizationRequired, "{error}");
    let stored = Record::decode(&shared.get("u1").unwrap()).unwrap();
    assert!(stored.reauth.is_some(), "the sign-out stands");
    assert!(stored.refresh_token.is_none());
    let session = h.client.session("u1", store).unwrap();
    assert!(!session.holds_unsaved(), "the re-link was dropped");
    assert_eq!(h.grant_requests("authorization_code"), 2);
    assert_eq!(h.emu.counters().tokens_revoked, 2, "one family per link");
}
