//! Another process's save landing between a replacement's version read and
//! its compare-and-swap save: a code exchange's issued tokens are saved over
//! it (they exist nowhere else), and callers who joined a seed's save go on
//! with the stored record instead of taking the seed's `conflict`.

mod common;

use common::authorize::{approved_for, REDIRECT};
use common::{
    take_failure, ForwardingStore, Harness, LoadVersioned, SaveVersioned, StoreHooks, CLIENT_ID,
};
use freshtoken::{CasOutcome, Clock, MemoryStore, Record, Seed, StoreError, TokenStore};
use freshtoken_emulator::TokenState;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::Notify;

/// Hooks of a compare-and-swap store where another process writes the key
/// just before each of the next `interleave` saves of this process (so each
/// of them conflicts); `hold` keeps the next save waiting until `release`.
#[derive(Default)]
struct Interleaved {
    /// What the other process writes.
    theirs: std::sync::Mutex<String>,
    interleave: AtomicU32,
    /// Saves this process attempted.
    saves: AtomicU32,
    hold: AtomicU32,
    held: Notify,
    release: Notify,
    /// Version reads to fail after the other process's next write.
    then_fail_reads: AtomicU32,
    fail_reads: AtomicU32,
    /// Saves of this process to fail (a reset connection), unwritten.
    fail_saves: AtomicU32,
}

#[async_trait::async_trait]
impl StoreHooks for Interleaved {
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        if take_failure(&self.hold) {
            self.held.notify_one();
            self.release.notified().await;
        }
        if take_failure(&self.fail_saves) {
            return Err(StoreError("connection reset by peer".into()));
        }
        if take_failure(&self.interleave) {
            let theirs = self.theirs.lock().unwrap().clone();
            call.inner.save(call.key, &theirs).await?;
            let reads = self.then_fail_reads.swap(0, Ordering::SeqCst);
            self.fail_reads.store(reads, Ordering::SeqCst);
        }
        call.forward().await
    }

    async fn load_versioned(
        &self,
        call: LoadVersioned<'_>,
    ) -> Result<Option<freshtoken::Versioned>, StoreError> {
        if take_failure(&self.fail_reads) {
            return Err(StoreError("read timed out".into()));
        }
        call.forward().await
    }
}

/// A compare-and-swap store with [`Interleaved`] hooks.
fn interleaved() -> Arc<ForwardingStore<Interleaved>> {
    ForwardingStore::versioned_only(MemoryStore::new(), Interleaved::default())
}

/// A record another process saved: a refresh token of its own, and, when
/// given, a fresh access token.
fn their_record(refresh_token: &str, access_token: Option<&str>, now_ms: u64) -> String {
    let access = access_token.map_or(String::new(), |at| {
        format!(
            r#","access_token":"{at}","issued_at":{now_ms},"expires_at":{}"#,
            now_ms + 900_000
        )
    });
    format!(
        r#"{{"schema":"freshtoken.record/1","refresh_token":"{refresh_token}","updated_at":{now_ms}{access}}}"#
    )
}

/// A code exchange for `u1` on a store where another process writes
/// before each of this one's next `interleave` saves, and the version reads
/// after its first write fail `fail_reads` times.
async fn exchange_meeting(
    h: &Harness,
    interleave: u32,
    fail_reads: u32,
) -> (
    Arc<ForwardingStore<Interleaved>>,
    Result<freshtoken::UserSession, freshtoken::Error>,
) {
    let store = interleaved();
    *store.hooks.theirs.lock().unwrap() = their_record("rt-theirs", None, h.clock.now_ms());
    store.hooks.interleave.store(interleave, Ordering::SeqCst);
    store
        .hooks
        .then_fail_reads
        .store(fail_reads, Ordering::SeqCst);
    let (code, verifier) = approved_for(&h.client, &["openid", "accounts"]).await;
    let exchanged = h
        .client
        .exchange_code(&code, &verifier, REDIRECT, "u1", store.clone())
        .await;
    (store, exchanged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_exchange_saves_its_tokens_over_a_save_that_landed_after_its_version_read() {
    let h = Harness::new();
    let (store, exchanged) = exchange_meeting(&h, 1, 0).await;
    let session = exchanged.expect("the re-link is saved over the other process's save");

    assert_eq!(
        store.hooks.saves.load(Ordering::SeqCst),
        2,
        "one conflict, one save"
    );
    assert_eq!(h.grant_requests("authorization_code"), 1);
    let stored = Record::decode(&store.inner.get("u1").unwrap()).unwrap();
    let rt = stored.refresh_token.unwrap().expose().to_owned();
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    assert!(!session.status().await.unwrap().unpersisted);
    session.refresh().await.expect("the saved link refreshes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_exchange_the_store_keeps_moving_under_keeps_its_tokens_unsaved_after_three_saves() {
    let h = Harness::new();
    let (store, exchanged) = exchange_meeting(&h, u32::MAX, 0).await;
    let error = exchanged.unwrap_err();

    // Not a conflict that drops the record: the code is spent, and the
    // issued tokens exist nowhere else. A repeat or save_unsaved saves them.
    assert_eq!(error.code().as_str(), "storage", "{error}");
    assert_eq!(store.hooks.saves.load(Ordering::SeqCst), 3, "bounded");
    assert!(h
        .client
        .session("u1", store.clone())
        .unwrap()
        .holds_unsaved());
    assert_eq!(
        h.grant_requests("authorization_code"),
        1,
        "the code was sent once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_exchange_whose_version_read_fails_after_the_conflict_is_saved_by_the_next_call() {
    let h = Harness::new();
    // The conflict's own check, the sign-out check before the save over it
    // and the version read after it all fail.
    let (store, exchanged) = exchange_meeting(&h, 1, 3).await;
    let error = exchanged.unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    let session = h.client.session("u1", store.clone()).unwrap();
    assert!(
        session.holds_unsaved(),
        "the issued tokens are kept in memory"
    );

    // The next call saves them over the other process's record, reading the
    // version first (not the stale one, which would conflict and drop them).
    assert!(!session.status().await.unwrap().unpersisted);
    let stored = Record::decode(&store.inner.get("u1").unwrap()).unwrap();
    let rt = stored.refresh_token.unwrap().expose().to_owned();
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    assert_eq!(h.grant_requests("authorization_code"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_unsaved_saves_a_code_exchange_whose_version_read_failed_before_its_save() {
    // The save failed before it was sent (its version read), so the store
    // was noted as the save began: save_unsaved() finds it with no handle.
    let h = Harness::new();
    // The conflict's check, the sign-out check before the save over it,
    // the version read after it, and save_unsaved()'s sign-out check and
    // its version read all fail.
    let (store, exchanged) = exchange_meeting(&h, 1, 5).await;
    assert_eq!(exchanged.unwrap_err().code().as_str(), "storage");

    let error = h.client.save_unsaved().await.unwrap_err();
    assert!(
        error.to_string().ends_with("the last: read timed out"),
        "{error}"
    );
    h.client.save_unsaved().await.unwrap();
    let stored = Record::decode(&store.inner.get("u1").unwrap()).unwrap();
    let rt = stored.refresh_token.unwrap().expose().to_owned();
    assert_ne!(
        rt, "rt-theirs",
        "the re-link is saved over the other record"
    );
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_exchange_whose_save_failed_is_saved_over_what_another_process_saved_before_the_next_call(
) {
    let h = Harness::new();
    let store = interleaved();
    store.hooks.fail_saves.store(1, Ordering::SeqCst);
    let (code, verifier) = approved_for(&h.client, &["openid", "accounts"]).await;
    let error = h
        .client
        .exchange_code(&code, &verifier, REDIRECT, "u1", store.clone())
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");
    let session = h.client.session("u1", store.clone()).unwrap();
    assert!(
        session.holds_unsaved(),
        "the issued tokens are kept in memory"
    );
    // Another process saves the key (say, a refresh of the grant the user
    // just re-linked away from): the version moves on.
    let theirs = their_record("rt-theirs", None, h.clock.now_ms());
    store.inner.save("u1", &theirs).await.unwrap();

    // The next call saves the re-link over it: the code is spent, and its
    // tokens, live at the server, exist nowhere else.
    assert!(!session.status().await.unwrap().unpersisted);
    let stored = Record::decode(&store.inner.get("u1").unwrap()).unwrap();
    let rt = stored.refresh_token.unwrap().expose().to_owned();
    assert_ne!(rt, "rt-theirs");
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    session.refresh().await.expect("the saved link refreshes");
}

/// Polls `call` once; true if it is still pending.
async fn polled_once<F: Future + Unpin>(call: &mut F) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *call).poll(cx).is_pending()))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_joined_a_seeds_save_gets_the_stored_token_when_that_save_conflicts() {
    let h = Harness::new();
    let store = interleaved();
    let theirs = h.emu.seed(CLIENT_ID, "openid offline_access accounts");
    *store.hooks.theirs.lock().unwrap() = their_record(
        &theirs.refresh_token,
        Some(&theirs.access_token),
        h.clock.now_ms(),
    );
    let session = h.client.session("u1", store.clone()).unwrap();

    // The seed's save waits in the store; a caller asks for a token meanwhile
    // and joins it.
    store.hooks.hold.store(1, Ordering::SeqCst);
    store.hooks.interleave.store(1, Ordering::SeqCst);
    let mine = h.emu.seed(CLIENT_ID, "openid offline_access accounts");
    let seeding = tokio::spawn({
        let session = session.clone();
        async move {
            session
                .seed(Seed {
                    refresh_token: mine.refresh_token.into(),
                    ..Seed::default()
                })
                .await
        }
    });
    store.hooks.held.notified().await;
    let mut asking = Box::pin(session.access_token());
    assert!(
        polled_once(&mut asking).await,
        "the caller waits for the seed's save"
    );

    // Another process saves before the seed's save lands: the seed gets
    // `conflict`; the caller reads what that process saved.
    store.hooks.release.notify_one();
    let seeded = seeding.await.unwrap().unwrap_err();
    assert_eq!(seeded.code().as_str(), "conflict", "{seeded}");
    assert_eq!(asking.await.expect("the stored token"), theirs.access_token);
    assert_eq!(h.refresh_requests(), 0);
}

/// Hooks of a compare-and-swap store whose next load (once `stale_next`
/// is set) answers the last write-ahead marker saved, as a replica one
/// write behind would.
#[derive(Default)]
struct StaleMarker {
    marker: std::sync::Mutex<Option<freshtoken::Versioned>>,
    stale_next: std::sync::atomic::AtomicBool,
}

#[freshtoken::async_trait]
impl StoreHooks for StaleMarker {
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        let outcome = call.forward().await?;
        if let CasOutcome::Saved { version } = &outcome {
            if Record::decode(call.record).is_ok_and(|r| r.in_doubt) {
                *self.marker.lock().unwrap() = Some(freshtoken::Versioned {
                    record: call.record.to_owned(),
                    version: version.clone(),
                });
            }
        }
        Ok(outcome)
    }

    async fn load_versioned(
        &self,
        call: LoadVersioned<'_>,
    ) -> Result<Option<freshtoken::Versioned>, StoreError> {
        if self.stale_next.swap(false, Ordering::SeqCst) {
            return Ok(self.marker.lock().unwrap().clone());
        }
        call.forward().await
    }
}

/// A stale read of a write-ahead marker (its token rotated and the
/// rotation saved since) plans a refresh of a record in doubt, which has
/// its marker already. That path skipped the write-ahead, the one save
/// whose version check catches a stale read, and sent the spent token:
/// the server revoked the grant. The marker is saved again, and the
/// version check makes it a `conflict`. (The process that rotated knows
/// the token it spent, and keeps its own record: `tests/store_rollback.rs`.
/// Another process's session has only the store to go by.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_read_of_a_marker_is_a_conflict_not_a_send_of_the_spent_token() {
    let h = Harness::new();
    let store = ForwardingStore::versioned_only(MemoryStore::new(), StaleMarker::default());
    let family = h.emu.seed(CLIENT_ID, "openid offline_access accounts");
    let session = h.client.session("u1", store.clone()).unwrap();
    common::seed_refresh_token(&session, &family.refresh_token).await;
    session.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 1);

    h.clock.advance(16 * 60 * 1000); // the access token and the claim's memory
    let other = h.other_process().session("u1", store.clone()).unwrap();
    store.hooks.stale_next.store(true, Ordering::SeqCst);
    let error = other.access_token().await.unwrap_err();
    assert_eq!(error.code(), freshtoken::ErrorCode::Conflict, "{error}");
    assert_eq!(h.refresh_requests(), 1, "nothing sent");
    assert_eq!(h.emu.counters().reuse_detected, 0);
    // The next call reads the store as it is.
    other.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 2);
    assert_eq!(h.emu.counters().reuse_detected, 0);
}

/// Hooks of a compare-and-swap store whose saves answer their version
/// spelt as an ETag (`W/"7"`) while its loads and its comparisons spell it
/// bare (`7`): every save the core makes against a saved version conflicts.
#[derive(Default)]
struct EtagSpelling;

#[freshtoken::async_trait]
impl StoreHooks for EtagSpelling {
    async fn save_versioned(&self, call: SaveVersioned<'_>) -> Result<CasOutcome, StoreError> {
        Ok(match call.forward().await? {
            CasOutcome::Saved { version } => CasOutcome::Saved {
                version: format!("W/\"{version}\""),
            },
            conflict => conflict,
        })
    }
}

/// The rotated record's save against the version the write-ahead save
/// answered conflicted; the store held exactly that marker, nobody else
/// had written, and the rotated record (the only copy of the new refresh
/// token) was dropped as a conflict. The store holding exactly the record
/// the version was given for, the save is made again against the version
/// the store reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_spells_its_versions_two_ways_loses_no_rotation() {
    let h = Harness::new();
    let store = ForwardingStore::versioned_only(MemoryStore::new(), EtagSpelling);
    let family = h.emu.seed(CLIENT_ID, "openid offline_access accounts");
    let session = h.client.session("u1", store.clone()).unwrap();
    common::seed_refresh_token(&session, &family.refresh_token).await;
    for round in 1..=3 {
        session.access_token().await.unwrap();
        assert_eq!(h.refresh_requests(), round);
        let status = session.status().await.unwrap();
        assert!(
            !status.unpersisted && !status.in_doubt,
            "{round}: {status:?}"
        );
        let stored = Record::decode(&store.inner.load("u1").await.unwrap().unwrap()).unwrap();
        assert!(!stored.in_doubt, "{round}: the rotation is stored");
        h.clock.advance(16 * 60 * 1000);
    }
    assert_eq!(h.emu.counters().reuse_detected, 0);
}
