//! The `hold` fault: requests parked unanswered until the test releases
//! them, then processed (or met by the next fault), in Rust and over HTTP.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn a_held_refresh_is_unanswered_until_released_then_rotates() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::hold());
    let port = em.port();
    let rt = seeded.refresh_token.clone();
    let client = std::thread::spawn(move || refresh(port, &rt));

    assert_eq!(em.wait_held(1), 1);
    assert_eq!(em.held(), 1);
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Active,
        "a held request is not processed"
    );
    let c = em.counters();
    assert_eq!((c.token_requests, c.faults_applied, c.rotations), (1, 1, 0));
    assert!(!client.is_finished(), "a held request is not answered");

    assert_eq!(em.release_held(), 1);
    let reply = client.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let new_rt = reply.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(em.refresh_token_state(&new_rt), TokenState::Active);
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Consumed
    );
    let c = em.counters();
    assert_eq!(
        (c.token_requests, c.rotations, c.refresh_success),
        (1, 1, 1)
    );
    assert_eq!(em.held(), 0);
    assert_eq!(em.release_held(), 0, "nothing left to release");
}

#[test]
fn released_requests_meet_the_next_queued_fault_and_overlap_for_certain() {
    let em = start();
    em.push_fault(Fault::hold().times(3));
    em.push_fault(Fault::status(503));
    let port = em.port();
    let clients: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || client_credentials(port, &[]).status))
        .collect();
    assert_eq!(em.wait_held(3), 3);
    assert_eq!(em.counters().max_concurrent_token_requests, 3);
    assert!(em.pending_faults().len() == 1, "the hold fault is used up");

    assert_eq!(em.release_held(), 3);
    let mut statuses: Vec<u16> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 503]);
    let c = em.counters();
    assert_eq!((c.faults_applied, c.client_credentials_issued), (4, 2));
    assert_eq!(c.token_requests, 3, "a released request is counted once");
}

#[test]
fn a_released_request_is_never_held_again() {
    let em = start();
    em.push_fault(Fault::hold().times(2));
    let port = em.port();
    let first = std::thread::spawn(move || client_credentials(port, &[]).status);
    em.wait_held(1);
    assert_eq!(em.release_held(), 1);
    assert_eq!(
        first.join().unwrap(),
        200,
        "released, not held by the second hold"
    );
    assert_eq!(em.pending_faults(), vec![Fault::hold()]);
    // The hold left over is for the next request.
    let second = std::thread::spawn(move || client_credentials(port, &[]).status);
    em.wait_held(1);
    em.release_held();
    assert_eq!(second.join().unwrap(), 200);
    assert!(em.pending_faults().is_empty());
}

#[test]
fn a_hold_for_another_grant_lets_requests_pass() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::hold().for_grant("refresh_token"));
    assert_eq!(client_credentials(em.port(), &[]).status, 200);
    assert_eq!(em.held(), 0);
    let port = em.port();
    let client = std::thread::spawn(move || refresh(port, &seeded.refresh_token).status);
    em.wait_held(1);
    em.release_held();
    assert_eq!(client.join().unwrap(), 200);
}

#[test]
fn waiting_for_more_than_are_held_gives_up_at_its_limit() {
    let em = start();
    let handle = em.held_requests();
    assert_eq!(handle.wait_timeout(1, Duration::from_millis(20)), Err(0));
    let moved = std::thread::spawn(move || handle.count());
    assert_eq!(moved.join().unwrap(), 0);
}

#[test]
fn reset_releases_held_requests_into_the_new_state() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::hold());
    let port = em.port();
    let client = std::thread::spawn(move || refresh(port, &seeded.refresh_token));
    em.wait_held(1);
    em.reset();
    assert_eq!(em.held(), 0);
    let reply = client.join().unwrap();
    assert_eq!(
        reply.json()["error"],
        "invalid_grant",
        "the token was forgotten"
    );
}

#[test]
fn dropping_the_emulator_does_not_wait_for_held_requests() {
    let em = start();
    em.push_fault(Fault::hold());
    let port = em.port();
    let client = std::thread::spawn(move || {
        try_token_with(port, &[], &[("grant_type", "client_credentials")])
    });
    em.wait_held(1);
    let started = Instant::now();
    drop(em);
    assert!(started.elapsed().as_secs() < 60, "drop waited for the hold");
    assert!(
        client.join().unwrap().is_err(),
        "the held request got no answer"
    );
}

#[test]
fn hold_wait_and_release_over_http() {
    let em = start();
    let port = em.port();
    let seeded = em.seed("test-client", "openid offline_access");
    let added = admin(port, "POST", "faults", Some(json!({"kind": "hold"})));
    assert_eq!(added.json(), json!({"added": 1, "queued": 1}));
    assert_eq!(
        admin(port, "GET", "faults", None).json(),
        json!([{"kind": "hold", "count": 1}])
    );
    let rt = seeded.refresh_token.clone();
    let client = std::thread::spawn(move || refresh(port, &rt));

    let waited = admin(port, "POST", "held/wait", Some(json!({"count": 1})));
    assert_eq!((waited.status, waited.json()), (200, json!({"held": 1})));
    assert_eq!(admin(port, "GET", "held", None).json(), json!({"held": 1}));
    let too_many = admin(
        port,
        "POST",
        "held/wait",
        Some(json!({"count": 2, "timeout_ms": 20})),
    );
    assert_eq!(too_many.status, 504);
    assert_eq!(too_many.json()["error"], "timeout");
    assert_eq!(too_many.json()["held"], 1);

    assert_eq!(
        admin(port, "POST", "held/release", None).json(),
        json!({"released": 1})
    );
    assert_eq!(client.join().unwrap().status, 200);
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Consumed
    );
    assert_eq!(admin(port, "GET", "held", None).json(), json!({"held": 0}));

    let typo = admin(port, "POST", "held/wait", Some(json!({"cuont": 1})));
    assert_eq!(typo.status, 400);
    assert_eq!(admin(port, "GET", "held/release", None).status, 405);
}

#[test]
fn an_http_long_poll_wakes_when_the_request_arrives() {
    let em = start();
    em.push_fault(Fault::hold());
    let port = em.port();
    // Whichever arrives first, the long-poll answers once the request is held.
    let waiter = std::thread::spawn(move || {
        admin(
            port,
            "POST",
            "held/wait",
            Some(json!({"count": 1, "timeout_ms": 60000})),
        )
    });
    let client = std::thread::spawn(move || client_credentials(port, &[]).status);
    let waited = waiter.join().unwrap();
    assert_eq!((waited.status, waited.json()), (200, json!({"held": 1})));
    em.release_held();
    assert_eq!(client.join().unwrap(), 200);
}
