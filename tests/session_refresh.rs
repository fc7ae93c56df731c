//! User sessions against the emulator over loopback HTTP: rotation,
//! persistence order, single flight, the cached path, shared state.

mod common;

use common::{joined_then_released, seed_refresh_token, Harness, CLIENT_ID, CLIENT_SECRET};
use freshtoken::{Clock, Config, Seed, TokenStore};
use freshtoken_emulator::{Fault, TokenState};
use futures_util::future::join_all;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotated_record_is_saved_before_the_caller_gets_the_token() {
    let h = Harness::new();
    let (session, old_rt) = h.seeded("u1").await;
    let (mut entered, release) = h.store.gate_saves();

    let fut = session.access_token();
    tokio::pin!(fut);
    // Drive the call until the store's save starts; if the token were handed
    // out before the save, `fut` would finish first.
    let saved = tokio::select! {
        biased;
        token = &mut fut => panic!("token delivered before the save began: {:?}", token.map(|t| t.len())),
        record = entered.recv() => record.unwrap(),
    };
    // The server has rotated; the save is in progress and still holds the caller.
    assert_eq!(h.emu.counters().rotations, 1);
    assert_eq!(h.emu.refresh_token_state(&old_rt), TokenState::Consumed);
    tokio::select! {
        biased;
        _ = &mut fut => panic!("token delivered while the save was still running"),
        _ = std::future::ready(()) => {}
    }
    release.notify_one();
    let token = fut.await.expect("refresh succeeds");

    let record = freshtoken::Record::decode(&saved).unwrap();
    let new_rt = record.refresh_token.unwrap().expose().to_owned();
    assert_ne!(new_rt, old_rt);
    assert_eq!(record.access_token.unwrap().value.expose(), token);
    assert_eq!(
        h.store.refresh_token("u1").as_deref(),
        Some(new_rt.as_str())
    );
    assert_eq!(h.emu.refresh_token_state(&new_rt), TokenState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_callers_at_expiry_cause_exactly_one_refresh() {
    let h = Harness::new();
    let (_, _) = h.seeded("u1").await;
    // The request is held until every caller has asked.
    h.emu.push_fault(Fault::hold());
    // Each caller makes its own handle, as a backend does per request.
    let calls = (0..100).map(|_| {
        let session = h.session("u1");
        async move { session.access_token().await }
    });
    let tokens: Vec<String> = joined_then_released(&h.emu, calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(tokens.len(), 100);
    assert_eq!(h.refresh_requests(), 1);
    assert_eq!(h.emu.counters().max_concurrent_token_requests, 1);
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert_eq!(h.client.session_count(), 1);
    assert_eq!(h.emu.counters().reuse_detected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_token_is_served_with_no_io_until_the_leeway() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let first = session.access_token().await.unwrap();
    let loads = h.store.loads.load(Ordering::SeqCst);
    let saves = h.store.saves.load(Ordering::SeqCst);
    // 900 s tokens with 60 s leeway: fresh for 839.999 s.
    h.clock.advance(839_000);
    for _ in 0..1000 {
        assert_eq!(session.access_token().await.unwrap(), first);
    }
    assert_eq!(h.refresh_requests(), 1);
    assert_eq!(
        h.store.loads.load(Ordering::SeqCst),
        loads,
        "no store reads"
    );
    assert_eq!(
        h.store.saves.load(Ordering::SeqCst),
        saves,
        "no store writes"
    );

    h.clock.advance(1_000);
    let second = session.access_token().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(h.refresh_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_offered_to_a_mirror_while_a_forced_refresh_runs() {
    // The refresh replaces the token: a mirror that copied the old one
    // meanwhile would keep serving it after the refresh (Swift's drops its
    // copy when a call starts, not when the core's call ends).
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let old = session.access_token().await.unwrap();
    h.emu.push_fault(Fault::hold());
    let refreshing = session.clone();
    let caller = tokio::spawn(async move { refreshing.refresh().await });
    common::abandoned_once_held(&h.emu, caller).await;
    assert!(session.cached_token().is_none());
    assert_eq!(session.cached_access_token().as_deref(), Some(old.as_str()));
    assert_eq!(h.emu.release_held(), 1);
    let new = session.refresh().await.unwrap().access_token;
    assert_ne!(new, old);
    assert_eq!(session.cached_token().unwrap().token, new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cached_token_says_until_when_it_may_be_mirrored() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    assert!(
        session.cached_token().is_none(),
        "nothing fresh before the first refresh"
    );
    let sent_at = h.clock.now_ms();
    let token = session.access_token().await.unwrap();
    let cached = session.cached_token().expect("fresh after the refresh");
    assert_eq!(cached.token, token);
    // 900 s tokens with 60 s leeway.
    assert_eq!(cached.fresh_until_ms, sent_at + 840_000);
    assert!(
        !format!("{cached:?}").contains(&token),
        "Debug redacts the token"
    );
    h.clock
        .advance(cached.fresh_until_ms - h.clock.now_ms() - 1);
    assert_eq!(
        session.cached_access_token().as_deref(),
        Some(token.as_str())
    );
    h.clock.advance(1);
    assert!(
        session.cached_token().is_none(),
        "stale exactly at fresh_until_ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_reports_expiry_scope_id_token_and_refresh_lifetime() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let sent_at = h.clock.now_ms();
    let info = session.tokens().await.unwrap();
    assert_eq!(info.expires_at_ms, sent_at + 900_000);
    assert_eq!(
        info.refresh_expires_at_ms,
        Some(sent_at + 365 * 24 * 3600 * 1000)
    );
    assert_eq!(
        info.scope.as_deref(),
        Some("openid offline_access accounts")
    );
    assert!(info.id_token.is_some());
    assert!(!format!("{info:?}").contains(&info.access_token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_sending_expires_in_as_a_string_or_a_fraction_is_understood() {
    // Azure AD v1, SAP and others send "3599"; a fraction is cut to whole seconds.
    for (value, secs) in [
        (serde_json::json!("3599"), 3599),
        (serde_json::json!(1800.9), 1800),
    ] {
        let h = Harness::new();
        let (session, old_rt) = h.seeded("u1").await;
        h.emu
            .push_fault(Fault::expires_in_as(value.clone()).for_grant("refresh_token"));
        let sent_at = h.clock.now_ms();
        let info = session.tokens().await.expect("the answer is understood");
        assert_eq!(info.expires_at_ms, sent_at + secs * 1000, "{value}");
        assert_eq!(h.emu.refresh_token_state(&old_rt), TokenState::Consumed);
        let rotated = h.store.refresh_token("u1").expect("the rotation was saved");
        assert_eq!(h.emu.refresh_token_state(&rotated), TokenState::Active);
        // Fresh for that lifetime less the 60 s leeway, with no request.
        h.clock.advance((secs - 61) * 1000);
        assert_eq!(session.access_token().await.unwrap(), info.access_token);
        assert_eq!(h.refresh_requests(), 1, "{value}");
        h.clock.advance(1000);
        assert_ne!(session.access_token().await.unwrap(), info.access_token);
        assert_eq!(h.refresh_requests(), 2, "{value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_refreshes_share_one_request() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let first = session.access_token().await.unwrap();
    // The forced refresh's request is held until every caller has asked.
    h.emu.push_fault(Fault::hold());
    let infos = joined_then_released(&h.emu, (0..10).map(|_| session.refresh())).await;
    let tokens: Vec<String> = infos.into_iter().map(|r| r.unwrap().access_token).collect();
    assert_eq!(
        h.refresh_requests(),
        2,
        "one initial refresh and one forced: {:?}",
        h.emu.counters()
    );
    assert!(tokens.iter().all(|t| *t == tokens[0] && *t != first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_adopts_an_existing_access_token_and_saves_the_record() {
    let h = Harness::new();
    let family = h.emu.seed(CLIENT_ID, "openid offline_access");
    let session = h.session("u1");
    session
        .seed(Seed {
            refresh_token: family.refresh_token.clone().into(),
            access_token: Some(family.access_token.clone().into()),
            expires_in: Some(900),
            scope: Some(family.scope.clone()),
            id_token: None,
        })
        .await
        .unwrap();
    assert_eq!(session.access_token().await.unwrap(), family.access_token);
    assert_eq!(h.refresh_requests(), 0);
    assert_eq!(
        h.store.refresh_token("u1"),
        Some(family.refresh_token.clone())
    );
    let e = session.seed(Seed::default()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration `refresh_token`: must not be empty"
    );
    // An access token no Authorization header can carry: refused, unquoted.
    let e = session
        .seed(Seed {
            refresh_token: "x".into(),
            access_token: Some("at-SENTINEL\r\nX-Injected: 1".into()),
            expires_in: Some(900),
            ..Seed::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code().as_str(), "config");
    assert!(
        e.to_string().contains("`access_token`") && !e.to_string().contains("SENTINEL"),
        "{e}"
    );
    assert_eq!(
        h.store.refresh_token("u1"),
        Some(family.refresh_token.clone()),
        "the stored session is kept"
    );
    let e = session
        .seed(Seed {
            refresh_token: "x".into(),
            expires_in: Some(-1),
            ..Seed::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code().as_str(), "config");
    // A seed whose record would be over the cap every load enforces is
    // refused, and the stored session is kept: a new process could not
    // have read the session back.
    let e = session
        .seed(Seed {
            refresh_token: "r".repeat(freshtoken::MAX_RECORD_BYTES).into(),
            ..Seed::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, freshtoken::Error::Config { field, .. } if field == "refresh_token"),
        "{e}"
    );
    assert_eq!(h.store.refresh_token("u1"), Some(family.refresh_token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_rotation_is_picked_up_from_the_store_without_a_request() {
    let h = Harness::new();
    let (a, _) = h.seeded("u1").await;
    // Process B shares the store; it has read the seeded (token-less) record.
    let config = Config::builder(h.emu.token_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    let b_client = Harness::client_on(&h.emu, config, h.clock.clone());
    let b = b_client.session("u1", h.store.clone()).unwrap();
    assert!(b.status().await.unwrap().has_record);

    let token = a.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 1);
    // B re-reads before refreshing and finds A's fresh record.
    assert_eq!(b.access_token().await.unwrap(), token);
    assert_eq!(h.refresh_requests(), 1);
    assert_eq!(h.emu.counters().reuse_detected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_basic_works_against_the_emulator() {
    let h = Harness::with(Default::default(), |b| {
        b.client_auth(freshtoken::ClientAuthMethod::ClientSecretBasic)
    });
    let (session, _) = h.seeded("u1").await;
    session.access_token().await.unwrap();
    assert_eq!(h.emu.counters().refresh_success, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_rotate_keeps_the_old_refresh_token() {
    let h = Harness::new();
    let family = h.emu.seed(CLIENT_ID, "offline_access");
    h.emu.push_fault(freshtoken_emulator::Fault::body(
        200,
        r#"{"access_token":"at-without-rotation","token_type":"bearer","expires_in":900}"#,
    ));
    let session = h.session("u1");
    session
        .seed(Seed {
            refresh_token: family.refresh_token.clone().into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    assert_eq!(session.access_token().await.unwrap(), "at-without-rotation");
    assert_eq!(h.store.refresh_token("u1"), Some(family.refresh_token));
    assert!(h.store.load("u1").await.unwrap().is_some());
}

/// DESIGN point 12 in a process that has not read the record yet (a new
/// worker, a command, a serverless call): the renewal another process saved
/// answers a rejection of the token before it, with no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rejected_in_a_new_process_is_answered_by_the_stored_renewal() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let old = session.access_token().await.unwrap();
    let new = session.token_rejected(&old).await.unwrap().access_token;
    assert_eq!(h.refresh_requests(), 2);
    // Another process, whose API call was made with `old`.
    let other = Harness::client_on(&h.emu, h.client.config().clone(), h.clock.clone());
    let there = other.session("u1", h.store.clone()).unwrap();
    let served = there.token_rejected(&old).await.unwrap().access_token;
    assert!(served == new, "not the stored renewal");
    assert_eq!(h.refresh_requests(), 2, "the stored renewal was not used");
    // A rejection of the current token does refresh, there too.
    let newest = there.token_rejected(&new).await.unwrap().access_token;
    assert_ne!(newest, new);
    assert_eq!(h.refresh_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rejected_after_another_caller_refreshed_costs_no_request() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let old = session.access_token().await.unwrap();
    // Caller A saw the API reject `old` and refreshed.
    let new = session.token_rejected(&old).await.unwrap().access_token;
    assert_ne!(new, old);
    assert_eq!(h.refresh_requests(), 2);
    // Caller B's rejection of `old` arrives late: it gets `new`, no request.
    let late = join_all((0..10).map(|_| session.token_rejected(&old))).await;
    assert!(late.into_iter().all(|r| r.unwrap().access_token == new));
    assert_eq!(h.refresh_requests(), 2);
    // A rejection of the current token does refresh.
    let newest = session.token_rejected(&new).await.unwrap().access_token;
    assert_ne!(newest, new);
    assert_eq!(h.refresh_requests(), 3);
}

/// A token the API rejected is not handed out again: a caller that asks
/// while the refresh it caused is in flight joins that refresh (instead of
/// getting the rejected token for another failed API call), and after the
/// refresh failed the next caller starts a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_not_served_while_its_refresh_runs_or_after_it_failed() {
    let h = Harness::new();
    let (session, _) = h.seeded("u1").await;
    let old = session.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 1);
    // The rejection's refresh is held until the other caller has asked.
    h.emu.push_fault(Fault::hold());
    let other = h.session("u1");
    let both = joined_then_released(
        &h.emu,
        [
            Box::pin(async { session.token_rejected(&old).await.map(|i| i.access_token) })
                as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
            Box::pin(async { other.access_token().await }),
        ],
    )
    .await;
    let tokens: Vec<String> = both.into_iter().map(|r| r.unwrap()).collect();
    assert_ne!(
        tokens[1], old,
        "the rejected token was served during its refresh"
    );
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(h.refresh_requests(), 2, "one refresh for both");

    // A rejection whose refresh fails: the token is still not served.
    let current = tokens[0].clone();
    h.emu.push_fault(Fault::status(400).times(1));
    assert!(session.token_rejected(&current).await.is_err());
    assert_eq!(h.refresh_requests(), 3);
    let next = session.access_token().await.unwrap();
    assert_ne!(
        next, current,
        "the rejected token was served after its refresh failed"
    );
    assert_eq!(h.refresh_requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_of_one_process_on_one_store_send_the_refresh_token_once() {
    // A client made per request or per module: without a lease, each kept
    // its own flight, both sent the token, and the second use revoked the
    // whole grant (a re-link).
    let h = Harness::new();
    let (a, old_rt) = h.seeded("u1").await;
    let twin = h.twin();
    let b = twin.session("u1", h.store.clone()).unwrap();
    h.emu.push_fault(Fault::hold());
    let tokens = joined_then_released(&h.emu, [a.access_token(), b.access_token()]).await;
    let tokens: Vec<String> = tokens.into_iter().map(|t| t.unwrap()).collect();
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(h.refresh_requests(), 1, "{:?}", h.emu.counters());
    assert_eq!(h.emu.counters().reuse_detected, 0);
    assert_eq!(h.emu.refresh_token_state(&old_rt), TokenState::Consumed);
    let stored = h.store.refresh_token("u1").unwrap();
    assert_eq!(h.emu.refresh_token_state(&stored), TokenState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_for_another_clients_refresh_ends_with_that_refreshs_store_deadline() {
    // Two clients of one process on one store: b waits for a's refresh of
    // the token it also read (one request per token in the process). a's
    // save of the rotation never answers: b's wait ends when a's store
    // deadline passes, and b sends nothing (the token is spent).
    let h = Harness::new();
    let (a, old_rt) = h.seeded("u1").await;
    let twin = h.twin();
    let b = twin.session("u1", h.store.clone()).unwrap();
    h.store.stall_saves.store(1, Ordering::SeqCst);
    let first = tokio::spawn(async move { a.access_token().await });
    while h.store.stalled.load(Ordering::SeqCst) == 0 || h.clock.pending_timers() == 0 {
        tokio::task::yield_now().await;
    }
    let loads = h.store.loads.load(Ordering::SeqCst);
    let second = tokio::spawn(async move { b.access_token().await });
    while h.store.loads.load(Ordering::SeqCst) == loads {
        tokio::task::yield_now().await;
    }
    h.clock.advance(freshtoken::DEFAULT_STORE_TIMEOUT_MS as u64);
    // A guard against a hang only (the manual clock drives every deadline).
    let guard = std::time::Duration::from_secs(30);
    let second = tokio::time::timeout(guard, second).await;
    let second = second.expect("b's wait ended with a's deadline").unwrap();
    assert!(
        matches!(second, Err(freshtoken::Error::Conflict { .. })),
        "{second:?}"
    );
    let first = tokio::time::timeout(guard, first).await;
    first
        .expect("a's call ended with its deadline")
        .unwrap()
        .ok();
    assert_eq!(h.refresh_requests(), 1, "{:?}", h.emu.counters());
    assert_eq!(h.emu.counters().reuse_detected, 0);
    assert_eq!(h.emu.refresh_token_state(&old_rt), TokenState::Consumed);
}

/// A plain store, and one that offers a lease (a fleet's). A lease keeps
/// processes apart per key; it says nothing of two keys, or two stores,
/// holding one refresh token, which the process's claims must still catch.
fn both_store_kinds(h: &Harness) -> [Arc<dyn TokenStore>; 2] {
    [
        common::TestStore::new(),
        Arc::new(freshtoken::MemoryStore::with_leases(h.clock.clone())),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keys_seeded_with_one_refresh_token_send_it_once() {
    // Each key's record holds the token: one sends it, the other, once it
    // is spent, sends nothing (conflict) instead of revoking the grant.
    let h = Harness::new();
    for store in both_store_kinds(&h) {
        let family = h.emu.seed(CLIENT_ID, "openid offline_access accounts");
        let before = h.refresh_requests();
        let [u1, u2] = ["u1", "u2"].map(|key| h.client.session(key, store.clone()).unwrap());
        for session in [&u1, &u2] {
            seed_refresh_token(session, &family.refresh_token).await;
        }
        h.emu.push_fault(Fault::hold());
        let results = joined_then_released(&h.emu, [u1.access_token(), u2.access_token()]).await;
        let served: Vec<bool> = results.iter().map(Result::is_ok).collect();
        let leases = store.supports_lease();
        assert_eq!(
            served.iter().filter(|ok| **ok).count(),
            1,
            "{served:?} {leases}"
        );
        assert!(results
            .iter()
            .any(|r| matches!(r, Err(freshtoken::Error::Conflict { .. }))));
        assert_eq!(h.refresh_requests() - before, 1, "{:?}", h.emu.counters());
        assert_eq!(h.emu.counters().reuse_detected, 0, "leases: {leases}");
    }
}

/// A rotation is remembered by the clock of the client that made it: a
/// client whose clock reads an hour ahead (a fake one, a host clock) took
/// it for long forgotten and sent the spent token, and the server revoked
/// the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_clock_reads_ahead_never_sends_a_token_another_client_rotated() {
    let h = Harness::new();
    let family = h.emu.seed(CLIENT_ID, "openid offline_access accounts");
    let a = h.client.session("u1", common::TestStore::new()).unwrap();
    seed_refresh_token(&a, &family.refresh_token).await;
    a.access_token().await.unwrap();

    let ahead = Arc::new(freshtoken::ManualClock::new(h.clock.now_ms() + 3_600_000));
    let other = Harness::client_on(&h.emu, h.client.config().clone(), ahead);
    let b = other.session("u1", common::TestStore::new()).unwrap();
    seed_refresh_token(&b, &family.refresh_token).await;
    let error = b.access_token().await.unwrap_err();
    assert_eq!(error.code(), freshtoken::ErrorCode::Conflict, "{error}");
    assert_eq!(h.refresh_requests(), 1, "nothing sent");
    assert_eq!(h.emu.counters().reuse_detected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_token_replayed_into_this_process_is_never_sent_nor_answered() {
    // A second store holding a copy of a refresh token this process already
    // rotated (say, a leaked old copy seeded by the host): nothing is sent
    // (no revoked grant) and the newest tokens are not handed over either.
    let h = Harness::new();
    let [first, replayed] = both_store_kinds(&h);
    for (a_store, b_store) in [(first.clone(), replayed.clone()), (replayed, first)] {
        let family = h.emu.seed(CLIENT_ID, "openid offline_access accounts");
        let before = h.refresh_requests();
        let key = format!("replayed-into-{}", b_store.supports_lease());
        let a = h.client.session(&key, a_store).unwrap();
        seed_refresh_token(&a, &family.refresh_token).await;
        let token = a.access_token().await.unwrap();
        let twin = h.twin();
        let b = twin.session(&key, b_store.clone()).unwrap();
        seed_refresh_token(&b, &family.refresh_token).await;

        let error = b.access_token().await.unwrap_err();
        assert_eq!(error.code(), freshtoken::ErrorCode::Conflict, "{error}");
        assert_eq!(h.refresh_requests() - before, 1, "nothing sent");
        assert_eq!(h.emu.counters().reuse_detected, 0);
        let kept = freshtoken::Record::decode(&b_store.load(&key).await.unwrap().unwrap());
        assert_eq!(
            kept.unwrap().refresh_token.unwrap().expose(),
            family.refresh_token,
            "the replayed store keeps what it had"
        );
        assert_eq!(
            a.access_token().await.unwrap(),
            token,
            "the session lives on"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_expires_in_0_gets_one_refresh_not_one_per_call() {
    // Taken as given, a lifetime of 0 made every call refresh (and each
    // refresh can be a new banking session); it reads as absent instead.
    let options = freshtoken_emulator::Options {
        access_ttl_secs: 0,
        ..Default::default()
    };
    let h = Harness::with(options, |b| b);
    let (session, _) = h.seeded("u1").await;
    let first = session.access_token().await.unwrap();
    for _ in 0..3 {
        assert_eq!(session.access_token().await.unwrap(), first);
    }
    assert_eq!(h.refresh_requests(), 1);
    let info = session.tokens().await.unwrap();
    let lifetime = info.expires_at_ms - h.clock.now_ms();
    assert_eq!(lifetime, 900_000, "the default user-token lifetime");
}

/// A rejected token whose refresh failed is not handed out again after the
/// idle states are evicted (DESIGN point 11): the state holding the
/// rejection is not idle while its record still holds that token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_whose_refresh_failed_survives_eviction() {
    let h = Harness::with(Default::default(), |b| b.max_sessions(10));
    let (session, _) = h.seeded("u1").await;
    let rejected = session.access_token().await.unwrap();
    h.emu.push_fault(Fault::status(400).times(1));
    assert!(session.token_rejected(&rejected).await.is_err());
    assert_eq!(h.refresh_requests(), 2);

    // Other users come and go: the map fills and idle states are evicted.
    for i in 0..40 {
        h.session(&format!("other{i}")).cached_access_token();
    }
    assert!(h.client.session_count() <= 12, "idle states were evicted");
    assert_eq!(session.cached_access_token(), None);
    let next = session.access_token().await.unwrap();
    assert_ne!(
        next, rejected,
        "the rejected token was served after eviction"
    );
    assert_eq!(h.refresh_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_refresh_sends_when_another_process_only_marked_the_record() {
    // Another process wrote its write-ahead marker (the same tokens, in
    // doubt) and died before sending. The record changed, but no renewal
    // arrived: refresh() must not hand back the token it was asked to replace.
    let h = Harness::new();
    let (store, session, family) = on_a_fleet_store_with_its_access_token(&h).await;
    let mut marked = freshtoken::Record::decode(&store.get("u1").unwrap()).unwrap();
    marked.in_doubt = true;
    marked.updated_at_ms += 1;
    store.save("u1", &marked.encode()).await.unwrap();
    let info = session.refresh().await.unwrap();
    assert_ne!(info.access_token, family.access_token, "a new token");
    assert_eq!(h.refresh_requests(), 1, "one refresh sent");
    // A renewal another process stored still answers a forced refresh.
    let other = h.other_process().session("u1", store.clone()).unwrap();
    let theirs = other.refresh().await.unwrap();
    assert_eq!(h.refresh_requests(), 2);
    let ours = session.refresh().await.unwrap();
    assert_eq!(
        ours.access_token, theirs.access_token,
        "their renewal, read"
    );
    assert_eq!(h.refresh_requests(), 2, "nothing more sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_with_the_same_access_token_value_answers_a_forced_refresh() {
    // Some providers renew with the same access-token value (a new expiry,
    // a new refresh token). Stored by another process, that is an arrival:
    // refresh() serves it rather than spend the new refresh token again.
    let h = Harness::new();
    let (store, session, family) = on_a_fleet_store_with_its_access_token(&h).await;
    let renewed_family = h.emu.seed(CLIENT_ID, "openid offline_access");
    let mut renewed = freshtoken::Record::decode(&store.get("u1").unwrap()).unwrap();
    let access = renewed.access_token.as_mut().unwrap();
    access.issued_at_ms += 60_000;
    access.expires_at_ms += 60_000;
    renewed.refresh_token = Some(renewed_family.refresh_token.clone().into());
    renewed.updated_at_ms += 60_000;
    store.save("u1", &renewed.encode()).await.unwrap();
    let info = session.refresh().await.unwrap();
    assert_eq!(info.access_token, family.access_token, "the stored renewal");
    assert_eq!(info.expires_at_ms, access_expiry(&renewed));
    assert_eq!(h.refresh_requests(), 0, "nothing sent");
}

fn access_expiry(record: &freshtoken::Record) -> u64 {
    record.access_token.as_ref().unwrap().expires_at_ms
}

/// A session on a fleet `MemoryStore` seeded with a new emulator family's
/// tokens, its access token read once.
async fn on_a_fleet_store_with_its_access_token(
    h: &Harness,
) -> (
    Arc<freshtoken::MemoryStore>,
    freshtoken::UserSession,
    freshtoken_emulator::Seeded,
) {
    let store = Arc::new(freshtoken::MemoryStore::with_leases(h.clock.clone()));
    let family = h.emu.seed(CLIENT_ID, "openid offline_access");
    let session = h.client.session("u1", store.clone()).unwrap();
    session
        .seed(Seed {
            refresh_token: family.refresh_token.clone().into(),
            access_token: Some(family.access_token.clone().into()),
            expires_in: Some(900),
            ..Seed::default()
        })
        .await
        .unwrap();
    assert_eq!(session.access_token().await.unwrap(), family.access_token);
    (store, session, family)
}

/// A refresh that surely never left (a refused connection) withdraws its
/// write-ahead marker. When the store refused that save too, the
/// withdrawal used to wait in memory and be saved by the next call, over
/// whatever another client had saved meanwhile: that client, finding the
/// marker, had rotated the token, and its rotation was lost for the spent
/// token. Memory now goes back to the marker the store holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_marker_the_store_refused_is_never_saved_over_another_clients_rotation() {
    let h = Harness::new();
    let family = h.emu.seed(CLIENT_ID, "openid offline_access accounts");
    let refused = Config::builder(common::refused_endpoint(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    let offline = Harness::client_on(&h.emu, refused, h.clock.clone());
    let y = offline.session("u1", h.store.clone()).unwrap();
    seed_refresh_token(&y, &family.refresh_token).await;
    h.store.fail_saves.store(1, Ordering::SeqCst); // the withdrawal's save
    let error = y.access_token().await.unwrap_err();
    assert_eq!(error.code(), freshtoken::ErrorCode::Network, "{error}");
    assert!(
        h.store.record("u1").unwrap().in_doubt,
        "the store: the marker"
    );
    assert!(!y.holds_unsaved(), "nothing left to save over the store");

    let x = h.client.session("u1", h.store.clone()).unwrap();
    x.access_token().await.unwrap();
    let rotated = h.store.refresh_token("u1").unwrap();
    assert_ne!(rotated, family.refresh_token);
    y.status().await.unwrap(); // a call saves what its state holds unsaved
    assert_eq!(
        h.store.refresh_token("u1").as_deref(),
        Some(rotated.as_str())
    );
    h.clock.advance(16 * 60 * 1000); // the access token and the claim's memory
    x.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 2);
    assert_eq!(h.emu.counters().reuse_detected, 0);
}

/// A rotation whose save failed is in this process's memory only; the
/// store holds the spent token (in doubt). Another client of the process
/// reading it once ten minutes had passed sent it, and the server revoked
/// the grant. It is remembered while unsaved, and ten minutes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_held_unsaved_is_remembered_however_long_until_it_is_saved() {
    let h = Harness::new();
    let (x, spent) = h.seeded("u1").await;
    h.store.fail_saves.store(u32::MAX, Ordering::SeqCst);
    let error = x.access_token().await.unwrap_err();
    assert_eq!(error.code(), freshtoken::ErrorCode::Storage, "{error}");
    assert!(x.holds_unsaved());
    h.store.fail_saves.store(0, Ordering::SeqCst);
    assert_eq!(h.store.refresh_token("u1").as_deref(), Some(spent.as_str()));
    h.clock.advance(60 * 60 * 1000);

    let other = h.twin();
    let y = other.session("u1", h.store.clone()).unwrap();
    let error = y.access_token().await.unwrap_err();
    assert_eq!(error.code(), freshtoken::ErrorCode::Conflict, "{error}");
    assert_eq!(h.refresh_requests(), 1, "the spent token was not sent");

    // Saved by the state's next call: the other client then reads it.
    x.status().await.unwrap();
    assert!(!x.holds_unsaved());
    y.access_token().await.unwrap();
    assert_eq!(h.refresh_requests(), 2);
    assert_eq!(h.emu.counters().reuse_detected, 0);
}
