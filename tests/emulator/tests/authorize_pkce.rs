//! `/connect/authorize` and the authorization_code grant with PKCE S256.

mod common;

use common::*;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const REDIRECT: &str = "http://localhost:8080/callback?app=1";

/// Sends an authorization request and returns the reply.
fn authorize(port: u16, pairs: &[(&str, &str)]) -> Reply {
    send(
        port,
        "GET",
        &format!("/connect/authorize?{}", form(pairs)),
        &[],
        b"",
    )
    .unwrap()
}

/// The query parameters of a redirect.
fn redirect_params(reply: &Reply) -> Vec<(String, String)> {
    assert_eq!(reply.status, 302, "{}", reply.text());
    let location = reply.header("location").expect("Location");
    let query = location.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Authorizes `client_id` for `scope` and returns the code.
fn get_code(port: u16, client_id: &str, scope: &str) -> String {
    let challenge = challenge(VERIFIER);
    let reply = authorize(
        port,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("state", "st&ate"),
            ("nonce", "n-0S6"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let params = redirect_params(&reply);
    assert!(reply
        .header("location")
        .unwrap()
        .starts_with(&format!("{REDIRECT}&code=")));
    assert_eq!(param(&params, "app"), Some("1"));
    assert_eq!(param(&params, "state"), Some("st&ate"));
    param(&params, "code").expect("code").to_owned()
}

fn exchange(port: u16, code: &str, verifier: &str, redirect: &str) -> Reply {
    token(
        port,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "test-client"),
            ("client_secret", "test-secret"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
}

#[test]
fn authorize_then_exchange_with_pkce() {
    let em = start();
    let code = get_code(em.port(), "test-client", "openid offline_access accounts");
    let reply = exchange(em.port(), &code, VERIFIER, REDIRECT);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["scope"], "openid offline_access accounts");
    assert_eq!(body["token_type"], "Bearer");
    let claims = jwt_claims(body["id_token"].as_str().unwrap());
    assert_eq!(claims["nonce"], "n-0S6");
    assert_eq!(claims["aud"], "test-client");
    let rt = body["refresh_token"]
        .as_str()
        .expect("offline_access gives a refresh token");
    assert!(api_accepts(
        em.port(),
        body["access_token"].as_str().unwrap()
    ));

    // The refresh keeps the nonce in the new id_token.
    let refreshed = refresh(em.port(), rt).json();
    assert_eq!(
        jwt_claims(refreshed["id_token"].as_str().unwrap())["nonce"],
        "n-0S6"
    );
    let c = em.counters();
    assert_eq!((c.codes_issued, c.code_exchanges), (1, 1));
}

#[test]
fn without_offline_access_there_is_no_refresh_token() {
    let em = start();
    let code = get_code(em.port(), "test-client", "openid accounts");
    let body = exchange(em.port(), &code, VERIFIER, REDIRECT).json();
    assert!(body.get("refresh_token").is_none());
    assert!(body["access_token"].is_string());
}

#[test]
fn a_wrong_verifier_or_redirect_is_invalid_grant_and_codes_are_single_use() {
    let em = start();
    let code = get_code(em.port(), "test-client", "openid offline_access");
    let wrong = exchange(em.port(), &code, &"x".repeat(43), REDIRECT);
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.json()["error"], "invalid_grant");
    let other_redirect = exchange(em.port(), &code, VERIFIER, "http://localhost:8080/other");
    assert_eq!(other_redirect.json()["error"], "invalid_grant");
    let short = exchange(em.port(), &code, "short", REDIRECT);
    assert_eq!(short.json()["error"], "invalid_request");

    let good = exchange(em.port(), &code, VERIFIER, REDIRECT).json();
    let at = good["access_token"].as_str().unwrap();
    let rt = good["refresh_token"].as_str().unwrap();
    let replay = exchange(em.port(), &code, VERIFIER, REDIRECT);
    assert_eq!(replay.json()["error"], "invalid_grant");
    // A replayed code revokes what it issued.
    assert!(!api_accepts(em.port(), at));
    assert_eq!(em.refresh_token_state(rt), TokenState::Revoked);
}

#[test]
fn codes_live_sixty_seconds() {
    let em = start();
    let code = get_code(em.port(), "test-client", "openid");
    em.advance_clock(60);
    assert_eq!(
        exchange(em.port(), &code, VERIFIER, REDIRECT).json()["error"],
        "invalid_grant"
    );
}

#[test]
fn public_clients_exchange_with_their_id_alone() {
    let em = start();
    let code = get_code(em.port(), "public-client", "openid offline_access");
    let reply = token(
        em.port(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "public-client"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Another client cannot redeem it.
    let code = get_code(em.port(), "public-client", "openid");
    assert_eq!(
        exchange(em.port(), &code, VERIFIER, REDIRECT).json()["error"],
        "invalid_grant"
    );
}

#[test]
fn pkce_is_required_and_plain_is_refused() {
    let em = start();
    let challenge = challenge(VERIFIER);
    let base = [
        ("response_type", "code"),
        ("client_id", "test-client"),
        ("redirect_uri", "http://localhost/cb"),
        ("state", "s1"),
    ];
    let plain = authorize(
        em.port(),
        &[
            &base[..],
            &[
                ("code_challenge", VERIFIER),
                ("code_challenge_method", "plain"),
            ],
        ]
        .concat(),
    );
    let params = redirect_params(&plain);
    assert_eq!(param(&params, "error"), Some("invalid_request"));
    assert_eq!(param(&params, "state"), Some("s1"));
    assert!(param(&params, "code").is_none());

    let missing = authorize(em.port(), &base);
    assert_eq!(
        param(&redirect_params(&missing), "error"),
        Some("invalid_request")
    );
    let no_method = authorize(
        em.port(),
        &[&base[..], &[("code_challenge", &challenge)]].concat(),
    );
    assert_eq!(
        param(&redirect_params(&no_method), "error"),
        Some("invalid_request")
    );
    let token_type = authorize(
        em.port(),
        &[
            ("response_type", "token"),
            ("client_id", "test-client"),
            ("redirect_uri", "http://localhost/cb"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    assert_eq!(
        param(&redirect_params(&token_type), "error"),
        Some("unsupported_response_type")
    );
    assert_eq!(em.counters().codes_issued, 0);
}

#[test]
fn unknown_clients_and_missing_redirects_get_400_json() {
    let em = start();
    let challenge = challenge(VERIFIER);
    let unknown = authorize(
        em.port(),
        &[
            ("response_type", "code"),
            ("client_id", "nobody"),
            ("redirect_uri", "http://localhost/cb"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["error"], "invalid_request");
    let no_redirect = authorize(
        em.port(),
        &[
            ("response_type", "code"),
            ("client_id", "test-client"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    assert_eq!(no_redirect.status, 400);
    assert!(no_redirect.header("location").is_none());
}
