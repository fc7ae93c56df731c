//! Refresh tokens: single use, rotation, reuse detection, sliding expiry.

mod common;

use common::*;

#[test]
fn a_refresh_consumes_the_old_token_and_returns_a_working_new_one() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access accounts");
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Active
    );
    assert!(api_accepts(em.port(), &seeded.access_token));

    let reply = refresh(em.port(), &seeded.refresh_token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "openid offline_access accounts");
    let new_rt = body["refresh_token"].as_str().unwrap();
    assert_ne!(new_rt, seeded.refresh_token);
    let claims = jwt_claims(body["id_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "test-client");
    assert_eq!(claims["iss"], em.base_url());
    assert!(api_accepts(
        em.port(),
        body["access_token"].as_str().unwrap()
    ));

    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Consumed
    );
    assert_eq!(em.refresh_token_state(new_rt), TokenState::Active);

    let again = refresh(em.port(), new_rt);
    assert_eq!(again.status, 200);
    let c = em.counters();
    assert_eq!(
        (c.refresh_success, c.rotations, c.token_requests),
        (2, 2, 2)
    );
    assert_eq!(c.by_grant.get("refresh_token"), Some(&2));
}

#[test]
fn reusing_a_consumed_token_revokes_the_whole_family() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    let first = refresh(em.port(), &seeded.refresh_token).json();
    let live_rt = first["refresh_token"].as_str().unwrap();
    let live_at = first["access_token"].as_str().unwrap();

    let reuse = refresh(em.port(), &seeded.refresh_token);
    assert_eq!(reuse.status, 400);
    assert_eq!(reuse.json()["error"], "invalid_grant");
    assert_eq!(reuse.header("content-type"), Some("application/json"));

    assert_eq!(em.refresh_token_state(live_rt), TokenState::Revoked);
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Consumed
    );
    assert!(!api_accepts(em.port(), live_at));
    assert!(!api_accepts(em.port(), &seeded.access_token));
    let dead = refresh(em.port(), live_rt);
    assert_eq!(dead.json()["error"], "invalid_grant");

    let c = em.counters();
    assert_eq!(c.reuse_detected, 1);
    assert_eq!(c.invalid_grant, 2);

    // Other families are untouched.
    let other = em.seed("test-client", "openid offline_access");
    assert_eq!(refresh(em.port(), &other.refresh_token).status, 200);
}

#[test]
fn without_reuse_detection_a_reused_token_only_fails() {
    let em = Emulator::start(Options {
        reuse_detection: false,
        ..Options::default()
    })
    .unwrap();
    let seeded = em.seed("test-client", "openid offline_access");
    let live_rt = refresh(em.port(), &seeded.refresh_token).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        refresh(em.port(), &seeded.refresh_token).json()["error"],
        "invalid_grant"
    );
    assert_eq!(em.refresh_token_state(&live_rt), TokenState::Active);
    assert_eq!(refresh(em.port(), &live_rt).status, 200);
    assert_eq!(em.counters().reuse_detected, 0);

    em.set_reuse_detection(true);
    assert_eq!(
        refresh(em.port(), &live_rt).json()["error"],
        "invalid_grant"
    );
    assert_eq!(em.counters().reuse_detected, 1);
}

#[test]
fn the_refresh_lifetime_slides_with_each_rotation() {
    let em = start();
    em.set_ttls(None, None, Some(100));
    let seeded = em.seed("test-client", "openid offline_access");

    em.advance_clock(90);
    let rt2 = refresh(em.port(), &seeded.refresh_token).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    em.advance_clock(90); // 180 s after the seed, 90 s after the rotation
    let rt3 = refresh(em.port(), &rt2).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(em.refresh_token_state(&rt3), TokenState::Active);

    em.advance_clock(100);
    assert_eq!(em.refresh_token_state(&rt3), TokenState::Expired);
    let expired = refresh(em.port(), &rt3);
    assert_eq!(expired.status, 400);
    assert_eq!(expired.json()["error"], "invalid_grant");
}

#[test]
fn access_tokens_expire_by_the_emulator_clock() {
    let em = start();
    em.set_ttls(Some(30), None, None);
    let seeded = em.seed("test-client", "openid offline_access");
    assert_eq!(seeded.expires_in, 30);
    // The clock is whole real seconds plus the offset: 20, not 29, so that
    // the seconds between the seed and the check cannot expire it.
    em.advance_clock(20);
    assert!(api_accepts(em.port(), &seeded.access_token));
    em.advance_clock(10);
    assert!(!api_accepts(em.port(), &seeded.access_token));
    // The refresh token still works and the new access token does too.
    let body = refresh(em.port(), &seeded.refresh_token).json();
    assert_eq!(body["expires_in"], 30);
    assert!(api_accepts(
        em.port(),
        body["access_token"].as_str().unwrap()
    ));
}

#[test]
fn a_token_of_another_client_or_an_unknown_one_is_invalid_grant() {
    let mut opts = Options::default();
    opts.clients
        .push(ClientSpec::confidential("other", "other-secret"));
    let em = Emulator::start(opts).unwrap();
    let seeded = em.seed("test-client", "openid offline_access");
    let stolen = token(
        em.port(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "other"),
            ("client_secret", "other-secret"),
            ("refresh_token", &seeded.refresh_token),
        ],
    );
    assert_eq!(stolen.status, 400);
    assert_eq!(stolen.json()["error"], "invalid_grant");
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Active
    );

    let unknown = refresh(em.port(), "no-such-token");
    assert_eq!(unknown.json()["error"], "invalid_grant");
    assert_eq!(em.refresh_token_state("no-such-token"), TokenState::Unknown);
    assert_eq!(em.counters().invalid_grant, 2);
}

#[test]
fn refresh_may_narrow_but_not_widen_the_scope() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access accounts");
    let narrowed = token(
        em.port(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "test-client"),
            ("client_secret", "test-secret"),
            ("refresh_token", &seeded.refresh_token),
            ("scope", "accounts"),
        ],
    )
    .json();
    assert_eq!(narrowed["scope"], "accounts");
    let widened = token(
        em.port(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "test-client"),
            ("client_secret", "test-secret"),
            ("refresh_token", narrowed["refresh_token"].as_str().unwrap()),
            ("scope", "accounts transactions"),
        ],
    );
    assert_eq!(widened.json()["error"], "invalid_scope");
}

#[test]
fn malformed_token_requests_get_rfc6749_errors() {
    let em = start();
    let port = em.port();
    let missing = token(
        port,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "test-client"),
            ("client_secret", "test-secret"),
        ],
    );
    assert_eq!(
        (missing.status, missing.json()["error"].clone()),
        (400, "invalid_request".into())
    );
    let no_grant = token(port, &[("client_id", "test-client")]);
    assert_eq!(no_grant.json()["error"], "invalid_request");
    let unsupported = token(
        port,
        &[("grant_type", "password"), ("client_id", "test-client")],
    );
    assert_eq!(unsupported.status, 400);
    assert_eq!(unsupported.json()["error"], "unsupported_grant_type");
    let twice = send(
        port,
        "POST",
        "/connect/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"grant_type=refresh_token&grant_type=refresh_token",
    )
    .unwrap();
    assert_eq!(twice.json()["error"], "invalid_request");
    let json_body = send(
        port,
        "POST",
        "/connect/token",
        &[("Content-Type", "application/json")],
        br#"{"grant_type":"refresh_token"}"#,
    )
    .unwrap();
    assert_eq!(json_body.status, 400);
    assert_eq!(json_body.json()["error"], "invalid_request");
    let get = send(port, "GET", "/connect/token", &[], b"").unwrap();
    assert_eq!(get.status, 405);
    let c = em.counters();
    assert_eq!(c.token_requests, 5, "GET is not a token request");
    assert_eq!(c.by_grant.get("password"), Some(&1));
}

#[test]
fn reset_forgets_tokens_counters_faults_and_the_clock() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    refresh(em.port(), &seeded.refresh_token);
    em.push_fault(Fault::status(500));
    em.advance_clock(1000);
    em.set_ttls(Some(5), None, None);
    let before = em.now();
    em.reset();
    assert!(em.now() < before);
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Unknown
    );
    assert_eq!(em.counters(), Default::default());
    assert!(em.pending_faults().is_empty());
    assert_eq!(
        em.seed("test-client", "openid offline_access").expires_in,
        900
    );
}
