//! Every fault kind, the queue's count and grant filter, and concurrency.

mod common;

use std::time::Instant;

use common::*;
use freshtoken_emulator::FaultKind;
use serde_json::json;

#[test]
fn delay_waits_then_processes() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::delay(150));
    let started = Instant::now();
    let reply = refresh(em.port(), &seeded.refresh_token);
    assert!(started.elapsed().as_millis() >= 150);
    assert_eq!(reply.status, 200);
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Consumed
    );
    assert_eq!(em.counters().faults_applied, 1);
}

#[test]
fn status_answers_without_processing() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::status(503));
    let reply = refresh(em.port(), &seeded.refresh_token);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json(), json!({"error": "temporarily_unavailable"}));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Active
    );

    em.push_fault(Fault::new(FaultKind::Status {
        status: 500,
        body: Some(r#"{"error":"server_error"}"#.into()),
    }));
    let custom = refresh(em.port(), &seeded.refresh_token);
    assert_eq!(
        (custom.status, custom.json()["error"].clone()),
        (500, "server_error".into())
    );
    let c = em.counters();
    assert_eq!(
        (c.token_requests, c.faults_applied, c.refresh_success),
        (2, 2, 0)
    );
    assert_eq!(c.by_grant.get("refresh_token"), Some(&2));
}

#[test]
fn rate_limit_sends_retry_after_as_given() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::rate_limit("2"));
    em.push_fault(Fault::rate_limit("Wed, 21 Oct 2015 07:28:00 GMT"));
    let first = refresh(em.port(), &seeded.refresh_token);
    assert_eq!(
        (first.status, first.header("retry-after")),
        (429, Some("2"))
    );
    assert!(first.json()["error"].is_string());
    let second = refresh(em.port(), &seeded.refresh_token);
    assert_eq!(
        second.header("retry-after"),
        Some("Wed, 21 Oct 2015 07:28:00 GMT")
    );
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Active
    );
}

#[test]
fn drop_before_closes_without_processing() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::drop_before());
    assert!(try_refresh(em.port(), &seeded.refresh_token).is_err());
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Active
    );
    assert_eq!(refresh(em.port(), &seeded.refresh_token).status, 200);
}

#[test]
fn drop_after_commit_rotates_then_closes_silently() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::drop_after_commit());
    assert!(try_refresh(em.port(), &seeded.refresh_token).is_err());
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Consumed
    );
    let c = em.counters();
    assert_eq!(
        (c.rotations, c.refresh_success, c.faults_applied),
        (1, 1, 1)
    );
    // The lost rotation: the client only has the old token, now consumed.
    let retry = refresh(em.port(), &seeded.refresh_token);
    assert_eq!(retry.json()["error"], "invalid_grant");
    assert_eq!(em.counters().reuse_detected, 1);
}

#[test]
fn expires_in_as_rotates_and_sends_that_expires_in() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::expires_in_as(json!("3599")).for_grant("refresh_token"));
    let reply = refresh(em.port(), &seeded.refresh_token);
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["expires_in"], json!("3599"));
    assert_eq!(body["token_type"], "Bearer");
    let rotated = body["refresh_token"].as_str().unwrap();
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Consumed
    );
    assert_eq!(em.refresh_token_state(rotated), TokenState::Active);
    // An error answer is left as it is.
    em.push_fault(Fault::expires_in_as(json!(1.5)));
    let refused = refresh(em.port(), "no-such-token");
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "invalid_grant");
    assert_eq!(refused.json().get("expires_in"), None);
    assert_eq!(em.counters().faults_applied, 2);
}

#[test]
fn malformed_json_is_a_truncated_body() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::malformed_json());
    let reply = refresh(em.port(), &seeded.refresh_token);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(serde_json::from_slice::<serde_json::Value>(&reply.body).is_err());
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Active
    );
}

#[test]
fn body_sends_exactly_the_given_response() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    let odd = r#"{"access_token":"a","token_type":"mac","expires_in":"soon"}"#;
    em.push_fault(Fault::body(200, odd));
    em.push_fault(Fault::new(FaultKind::Body {
        status: 401,
        body: "nope".into(),
        content_type: "text/plain".into(),
    }));
    let first = refresh(em.port(), &seeded.refresh_token);
    assert_eq!((first.status, first.text()), (200, odd.to_owned()));
    let second = refresh(em.port(), &seeded.refresh_token);
    assert_eq!((second.status, second.text()), (401, "nope".to_owned()));
    assert_eq!(second.header("content-type"), Some("text/plain"));
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Active
    );
}

#[test]
fn oversize_is_valid_json_of_the_given_size() {
    let em = start();
    em.push_fault(Fault::oversize(3 * 1024 * 1024));
    let reply = client_credentials(em.port(), &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 3 * 1024 * 1024);
    assert_eq!(reply.json()["access_token"], "x");
    assert_eq!(em.counters().client_credentials_issued, 0);
}

#[test]
fn html_is_an_error_page() {
    let em = start();
    em.push_fault(Fault::html(502));
    let reply = client_credentials(em.port(), &[]);
    assert_eq!(reply.status, 502);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(reply.text().contains("<html>"));
}

#[test]
fn count_and_grant_filter_decide_which_requests_are_hit() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::status(500).times(2).for_grant("refresh_token"));
    em.push_fault(Fault::status(502));
    // client_credentials passes the refresh-only fault by and takes the next.
    assert_eq!(client_credentials(em.port(), &[]).status, 502);
    assert_eq!(client_credentials(em.port(), &[]).status, 200);
    assert_eq!(refresh(em.port(), &seeded.refresh_token).status, 500);
    assert_eq!(
        em.pending_faults(),
        vec![Fault::status(500).for_grant("refresh_token")]
    );
    assert_eq!(refresh(em.port(), &seeded.refresh_token).status, 500);
    assert_eq!(refresh(em.port(), &seeded.refresh_token).status, 200);
    assert!(em.pending_faults().is_empty());
    assert_eq!(em.counters().faults_applied, 3);

    em.push_fault(Fault::status(500).times(5));
    em.clear_faults();
    assert_eq!(client_credentials(em.port(), &[]).status, 200);
}

#[test]
fn faults_queue_over_http_as_objects_or_arrays() {
    let em = start();
    let port = em.port();
    let one = admin(
        port,
        "POST",
        "faults",
        Some(json!({"kind": "rate_limit", "retry_after": 7})),
    );
    assert_eq!(one.status, 200, "{}", one.text());
    let many = admin(
        port,
        "POST",
        "faults",
        Some(
            json!([{"kind": "html"}, {"kind": "delay", "ms": 1, "count": 2, "grant": "refresh_token"}]),
        ),
    );
    assert_eq!(many.json(), json!({"added": 2, "queued": 3}));
    let listed = admin(port, "GET", "faults", None).json();
    assert_eq!(
        listed[0],
        json!({"kind": "rate_limit", "retry_after": "7", "count": 1})
    );
    assert_eq!(
        listed[1],
        json!({"kind": "html", "status": 502, "count": 1})
    );
    assert_eq!(
        client_credentials(port, &[]).header("retry-after"),
        Some("7")
    );
    assert_eq!(
        admin(port, "DELETE", "faults", None).json(),
        json!({"cleared": 2})
    );
    assert_eq!(client_credentials(port, &[]).status, 200);

    let bad = admin(port, "POST", "faults", Some(json!({"kind": "explode"})));
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "invalid_request");
}

#[test]
fn concurrent_token_requests_are_measured() {
    let em = start();
    assert_eq!(client_credentials(em.port(), &[]).status, 200);
    assert_eq!(client_credentials(em.port(), &[]).status, 200);
    assert_eq!(em.counters().max_concurrent_token_requests, 1);

    // Held until all four are in: they overlap for certain.
    em.push_fault(Fault::hold().times(4));
    let port = em.port();
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || client_credentials(port, &[]).status))
        .collect();
    assert_eq!(em.wait_held(4), 4);
    assert_eq!(em.counters().max_concurrent_token_requests, 4);
    assert_eq!(em.release_held(), 4);
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert_eq!(em.counters().max_concurrent_token_requests, 4);
}

#[test]
fn dropping_the_emulator_does_not_wait_for_delayed_requests() {
    let em = start();
    // Far longer than the bound below, which a loaded machine never nears.
    em.push_fault(Fault::delay(600_000));
    let port = em.port();
    let client = std::thread::spawn(move || {
        try_token_with(port, &[], &[("grant_type", "client_credentials")])
    });
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while em.counters().faults_applied == 0 {
        assert!(Instant::now() < deadline, "the request never arrived");
        std::thread::yield_now();
    }
    let started = Instant::now();
    drop(em);
    assert!(
        started.elapsed().as_secs() < 60,
        "drop waited for the delay"
    );
    assert!(
        client.join().unwrap().is_err(),
        "the delayed request got no answer"
    );
}
