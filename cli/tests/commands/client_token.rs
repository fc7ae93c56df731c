//! `freshtoken client-token` against the emulator: the three output modes,
//! where the secret comes from, and the exit status of each failure.

use crate::support::{credentials, freshtoken, Env, CLIENT_ID, CLIENT_SECRET};
use freshtoken_emulator::Fault;

#[test]
fn prints_a_client_token_the_api_accepts_in_every_format() {
    let env = Env::new("ct-formats");
    let human = env
        .with_creds(&["client-token", "--scope", "accounts"])
        .run()
        .ok();
    let token = human.stdout.lines().last().unwrap().to_owned();
    assert!(
        human
            .stdout
            .starts_with("Client token for scope \"accounts\""),
        "{}",
        human.stdout
    );
    assert!(env.api_accepts(&token));

    let quiet = env
        .with_creds(&["-q", "client-token", "--scope", "accounts"])
        .run()
        .ok();
    assert_eq!(
        quiet.stdout.lines().count(),
        1,
        "the token alone: {:?}",
        quiet.stdout
    );
    assert!(env.api_accepts(quiet.stdout.trim()));
    assert!(quiet.stderr.is_empty(), "{}", quiet.stderr);

    let json = env
        .with_creds(&[
            "--json",
            "client-token",
            "--scope",
            "accounts balances",
            "--scope",
            "accounts",
        ])
        .run()
        .ok()
        .json();
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["scope"], "accounts balances");
    assert!(env.api_accepts(json["access_token"].as_str().unwrap()));
    // The emulator's client tokens live 3600 s, counted from before the request.
    let expires_in = json["expires_in"].as_u64().expect("expires_in");
    assert!((3500..=3600).contains(&expires_in), "{expires_in}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let at = json["expires_at_ms"].as_u64().expect("expires_at_ms");
    assert!(
        at > now_ms + 3_500_000 && at <= now_ms + 3_600_000,
        "{at} vs {now_ms}"
    );
    assert_eq!(
        env.emu.counters().client_credentials_issued,
        3,
        "one request per run"
    );
    assert_eq!(
        env.emu.counters().last_audience,
        Some(env.emu.token_endpoint())
    );
}

#[test]
fn the_secret_comes_from_the_environment_and_never_shows() {
    let env = Env::new("ct-secret");
    let no_secret = env.scratch.write_private(
        "id-only.json",
        &credentials(CLIENT_ID, None, &env.emu.token_endpoint()),
    );
    // Without a secret anywhere: a config error before any request.
    let run = freshtoken(["--json", "client-token", "--scope", "a", "--credentials"])
        .args([&no_secret])
        .run()
        .exits(3);
    assert_eq!(run.json()["error"]["code"], "config");
    assert_eq!(env.emu.counters().token_requests, 0);

    freshtoken(["-q", "client-token", "--scope", "a", "--credentials"])
        .args([&no_secret])
        .env("FRESHTOKEN_CLIENT_SECRET", CLIENT_SECRET)
        .run()
        .ok();

    // The environment wins over the file; a wrong one is invalid_client (5).
    let wrong = "wrong-secret-SENTINEL-0123456789";
    let run = env
        .with_creds(&["client-token", "--scope", "a"])
        .env("FRESHTOKEN_CLIENT_SECRET", wrong)
        .run()
        .exits(5);
    assert!(
        run.stderr.contains("rejected the client credentials"),
        "{}",
        run.stderr
    );
    let json = env
        .with_creds(&["--json", "client-token", "--scope", "a"])
        .env("FRESHTOKEN_CLIENT_SECRET", wrong)
        .run()
        .exits(5);
    assert_eq!(json.json()["error"]["code"], "invalid_client");
    assert_eq!(json.json()["error"]["exit_code"], 5);
    for run in [&run, &json] {
        assert!(
            !run.all().contains("SENTINEL"),
            "the secret leaked: {}",
            run.all()
        );
        assert!(!run.all().contains(CLIENT_SECRET));
    }

    // The credentials JSON itself may come from standard input.
    let creds = std::fs::read_to_string(&env.creds).unwrap();
    let run = freshtoken(["-q", "client-token", "--scope", "a", "--credentials", "-"])
        .stdin(creds)
        .run()
        .ok();
    assert!(env.api_accepts(run.stdout.trim()));
    // And its path from FRESHTOKEN_CREDENTIALS.
    freshtoken(["-q", "client-token", "--scope", "a"])
        .env("FRESHTOKEN_CREDENTIALS", &env.creds)
        .run()
        .ok();
}

#[test]
fn unreadable_credentials_are_config_errors() {
    let env = Env::new("ct-config");
    let run = freshtoken(["--json", "client-token", "--scope", "a", "--credentials"])
        .args([env.scratch.path("missing.json")])
        .run()
        .exits(3);
    assert_eq!(run.json()["error"]["code"], "config");
    let garbage = env.scratch.write_private("garbage.json", "not json");
    freshtoken(["client-token", "--scope", "a", "--credentials"])
        .args([&garbage])
        .run()
        .exits(3);
    // A plain-http token endpoint off loopback is refused before sending.
    let insecure = env.scratch.write_private(
        "insecure.json",
        &credentials(
            CLIENT_ID,
            Some(CLIENT_SECRET),
            "http://example.com/connect/token",
        ),
    );
    freshtoken(["client-token", "--scope", "a", "--credentials"])
        .args([&insecure])
        .run()
        .exits(3);
}

#[test]
fn transport_and_server_failures_have_their_own_exit_status() {
    let env = Env::new("ct-failures");
    // Nothing listens: network (8).
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let creds = env.scratch.write_private(
        "closed.json",
        &credentials(
            CLIENT_ID,
            Some(CLIENT_SECRET),
            &format!("http://127.0.0.1:{closed}/connect/token"),
        ),
    );
    let run = freshtoken([
        "--json",
        "client-token",
        "--scope",
        "a",
        "--attempts",
        "1",
        "--credentials",
    ])
    .args([&creds])
    .run()
    .exits(8);
    assert_eq!(run.json()["error"]["code"], "network");

    // 503 after every allowed attempt: transient (7), retried as asked.
    env.emu.push_fault(Fault::status(503).times(2));
    let run = env
        .with_creds(&["--json", "client-token", "--scope", "a", "--attempts", "2"])
        .run()
        .exits(7);
    assert_eq!(run.json()["error"]["status"], 503);
    assert_eq!(env.emu.counters().token_requests, 2);

    // A retried 503 that then succeeds is no failure.
    env.emu.push_fault(Fault::status(503));
    env.with_creds(&["-q", "client-token", "--scope", "a"])
        .run()
        .ok();

    // Slower than --timeout: timeout (9). Held (never answered) and waited
    // for: it reached the emulator, so no later step meets its fault.
    env.emu.push_fault(Fault::hold());
    env.with_creds(&[
        "client-token",
        "--scope",
        "a",
        "--timeout",
        "1",
        "--attempts",
        "1",
    ])
    .run()
    .exits(9);
    env.emu.wait_held(1);

    // An answer that is not JSON: invalid_response (10).
    env.emu.push_fault(Fault::malformed_json());
    env.with_creds(&["client-token", "--scope", "a", "--attempts", "1"])
        .run()
        .exits(10);
}

#[test]
fn endpoints_can_come_from_discovery() {
    let env = Env::new("ct-discovery");
    let no_endpoint = env.scratch.write_private(
        "stitch-shaped.json",
        r#"{"clientId":"test-client","clientSecret":"test-secret","slidingRefreshTokenLifetime":31536000}"#,
    );
    let run = freshtoken(["-q", "client-token", "--scope", "a", "--credentials"])
        .args([&no_endpoint])
        .args(["--issuer", &env.emu.base_url()])
        .run()
        .ok();
    assert!(env.api_accepts(run.stdout.trim()));
    assert_eq!(env.emu.counters().discovery_requests, 1);
    // Or an explicit token endpoint overrides the file's (Stitch's default).
    freshtoken(["-q", "client-token", "--scope", "a", "--credentials"])
        .args([&no_endpoint])
        .env("FRESHTOKEN_TOKEN_ENDPOINT", env.emu.token_endpoint())
        .run()
        .ok();
    assert_eq!(env.emu.counters().client_credentials_issued, 2);
}

#[cfg(unix)]
#[test]
fn a_secret_variable_that_is_not_utf8_is_refused_not_ignored() {
    use std::os::unix::ffi::OsStringExt;
    let env = Env::new("client-secret-bytes");
    let run = env
        .with_creds(&["--json", "client-token", "--scope", "accounts"])
        .env(
            "FRESHTOKEN_CLIENT_SECRET",
            std::ffi::OsString::from_vec(vec![0xff, 0xfe, b's']),
        )
        .run()
        .exits(3);
    let error = &run.json()["error"];
    assert_eq!(error["code"], "config");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("FRESHTOKEN_CLIENT_SECRET"));
    assert_eq!(
        env.emu.counters().token_requests,
        0,
        "the file's secret was not used"
    );
}
