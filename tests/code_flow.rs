//! The authorization-code flow with PKCE against the emulator: authorize URL,
//! a non-interactive approval, the code exchange storing the first record.

mod common;

use common::Harness;
use freshtoken::{AuthorizationParams, TokenClient, UserSession};
use freshtoken_emulator::TokenState;

/// Follows the authorize URL (the emulator approves at once) and returns the
/// `code` and `state` from its redirect.
async fn approve(url: &str) -> (String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let query = location.split_once('?').unwrap().1;
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).unwrap().1.clone();
    (get("code"), get("state"))
}

/// Exchanges `code` for session `u1` in the harness store.
async fn exchange(
    client: &TokenClient,
    h: &Harness,
    code: &str,
    verifier: &str,
) -> Result<UserSession, freshtoken::Error> {
    client
        .exchange_code(code, verifier, REDIRECT, "u1", h.store.clone())
        .await
}

const REDIRECT: &str = "https://app.example/callback";

fn params() -> AuthorizationParams {
    AuthorizationParams {
        redirect_uri: REDIRECT.into(),
        scopes: vec!["openid".into(), "accounts".into()],
        ..AuthorizationParams::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_exchange_stores_the_first_record_and_the_session_refreshes() {
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    assert!(request.url.starts_with(&h.emu.authorization_endpoint()));
    let (code, state) = approve(&request.url).await;
    assert_eq!(state, request.state);

    let session = exchange(&h.client, &h, &code, &request.code_verifier)
        .await
        .unwrap();
    let record = h.store.record("u1").unwrap();
    let rt = record.refresh_token.unwrap().expose().to_owned();
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Active);
    let info = session.tokens().await.unwrap();
    assert!(info.scope.unwrap().contains("offline_access"));
    assert!(info.id_token.is_some());
    assert_eq!(h.refresh_requests(), 0);

    session.refresh().await.unwrap();
    assert_eq!(h.emu.refresh_token_state(&rt), TokenState::Consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_verifier_is_an_oauth_error_and_stores_nothing() {
    let h = Harness::new();
    let request = h.client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    let wrong = "a-different-verifier-of-sufficient-length-000000";
    let error = exchange(&h.client, &h, &code, wrong).await.unwrap_err();
    assert_eq!(
        (error.code().as_str(), error.oauth_error()),
        ("oauth", Some("invalid_grant"))
    );
    assert!(h.store.inner.get("u1").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_client_uses_pkce_without_a_secret() {
    let h = Harness::with(Default::default(), |b| b);
    let config = freshtoken::Config::builder(h.emu.token_endpoint(), "public-client")
        .build()
        .unwrap();
    let client = Harness::client_on(&h.emu, config, h.clock.clone());
    let request = client.authorization_url(params()).unwrap();
    let (code, _) = approve(&request.url).await;
    let session = exchange(&client, &h, &code, &request.code_verifier)
        .await
        .unwrap();
    session.refresh().await.unwrap();
    assert_eq!(h.emu.counters().refresh_success, 1);
    assert_eq!(
        client
            .client_token(&["accounts"])
            .await
            .unwrap_err()
            .oauth_error(),
        Some("unauthorized_client")
    );
}
