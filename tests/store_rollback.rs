//! A store that goes back to an older record (a restored backup or
//! snapshot, a replica promoted without the last write): the session that
//! rotated the token keeps its newer record, saves it over the old one and
//! never sends the spent refresh token (whose reuse makes the provider
//! revoke the whole grant).

mod common;

use common::{ForwardingStore, Harness, StoreHooks};
use freshtoken::{MemoryStore, ReauthReason, Record, TokenStore};
use freshtoken_emulator::TokenState;
use std::sync::Arc;

/// Forwards every call: the store holds records as text and offers
/// compare-and-swap, as a database does.
struct Forward;

impl StoreHooks for Forward {}

/// Longer than the process remembers any rotation (`refresh_claims`), and
/// than an access token lives: the next call must refresh.
const LATER_MS: u64 = 3_600_000;

fn refresh_token(store: &dyn TokenStore, key: &str) -> String {
    let text = futures_util::FutureExt::now_or_never(store.load(key))
        .unwrap()
        .unwrap()
        .expect("a stored record");
    let record = Record::decode(&text).unwrap();
    record.refresh_token.unwrap().expose().to_owned()
}

/// Seeds, refreshes once, puts the seeded record back into `inner` (the
/// memory behind `store`), and checks that the next refresh sends the
/// rotated token.
async fn rolled_back_after_a_rotation(
    h: &Harness,
    store: Arc<dyn TokenStore>,
    inner: &MemoryStore,
) {
    let family = h.emu.seed(common::CLIENT_ID, "openid offline_access");
    let session = h.client.session("u1", store.clone()).unwrap();
    common::seed_refresh_token(&session, &family.refresh_token).await;
    let seeded = futures_util::FutureExt::now_or_never(store.load("u1"))
        .unwrap()
        .unwrap()
        .unwrap();
    let first = session.access_token().await.unwrap();
    let rotated = refresh_token(&*store, "u1");
    assert_ne!(rotated, family.refresh_token);

    futures_util::FutureExt::now_or_never(inner.save("u1", &seeded))
        .unwrap()
        .unwrap();
    assert_eq!(refresh_token(&*store, "u1"), family.refresh_token);
    h.clock.advance(LATER_MS);
    let before = h.refresh_requests();
    let token = session
        .access_token()
        .await
        .expect("the rotated token refreshes");

    assert_ne!(token, first);
    assert_eq!(
        h.refresh_requests() - before,
        1,
        "one refresh, of the rotated token"
    );
    assert_eq!(
        h.emu.counters().reuse_detected,
        0,
        "the spent token was not sent"
    );
    let stored = refresh_token(&*store, "u1");
    assert!(
        stored != family.refresh_token && stored != rotated,
        "the renewal is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_rolled_back_to_the_spent_token_gets_the_rotated_record_again() {
    let h = Harness::new();
    rolled_back_after_a_rotation(&h, h.store.clone(), &h.store.inner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compare_and_swap_store_rolled_back_is_saved_over_at_its_version() {
    let h = Harness::new();
    let inner = Arc::new(MemoryStore::new());
    let store = ForwardingStore::versioned_only(inner.clone(), Forward);
    rolled_back_after_a_rotation(&h, store, &inner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_holding_a_token_never_spent_here_is_adopted() {
    // Another process's renewal is not a rollback: the stored record holds
    // a token this session never sent.
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    session.access_token().await.unwrap();
    let other = h.emu.seed(common::CLIENT_ID, "openid offline_access");
    let theirs = h.other_process().session("u1", h.store.clone()).unwrap();
    common::seed_refresh_token(&theirs, &other.refresh_token).await;
    h.clock.advance(LATER_MS);
    let before = h.refresh_requests();
    session.access_token().await.unwrap();
    assert_eq!(h.refresh_requests() - before, 1);
    let sent = h.emu.refresh_token_state(&other.refresh_token);
    assert_eq!(
        sent,
        TokenState::Consumed,
        "their token was the one refreshed"
    );
    let stored = h.store.record("u1").unwrap();
    let stored = stored.refresh_token.unwrap().expose().to_owned();
    assert_eq!(h.emu.refresh_token_state(&stored), TokenState::Active);
    assert_eq!(h.emu.counters().reuse_detected, 0);
}

/// A compare-and-swap store where another process, whose lease lapsed,
/// writes `theirs` just before this process saves its rotated record.
#[derive(Default)]
struct WrittenBeforeTheRotation {
    theirs: std::sync::Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl StoreHooks for WrittenBeforeTheRotation {
    async fn save_versioned(
        &self,
        call: common::SaveVersioned<'_>,
    ) -> Result<freshtoken::CasOutcome, freshtoken::StoreError> {
        let rotated = Record::decode(call.record).is_ok_and(|r| !r.in_doubt);
        let theirs = self.theirs.lock().unwrap().take_if(|_| rotated);
        if let Some(theirs) = theirs {
            call.inner.save(call.key, &theirs).await?;
        }
        call.forward().await
    }
}

/// The seeded record of `family` marked as another process leaves it:
/// in doubt (its write-ahead) or dead.
fn their_record(refresh_token: &str, reauth: Option<ReauthReason>) -> String {
    Record {
        refresh_token: Some(refresh_token.to_owned().into()),
        reauth,
        in_doubt: reauth.is_none(),
        updated_at_ms: 1,
        ..Record::default()
    }
    .encode()
}

/// A seeded session on a store where another process writes the seeded
/// record as it leaves it ([`their_record`]) just before the rotation's save.
async fn written_before_the_rotation(
    h: &Harness,
    reauth: Option<ReauthReason>,
) -> (
    Arc<ForwardingStore<WrittenBeforeTheRotation>>,
    freshtoken::UserSession,
    freshtoken_emulator::Seeded,
) {
    let hooks = WrittenBeforeTheRotation::default();
    let store = ForwardingStore::versioned_only(Arc::new(MemoryStore::new()), hooks);
    let family = h.emu.seed(common::CLIENT_ID, "openid offline_access");
    let session = h.client.session("u1", store.clone()).unwrap();
    common::seed_refresh_token(&session, &family.refresh_token).await;
    *store.hooks.theirs.lock().unwrap() = Some(their_record(&family.refresh_token, reauth));
    (store, session, family)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_saved_over_a_record_another_process_built_from_the_spent_token() {
    // Its lease lapsed: the other process wrote ahead (or marked the
    // rotation lost) from the record it read before this rotation. The
    // rotated refresh token exists only here; dropped as a conflict, the
    // session would die with a live token.
    for reauth in [None, Some(ReauthReason::LostRotation)] {
        let h = Harness::new();
        let (store, session, family) = written_before_the_rotation(&h, reauth).await;

        session.access_token().await.expect("the rotation is saved");
        let stored = refresh_token(&*store, "u1");
        assert_ne!(stored, family.refresh_token, "{reauth:?}");
        assert_eq!(h.emu.refresh_token_state(&stored), TokenState::Active);
        assert!(store.hooks.theirs.lock().unwrap().is_none(), "they wrote");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_another_process_saved_is_never_saved_over() {
    let h = Harness::new();
    let (store, session, family) =
        written_before_the_rotation(&h, Some(ReauthReason::Revoked)).await;
    let revoked = their_record(&family.refresh_token, Some(ReauthReason::Revoked));

    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code(), freshtoken::ErrorCode::Conflict, "{error}");
    let stored = futures_util::FutureExt::now_or_never(store.inner.load("u1"));
    assert_eq!(stored.unwrap().unwrap(), Some(revoked));
}
