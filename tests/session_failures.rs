//! User sessions when things go wrong: failing stores, rejected and lost
//! refresh tokens, lapsed lifetimes, retries and their limits.

mod common;

use common::{assert_no_secret, joined_then_released, Harness, CLIENT_ID};
use freshtoken::{AccessToken, Clock, Error, ReauthReason, Record, RetryPolicy, Seed, TokenStore};
use freshtoken_emulator::{Fault, Options, StreamEnd, TokenState};
use std::sync::atomic::Ordering;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_loses_nothing_and_is_retried_first() {
    let h = Harness::new();
    let (session, old_rt) = h.seeded("u1").await;
    // The rotated record's save, and status()'s retry of it.
    h.store.fail_saves.store(2, Ordering::SeqCst);

    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage");
    assert_eq!(error.to_string(), "token storage failed: disk full");
    assert_no_secret(&error, &[&old_rt]);
    assert_eq!(h.refresh_requests(), 1);
    assert_eq!(
        h.store.refresh_token("u1").as_deref(),
        Some(old_rt.as_str()),
        "store still holds the old record"
    );
    assert!(session.status().await.unwrap().unpersisted);

    // The next call saves the kept record first and then serves its token.
    let token = session.access_token().await.unwrap();
    assert_eq!(
        h.refresh_requests(),
        1,
        "the consumed refresh token is not sent again"
    );
    let stored = h.store.record("u1").unwrap();
    assert_eq!(stored.access_token.unwrap().value.expose(), token);
    let new_rt = stored.refresh_token.unwrap().expose().to_owned();
    assert_eq!(h.emu.refresh_token_state(&new_rt), TokenState::Active);
    assert_eq!(h.emu.refresh_token_state(&old_rt), TokenState::Consumed);
    assert_eq!(h.emu.counters().reuse_detected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_saves_a_record_left_unsaved_first_like_every_call() {
    // DESIGN point 4: every later call retries the save before anything
    // else. Before, status() only reported `unpersisted`: a host that read
    // it (to warn the user, or before shutting down) left the rotated
    // refresh token in memory, to be lost with the process.
    let h = Harness::new();
    let (session, old_rt) = h.seeded("u1").await;
    h.store.fail_saves.store(2, Ordering::SeqCst);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage");
    let saves = h.store.saves.load(Ordering::SeqCst);

    // The store still fails: status() tried, and says so.
    assert!(session.status().await.unwrap().unpersisted);
    assert_eq!(h.store.saves.load(Ordering::SeqCst), saves + 1);
    assert_eq!(
        h.store.refresh_token("u1").as_deref(),
        Some(old_rt.as_str())
    );

    // It works again: status() saves the renewed record.
    let status = session.status().await.unwrap();
    assert!(!status.unpersisted && !status.in_doubt, "{status:?}");
    let rt = h.store.refresh_token("u1").unwrap();
    assert_ne!(rt, old_rt);
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    assert!(!h.store.record("u1").unwrap().in_doubt);

    // A restart (another client on the store) uses it: no second refresh.
    let restarted = Harness::client_on(&h.emu, h.client.config().clone(), h.clock.clone());
    let again = restarted.session("u1", h.store.clone()).unwrap();
    assert_eq!(
        again.access_token().await.unwrap(),
        session.access_token().await.unwrap()
    );
    assert_eq!(h.refresh_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_call_waits_for_the_save_status_started_then_goes_on() {
    // status()'s save of a pending record runs as the session's one flight,
    // so that no later save can land before it; callers meanwhile wait for
    // it, then are served as new calls.
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    h.store.fail_saves.store(1, Ordering::SeqCst);
    session.access_token().await.unwrap_err();
    let (mut saving, release) = h.store.gate_saves();
    let status = {
        let session = h.session("u1");
        tokio::spawn(async move { session.status().await })
    };
    let guard = std::time::Duration::from_secs(10); // fails instead of hanging
    let pending = tokio::time::timeout(guard, saving.recv())
        .await
        .expect("status() saves the pending record")
        .unwrap();
    let other = h.session("u1");
    let mut caller = Box::pin(other.access_token());
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(caller.as_mut(), cx))
    })
    .await;
    assert!(first.is_pending(), "the caller waits for the save");
    release.notify_one();
    assert!(!status.await.unwrap().unwrap().unpersisted);
    let token = caller.await.unwrap();
    let saved = Record::decode(&pending).unwrap();
    assert_eq!(saved.access_token.unwrap().value.expose(), token);
    assert_eq!(h.refresh_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_keeps_failing_keeps_the_renewed_record_in_memory() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    h.store.fail_saves.store(u32::MAX, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(
            session.access_token().await.unwrap_err().code().as_str(),
            "storage"
        );
    }
    // Even a forced refresh must not send the consumed token again.
    assert_eq!(
        session.refresh().await.unwrap_err().code().as_str(),
        "storage"
    );
    assert_eq!(h.refresh_requests(), 1);
    h.store.fail_saves.store(0, Ordering::SeqCst);
    session.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 1);
    assert_eq!(h.emu.counters().reuse_detected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_sends_nothing() {
    let h = Harness::new();
    let (_, _) = h.seeded("u1").await;
    // A fresh client has never read the store.
    let other = Harness::client_on(&h.emu, h.client.config().clone(), h.clock.clone());
    let session = other.session("u1", h.store.clone()).unwrap();
    h.store.fail_loads.store(1, Ordering::SeqCst);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "token storage failed: database unavailable"
    );
    assert_eq!(h.refresh_requests(), 0);
    session.access_token().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_requires_reauthorization_and_is_remembered() {
    let h = Harness::new();
    let session = h.session("u1");
    let dead = "rt-that-the-server-never-issued-SENTINEL";
    session
        .seed(Seed {
            refresh_token: dead.into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "reauthorization_required");
    assert_eq!(error.reason(), Some(ReauthReason::InvalidGrant));
    assert_eq!(error.oauth_error(), Some("invalid_grant"));
    assert_no_secret(&error, &[dead]);
    assert_eq!(h.refresh_requests(), 1);

    // Remembered in memory, in the store, and by another process.
    assert_eq!(
        session.access_token().await.unwrap_err().reason(),
        Some(ReauthReason::InvalidGrant)
    );
    assert_eq!(
        h.store.record("u1").unwrap().reauth,
        Some(ReauthReason::InvalidGrant)
    );
    let other = Harness::client_on(&h.emu, h.client.config().clone(), h.clock.clone());
    let elsewhere = other.session("u1", h.store.clone()).unwrap();
    assert_eq!(
        elsewhere.access_token().await.unwrap_err().reason(),
        Some(ReauthReason::InvalidGrant)
    );
    assert_eq!(
        elsewhere.status().await.unwrap().reauth,
        Some(ReauthReason::InvalidGrant)
    );
    assert_eq!(
        h.refresh_requests(),
        1,
        "a dead refresh token is never sent again"
    );

    // Only a new seed revives it.
    let family = h.emu.seed(CLIENT_ID, "offline_access");
    session
        .seed(Seed {
            refresh_token: family.refresh_token.into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    session.access_token().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_after_rotation_reports_lost_rotation() {
    let h = Harness::new();
    let (session, old_rt) = h.seeded("u1").await;
    h.emu.push_fault(Fault::drop_after_commit());

    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "network", "{error}");
    assert!(matches!(
        error,
        Error::Network {
            maybe_sent: true,
            ..
        }
    ));
    assert_eq!(
        h.emu.refresh_token_state(&old_rt),
        TokenState::Consumed,
        "the server rotated"
    );
    assert_eq!(
        h.refresh_requests(),
        1,
        "a possibly-sent request is not retried"
    );
    assert!(
        h.store.record("u1").unwrap().in_doubt,
        "the doubt is persisted"
    );

    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.reason(), Some(ReauthReason::LostRotation));
    assert_eq!(h.refresh_requests(), 2);
    assert_eq!(
        h.store.record("u1").unwrap().reauth,
        Some(ReauthReason::LostRotation)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_past_its_sliding_lifetime_is_not_sent() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    session.access_token().await.unwrap();
    let lapse = session
        .tokens()
        .await
        .unwrap()
        .refresh_expires_at_ms
        .unwrap();
    h.clock.set(lapse);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.reason(), Some(ReauthReason::RefreshExpired));
    assert_eq!(
        h.refresh_requests(),
        1,
        "no request for a lapsed refresh token"
    );
    // Judged on this clock, not by the server: not stored as a verdict
    // (tests/clock_steps.rs), and met again by the next call.
    assert_eq!(h.store.record("u1").unwrap().reauth, None);
    let again = session.access_token().await.unwrap_err();
    assert_eq!(again.reason(), Some(ReauthReason::RefreshExpired));
    assert_eq!(h.refresh_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_reauthorization_the_next_call_would_meet() {
    // DESIGN points 7 and 13: the host reads status() to prompt the user to
    // re-link before or when it is due. Before, a refresh token past its
    // sliding lifetime, or a stale record without one, read `reauth: None`
    // until a token call had failed on it.
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    session.access_token().await.unwrap();
    let lapse = session
        .status()
        .await
        .unwrap()
        .refresh_expires_at_ms
        .unwrap();
    h.clock.set(lapse);
    let status = session.status().await.unwrap();
    assert_eq!(status.reauth, Some(ReauthReason::RefreshExpired));
    assert_eq!(h.refresh_requests(), 1, "status() sends nothing");
    assert_eq!(
        session.access_token().await.unwrap_err().reason(),
        status.reauth,
        "what the next call says"
    );

    // A record without a refresh token (no offline_access): fine while its
    // access token is fresh, then nothing can renew it.
    let now = h.clock.now_ms();
    let record = Record {
        access_token: Some(AccessToken::new("at-only".into(), now, Some(900), 900)),
        updated_at_ms: now,
        ..Record::default()
    };
    h.store.inner.save("u2", &record.encode()).await.unwrap();
    let other = h.session("u2");
    assert_eq!(other.status().await.unwrap().reauth, None);
    h.clock.advance(900_000);
    let status = other.status().await.unwrap();
    assert_eq!(status.reauth, Some(ReauthReason::NoRefreshToken));
    assert_eq!(
        other.access_token().await.unwrap_err().reason(),
        status.reauth
    );
    assert_eq!(h.refresh_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sliding_lifetime_restarts_at_every_refresh() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let year = 365 * 24 * 3600 * 1000;
    for _ in 0..3 {
        let sent_at = h.clock.now_ms();
        let info = session.refresh().await.unwrap();
        assert_eq!(info.refresh_expires_at_ms, Some(sent_at + year));
        h.clock.advance(year - 1);
    }
    assert_eq!(h.refresh_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_after_a_backoff() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    h.emu.push_fault(Fault::status(503));
    session.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 2);
    let sleeps = h.clock.sleeps();
    assert_eq!(sleeps.len(), 1);
    assert!((125..=250).contains(&sleeps[0]), "{sleeps:?}");
}

/// A ManualClock whose waits between retries run long: by `overrun` ms
/// more than asked (a paused process or VM, a throttled timer).
struct Oversleeping {
    inner: std::sync::Arc<freshtoken::ManualClock>,
    overrun: u64,
}

#[freshtoken::async_trait]
impl Clock for Oversleeping {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        self.inner.monotonic_ms()
    }
    async fn sleep(&self, ms: u64) {
        self.inner.sleep(ms + self.overrun).await
    }
    async fn timer(&self, ms: u64) {
        self.inner.timer(ms).await
    }
}

/// A retry waits first; a wait that ended past the retry budget (and so,
/// in a fleet, past the lease the budget fits in, which another process
/// may hold by then) sends nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_wait_ran_past_the_budget_is_not_sent() {
    let h = Harness::new();
    for (overrun, requests) in [(0, 2), (RetryPolicy::default().budget_ms, 1)] {
        let clock = std::sync::Arc::new(Oversleeping {
            inner: h.clock.clone(),
            overrun,
        });
        let client = Harness::client_on(&h.emu, h.client.config().clone(), clock);
        let key = format!("overrun-{overrun}");
        let family = h.emu.seed(CLIENT_ID, "openid offline_access accounts");
        let session = client.session(&key, h.store.clone()).unwrap();
        common::seed_refresh_token(&session, &family.refresh_token).await;
        let before = h.refresh_requests();
        h.emu.push_fault(Fault::status(503));
        let result = session.access_token().await;
        assert_eq!(
            h.refresh_requests() - before,
            requests,
            "overrun {overrun}: {result:?}"
        );
        if requests == 1 {
            let error = result.unwrap_err();
            assert!(
                matches!(error, Error::Transient { status: 503, .. }),
                "{error}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_retry_after_is_honoured() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    h.emu.push_fault(Fault::rate_limit("2"));
    session.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 2);
    assert_eq!(h.clock.sleeps(), vec![2_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_the_budget_gives_up_with_transient() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    h.emu.push_fault(Fault::rate_limit("3600"));
    let error = session.access_token().await.unwrap_err();
    assert_eq!(
        error,
        Error::Transient {
            status: 429,
            attempts: 1,
            retry_after_ms: Some(3_600_000)
        }
    );
    assert_eq!(h.refresh_requests(), 1);
    assert!(h.clock.sleeps().is_empty());
    // The wait is kept (at most 10 minutes): a call meanwhile sends
    // nothing and fails as that one did, with the wait left.
    h.clock.advance(1_000);
    let error = session.access_token().await.unwrap_err();
    assert_eq!(
        error,
        Error::Transient {
            status: 429,
            attempts: 0,
            retry_after_ms: Some(599_000)
        }
    );
    assert_eq!(h.refresh_requests(), 1);
    h.clock.advance(599_000);
    session.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_retry_after_is_kept_past_its_call() {
    let h = Harness::new();
    h.emu.push_fault(Fault::rate_limit("120"));
    let error = h.client.client_token(&["accounts"]).await.unwrap_err();
    assert_eq!(error.code().as_str(), "transient");
    h.clock.advance(60_000);
    let error = h.client.client_token(&["accounts"]).await.unwrap_err();
    assert_eq!(
        error,
        Error::Transient {
            status: 429,
            attempts: 0,
            retry_after_ms: Some(60_000)
        }
    );
    // Another scope set is not held back by it.
    h.client.client_token(&["balances"]).await.unwrap();
    assert_eq!(h.grant_requests("client_credentials"), 2);
    h.clock.advance(60_000);
    h.client.client_token(&["accounts"]).await.unwrap();
    assert_eq!(h.grant_requests("client_credentials"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_5xx_stops_after_max_attempts() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    h.emu.push_fault(Fault::status(502).times(10));
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "transient");
    assert_eq!(error.status(), Some(502));
    assert_eq!(h.refresh_requests(), 4);
    assert_eq!(h.clock.sleeps().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_not_retried() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    h.emu.push_fault(Fault::body(
        400,
        r#"{"error":"invalid_request","error_description":"bad"}"#,
    ));
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "oauth");
    assert_eq!(error.oauth_error(), Some("invalid_request"));
    assert_eq!(error.description(), Some("bad"));
    assert_eq!(h.refresh_requests(), 1);

    h.emu
        .push_fault(Fault::body(401, r#"{"error":"invalid_client"}"#));
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "invalid_client");
    assert_eq!(error.status(), Some(401));
    assert_eq!(h.refresh_requests(), 2);
    assert!(h.clock.sleeps().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_is_invalid_client_and_keeps_the_session() {
    let h = Harness::with(Default::default(), |b| {
        b.client_secret("wrong-secret-SENTINEL")
    });
    let (session, rt) = h.seeded("u1").await;
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "invalid_client");
    assert_no_secret(&error, &["wrong-secret-SENTINEL", &rt]);
    assert_eq!(
        h.store.record("u1").unwrap().reauth,
        None,
        "a client problem does not kill the user's session"
    );
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_reported_and_leaves_the_token_in_doubt() {
    // The server holds the request until the session's deadline (the
    // default 30 s and the 1 s grace) has passed on the test's clock: a
    // real 200 ms timeout could fire before a loaded emulator read it.
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    h.emu.push_fault(Fault::hold());
    let call = tokio::spawn({
        let session = session.clone();
        async move { session.access_token().await }
    });
    h.emu.wait_held(1);
    h.expire_deadline(32_000).await; // the request's 30 s and its grace
    assert_eq!(call.await.unwrap().unwrap_err(), Error::Timeout);
    assert_eq!(h.refresh_requests(), 1);
    assert!(session.status().await.unwrap().in_doubt);
    assert_eq!(h.emu.release_held(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_then_reported_as_network() {
    let h = Harness::new();
    let config = freshtoken::Config::builder(common::refused_endpoint(), CLIENT_ID)
        .client_secret("s")
        .retry(RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let client = Harness::client_on(&h.emu, config, h.clock.clone());
    let session = client.session("u1", h.store.clone()).unwrap();
    session
        .seed(Seed {
            refresh_token: "rt".into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    let error = session.access_token().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Network {
                maybe_sent: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(h.clock.sleeps().len(), 2, "retried twice");
    assert!(!session.status().await.unwrap().in_doubt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_success_body_is_invalid_response_and_in_doubt() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    h.emu.push_fault(Fault::malformed_json());
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "invalid_response");
    assert_eq!(error.status(), Some(200));
    assert!(session.status().await.unwrap().in_doubt);
    // The emulator did not process it, so the token still works.
    session.access_token().await.unwrap();
    assert!(!session.status().await.unwrap().in_doubt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_body_is_rejected() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    h.emu.push_fault(Fault::oversize(100_000));
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "invalid_response");
    assert!(error.to_string().contains("65536"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_is_cut_at_the_cap_while_reading() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    h.emu.push_fault(Fault::endless());
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "invalid_response");
    assert!(error.to_string().contains("65536"), "{error}");
    // The transport stopped reading and closed: the emulator got little
    // more than the cap (plus socket buffers) onto the wire, not 64 MiB.
    let streams = h.emu.wait_endless_ended(1);
    assert_eq!(streams[0].end, Some(StreamEnd::ClientClosed));
    assert!(
        streams[0].bytes_written < 1024 * 1024,
        "{} bytes written",
        streams[0].bytes_written
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_never_leaves_the_session_stuck() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    // Held until all 20 have joined, then answered with the error.
    h.emu.push_fault(Fault::hold());
    h.emu
        .push_fault(Fault::body(400, r#"{"error":"invalid_scope"}"#));
    let results = joined_then_released(&h.emu, (0..20).map(|_| session.access_token())).await;
    assert_eq!(results.len(), 20);
    assert!(results
        .iter()
        .all(|r| r.as_ref().unwrap_err().oauth_error() == Some("invalid_scope")));
    assert_eq!(h.refresh_requests(), 1, "all callers got the one result");
    session.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_in_an_unusable_answer_is_kept() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    // The server "rotated" to another live token but sent a wrong token_type.
    let rotated = h.emu.seed(CLIENT_ID, "offline_access").refresh_token;
    let body = format!(r#"{{"access_token":"x","token_type":"mac","refresh_token":"{rotated}"}}"#);
    h.emu.push_fault(Fault::body(200, body));
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "invalid_response");
    assert_no_secret(&error, &[&rotated]);
    let stored = h.store.record("u1").unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose(), rotated);
    assert!(!stored.in_doubt);
    session.access_token().await.unwrap();
    assert_eq!(
        h.emu.refresh_token_state(&rotated),
        TokenState::Consumed,
        "the kept token was used"
    );
    assert_eq!(h.refresh_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_echoed_encoded_by_the_server_are_scrubbed() {
    let secret = "s3cret with+plus/SENTINEL";
    let h = Harness::with(Default::default(), |b| b.client_secret(secret));
    let (session, rt) = h.seeded("u1").await;
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let echo = format!(
        r#"{{"error":"invalid_request","error_description":"bad body client_secret={form}&refresh_token={rt}&raw={}"}}"#,
        form.replace('+', "%20")
    );
    h.emu.push_fault(Fault::body(400, echo));
    let error = session.access_token().await.unwrap_err();
    assert_no_secret(&error, &[&form, "SENTINEL", &rt]);
    assert!(error.description().unwrap().contains("[redacted]"));
}

/// A clock whose first sleep panics, like a host callback gone wrong.
struct PanickyClock {
    inner: freshtoken::ManualClock,
    panicked: std::sync::atomic::AtomicBool,
}

#[freshtoken::async_trait]
impl freshtoken::Clock for PanickyClock {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }

    async fn sleep(&self, ms: u64) {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("host clock failed");
        }
        self.inner.sleep(ms).await
    }

    async fn timer(&self, ms: u64) {
        self.inner.timer(ms).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_a_refresh_never_leaves_the_session_stuck() {
    let h = Harness::new();
    let clock = std::sync::Arc::new(PanickyClock {
        inner: freshtoken::ManualClock::new(common::wall_ms()),
        panicked: Default::default(),
    });
    let http = std::sync::Arc::new(freshtoken::NativeHttp::new().unwrap());
    let client = freshtoken::TokenClient::new(h.client.config().clone(), http, clock);
    let session = client.session("u1", h.store.clone()).unwrap();
    let family = h.emu.seed(CLIENT_ID, "offline_access");
    session
        .seed(Seed {
            refresh_token: family.refresh_token.into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    h.emu.push_fault(Fault::status(503));
    let first = tokio::spawn({
        let session = session.clone();
        async move { session.access_token().await }
    });
    assert!(
        first.await.unwrap_err().is_panic(),
        "the caller sees the panic"
    );
    session
        .access_token()
        .await
        .expect("the next call starts a new attempt");
    assert_eq!(h.refresh_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_once_hands_back_the_rotated_token_of_an_unusable_answer() {
    // The one-shot refresh keeps no record: a 2xx answer it cannot use
    // whose refresh token it dropped would leave its caller the spent one.
    let h = Harness::new();
    let sent = h.emu.seed(CLIENT_ID, "openid offline_access").refresh_token;
    // A live token of another family stands in for "the server rotated".
    let rotated = h.emu.seed(CLIENT_ID, "openid offline_access").refresh_token;
    let body = format!(r#"{{"access_token":"a t","refresh_token":"{rotated}"}}"#);
    h.emu.push_fault(Fault::body(200, body));

    let error = h.client.refresh_once(&sent).await.unwrap_err();
    assert_eq!(error.code().as_str(), "invalid_response");
    assert_eq!(
        error.rotated_refresh_token().map(|t| t.expose()),
        Some(rotated.as_str())
    );
    assert_no_secret(&error, &[&sent, &rotated]);

    // An answer with nothing to keep carries nothing.
    h.emu.push_fault(Fault::malformed_json());
    let error = h.client.refresh_once(&rotated).await.unwrap_err();
    assert_eq!(error.code().as_str(), "invalid_response");
    assert!(error.rotated_refresh_token().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_after_another_process_rotated_adopts_its_record_not_a_dead_mark() {
    // At a server that refuses a reused token without revoking its family,
    // the second process's token lives: a dead mark saved over its record
    // made every process tell the user to re-link.
    let h = Harness::with(
        Options {
            reuse_detection: false,
            ..Options::default()
        },
        |b| b,
    );
    let (first, theirs, rotated) = common::raced_without_a_lease(&h).await;
    assert_eq!(first.expect("the first serves the second's token"), theirs);
    let stored = h.store.record("u1").unwrap();
    assert_eq!(stored.reauth, None, "no dead mark over the live record");
    assert_eq!(stored.refresh_token.unwrap().expose(), rotated.as_str());
    assert_eq!(h.emu.refresh_token_state(&rotated), TokenState::Active);
    assert_eq!(h.refresh_requests(), 2);
    // A third process carries on without a re-link.
    let third = h.twin().session("u1", h.store.clone()).unwrap();
    assert_eq!(third.access_token().await.unwrap(), theirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reuse_detection_the_adopted_token_is_refused_and_the_session_ends_once() {
    // The server revoked the family when the first process reused the
    // token: the adopted record's refresh token is refused at its next
    // use, and only then is the session dead.
    let h = Harness::new();
    let (first, theirs, rotated) = common::raced_without_a_lease(&h).await;
    assert_eq!(first.unwrap(), theirs);
    assert_eq!(h.emu.refresh_token_state(&rotated), TokenState::Revoked);
    let session = h.session("u1");
    let error = session.refresh().await.unwrap_err();
    assert_eq!(error.code().as_str(), "reauthorization_required");
    assert_eq!(
        h.store.record("u1").unwrap().reauth,
        Some(ReauthReason::InvalidGrant)
    );
    assert_eq!(h.refresh_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_sent_with_a_200_is_an_error_and_a_dead_session_is_remembered() {
    // GitHub's token endpoint answers `200 {"error":"bad_refresh_token"}`.
    // Read as an unusable answer, the token was marked in doubt and sent
    // again at every call, and the session never became dead.
    let h = Harness::new();
    let (session, sent) = h.seeded("u1").await;
    h.emu.push_fault(Fault::body(
        200,
        r#"{"error":"invalid_grant","error_description":"bad refresh token"}"#,
    ));
    let error = session.access_token().await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::ReauthorizationRequired {
                reason: ReauthReason::InvalidGrant,
                ..
            }
        ),
        "{error:?}"
    );
    let stored = h.store.record("u1").unwrap();
    assert_eq!(stored.reauth, Some(ReauthReason::InvalidGrant));
    assert!(!stored.in_doubt);
    assert_eq!(stored.refresh_token.unwrap().expose(), sent.as_str());
    // Dead is remembered: nothing is sent again.
    assert!(session.access_token().await.is_err());
    assert_eq!(h.refresh_requests(), 1);

    // Another error code with a 200 is that error, and nothing is in doubt.
    let (other, _) = h.seeded("u2").await;
    h.emu
        .push_fault(Fault::body(200, r#"{"error":"temporarily_unavailable"}"#));
    let error = other.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "oauth");
    assert_eq!(error.status(), Some(200));
    assert!(!h.store.record("u2").unwrap().in_doubt);
}
