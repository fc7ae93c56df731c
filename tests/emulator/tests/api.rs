//! The protected resources: `/graphql` (Stitch's shape) and `/api/*`.

mod common;

use common::*;
use serde_json::json;

const UNAUTHENTICATED: &str = "UNAUTHENTICATED: Token is expired or malformed";

fn assert_unauthenticated(body: &serde_json::Value) {
    assert_eq!(body["errors"][0]["message"], UNAUTHENTICATED, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert!(body.get("data").is_none());
}

#[test]
fn graphql_answers_the_viewer_for_a_good_token() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access accounts");
    assert_eq!(
        graphql(em.port(), Some(&seeded.access_token)),
        json!({"data": {"viewer": {"clientId": "test-client", "scope": "openid offline_access accounts"}}})
    );
    let auth = format!("Bearer {}", seeded.access_token);
    let get = send(
        em.port(),
        "GET",
        "/graphql?query=%7Bviewer%7D",
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(get.json()["data"]["viewer"]["clientId"], "test-client");
}

#[test]
fn graphql_says_unauthenticated_for_missing_unknown_and_expired_tokens() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    assert_unauthenticated(&graphql(em.port(), None));
    assert_unauthenticated(&graphql(em.port(), Some("bogus")));
    em.advance_clock(900);
    assert_unauthenticated(&graphql(em.port(), Some(&seeded.access_token)));
    let c = em.counters();
    assert_eq!((c.api_requests, c.api_unauthenticated), (3, 3));
}

/// One `/api/*` call with an optional `Authorization` header.
fn api(em: &freshtoken_emulator::Emulator, method: &str, path: &str, auth: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    send(em.port(), method, path, &headers, b"").unwrap()
}

#[test]
fn rest_api_answers_401_with_a_bearer_challenge() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    let auth = format!("Bearer {}", seeded.access_token);
    let good = api(&em, "POST", "/api/rest", Some(&auth));
    assert_eq!(good.status, 200);
    assert_eq!(good.json()["client_id"], "test-client");
    let nested = api(&em, "GET", "/api/v1/accounts", Some(&auth));
    assert_eq!(nested.json()["path"], "/api/v1/accounts");

    let bad = api(&em, "POST", "/api/rest", Some("Bearer nope"));
    assert_eq!(bad.status, 401);
    assert!(bad
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer error=\"invalid_token\""));
    assert_eq!(bad.json()["error"], "invalid_token");
    let none = api(&em, "POST", "/api/rest", None);
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));

    em.advance_clock(900);
    let expired = api(&em, "POST", "/api/rest", Some(&auth));
    assert_eq!(expired.status, 401);
    let c = em.counters();
    assert_eq!((c.api_requests, c.api_unauthenticated), (5, 3));
}
