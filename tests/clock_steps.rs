//! A process clock that reads wrong for a while (set by hand, a broken RTC,
//! a VM before NTP) and is corrected: what it judged meanwhile must not
//! outlive it. Against the emulator, whose own clock keeps true time.

mod common;

use common::Harness;
use freshtoken::{Clock, ReauthReason, TokenStore};
use freshtoken_emulator::TokenState;

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 24 * 60 * MINUTE_MS;

/// A clock a year ahead finds the refresh token past its 365-day sliding
/// lifetime: `refresh_expired`, with no request, but nothing stored. Once
/// the clock is right again the session refreshes with the same token,
/// which the server still honours, in this process and in another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_that_ran_ahead_does_not_kill_the_session_for_good() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    session.access_token().await.unwrap();
    let right = h.clock.now_ms();
    let live = h.store.refresh_token("u1").unwrap();

    h.clock.set(right + 366 * DAY_MS);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(
        error.reason(),
        Some(ReauthReason::RefreshExpired),
        "{error}"
    );
    assert_eq!(h.refresh_requests(), 1, "nothing sent for a lapsed token");
    assert_eq!(h.store.record("u1").unwrap().reauth, None, "nothing stored");

    // Right again, 20 minutes on: the 900 s access token is stale.
    h.clock.set(right + 20 * MINUTE_MS);
    session.access_token().await.expect("the session lives");
    assert_eq!(h.refresh_requests(), 2);
    assert_eq!(h.emu.refresh_token_state(&live), TokenState::Consumed);
    let rotated = h.store.refresh_token("u1").unwrap();
    assert_eq!(h.emu.refresh_token_state(&rotated), TokenState::Active);
    let other = h.other_process().session("u1", h.store.clone()).unwrap();
    other
        .access_token()
        .await
        .expect("another process serves it");
    let c = h.emu.counters();
    assert_eq!((c.reuse_detected, c.invalid_grant), (0, 0));
}

/// A refresh while the clock read an hour ahead: its access token's
/// `expires_at` counts from that reading. Once the clock is right, the
/// token (expired at the server after 15 minutes) is no longer served from
/// 30 minutes on, in this process or in another reading the store: the
/// clock is further back than the skew tolerance from its issue time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_under_a_clock_ahead_is_not_served_after_the_correction() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let right = h.clock.now_ms();
    h.clock.set(right + 60 * MINUTE_MS);
    let issued = session.access_token().await.unwrap();
    h.clock.set(right); // corrected
    h.clock.advance(30 * MINUTE_MS);
    h.emu.advance_clock(30 * 60);

    let again = session.access_token().await.unwrap();

    assert_ne!(again, issued, "the stale token is not served");
    assert_eq!(h.refresh_requests(), 2);
    let status = session.status().await.unwrap();
    assert!(status.access_expires_at_ms.unwrap() <= h.clock.now_ms() + 15 * MINUTE_MS);
    let other = h.other_process().session("u1", h.store.clone()).unwrap();
    assert_eq!(other.access_token().await.unwrap(), again);
    assert_eq!(
        h.refresh_requests(),
        2,
        "the other process serves the new one"
    );
}

/// Ordinary skew: another process whose clock is four minutes behind the
/// one that refreshed reads a token "issued in its future" and serves it
/// without a refresh (each would cost the user a banking session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_clock_is_minutes_behind_serves_the_stored_token() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let token = session.access_token().await.unwrap();
    let behind = std::sync::Arc::new(freshtoken::ManualClock::new(
        h.clock.now_ms() - 4 * MINUTE_MS,
    ));
    let endpoint = format!("{}?other-process", h.emu.token_endpoint());
    let config = freshtoken::Config::builder(endpoint, common::CLIENT_ID)
        .client_secret(common::CLIENT_SECRET)
        .build()
        .unwrap();
    let other = freshtoken::TokenClient::new(
        config,
        std::sync::Arc::new(freshtoken::NativeHttp::new().unwrap()),
        behind,
    );

    let served = other
        .session("u1", h.store.clone())
        .unwrap()
        .access_token()
        .await;

    assert_eq!(served.unwrap(), token);
    assert_eq!(h.refresh_requests(), 1, "no refresh for ordinary skew");
}

/// The same rule for client-credentials tokens: one obtained while the
/// clock read an hour ahead is requested again once the clock is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_issued_under_a_clock_ahead_is_requested_again() {
    let h = Harness::new();
    let right = h.clock.now_ms();
    h.clock.set(right + 60 * MINUTE_MS);
    let issued = h.client.client_token(&["accounts"]).await.unwrap();
    // Four minutes behind its issue: skew, served.
    h.clock.set(right + 56 * MINUTE_MS);
    assert_eq!(h.client.client_token(&["accounts"]).await.unwrap(), issued);
    assert_eq!(h.grant_requests("client_credentials"), 1);
    h.clock.set(right); // corrected: an hour behind its issue
    let again = h.client.client_token(&["accounts"]).await.unwrap();
    assert_ne!(again, issued);
    assert_eq!(h.grant_requests("client_credentials"), 2);
}

/// Earlier releases stored `refresh_expired` when the process's clock
/// judged the refresh token lapsed. Only a clock said so: a process whose
/// clock finds the token within its lifetime refreshes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_expired_mark_stored_by_an_earlier_release_is_judged_again() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    session.access_token().await.unwrap();
    let mut marked = h.store.record("u1").unwrap();
    assert!(marked.refresh_expires_at_ms.unwrap() > h.clock.now_ms());
    marked.reauth = Some(ReauthReason::RefreshExpired);
    h.store.inner.save("u1", &marked.encode()).await.unwrap();

    h.clock.advance(20 * MINUTE_MS); // the access token is stale
    let other = h.other_process().session("u1", h.store.clone()).unwrap();
    other.access_token().await.expect("the session lives");
    assert_eq!(h.refresh_requests(), 2);
    assert_eq!(h.store.record("u1").unwrap().reauth, None);
}

/// A refresh while the device's clock read 1970 (reset, before NTP): the
/// record's refresh expiry is then early 1971. Once the clock is right,
/// that expiry is no verdict (it predates every freshtoken release): the
/// token is sent, the server honours it, and the session lives on, where
/// before every process judged it lapsed for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_expiry_written_under_a_clock_back_in_1970_is_no_verdict() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let right = h.clock.now_ms();
    h.clock.set(20 * DAY_MS);
    session.access_token().await.unwrap();
    let written = h.store.record("u1").unwrap();
    assert!(written.refresh_expires_at_ms.unwrap() < 400 * DAY_MS);

    h.clock.set(right + 20 * MINUTE_MS); // right again; the access token is stale
    session.access_token().await.expect("the session lives");
    assert_eq!(h.refresh_requests(), 2);
    let other = h.other_process().session("u1", h.store.clone()).unwrap();
    assert_eq!(other.status().await.unwrap().reauth, None);
    let c = h.emu.counters();
    assert_eq!((c.reuse_detected, c.invalid_grant), (0, 0));
}
