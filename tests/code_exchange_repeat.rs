//! A code exchange repeated where this process's memory of redemptions
//! cannot tell (another process, or the same one after ten minutes): the
//! stored record carries the fingerprint of the code that issued it, and
//! the repeat adopts it instead of sending the code again (which the
//! server refuses, revoking what the first exchange issued, RFC 6749
//! §4.1.2). And an answer to the code that is unusable but carries a
//! refresh token: the link is made.

mod common;

use common::authorize::{approved_for, REDIRECT};
use common::{Acquire, ForwardingStore, Harness, StoreHooks};
use freshtoken::{
    ErrorCode, MemoryStore, Record, StoreError, TokenClient, TokenStore, UserSession,
};
use freshtoken_emulator::{Fault, TokenState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Exchanges `code` through `client` for `key` in the harness store.
async fn exchange(
    h: &Harness,
    client: &TokenClient,
    code: &str,
    verifier: &str,
    key: &str,
) -> Result<UserSession, freshtoken::Error> {
    client
        .exchange_code(code, verifier, REDIRECT, key, h.store.clone())
        .await
}

/// Exchanges a fresh code for `key`, then repeats it through `repeat_by`
/// after `wait_ms`: the repeat must adopt the stored record, sending
/// nothing, and both sessions hand out the first exchange's token.
async fn first_then_repeat(h: &Harness, repeat_by: &TokenClient, wait_ms: u64, key: &str) {
    let (code, verifier) = approved_for(&h.client, &["openid", "accounts"]).await;
    let first = exchange(h, &h.client, &code, &verifier, key).await.unwrap();
    let issued = first.access_token().await.unwrap();
    let rt = h.store.refresh_token(key).unwrap();
    h.clock.advance(wait_ms);
    let repeat = exchange(h, repeat_by, &code, &verifier, key)
        .await
        .expect("the repeat adopts the stored record");
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    assert_eq!(repeat.access_token().await.unwrap(), issued);
    assert_eq!(h.refresh_requests(), 0);
    repeat.refresh().await.expect("the linked session lives");
}

/// The same callback handled by another process sharing the store (a
/// double submit a load balancer sends to two instances): it used to send
/// the code again, and the server revoked the session the first saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_in_another_process_sends_nothing_and_gets_the_linked_session() {
    let h = Harness::new();
    first_then_repeat(&h, &h.other_process(), 0, "u1").await;
}

/// The same process, past the ten minutes its redemptions are remembered
/// (a restored tab): the store still tells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_in_the_same_process_after_ten_minutes_sends_nothing() {
    let h = Harness::new();
    first_then_repeat(&h, &h.client, 11 * 60 * 1000, "u2").await;
}

/// What the record keeps of the code: a short fingerprint, never the code
/// or its verifier, kept through the record's rotations. A repeat with
/// another verifier is no repeat of that exchange: it is sent (and
/// refused), as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_keeps_the_fingerprint_of_its_code_through_its_rotations() {
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, &["openid", "accounts"]).await;
    let session = exchange(&h, &h.client, &code, &verifier, "u1")
        .await
        .unwrap();
    let text = h.store.inner.get("u1").unwrap();
    let fingerprint = h.store.record("u1").unwrap().from_code.expect("set");
    assert_eq!(fingerprint.len(), 16, "{fingerprint}");
    assert!(text.contains(&format!("\"from_code\":\"{fingerprint}\"")));
    assert!(!text.contains(&code) && !text.contains(&verifier), "{text}");

    let other_verifier = format!("{}x", &verifier[..verifier.len() - 1]);
    let error = exchange(&h, &h.other_process(), &code, &other_verifier, "u1")
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::OAuth, "{error}");
    assert_eq!(h.grant_requests("authorization_code"), 2);

    // Rotated, the record is still the one this code's link made: a repeat
    // elsewhere (a tab restored after the first refresh) adopts it. It was
    // sent, refused and got the session revoked.
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, &["openid", "accounts"]).await;
    let session2 = exchange(&h, &h.client, &code, &verifier, "u1")
        .await
        .unwrap();
    let fingerprint = h.store.record("u1").unwrap().from_code;
    session2.refresh().await.unwrap();
    assert_eq!(
        h.store.record("u1").unwrap().from_code,
        fingerprint,
        "rotated, kept"
    );
    let rotated = h.store.refresh_token("u1").unwrap();
    exchange(&h, &h.other_process(), &code, &verifier, "u1")
        .await
        .expect("the repeat adopts the rotated record");
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
    assert_eq!(h.emu.refresh_token_state(&rotated), TokenState::Active);
    drop(session);
}

/// An answer to the code without an access token but with a refresh token
/// (salvaged): the link is made, and the first call refreshes with it. The
/// caller used to get `invalid_response` while the store held the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salvaged_refresh_token_links_the_session() {
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, &["openid", "accounts"]).await;
    // A family the emulator knows, so that a refresh with it is accepted.
    let family = h
        .emu
        .seed(common::CLIENT_ID, "openid offline_access accounts");
    let body = format!(
        r#"{{"token_type":"Bearer","refresh_token":"{}"}}"#,
        family.refresh_token
    );
    h.emu
        .push_fault(Fault::body(200, body).for_grant("authorization_code"));
    let session = exchange(&h, &h.client, &code, &verifier, "u1")
        .await
        .expect("linked with the refresh token");
    assert_eq!(
        h.store.refresh_token("u1").as_deref(),
        Some(family.refresh_token.as_str())
    );
    session.access_token().await.expect("refreshes");
    assert_eq!(h.refresh_requests(), 1);
    assert_eq!(h.grant_requests("authorization_code"), 1);
}

/// The same, with the save of the salvaged refresh token failing: the
/// caller gets `storage` (the token waits in memory), and a repeat saves
/// it. It used to be `invalid_response`, and a repeat saved nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salvaged_refresh_token_whose_save_failed_is_saved_by_a_repeat() {
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, &["openid", "accounts"]).await;
    h.emu.push_fault(
        Fault::body(
            200,
            r#"{"token_type":"Bearer","refresh_token":"rt-salvaged-0123456789"}"#,
        )
        .for_grant("authorization_code"),
    );
    h.store.fail_saves.store(1, Ordering::SeqCst);
    let error = exchange(&h, &h.client, &code, &verifier, "u1")
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::Storage, "{error}");
    assert!(h.store.record("u1").is_none());
    assert!(h.session("u1").holds_unsaved());

    exchange(&h, &h.client, &code, &verifier, "u1")
        .await
        .expect("the repeat saves it");
    assert_eq!(
        h.store.refresh_token("u1").as_deref(),
        Some("rt-salvaged-0123456789")
    );
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
}

/// A code whose tokens this process holds unsaved (the save failed), repeated
/// past the ten minutes this process remembers redemptions for: the held
/// record carries the code's fingerprint, so the repeat saves it and sends
/// nothing. Sent again, the code was refused and the tokens revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_past_ten_minutes_saves_the_tokens_held_unsaved_and_sends_nothing() {
    let h = Harness::new();
    let (code, verifier) = relinked_unsaved(&h).await;
    assert!(h.store.refresh_token("u1").is_none(), "nothing stored yet");

    h.clock.advance(11 * 60 * 1000);
    let repeat = exchange(&h, &h.client, &code, &verifier, "u1")
        .await
        .expect("the repeat saves the held tokens");
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
    let rt = h.store.refresh_token("u1").expect("saved by the repeat");
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    repeat.refresh().await.expect("the saved link refreshes");
}

/// A repeat whose read of the store fails (a store without versions, which
/// has no other read to make): the record its code may have issued was not
/// read, so nothing is sent, and the first exchange's tokens live on. Sent
/// again, the code was refused and the first session revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_whose_store_read_fails_sends_nothing() {
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, &["openid", "accounts"]).await;
    exchange(&h, &h.client, &code, &verifier, "u1")
        .await
        .unwrap();
    let rt = h.store.refresh_token("u1").unwrap();
    h.store.fail_loads.store(1, Ordering::SeqCst);
    let other = h.other_process();
    let failed = exchange(&h, &other, &code, &verifier, "u1").await;
    assert_eq!(failed.map(drop).unwrap_err().code(), ErrorCode::Storage);
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    exchange(&h, &other, &code, &verifier, "u1")
        .await
        .expect("once the store answers, the repeat adopts the record");
    assert_eq!(h.grant_requests("authorization_code"), 1);
}

/// A repeat of a code whose session has ended since (the user signed out):
/// the code is spent and nothing usable is stored, so the repeat says so
/// instead of handing out a session that fails at its first call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_of_a_code_whose_session_was_revoked_says_so() {
    let h = Harness::new();
    let (code, verifier) = approved_for(&h.client, &["openid", "accounts"]).await;
    let first = exchange(&h, &h.client, &code, &verifier, "u1")
        .await
        .unwrap();
    first.revoke().await.expect("revoked");
    let other = h.other_process();
    let repeat = exchange(&h, &other, &code, &verifier, "u1").await;
    let error = repeat.map(drop).unwrap_err();
    assert_eq!(error.code(), ErrorCode::ReauthorizationRequired, "{error}");
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
}

/// Session `u1` linked by another process sharing the store.
async fn linked_elsewhere(h: &Harness) -> UserSession {
    let other = h.other_process();
    let (code, verifier) = approved_for(&other, &["openid", "accounts"]).await;
    exchange(h, &other, &code, &verifier, "u1").await.unwrap()
}

/// Links `u1` again in this process, its save failing: the tokens are held
/// unsaved. The code and verifier, to repeat the exchange.
async fn relinked_unsaved(h: &Harness) -> (String, String) {
    let (code, verifier) = approved_for(&h.client, &["openid", "accounts"]).await;
    h.store.fail_saves.store(1, Ordering::SeqCst);
    let failed = exchange(h, &h.client, &code, &verifier, "u1").await;
    assert_eq!(failed.map(drop).unwrap_err().code(), ErrorCode::Storage);
    (code, verifier)
}

/// Tokens this process holds unsaved for a re-link, and the user then
/// signs out elsewhere (another process revokes the stored session): the
/// held re-link is not saved over the sign-out, which would bring the
/// session back. It is dropped, its tokens revoked, and the repeat says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_relink_is_not_saved_over_a_later_sign_out() {
    let events = Arc::new(Kinds::default());
    let sink = events.clone();
    let h = Harness::with(Default::default(), |b| b.on_event(sink));
    let elsewhere = linked_elsewhere(&h).await;
    let (code, verifier) = relinked_unsaved(&h).await;
    let held = h.session("u1");
    assert!(held.holds_unsaved());
    h.clock.advance(1_000);
    elsewhere.revoke().await.expect("the user signed out");

    h.clock.advance(11 * 60 * 1000);
    events.0.lock().unwrap().clear();
    let repeat = exchange(&h, &h.client, &code, &verifier, "u1").await;
    let error = repeat.map(drop).unwrap_err();
    assert_eq!(error.code(), ErrorCode::ReauthorizationRequired, "{error}");
    assert_eq!(
        *events.0.lock().unwrap(),
        ["revoked", "reauthorization_required"],
        "listeners hear of the dropped re-link, not only the log"
    );
    let stored = h.store.record("u1").unwrap();
    assert!(stored.reauth.is_some(), "the sign-out stands");
    assert!(stored.refresh_token.is_none());
    assert!(!held.holds_unsaved(), "the held re-link was dropped");
    assert_eq!(
        h.grant_requests("authorization_code"),
        2,
        "each code sent once"
    );
    // Each link's refresh token revoked its family (the access token's
    // request then finds it gone): the old link's, and the held re-link's.
    let counters = h.emu.counters();
    assert_eq!(counters.revocation_requests, 4, "two per link");
    assert_eq!(counters.tokens_revoked, 2, "one family per link");
}

/// The other order: the user signed out, then linked again here, and that
/// re-link's save failed. The stored revocation is the one the exchange
/// read before sending its code (no clocks compared), so the held re-link
/// is saved over it, even when the old session's `revoke()` is retried
/// (which writes the revocation again) before the save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_relink_made_after_a_sign_out_is_saved_over_it() {
    let h = Harness::new();
    let elsewhere = linked_elsewhere(&h).await;
    elsewhere.revoke().await.expect("the user signed out");

    relinked_unsaved(&h).await;
    h.clock.advance(1_000);
    elsewhere
        .revoke()
        .await
        .expect("the old session's revoke, retried");

    let session = h.session("u1");
    session
        .access_token()
        .await
        .expect("the held re-link is saved and serves its token");
    let stored = h.store.record("u1").unwrap();
    assert!(stored.reauth.is_none() && stored.refresh_token.is_some());
    let rt = h.store.refresh_token("u1").unwrap();
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
}

/// Hooks whose first refused lease acquire (another process holds the
/// lease) is noted in `refused`, and answered once `go` is notified.
#[derive(Default)]
struct HoldsFirstRefusal {
    refused: tokio::sync::Notify,
    go: tokio::sync::Notify,
    seen: AtomicBool,
}

#[async_trait::async_trait]
impl StoreHooks for HoldsFirstRefusal {
    async fn acquire(&self, call: Acquire<'_>) -> Result<bool, StoreError> {
        let taken = call.forward().await;
        if matches!(taken, Ok(false)) && !self.seen.swap(true, Ordering::SeqCst) {
            self.refused.notify_one();
            self.go.notified().await;
        }
        taken
    }
}

/// The same callback handled by two processes of a fleet at the same
/// moment (a double submit sent to two instances), on a store with the
/// fleet lease (`with_versions`: and compare-and-swap): the second waits
/// for the lease the first holds while its code is at the server, then
/// adopts the record the first saved. Both used to read the store before
/// either had saved, and both sent the code: the server refused the second
/// and may revoke what the first use issued (RFC 6749 §4.1.2).
async fn the_same_code_at_the_same_moment_is_sent_once(with_versions: bool) {
    let h = Harness::new();
    let shared = Arc::new(MemoryStore::with_leases(h.clock.clone()));
    let store = |hooks| match with_versions {
        true => ForwardingStore::fleet(shared.clone(), hooks),
        false => ForwardingStore::lease_only(shared.clone(), hooks),
    };
    let (a_store, b_store) = (
        store(HoldsFirstRefusal::default()),
        store(HoldsFirstRefusal::default()),
    );
    let (code, verifier) = approved_for(&h.client, &["openid", "accounts"]).await;
    h.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let first = {
        let (client, store, code, verifier) =
            (h.client.clone(), a_store, code.clone(), verifier.clone());
        tokio::spawn(async move {
            client
                .exchange_code(&code, &verifier, REDIRECT, "u1", store)
                .await
        })
    };
    tokio::task::block_in_place(|| h.emu.wait_held(1));

    let other = h.other_process();
    let mut second = {
        let (store, code, verifier) = (b_store.clone(), code.clone(), verifier.clone());
        tokio::spawn(async move {
            other
                .exchange_code(&code, &verifier, REDIRECT, "u1", store)
                .await
        })
    };
    // The second waits for the lease, or, unfixed, sends the code at once.
    let ended_unleased = tokio::select! {
        () = b_store.hooks.refused.notified() => None,
        sent = &mut second => Some(sent.unwrap()),
    };
    h.emu.release_held();
    let first = first.await.unwrap().expect("the first exchange links");
    b_store.hooks.go.notify_one();
    let second = match ended_unleased {
        Some(second) => second,
        None => second.await.unwrap(),
    };
    assert_eq!(h.grant_requests("authorization_code"), 1, "sent once");
    let second = second.expect("the second adopts the first's record");
    let token = first.access_token().await.unwrap();
    assert_eq!(second.access_token().await.unwrap(), token);
    let rt = Record::decode(&shared.get("u1").unwrap())
        .unwrap()
        .refresh_token
        .unwrap();
    assert_eq!(h.emu.refresh_token_state(rt.expose()), TokenState::Active);
    assert!(
        shared.acquire("u1", "probe", 1_000).await.unwrap(),
        "the lease was given back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_code_at_the_same_moment_is_sent_once_on_a_fleet_store() {
    the_same_code_at_the_same_moment_is_sent_once(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_code_at_the_same_moment_is_sent_once_on_a_lease_only_store() {
    the_same_code_at_the_same_moment_is_sent_once(false).await;
}

/// Tokens held unsaved for a re-link, whose next save reads the stored
/// text damaged (a torn write): damaged text is no sign-out, so the re-link
/// is saved over it. Its save used to fail on the read, again at every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_relink_is_saved_over_a_damaged_record() {
    let h = Harness::new();
    linked_elsewhere(&h).await;
    relinked_unsaved(&h).await;
    let held = h.session("u1");
    assert!(held.holds_unsaved());
    h.store.corrupt_loads.store(1, Ordering::SeqCst);
    held.access_token()
        .await
        .expect("the held re-link is saved and serves its token");
    assert!(!held.holds_unsaved());
    assert_eq!(
        h.store.corrupt_loads.load(Ordering::SeqCst),
        0,
        "the damaged text was read"
    );
    let rt = h.store.refresh_token("u1").unwrap();
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
}

/// Keeps the kind of every event it receives.
#[derive(Default)]
struct Kinds(std::sync::Mutex<Vec<&'static str>>);

impl freshtoken::EventSink for Kinds {
    fn on_event(&self, event: &freshtoken::Event) {
        self.0.lock().unwrap().push(event.kind.as_str());
    }
}
