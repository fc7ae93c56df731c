//! Discovery (`TokenClient::discover`) against the emulator's
//! `/.well-known/openid-configuration`, good and broken.

mod common;

use common::authorize::{redirect_of, REDIRECT};
use common::{wall_ms, TestStore, CLIENT_ID, CLIENT_SECRET};
use freshtoken::{
    AuthorizationParams, Config, ErrorCode, ManualClock, NativeHttp, Seed, TokenClient,
};
use freshtoken_emulator::{DiscoveryMode, Emulator, Options};
use std::sync::Arc;

async fn discover(emu: &Emulator) -> Result<TokenClient, freshtoken::Error> {
    TokenClient::discover(
        &emu.base_url(),
        Config::for_client(CLIENT_ID).client_secret(CLIENT_SECRET),
        Arc::new(NativeHttp::new().unwrap()),
        Arc::new(ManualClock::new(wall_ms())),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_client_uses_the_published_endpoints() {
    let emu = Emulator::start(Options::default()).unwrap();
    let client = discover(&emu).await.expect("discovered");
    assert_eq!(emu.counters().discovery_requests, 1);
    let config = client.config();
    assert_eq!(config.token_endpoint(), emu.token_endpoint());
    assert_eq!(
        config.authorization_endpoint().unwrap(),
        emu.authorization_endpoint()
    );
    assert_eq!(
        config.revocation_endpoint().unwrap(),
        emu.revocation_endpoint()
    );
    let metadata = client.provider_metadata().expect("kept");
    assert_eq!(metadata.issuer, emu.base_url());
    assert!(metadata.authorization_response_iss_parameter_supported);
    assert!(metadata
        .token_endpoint_auth_methods
        .iter()
        .any(|m| m == "client_secret_post"));

    // It works end to end: a refresh and a revocation.
    let family = emu.seed(CLIENT_ID, "openid offline_access");
    let session = client.session("u1", TestStore::new()).unwrap();
    session
        .seed(Seed {
            refresh_token: family.refresh_token.into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    session.access_token().await.unwrap();
    session.revoke().await.unwrap();
    assert_eq!(emu.counters().discovery_requests, 1, "read once");
}

/// The redirect back from the provider, read by the client: its state and
/// issuer (RFC 9207, which the emulator announces) checked, then the code
/// redeemed. A redirect naming another issuer, or none, sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_client_reads_the_redirect_checking_state_and_issuer() {
    let emu = Emulator::start(Options::default()).unwrap();
    let client = discover(&emu).await.expect("discovered");
    let request = client
        .authorization_url(AuthorizationParams {
            redirect_uri: REDIRECT.into(),
            scopes: vec!["openid".into(), "accounts".into()],
            ..AuthorizationParams::default()
        })
        .unwrap();
    let redirect = redirect_of(&request.url).await;
    let issuer = form_urlencoded::byte_serialize(emu.base_url().as_bytes()).collect::<String>();
    for (forged, says) in [
        (
            redirect.replace(&issuer, "https%3A%2F%2Fevil.example"),
            "RFC 9207",
        ),
        (redirect.replace(&format!("&iss={issuer}"), ""), "no issuer"),
        (redirect.replace(&request.state, "another-state"), "state"),
    ] {
        let error = client
            .code_from_redirect(&forged, &request.state)
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidResponse, "{error}");
        assert!(error.to_string().contains(says), "{error}");
    }
    let code = client
        .code_from_redirect(&redirect, &request.state)
        .expect("the provider's own redirect");
    let store = TestStore::new();
    let session = client
        .exchange_code(&code, &request.code_verifier, REDIRECT, "u1", store)
        .await
        .expect("redeemed");
    session.access_token().await.unwrap();
    assert_eq!(emu.counters().codes_issued, 1);
}

/// A host that sets the token endpoint (where the client secret and the
/// refresh tokens go) keeps it: the document names the other endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_set_by_the_host_wins_over_the_document() {
    let emu = Emulator::start(Options::default()).unwrap();
    let pinned = format!("http://localhost:{}/connect/token", emu.port());
    let client = TokenClient::discover(
        &emu.base_url(),
        Config::builder(&pinned, CLIENT_ID).client_secret(CLIENT_SECRET),
        Arc::new(NativeHttp::new().unwrap()),
        Arc::new(ManualClock::new(wall_ms())),
        None,
    )
    .await
    .expect("discovered");
    assert_eq!(client.config().token_endpoint(), pinned);
    assert_eq!(
        client.config().revocation_endpoint().unwrap(),
        emu.revocation_endpoint(),
        "the others from the document"
    );
    let metadata = client.provider_metadata().unwrap();
    assert_eq!(
        metadata.token_endpoint,
        emu.token_endpoint(),
        "as published"
    );
}

/// A credentials JSON that names no token endpoint gets Stitch's by
/// default; with an issuer, the document's endpoint replaces that default
/// (one the JSON names is kept, as one the host sets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_default_endpoint_gives_way_to_the_document() {
    let emu = Emulator::start(Options::default()).unwrap();
    let pinned = format!("http://localhost:{}/connect/token", emu.port());
    let named = format!(
        r#"{{"clientId":"{CLIENT_ID}","clientSecret":"{CLIENT_SECRET}","slidingRefreshTokenLifetime":86400,"tokenEndpoint":"{pinned}"}}"#
    );
    let unnamed = format!(
        r#"{{"clientId":"{CLIENT_ID}","clientSecret":"{CLIENT_SECRET}","slidingRefreshTokenLifetime":86400}}"#
    );
    for (json, expected) in [(&unnamed, emu.token_endpoint()), (&named, pinned.clone())] {
        let client = TokenClient::discover(
            &emu.base_url(),
            Config::from_credentials_json(json).unwrap(),
            Arc::new(NativeHttp::new().unwrap()),
            Arc::new(ManualClock::new(wall_ms())),
            None,
        )
        .await
        .expect("discovered");
        assert_eq!(client.config().token_endpoint(), expected);
    }
    // Without discovery the default stands.
    let config = Config::from_credentials_json(&unnamed)
        .unwrap()
        .build()
        .unwrap();
    assert!(config
        .token_endpoint()
        .starts_with("https://secure.stitch.money/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_bad_documents_are_typed_errors() {
    let emu = Emulator::start(Options::default()).unwrap();
    for (mode, code, says) in [
        (DiscoveryMode::NotFound, ErrorCode::InvalidResponse, "404"),
        (
            DiscoveryMode::WrongIssuer { issuer: None },
            ErrorCode::InvalidResponse,
            "issuer",
        ),
        (
            DiscoveryMode::InsecureTokenEndpoint,
            ErrorCode::InvalidResponse,
            "https",
        ),
        (
            DiscoveryMode::InvalidJson,
            ErrorCode::InvalidResponse,
            "JSON",
        ),
    ] {
        emu.set_discovery(mode.clone());
        let err = discover(&emu).await.unwrap_err();
        assert_eq!(err.code(), code, "{mode:?}: {err}");
        assert!(err.to_string().contains(says), "{mode:?}: {err}");
    }
}

/// A document over the response cap (here through a 100 KB `issuer`) is
/// refused unread, and the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_over_the_cap_is_refused_as_too_large() {
    let emu = Emulator::start(Options::default()).unwrap();
    let issuer = format!("{}/{}", emu.base_url(), "i".repeat(100_000));
    emu.set_discovery(DiscoveryMode::WrongIssuer {
        issuer: Some(issuer),
    });
    let err = discover(&emu).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidResponse, "{err}");
    assert!(err.to_string().contains("too large"), "{err}");
}

/// A provider that is down says when to ask again: the `transient` error
/// carries its `Retry-After`, as a token endpoint's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_provider_is_transient_with_its_retry_after() {
    let emu = Emulator::start(Options::default()).unwrap();
    emu.set_discovery(DiscoveryMode::Unavailable {
        retry_after: Some("7".into()),
    });
    match discover(&emu).await.unwrap_err() {
        freshtoken::Error::Transient {
            status,
            retry_after_ms,
            ..
        } => {
            assert_eq!(status, 503);
            assert_eq!(retry_after_ms, Some(7_000));
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_is_a_network_error_and_http_issuers_are_refused() {
    let emu = Emulator::start(Options::default()).unwrap();
    let closed = format!("http://127.0.0.1:{}", emu.port());
    drop(emu);
    let err = TokenClient::discover(
        &closed,
        Config::for_client(CLIENT_ID),
        Arc::new(NativeHttp::new().unwrap()),
        Arc::new(ManualClock::new(wall_ms())),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Network, "{err}");
    let err = TokenClient::discover(
        "http://issuer.example",
        Config::for_client(CLIENT_ID),
        Arc::new(NativeHttp::new().unwrap()),
        Arc::new(ManualClock::new(wall_ms())),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config, "{err}");
}

#[test]
fn without_discovery_the_authorize_endpoint_is_still_derived() {
    let c = Config::builder("https://secure.stitch.money/connect/token", "id")
        .build()
        .unwrap();
    assert_eq!(
        c.authorization_endpoint().unwrap(),
        "https://secure.stitch.money/connect/authorize"
    );
}
