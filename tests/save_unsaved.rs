//! `TokenClient::save_unsaved`: a record the store refused (a rotation
//! whose save failed) is saved before the client goes away, with no
//! session handle left, instead of going with the client's memory.

mod common;

use common::{assert_no_secret, Harness};
use freshtoken::TokenStore;
use freshtoken_emulator::{Fault, TokenState};
use futures_util::future::poll_fn;
use futures_util::FutureExt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::task::Poll;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_the_store_refused_is_saved_with_no_handle_left() {
    let h = Harness::new();
    let (session, old_rt) = h.seeded("u1").await;
    let (_other, other_rt) = h.seeded("u2").await;
    h.store.fail_saves.store(1, Ordering::SeqCst);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage");
    drop(session);
    assert_eq!(
        h.store.refresh_token("u1").as_deref(),
        Some(old_rt.as_str())
    );

    let saves = h.store.saves.load(Ordering::SeqCst);
    h.client.save_unsaved().await.unwrap();
    assert_eq!(
        h.store.saves.load(Ordering::SeqCst),
        saves + 1,
        "only the unsaved record is written"
    );
    let new_rt = h.store.refresh_token("u1").unwrap();
    assert_ne!(new_rt, old_rt);
    assert_eq!(h.emu.refresh_token_state(&new_rt), TokenState::Active);
    assert_eq!(h.emu.refresh_token_state(&old_rt), TokenState::Consumed);
    assert_eq!(
        h.store.refresh_token("u2").as_deref(),
        Some(other_rt.as_str())
    );

    // Another client (as after a restart) serves the saved rotation.
    let store: std::sync::Arc<dyn TokenStore> = h.store.clone();
    let next = h.other_process().session("u1", store).unwrap();
    next.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 1, "no refresh token was sent twice");
    assert_eq!(h.emu.counters().reuse_detected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_still_fails_is_reported_and_the_record_kept() {
    let h = Harness::new();
    let (a, a_rt) = h.seeded("a").await;
    let (b, b_rt) = h.seeded("b").await;
    h.store.fail_saves.store(2, Ordering::SeqCst);
    let mut rotated = Vec::new();
    for session in [&a, &b] {
        session.access_token().await.unwrap_err();
        let record = h.store.attempted().unwrap();
        rotated.push(record.refresh_token.unwrap().expose().to_owned());
        rotated.push(record.access_token.unwrap().value.expose().to_owned());
    }
    h.store.fail_saves.store(2, Ordering::SeqCst);

    let error = h.client.save_unsaved().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage");
    assert!(
        error.to_string().starts_with(
            "token storage failed: 2 session record(s) held only in this process could not be \
             saved; the last: disk full"
        ),
        "{error}"
    );
    let mut secrets: Vec<&str> = rotated.iter().map(String::as_str).collect();
    secrets.extend([a_rt.as_str(), b_rt.as_str()]);
    assert_no_secret(&error, &secrets);
    assert!(
        a.holds_unsaved() && b.holds_unsaved(),
        "kept for the next try"
    );

    h.client.save_unsaved().await.unwrap();
    assert!(!a.holds_unsaved() && !b.holds_unsaved());
    for (key, spent) in [("a", &a_rt), ("b", &b_rt)] {
        let stored = h.store.refresh_token(key).unwrap();
        assert_ne!(&stored, spent);
        assert_eq!(h.emu.refresh_token_state(&stored), TokenState::Active);
    }
    assert_eq!(h.refresh_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_running_is_waited_for_and_its_refused_save_made() {
    // The caller gave up while the request was out: the refresh runs on
    // (a task of the client), and its save fails after save_unsaved began.
    let h = Harness::new();
    let (session, old_rt) = h.seeded("u1").await;
    h.store.fail_saves.store(1, Ordering::SeqCst);
    h.emu.push_fault(Fault::hold());
    let caller = tokio::spawn(async move { session.access_token().await });
    common::abandoned_once_held(&h.emu, caller).await;

    let mut saving = Box::pin(h.client.save_unsaved());
    let first = poll_fn(|cx| Poll::Ready(saving.as_mut().poll(cx))).await;
    assert!(first.is_pending(), "waits for the refresh in flight");
    let held = h.emu.held_requests();
    tokio::task::spawn_blocking(move || held.release())
        .await
        .unwrap();
    saving.await.unwrap();

    let stored = h.store.refresh_token("u1").unwrap();
    assert_ne!(stored, old_rt, "the rotation was saved");
    assert_eq!(h.emu.refresh_token_state(&stored), TokenState::Active);
    assert_eq!(h.refresh_requests(), 1);
    let again = h.client.save_unsaved().now_or_never();
    assert!(matches!(again, Some(Ok(()))), "nothing left: done at once");
}
