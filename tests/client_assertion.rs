//! private_key_jwt client assertions: verified by an independent library
//! (jsonwebtoken) and accepted by the emulator, which checks the claims and
//! refuses a repeated jti.

mod common;

use common::{Harness, CLIENT_ID};
use freshtoken::jwt::AssertionKey;
use freshtoken::{ClientAuthMethod, Config};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use std::collections::HashSet;

const KEY: &str = include_str!("fixtures/client-cert-and-key.pem");
const PUBLIC: &str = include_str!("fixtures/client-public.pem");

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    jti: String,
    iat: u64,
    nbf: u64,
    exp: u64,
}

fn verify(jwt: &str, audience: &str) -> Claims {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
    let key = DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).unwrap();
    decode::<Claims>(jwt, &key, &validation)
        .expect("a valid RS256 signature")
        .claims
}

#[tokio::test]
async fn an_independent_library_verifies_the_assertion() {
    let key = AssertionKey::from_pem(KEY, Some("kid-7".into())).unwrap();
    let now_ms = common::wall_ms();
    let aud = "https://secure.stitch.money/connect/token";
    let jwt = key.assertion("cid", aud, now_ms).await.unwrap();
    assert_eq!(decode_header(&jwt).unwrap().kid.as_deref(), Some("kid-7"));
    let c = verify(&jwt, aud);
    assert_eq!(
        (c.iss.as_str(), c.sub.as_str(), c.aud.as_str()),
        ("cid", "cid", aud)
    );
    assert_eq!(
        (c.iat, c.nbf, c.exp),
        (now_ms / 1000, now_ms / 1000, now_ms / 1000 + 60)
    );
    assert!(c.jti.len() >= 22);
}

#[tokio::test]
async fn jti_never_repeats_over_ten_thousand_signed_assertions() {
    let key = AssertionKey::from_pem(KEY, None).unwrap();
    let now = common::wall_ms();
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let jwt = key.assertion("cid", "aud", now).await.unwrap();
        let claims = jwt.split('.').nth(1).unwrap().to_owned();
        assert!(seen.insert(claims), "a repeated assertion");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_accepts_private_key_jwt_for_every_grant() {
    let h = Harness::new();
    let config = Config::builder(h.emu.token_endpoint(), CLIENT_ID)
        .private_key_pem(KEY)
        .build()
        .unwrap();
    assert_eq!(config.client_auth_method(), ClientAuthMethod::PrivateKeyJwt);
    let client = Harness::client_on(&h.emu, config, h.clock.clone());
    // Client credentials, three times (a fresh jti each; the emulator refuses repeats).
    for _ in 0..3 {
        client.client_token(&["accounts"]).await.unwrap();
        client.client_tokens().invalidate(&["accounts"]).unwrap();
    }
    // A user session's refresh.
    let family = h.emu.seed(CLIENT_ID, "offline_access");
    let session = client.session("u1", h.store.clone()).unwrap();
    session
        .seed(freshtoken::Seed {
            refresh_token: family.refresh_token.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    session.access_token().await.unwrap();
    let c = h.emu.counters();
    assert_eq!(
        (
            c.client_credentials_issued,
            c.refresh_success,
            c.invalid_client
        ),
        (3, 1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_json_with_a_certificate_works_end_to_end() {
    let h = Harness::new();
    let json = format!(
        r#"{{"clientId":"{CLIENT_ID}","certificate":{},"slidingRefreshTokenLifetime":86400,"tokenEndpoint":"{}","unknown":[1,2]}}"#,
        serde_json::to_string(KEY).unwrap(),
        h.emu.token_endpoint()
    );
    let config = Config::from_credentials_json(&json)
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(config.refresh_token_lifetime_ms(), 86_400_000);
    let client = Harness::client_on(&h.emu, config, h.clock.clone());
    client.client_token(&["accounts"]).await.unwrap();
    assert_eq!(h.emu.counters().client_credentials_issued, 1);
}

/// HTTP from the host that fails quoting the request's form as Python's
/// `parse_qs` and `parse_qsl` print it (`{'name': ['value']}`,
/// `[('name', 'value')]`) and as JSON arrays do; keeps each assertion sent.
struct QuotingForms(std::sync::Mutex<Vec<String>>);

#[freshtoken::async_trait]
impl freshtoken::HttpClient for QuotingForms {
    async fn send(
        &self,
        request: freshtoken::HttpRequest,
    ) -> Result<freshtoken::HttpResponse, freshtoken::HttpError> {
        let form: Vec<(String, String)> = form_urlencoded::parse(request.body.as_bytes())
            .into_owned()
            .collect();
        let assertion = form
            .iter()
            .find(|(name, _)| name == "client_assertion")
            .map(|(_, value)| value.clone())
            .expect("a client assertion in the form");
        self.0.lock().unwrap().push(assertion);
        let lists: Vec<String> = form
            .iter()
            .map(|(n, v)| format!("'{n}': ['{v}']"))
            .collect();
        let pairs: Vec<String> = form
            .iter()
            .map(|(n, v)| format!("('{n}', '{v}')"))
            .collect();
        let json: Vec<String> = form
            .iter()
            .map(|(n, v)| format!("[\"{n}\", \"{v}\"]"))
            .collect();
        Err(freshtoken::HttpError::NotSent(format!(
            "refused {{{}}} [{}] [{}]",
            lists.join(", "),
            pairs.join(", "),
            json.join(", ")
        )))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_message_quoting_the_parsed_form_shows_no_assertion() {
    let h = Harness::new();
    let config = Config::builder(h.emu.token_endpoint(), CLIENT_ID)
        .private_key_pem(KEY)
        .build()
        .unwrap();
    let http = std::sync::Arc::new(QuotingForms(Default::default()));
    let client = freshtoken::TokenClient::new(config, http.clone(), h.clock.clone());
    let session = client.session("u1", h.store.clone()).unwrap();
    session
        .seed(freshtoken::Seed {
            refresh_token: "rt-SENTINEL-0123456789".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let error = session.access_token().await.unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("'client_id': ['test-client']"), "{shown}");
    let sent = http.0.lock().unwrap().clone();
    assert!(!sent.is_empty());
    for assertion in &sent {
        // Any of its three parts would do harm: the whole is the credential.
        for part in assertion.split('.') {
            // (The message is not printed: it would show the assertion.)
            assert!(
                !shown.contains(part),
                "a part of the assertion is shown, {} bytes",
                part.len()
            );
        }
    }
    assert!(
        !shown.contains("rt-SENTINEL-0123456789"),
        "the refresh token is shown"
    );
}
