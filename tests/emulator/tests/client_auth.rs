//! Client authentication (basic, post, private_key_jwt, public clients) and
//! the client_credentials grant.

mod common;

use common::*;
use serde_json::json;

const ODD_ID: &str = "odd client:1";
const ODD_SECRET: &str = "s3cr%t+/=";

fn odd_emulator() -> Emulator {
    let mut opts = Options::default();
    opts.clients
        .push(ClientSpec::confidential(ODD_ID, ODD_SECRET));
    Emulator::start(opts).unwrap()
}

#[test]
fn client_secret_basic_form_encodes_id_and_secret() {
    let em = odd_emulator();
    let seeded = em.seed(ODD_ID, "openid offline_access");
    let auth = basic(ODD_ID, ODD_SECRET);
    let reply = try_token_with(
        em.port(),
        &[("Authorization", &auth)],
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &seeded.refresh_token),
        ],
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        jwt_claims(reply.json()["id_token"].as_str().unwrap())["aud"],
        ODD_ID
    );

    // The same credentials without the form-encoding step are wrong: `+`
    // decodes to a space.
    let raw = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{ODD_ID}:{ODD_SECRET}")
        )
    );
    let unencoded = try_token_with(
        em.port(),
        &[("Authorization", &raw)],
        &[("grant_type", "client_credentials")],
    )
    .unwrap();
    assert_eq!(unencoded.status, 401);
    assert_eq!(unencoded.json()["error"], "invalid_client");
}

#[test]
fn client_secret_post_accepts_the_raw_secret() {
    let em = odd_emulator();
    let reply = token(
        em.port(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", ODD_ID),
            ("client_secret", ODD_SECRET),
        ],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn wrong_or_missing_credentials_are_invalid_client() {
    let em = start();
    let port = em.port();
    let wrong_post = token(
        port,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "test-client"),
            ("client_secret", "nope"),
        ],
    );
    assert_eq!(wrong_post.status, 401);
    assert_eq!(wrong_post.json()["error"], "invalid_client");
    assert_eq!(wrong_post.header("www-authenticate"), None);

    let auth = basic("test-client", "nope");
    let wrong_basic = try_token_with(
        port,
        &[("Authorization", &auth)],
        &[("grant_type", "client_credentials")],
    )
    .unwrap();
    assert_eq!(wrong_basic.status, 401);
    assert_eq!(wrong_basic.json()["error"], "invalid_client");
    assert!(wrong_basic
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic"));

    let unknown = token(
        port,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "who"),
            ("client_secret", "x"),
        ],
    );
    assert_eq!(unknown.status, 401);
    let no_secret = token(
        port,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "test-client"),
        ],
    );
    assert_eq!(no_secret.status, 401);
    let nobody = token(port, &[("grant_type", "client_credentials")]);
    assert_eq!(nobody.status, 401);
    let public_with_secret = token(
        port,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "public-client"),
            ("client_secret", "x"),
        ],
    );
    assert_eq!(public_with_secret.status, 401);
    assert_eq!(em.counters().invalid_client, 6);
}

#[test]
fn two_authentication_methods_at_once_are_invalid_request() {
    let em = start();
    let auth = basic("test-client", "test-secret");
    let reply = try_token_with(
        em.port(),
        &[("Authorization", &auth)],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "test-client"),
            ("client_secret", "test-secret"),
        ],
    )
    .unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "invalid_request");
}

#[test]
fn public_clients_refresh_with_their_id_alone() {
    let em = start();
    let seeded = em.seed("public-client", "openid offline_access");
    let reply = token(
        em.port(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "public-client"),
            ("refresh_token", &seeded.refresh_token),
        ],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["refresh_token"].is_string());
}

#[test]
fn client_credentials_never_returns_a_refresh_token_and_checks_the_audience() {
    let em = start();
    let endpoint = em.token_endpoint();
    let reply = client_credentials(
        em.port(),
        &[("scope", "client_paymentrequest"), ("audience", &endpoint)],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "client_paymentrequest");
    assert!(body.get("refresh_token").is_none());
    let at = body["access_token"].as_str().unwrap();
    assert_eq!(
        graphql(em.port(), Some(at))["data"]["viewer"],
        json!({"clientId": "test-client", "scope": "client_paymentrequest"})
    );
    assert_eq!(
        em.counters().last_audience.as_deref(),
        Some(endpoint.as_str())
    );

    let wrong = client_credentials(
        em.port(),
        &[("audience", "https://elsewhere/connect/token")],
    );
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.json()["error"], "invalid_request");
    let c = em.counters();
    assert_eq!(
        c.last_audience.as_deref(),
        Some("https://elsewhere/connect/token")
    );
    assert_eq!(c.client_credentials_issued, 1);

    // Lifetime: client_ttl, by the emulator clock.
    em.set_ttls(None, Some(10), None);
    let short = client_credentials(em.port(), &[]).json();
    assert_eq!(short["expires_in"], 10);
    em.advance_clock(10);
    assert!(!api_accepts(
        em.port(),
        short["access_token"].as_str().unwrap()
    ));
}

#[test]
fn public_clients_cannot_use_client_credentials() {
    let em = start();
    let reply = token(
        em.port(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "public-client"),
        ],
    );
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "unauthorized_client");
}

#[test]
fn private_key_jwt_assertions_are_checked_by_their_claims() {
    let em = start();
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
    let endpoint = em.token_endpoint();
    let send_assertion = |jwt: &str| {
        token(
            em.port(),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "test-client"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", jwt),
                ("audience", &endpoint),
            ],
        )
    };
    assert_eq!(send_assertion(&assertion("j1", &endpoint)).status, 200);
    let replayed = send_assertion(&assertion("j1", &endpoint));
    assert_eq!(
        (replayed.status, replayed.json()["error"].clone()),
        (401, "invalid_client".into())
    );
    assert_eq!(
        send_assertion(&assertion("j2", "https://elsewhere")).status,
        401
    );
    assert_eq!(send_assertion("not.a-jwt").status, 401);
}
