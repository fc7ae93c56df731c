//! `GET /.well-known/openid-configuration`: the document, its broken modes
//! (Rust and admin HTTP) and its counter.

mod common;

use common::*;
use freshtoken_emulator::{DiscoveryMode, INSECURE_TOKEN_ENDPOINT, WRONG_ISSUER};
use serde_json::json;

#[test]
fn the_document_names_the_endpoints_and_what_they_accept() {
    let em = start();
    let port = em.port();
    let reply = discovery(port);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let doc = reply.json();
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(doc["issuer"], base.as_str(), "no trailing slash");
    assert_eq!(doc["token_endpoint"], format!("{base}/connect/token"));
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{base}/connect/authorize")
    );
    assert_eq!(
        doc["revocation_endpoint"],
        format!("{base}/connect/revocation")
    );
    assert_eq!(doc["revocation_endpoint"], em.revocation_endpoint());
    let methods = json!([
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none"
    ]);
    assert_eq!(doc["token_endpoint_auth_methods_supported"], methods);
    assert_eq!(doc["revocation_endpoint_auth_methods_supported"], methods);
    assert_eq!(
        doc["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["scopes_supported"], json!(["openid", "offline_access"]));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(
        em.discovery_endpoint(),
        format!("{base}/.well-known/openid-configuration")
    );

    // What it advertises is what the endpoints do: every grant type is
    // known to the token endpoint, and the revocation endpoint answers.
    for grant in doc["grant_types_supported"].as_array().unwrap() {
        let reply = token(port, &[("grant_type", grant.as_str().unwrap())]);
        assert_ne!(reply.json()["error"], "unsupported_grant_type", "{grant}");
    }
    assert_eq!(revoke(port, "x", None).status, 200);
    assert_eq!(em.counters().discovery_requests, 1);
}

#[test]
fn each_broken_mode_breaks_what_it_says() {
    let em = start();
    let port = em.port();
    let normal = discovery(port).json();
    assert_eq!(em.discovery(), DiscoveryMode::Normal);

    em.set_discovery(DiscoveryMode::NotFound);
    let missing = discovery(port);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");

    em.set_discovery(DiscoveryMode::WrongIssuer { issuer: None });
    let wrong = discovery(port).json();
    assert_eq!(wrong["issuer"], WRONG_ISSUER);
    assert_ne!(wrong["issuer"], normal["issuer"]);
    let mut rest = wrong.clone();
    rest["issuer"] = normal["issuer"].clone();
    assert_eq!(rest, normal, "only the issuer differs");

    let slash = format!("{}/", em.base_url());
    em.set_discovery(DiscoveryMode::WrongIssuer {
        issuer: Some(slash.clone()),
    });
    assert_eq!(discovery(port).json()["issuer"], slash.as_str());

    em.set_discovery(DiscoveryMode::InsecureTokenEndpoint);
    let insecure = discovery(port).json();
    let endpoint = insecure["token_endpoint"].as_str().unwrap();
    assert_eq!(endpoint, INSECURE_TOKEN_ENDPOINT);
    assert!(endpoint.starts_with("http://"));
    for loopback in ["127.", "localhost", "[::1]"] {
        assert!(!endpoint["http://".len()..].starts_with(loopback));
    }
    assert_eq!(insecure["issuer"], normal["issuer"]);
    assert_eq!(
        insecure["revocation_endpoint"],
        normal["revocation_endpoint"]
    );

    em.set_discovery(DiscoveryMode::InvalidJson);
    let broken = discovery(port);
    assert_eq!(broken.status, 200);
    assert_eq!(broken.header("content-type"), Some("application/json"));
    assert!(serde_json::from_slice::<serde_json::Value>(&broken.body).is_err());
    assert!(broken.text().contains(&em.base_url()));

    em.set_discovery(DiscoveryMode::Normal);
    assert_eq!(discovery(port).json(), normal);
    assert_eq!(em.counters().discovery_requests, 7);
}

#[test]
fn modes_are_set_over_admin_http_and_reset() {
    let em = start();
    let port = em.port();
    assert_eq!(
        admin(port, "GET", "discovery", None).json(),
        json!({"mode": "normal"})
    );
    let set = admin(
        port,
        "POST",
        "discovery",
        Some(json!({"mode": "not_found"})),
    );
    assert_eq!(
        (set.status, set.json()),
        (200, json!({"mode": "not_found"}))
    );
    assert_eq!(discovery(port).status, 404);
    assert_eq!(em.discovery(), DiscoveryMode::NotFound);

    for (mode, check) in [
        ("insecure_token_endpoint", "token_endpoint"),
        ("wrong_issuer", "issuer"),
    ] {
        admin(port, "POST", "discovery", Some(json!({"mode": mode})));
        let doc = discovery(port).json();
        assert!(
            doc[check] == INSECURE_TOKEN_ENDPOINT || doc[check] == WRONG_ISSUER,
            "{mode}: {doc}"
        );
    }
    let custom = admin(
        port,
        "POST",
        "discovery",
        Some(json!({"mode": "wrong_issuer", "issuer": "http://127.0.0.1:1"})),
    );
    assert_eq!(custom.json()["issuer"], "http://127.0.0.1:1");
    assert_eq!(discovery(port).json()["issuer"], "http://127.0.0.1:1");
    admin(
        port,
        "POST",
        "discovery",
        Some(json!({"mode": "invalid_json"})),
    );
    assert!(serde_json::from_slice::<serde_json::Value>(&discovery(port).body).is_err());

    for bad in [
        json!({"mode": "sideways"}),
        json!({"mode": "not_found", "issuer": "x"}),
        json!({"mode": "normal", "extra": 1}),
        json!({}),
    ] {
        let reply = admin(port, "POST", "discovery", Some(bad.clone()));
        assert_eq!(reply.status, 400, "{bad}");
        assert_eq!(reply.json()["error"], "invalid_request");
    }
    assert_eq!(admin(port, "POST", "discovery", None).status, 400);
    assert_eq!(admin(port, "DELETE", "discovery", None).status, 405);
    assert_eq!(
        em.discovery(),
        DiscoveryMode::InvalidJson,
        "a refused change changes nothing"
    );

    let counters = admin(port, "GET", "counters", None).json();
    assert_eq!(counters["discovery_requests"], 5);
    admin(port, "POST", "reset", None);
    assert_eq!(em.discovery(), DiscoveryMode::Normal);
    assert_eq!(discovery(port).status, 200);
    assert_eq!(em.counters().discovery_requests, 1);
}

#[test]
fn other_methods_get_405_and_are_not_counted() {
    let em = start();
    let reply = send(
        em.port(),
        "POST",
        "/.well-known/openid-configuration",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, OPTIONS"));
    assert_eq!(em.counters().discovery_requests, 0);
}
