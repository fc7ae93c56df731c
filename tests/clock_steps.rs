//! A process clock that reads wrong for a while (set by hand, a broken RTC,
//! a VM before NTP) and is corrected: what it judged meanwhile must not
//! outlive it. Against the emulator, whose own clock keeps true time.

mod common;

use common::Harness;
use freshtoken::{Clock, ReauthReason};
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
