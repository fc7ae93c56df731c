//! `freshtoken emulator`: the ready line, a credentials file for it, its
//! clients, and a clean exit on stdin's end or SIGTERM.

use crate::support::{freshtoken, Scratch};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Child;

/// Starts the emulator command and reads its ready line.
fn start(args: &[&str]) -> (Child, Value) {
    let mut child = freshtoken(["emulator", "--port", "0"]).args(args).spawn();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).expect("a JSON ready line");
    (child, ready)
}

#[test]
fn serves_stitch_rules_for_the_other_commands_and_exits_on_stdin_eof() {
    let scratch = Scratch::new("emulator-cmd");
    let creds = scratch.path("creds.json");
    let (mut child, ready) = start(&[
        "--exit-on-stdin-eof",
        "--access-ttl",
        "600",
        "--write-credentials",
        creds.to_str().unwrap(),
    ]);
    assert_eq!(ready["ready"], true);
    let port = ready["port"].as_u64().unwrap();
    assert!(port > 0);
    let base = format!("http://127.0.0.1:{port}");
    for (name, path) in [
        ("issuer", ""),
        ("token_endpoint", "/connect/token"),
        ("authorization_endpoint", "/connect/authorize"),
        ("revocation_endpoint", "/connect/revocation"),
        ("discovery_endpoint", "/.well-known/openid-configuration"),
    ] {
        assert_eq!(ready[name], format!("{base}{path}"), "{name}");
    }
    #[cfg(unix)]
    assert!(crate::support::is_private(&creds));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert_eq!(written["clientId"], "test-client");
    assert_eq!(written["tokenEndpoint"], format!("{base}/connect/token"));

    let json = freshtoken([
        "--json",
        "client-token",
        "--scope",
        "accounts",
        "--credentials",
    ])
    .args([&creds])
    .run()
    .ok()
    .json();
    let token = json["access_token"].as_str().unwrap();
    let (status, _) = crate::support::http_get(&format!("{base}/api/me"), Some(token));
    assert_eq!(status, 200);

    // A user token through the code flow, with the configured lifetime.
    let store = scratch.path("tokens");
    let state_file = scratch.path("link.json");
    let url = freshtoken([
        "-q",
        "link",
        "--redirect-uri",
        "http://127.0.0.1/cb",
        "--credentials",
    ])
    .args([&creds])
    .args(["--state-file".as_ref(), state_file.as_os_str()])
    .run()
    .ok()
    .stdout;
    let redirect = crate::support::authorize(url.trim());
    freshtoken(["-q", "link", "--code-stdin", "--key", "u", "--credentials"])
        .args([&creds])
        .args([
            "--state-file".as_ref(),
            state_file.as_os_str(),
            "--store".as_ref(),
            store.as_os_str(),
        ])
        .stdin(redirect)
        .run()
        .ok();
    let token = freshtoken(["--json", "token", "--key", "u", "--credentials"])
        .args([&creds])
        .args(["--store".as_ref(), store.as_os_str()])
        .run()
        .ok()
        .json();
    let expires_in = token["expires_in"].as_u64().unwrap();
    assert!(
        (500..=600).contains(&expires_in),
        "--access-ttl 600: {expires_in}"
    );

    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "exits 0 when stdin closes");
}

#[test]
fn clients_come_from_a_file_and_replace_the_defaults() {
    let scratch = Scratch::new("emulator-clients");
    let clients = scratch.write_private("clients.txt", "# id:secret\nmy-client:my:secret\n");
    let creds = scratch.path("creds.json");
    let (mut child, _ready) = start(&[
        "--clients-file",
        clients.to_str().unwrap(),
        "--write-credentials",
        creds.to_str().unwrap(),
    ]);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert_eq!(written["clientId"], "my-client");
    assert_eq!(written["clientSecret"], "my:secret");
    freshtoken(["-q", "client-token", "--scope", "a", "--credentials"])
        .args([&creds])
        .run()
        .ok();
    // The default client is gone.
    freshtoken(["client-token", "--scope", "a", "--credentials"])
        .args([&creds])
        .env("FRESHTOKEN_CLIENT_SECRET", "test-secret")
        .run()
        .exits(5);

    #[cfg(unix)]
    {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        assert!(child.wait().unwrap().success(), "exits 0 on SIGTERM");
    }
    #[cfg(not(unix))]
    {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn a_bad_clients_file_is_refused_before_listening() {
    let scratch = Scratch::new("emulator-bad");
    let clients = scratch.write_private("clients.txt", "no-secret-here\n");
    let run = freshtoken(["emulator", "--clients-file"])
        .args([&clients])
        .run()
        .exits(3);
    assert!(run.stdout.is_empty(), "no ready line: {}", run.stdout);
    assert!(run.stderr.contains("line 1"), "{}", run.stderr);
}
