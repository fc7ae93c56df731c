//! The admin API over HTTP, counters' JSON shape, CORS and HTTP robustness.

mod common;

use common::*;
use serde_json::json;

#[test]
fn seed_over_http_uses_the_defaults() {
    let em = start();
    let seeded = admin(em.port(), "POST", "seed", None);
    assert_eq!(seeded.status, 200);
    let body = seeded.json();
    assert_eq!(body["scope"], "openid offline_access accounts");
    assert_eq!(body["expires_in"], 900);
    for field in ["refresh_token", "access_token", "id_token"] {
        assert!(body[field].is_string(), "{field}");
    }
    let rt = body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(em.port(), rt).status, 200);

    let public = admin(
        em.port(),
        "POST",
        "seed",
        Some(json!({"client_id": "public-client", "scope": "openid"})),
    );
    assert_eq!(public.json()["scope"], "openid");
    let unknown = admin(
        em.port(),
        "POST",
        "seed",
        Some(json!({"client_id": "nobody"})),
    );
    assert_eq!(unknown.status, 400);
    let typo = admin(em.port(), "POST", "seed", Some(json!({"clientid": "x"})));
    assert_eq!(typo.status, 400);
}

#[test]
fn counters_have_exactly_the_documented_fields() {
    let em = start();
    client_credentials(em.port(), &[("audience", &em.token_endpoint())]);
    let counters = admin(em.port(), "GET", "counters", None).json();
    let mut keys: Vec<&str> = counters
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "api_requests",
            "api_unauthenticated",
            "by_grant",
            "client_credentials_issued",
            "code_exchanges",
            "codes_issued",
            "discovery_requests",
            "faults_applied",
            "invalid_client",
            "invalid_grant",
            "last_audience",
            "max_concurrent_token_requests",
            "refresh_success",
            "reuse_detected",
            "revocation_by_hint",
            "revocation_requests",
            "rotations",
            "token_requests",
            "tokens_revoked",
        ]
    );
    assert_eq!(counters["by_grant"], json!({"client_credentials": 1}));
    assert_eq!(counters["last_audience"], em.token_endpoint());
    assert_eq!(serde_json::to_value(em.counters()).unwrap(), counters);
    em.reset();
    assert_eq!(
        admin(em.port(), "GET", "counters", None).json()["last_audience"],
        json!(null)
    );
}

#[test]
fn clock_config_state_and_reset_over_http() {
    let em = start();
    let port = em.port();
    let config = admin(
        port,
        "POST",
        "config",
        Some(json!({"reuse_detection": false, "access_ttl_secs": 60, "refresh_ttl_secs": 120})),
    )
    .json();
    assert_eq!(
        config,
        json!({"reuse_detection": false, "access_ttl_secs": 60, "client_ttl_secs": 3600, "refresh_ttl_secs": 120})
    );
    let seeded = admin(port, "POST", "seed", None).json();
    let rt = seeded["refresh_token"].as_str().unwrap();
    assert_eq!(seeded["expires_in"], 60);
    let state = |token: &str| {
        admin(
            port,
            "POST",
            "refresh-token-state",
            Some(json!({"refresh_token": token})),
        )
        .json()["state"]
            .clone()
    };
    assert_eq!(state(rt), "active");
    assert_eq!(state("nope"), "unknown");

    let clock = admin(port, "POST", "clock", Some(json!({"advance_secs": 120}))).json();
    assert_eq!(clock["offset_secs"], 120);
    assert_eq!(state(rt), "expired");
    assert!(!api_accepts(port, seeded["access_token"].as_str().unwrap()));

    assert_eq!(
        admin(port, "POST", "reset", None).json(),
        json!({"reset": true})
    );
    assert_eq!(state(rt), "unknown");
    assert_eq!(
        admin(port, "GET", "config", None).json()["access_ttl_secs"],
        900
    );

    // Reuse detection switched off over HTTP leaves the family alive.
    admin(
        port,
        "POST",
        "config",
        Some(json!({"reuse_detection": false})),
    );
    let rt = admin(port, "POST", "seed", None).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let next = refresh(port, &rt).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(refresh(port, &rt).status, 400);
    assert_eq!(state(&rt), "consumed");
    assert_eq!(state(&next), "active");

    assert_eq!(
        admin(port, "POST", "clock", Some(json!({"advance": 1}))).status,
        400
    );
    assert_eq!(admin(port, "POST", "clock", None).status, 400);
    assert_eq!(admin(port, "GET", "reset", None).status, 405);
    assert_eq!(admin(port, "GET", "nothing", None).status, 404);
}

#[test]
fn cors_preflight_and_headers_on_every_response() {
    let em = start();
    for path in ["/connect/token", "/graphql", "/admin/faults", "/anything"] {
        let reply = send(
            em.port(),
            "OPTIONS",
            path,
            &[
                ("Origin", "http://localhost:9000"),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                ),
            ],
            b"",
        )
        .unwrap();
        assert_eq!(reply.status, 204, "{path}");
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        let methods = reply.header("access-control-allow-methods").unwrap();
        for m in ["GET", "POST", "OPTIONS"] {
            assert!(methods.contains(m), "{methods}");
        }
        let headers = reply.header("access-control-allow-headers").unwrap();
        assert!(headers.contains("authorization") && headers.contains("content-type"));
    }
    assert_eq!(em.counters().token_requests, 0);
    let error = token(em.port(), &[("grant_type", "password")]);
    assert_eq!(error.header("access-control-allow-origin"), Some("*"));
    let missing = send(em.port(), "GET", "/nope", &[], b"").unwrap();
    assert_eq!(
        (
            missing.status,
            missing.header("access-control-allow-origin")
        ),
        (404, Some("*"))
    );
}

#[test]
fn bodies_over_one_mebibyte_get_413() {
    let em = start();
    let head = format!(
        "POST /connect/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    );
    let reply = send_raw(em.port(), head.as_bytes()).unwrap();
    assert_eq!(reply.status, 413);
    let mut big = head.into_bytes();
    big.resize(big.len() + 2 * 1024 * 1024, b'a');
    assert_eq!(send_raw(em.port(), &big).unwrap().status, 413);
    // Exactly 1 MiB is accepted.
    let ok = send(
        em.port(),
        "POST",
        "/admin/clock",
        &[("Content-Type", "application/json")],
        format!("{{\"advance_secs\":0}}{}", " ".repeat(1024 * 1024 - 18)).as_bytes(),
    )
    .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[test]
fn garbage_never_takes_the_server_down() {
    let em = start();
    let inputs: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"POST /connect/token HTTP/1.1\r\nContent-Length: nope\r\n\r\n".to_vec(),
        b"POST /connect/token HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
        b"POST /connect/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        b"POST /connect/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: Basic \xff\xfe\r\nContent-Length: 24\r\n\r\ngrant_type=refresh_token".to_vec(),
        b"POST /connect/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\n\r\n%ff%fe=%c3".to_vec(),
        b"POST /admin/faults HTTP/1.1\r\nContent-Length: 5\r\n\r\n[[[[[".to_vec(),
        b"GET /connect/authorize?%zz=%%%&&&== HTTP/1.1\r\n\r\n".to_vec(),
        format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(100)).into_bytes(),
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70 * 1024)).into_bytes(),
    ];
    for input in &inputs {
        if let Ok(reply) = send_raw(em.port(), input) {
            assert!(reply.status >= 400, "{reply:?}");
        }
    }
    // A client that connects and leaves.
    drop(std::net::TcpStream::connect(("127.0.0.1", em.port())).unwrap());
    assert_eq!(client_credentials(em.port(), &[]).status, 200);
}

#[test]
fn discovery_and_urls() {
    let em = start();
    assert_eq!(em.base_url(), format!("http://127.0.0.1:{}", em.port()));
    assert_eq!(
        em.token_endpoint(),
        format!("{}/connect/token", em.base_url())
    );
    assert_eq!(
        em.authorization_endpoint(),
        format!("{}/connect/authorize", em.base_url())
    );
    assert_eq!(em.api_endpoint(), format!("{}/graphql", em.base_url()));
    assert_eq!(
        em.revocation_endpoint(),
        format!("{}/connect/revocation", em.base_url())
    );
    let doc = send(
        em.port(),
        "GET",
        "/.well-known/openid-configuration",
        &[],
        b"",
    )
    .unwrap()
    .json();
    assert_eq!(doc["issuer"], em.base_url());
    assert_eq!(doc["token_endpoint"], em.token_endpoint());
    assert_eq!(doc["revocation_endpoint"], em.revocation_endpoint());
}

#[tokio::test]
async fn starts_and_stops_inside_a_tokio_runtime() {
    let em = start();
    let port = em.port();
    let status = tokio::task::spawn_blocking(move || client_credentials(port, &[]).status)
        .await
        .unwrap();
    assert_eq!(status, 200);
    drop(em);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn the_emulator_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Emulator>();
}

#[test]
fn refresh_token_state_tells_the_lineage() {
    let em = start();
    let port = em.port();
    let info = |token: &str| {
        admin(
            port,
            "POST",
            "refresh-token-state",
            Some(json!({"refresh_token": token})),
        )
        .json()
    };
    let first = admin(port, "POST", "seed", None).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        info(&first),
        json!({"state": "active", "family": 1, "generation": 0, "latest_generation": 0, "successor_state": null})
    );
    let second = refresh(port, &first).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let third = refresh(port, &second).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        info(&first),
        json!({"state": "consumed", "family": 1, "generation": 0, "latest_generation": 2, "successor_state": "consumed"})
    );
    assert_eq!(
        info(&second),
        json!({"state": "consumed", "family": 1, "generation": 1, "latest_generation": 2, "successor_state": "active"})
    );
    assert_eq!(info(&third)["generation"], 2);
    // Another family is numbered on its own.
    let other = admin(port, "POST", "seed", None).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(info(&other)["family"], 2);
    assert_eq!(info(&other)["generation"], 0);
    // Reuse revokes the family: the live successor's state says so.
    assert_eq!(refresh(port, &first).status, 400);
    assert_eq!(info(&second)["successor_state"], "revoked");
    assert_eq!(info(&third)["state"], "revoked");
    // Unknown tokens have no lineage.
    assert_eq!(info("nope"), json!({"state": "unknown"}));
}

#[test]
fn connections_counts_the_others_open() {
    let em = start();
    let port = em.port();
    assert_eq!(
        admin(port, "GET", "connections", None).json(),
        json!({"open": 0, "token_requests_in_flight": 0})
    );
    // A connection made before the asking one is already counted when it
    // asks (the accept loop counts each before accepting the next), and
    // stays counted until it is closed.
    let idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(admin(port, "GET", "connections", None).json()["open"], 1);
    drop(idle);
    // The server sees the close when it next reads: asked until it has.
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while admin(port, "GET", "connections", None).json()["open"] != 0 {
        assert!(
            std::time::Instant::now() < limit,
            "and no longer once closed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(admin(port, "POST", "connections", None).status, 405);
}
