//! `POST /connect/revocation` (RFC 7009): what it revokes, client
//! authentication, errors, counters and faults.

mod common;

use std::time::Instant;

use common::*;
use freshtoken_emulator::REVOCATION_SELECTOR;
use serde_json::json;

const UNAUTHENTICATED: &str = "UNAUTHENTICATED: Token is expired or malformed";

/// Asserts RFC 7009 §2.2's answer: 200 with an empty body.
fn assert_revoked_ok(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.body.is_empty(), "body: {:?}", reply.text());
    assert_eq!(reply.header("content-length"), Some("0"));
}

/// `/api/…` with a bearer token.
fn rest_status(port: u16, access_token: &str) -> u16 {
    let auth = format!("Bearer {access_token}");
    send(
        port,
        "GET",
        "/api/accounts",
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap()
    .status
}

#[test]
fn a_revoked_refresh_token_is_dead_with_its_access_tokens() {
    let em = start();
    let port = em.port();
    let seeded = em.seed("test-client", "openid offline_access");
    let other = em.seed("test-client", "openid offline_access");
    let rotated = refresh(port, &seeded.refresh_token).json();
    let rt = rotated["refresh_token"].as_str().unwrap();
    let at = rotated["access_token"].as_str().unwrap();
    assert!(api_accepts(port, at));

    assert_revoked_ok(&revoke(port, rt, Some("refresh_token")));
    assert_eq!(em.refresh_token_state(rt), TokenState::Revoked);
    let again = refresh(port, rt);
    assert_eq!(
        (again.status, again.json()["error"].clone()),
        (400, "invalid_grant".into())
    );
    // Every access token of the grant goes with it, the older one too.
    for token in [at, seeded.access_token.as_str()] {
        assert_eq!(
            graphql(port, Some(token))["errors"][0]["message"],
            UNAUTHENTICATED
        );
        assert_eq!(rest_status(port, token), 401);
    }
    // Another grant of the same client is untouched.
    assert_eq!(
        em.refresh_token_state(&other.refresh_token),
        TokenState::Active
    );
    assert!(api_accepts(port, &other.access_token));

    let c = em.counters();
    assert_eq!(c.revocation_requests, 1);
    assert_eq!(c.revocation_by_hint, [("refresh_token".into(), 1)].into());
    assert_eq!(c.tokens_revoked, 1);
    // A revocation is not a token request; the refresh after it was.
    assert_eq!(c.token_requests, 2);
    assert_eq!(c.invalid_grant, 1);
}

#[test]
fn a_revoked_access_token_is_rejected_like_an_expired_one() {
    let em = start();
    let port = em.port();
    let seeded = em.seed("test-client", "openid offline_access");
    let auth = basic("test-client", "test-secret");
    let reply = try_revoke_with(
        port,
        &[("Authorization", &auth)],
        &[
            ("token", &seeded.access_token),
            ("token_type_hint", "access_token"),
        ],
    )
    .unwrap();
    assert_revoked_ok(&reply);
    let body = graphql(port, Some(&seeded.access_token));
    assert_eq!(body["errors"][0]["message"], UNAUTHENTICATED);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let auth = format!("Bearer {}", seeded.access_token);
    let rest = send(port, "GET", "/api/x", &[("Authorization", &auth)], b"").unwrap();
    assert_eq!(rest.status, 401);
    assert!(rest
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer error=\"invalid_token\""));
    // The refresh token lives on and mints working access tokens.
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Active
    );
    let fresh = refresh(port, &seeded.refresh_token).json();
    assert!(api_accepts(port, fresh["access_token"].as_str().unwrap()));

    // A client token (no refresh token, no family) can be revoked too, and
    // the hint is only a hint.
    let client_token = client_credentials(port, &[]).json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(api_accepts(port, &client_token));
    assert_revoked_ok(&revoke(port, &client_token, Some("refresh_token")));
    assert!(!api_accepts(port, &client_token));
    let c = em.counters();
    assert_eq!((c.revocation_requests, c.tokens_revoked), (2, 2));
    assert_eq!(
        c.revocation_by_hint,
        [("access_token".into(), 1), ("refresh_token".into(), 1)].into()
    );
}

#[test]
fn unknown_dead_and_foreign_tokens_get_200_and_change_nothing() {
    let mut opts = Options::default();
    opts.clients
        .push(ClientSpec::confidential("other-client", "other-secret"));
    let em = Emulator::start(opts).unwrap();
    let port = em.port();
    assert_revoked_ok(&revoke(port, "never-issued", None));
    assert_revoked_ok(&revoke(port, "never-issued", Some("access_token")));

    // A consumed refresh token: 200, and its live successor stays live.
    let seeded = em.seed("test-client", "openid offline_access");
    let next = refresh(port, &seeded.refresh_token).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_revoked_ok(&revoke(port, &seeded.refresh_token, None));
    assert_eq!(em.refresh_token_state(&next), TokenState::Active);

    // Another client's token: 200, not revoked.
    let foreign = try_revoke_with(
        port,
        &[],
        &[
            ("client_id", "other-client"),
            ("client_secret", "other-secret"),
            ("token", &next),
        ],
    )
    .unwrap();
    assert_revoked_ok(&foreign);
    assert_eq!(em.refresh_token_state(&next), TokenState::Active);

    // Twice: both 200, revoked once.
    assert_revoked_ok(&revoke(port, &next, None));
    assert_revoked_ok(&revoke(port, &next, None));
    assert_eq!(em.refresh_token_state(&next), TokenState::Revoked);

    // An expired access token stays merely expired.
    let late = em.seed("test-client", "openid offline_access");
    em.advance_clock(900);
    assert_revoked_ok(&revoke(port, &late.access_token, Some("access_token")));

    let c = em.counters();
    assert_eq!((c.revocation_requests, c.tokens_revoked), (7, 1));
    assert_eq!(c.revocation_by_hint, [("access_token".into(), 2)].into());
}

#[test]
fn bad_client_authentication_is_401_invalid_client() {
    let em = start();
    let port = em.port();
    let seeded = em.seed("test-client", "openid offline_access");
    let rt = seeded.refresh_token.as_str();
    let wrong_secret = try_revoke_with(
        port,
        &[],
        &[
            ("client_id", "test-client"),
            ("client_secret", "nope"),
            ("token", rt),
        ],
    )
    .unwrap();
    assert_eq!(wrong_secret.status, 401);
    assert_eq!(wrong_secret.json()["error"], "invalid_client");
    let no_credentials =
        try_revoke_with(port, &[], &[("client_id", "test-client"), ("token", rt)]).unwrap();
    assert_eq!(no_credentials.status, 401);
    let nobody = try_revoke_with(port, &[], &[("token", rt)]).unwrap();
    assert_eq!(nobody.status, 401);
    let auth = basic("test-client", "wrong");
    let wrong_basic = try_revoke_with(port, &[("Authorization", &auth)], &[("token", rt)]).unwrap();
    assert_eq!(
        (wrong_basic.status, wrong_basic.json()["error"].clone()),
        (401, "invalid_client".into())
    );
    assert!(wrong_basic
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic"));
    // Two methods at once is a malformed request, as at the token endpoint.
    let auth = basic("test-client", "test-secret");
    let both = try_revoke_with(
        port,
        &[("Authorization", &auth)],
        &[("client_secret", "test-secret"), ("token", rt)],
    )
    .unwrap();
    assert_eq!(
        (both.status, both.json()["error"].clone()),
        (400, "invalid_request".into())
    );

    assert_eq!(em.refresh_token_state(rt), TokenState::Active);
    let c = em.counters();
    assert_eq!(
        (c.revocation_requests, c.invalid_client, c.tokens_revoked),
        (5, 4, 0)
    );
}

#[test]
fn private_key_jwt_and_public_clients_authenticate_as_at_the_token_endpoint() {
    let em = start();
    let port = em.port();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let assertion = |jti: &str, aud: &str| {
        fake_jwt(&json!({
            "iss": "test-client", "sub": "test-client", "aud": aud,
            "jti": jti, "iat": now, "nbf": now, "exp": now + 60,
        }))
    };
    let with_assertion = |jwt: &str, token: &str| {
        try_revoke_with(
            port,
            &[],
            &[
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", jwt),
                ("token", token),
            ],
        )
        .unwrap()
    };
    let seeded = em.seed("test-client", "openid offline_access");
    // The audience is the token endpoint here too (Stitch's rule).
    let to_revocation = with_assertion(
        &assertion("j1", &em.revocation_endpoint()),
        &seeded.refresh_token,
    );
    assert_eq!(to_revocation.status, 401);
    let good = assertion("j2", &em.token_endpoint());
    assert_revoked_ok(&with_assertion(&good, &seeded.refresh_token));
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Revoked
    );
    let replayed = with_assertion(&good, "anything");
    assert_eq!(
        (replayed.status, replayed.json()["error"].clone()),
        (401, "invalid_client".into())
    );

    // A public client sends its client_id only.
    let public = em.seed("public-client", "openid offline_access");
    let reply = try_revoke_with(
        port,
        &[],
        &[
            ("client_id", "public-client"),
            ("token", &public.refresh_token),
        ],
    )
    .unwrap();
    assert_revoked_ok(&reply);
    assert_eq!(
        em.refresh_token_state(&public.refresh_token),
        TokenState::Revoked
    );
    assert_eq!(em.counters().tokens_revoked, 2);
}

#[test]
fn malformed_requests_are_400() {
    let em = start();
    let port = em.port();
    let seeded = em.seed("test-client", "openid offline_access");
    let rt = seeded.refresh_token.as_str();
    let credentials = [
        ("client_id", "test-client"),
        ("client_secret", "test-secret"),
    ];

    let missing = try_revoke_with(port, &[], &credentials).unwrap();
    assert_eq!(
        (missing.status, missing.json()["error"].clone()),
        (400, "invalid_request".into())
    );
    let odd_hint = revoke(port, rt, Some("id_token"));
    assert_eq!(
        (odd_hint.status, odd_hint.json()["error"].clone()),
        (400, "unsupported_token_type".into())
    );
    assert_eq!(em.refresh_token_state(rt), TokenState::Active);
    let twice = send(
        port,
        "POST",
        "/connect/revocation",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("client_id=test-client&client_secret=test-secret&token={rt}&token={rt}").as_bytes(),
    )
    .unwrap();
    assert_eq!(twice.status, 400);
    let json_body = send(
        port,
        "POST",
        "/connect/revocation",
        &[("Content-Type", "application/json")],
        json!({"token": rt}).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        (json_body.status, json_body.json()["error"].clone()),
        (400, "invalid_request".into())
    );
    // An empty hint counts as absent.
    let empty_hint = try_revoke_with(
        port,
        &[],
        &[
            credentials[0],
            credentials[1],
            ("token", rt),
            ("token_type_hint", ""),
        ],
    )
    .unwrap();
    assert_revoked_ok(&empty_hint);
    let c = em.counters();
    assert_eq!(c.revocation_requests, 5);
    assert_eq!(c.revocation_by_hint, [("id_token".into(), 1)].into());
}

#[test]
fn other_methods_get_405_and_are_not_counted() {
    let em = start();
    for method in ["GET", "PUT", "DELETE"] {
        let reply = send(em.port(), method, "/connect/revocation", &[], b"").unwrap();
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("POST, OPTIONS"));
    }
    let preflight = send(em.port(), "OPTIONS", "/connect/revocation", &[], b"").unwrap();
    assert_eq!(preflight.status, 204);
    assert_eq!(em.counters().revocation_requests, 0);
}

#[test]
fn faults_for_revocation_hit_revocation_requests_only() {
    let em = start();
    let port = em.port();
    let seeded = em.seed("test-client", "openid offline_access");
    let rt = seeded.refresh_token.as_str();
    em.push_fault(Fault::status(500));
    em.push_fault(Fault::rate_limit("3").for_revocation());
    em.push_fault(Fault::status(503).for_revocation());

    // The unfiltered fault is for token requests: revocations pass it by.
    let limited = revoke(port, rt, None);
    assert_eq!(
        (limited.status, limited.header("retry-after")),
        (429, Some("3"))
    );
    let unavailable = revoke(port, rt, None);
    assert_eq!(unavailable.status, 503);
    assert_eq!(
        unavailable.json(),
        json!({"error": "temporarily_unavailable"})
    );
    assert_eq!(em.refresh_token_state(rt), TokenState::Active);
    assert_eq!(em.pending_faults(), vec![Fault::status(500)]);
    // A token request never takes a revocation fault, even one that
    // claims to be a "revocation" grant.
    em.push_fault(Fault::html(502).for_revocation());
    let pseudo = token(port, &[("grant_type", REVOCATION_SELECTOR)]);
    assert_eq!(pseudo.status, 500, "the unfiltered fault, not the html one");
    let c = em.counters();
    assert_eq!((c.revocation_requests, c.faults_applied), (2, 3));
    em.clear_faults();
    assert_revoked_ok(&revoke(port, rt, None));
    assert_eq!(em.refresh_token_state(rt), TokenState::Revoked);
}

#[test]
fn drops_delays_and_holds_apply_to_revocation() {
    let em = start();
    let port = em.port();
    let a = em.seed("test-client", "openid offline_access");
    let b = em.seed("test-client", "openid offline_access");
    let c = em.seed("test-client", "openid offline_access");

    // Dropped before: nothing revoked, no answer.
    em.push_fault(Fault::drop_before().for_revocation());
    assert!(try_revoke(port, &a.refresh_token, None).is_err());
    assert_eq!(em.refresh_token_state(&a.refresh_token), TokenState::Active);
    // Dropped after: revoked, but the client never heard.
    em.push_fault(Fault::drop_after_commit().for_revocation());
    assert!(try_revoke(port, &a.refresh_token, None).is_err());
    assert_eq!(
        em.refresh_token_state(&a.refresh_token),
        TokenState::Revoked
    );

    em.push_fault(Fault::delay(150).for_revocation());
    let started = Instant::now();
    assert_revoked_ok(&revoke(port, &b.refresh_token, None));
    assert!(started.elapsed().as_millis() >= 150);

    // Held: not revoked until released.
    em.push_fault(Fault::hold().for_revocation());
    let token = c.refresh_token.clone();
    let client = std::thread::spawn(move || revoke(port, &token, None));
    assert_eq!(em.wait_held(1), 1);
    assert_eq!(em.refresh_token_state(&c.refresh_token), TokenState::Active);
    assert_eq!(em.release_held(), 1);
    assert_revoked_ok(&client.join().unwrap());
    assert_eq!(
        em.refresh_token_state(&c.refresh_token),
        TokenState::Revoked
    );
    let counted = em.counters();
    assert_eq!(
        (
            counted.revocation_requests,
            counted.tokens_revoked,
            counted.faults_applied
        ),
        (4, 3, 4)
    );
}

#[test]
fn revocation_faults_queue_over_http() {
    let em = start();
    let port = em.port();
    let seeded = em.seed("test-client", "openid offline_access");
    let added = admin(
        port,
        "POST",
        "faults",
        Some(json!({"kind": "status", "status": 503, "grant": "revocation", "count": 2})),
    );
    assert_eq!(added.json(), json!({"added": 1, "queued": 1}));
    assert_eq!(
        admin(port, "GET", "faults", None).json()[0]["grant"],
        "revocation"
    );
    // Token requests pass it by.
    assert_eq!(refresh(port, &seeded.refresh_token).status, 200);
    assert_eq!(revoke(port, "x", None).status, 503);
    assert_eq!(revoke(port, "x", None).status, 503);
    assert_revoked_ok(&revoke(port, "x", None));
    let counters = admin(port, "GET", "counters", None).json();
    assert_eq!(counters["revocation_requests"], 3);
    assert_eq!(counters["faults_applied"], 2);
}

#[test]
fn reset_forgets_revocations() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    assert_revoked_ok(&revoke(
        em.port(),
        &seeded.refresh_token,
        Some("refresh_token"),
    ));
    em.reset();
    let c = em.counters();
    assert_eq!(
        (
            c.revocation_requests,
            c.tokens_revoked,
            c.revocation_by_hint.len()
        ),
        (0, 0, 0)
    );
}
