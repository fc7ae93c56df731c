//! Authorization codes from the emulator, which approves every authorize
//! URL at once (no login page): what the code-flow tests redeem.

use freshtoken::{AuthorizationParams, TokenClient};

/// The redirect URI the code-flow tests register.
pub const REDIRECT: &str = "https://app.example/callback";

/// Follows `url`, an authorize URL: the emulator's redirect (`Location`),
/// the URL the user is sent back to.
pub async fn redirect_of(url: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 302);
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// Follows `url`, an authorize URL, and returns the `code` and `state` of
/// the emulator's redirect.
pub async fn approve(url: &str) -> (String, String) {
    let location = redirect_of(url).await;
    let query = location.split_once('?').unwrap().1;
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).unwrap().1.clone();
    (get("code"), get("state"))
}

/// A code the emulator approved for `client`'s authorize URL (to
/// [`REDIRECT`], for `scopes`), and its verifier.
pub async fn approved_for(client: &TokenClient, scopes: &[&str]) -> (String, String) {
    let request = client
        .authorization_url(AuthorizationParams {
            redirect_uri: REDIRECT.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..AuthorizationParams::default()
        })
        .unwrap();
    let (code, _) = approve(&request.url).await;
    (code, request.code_verifier)
}
