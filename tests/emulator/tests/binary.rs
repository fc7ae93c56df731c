//! The `freshtoken-emulator` binary: ready line, env, exit paths, bad flags.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_freshtoken-emulator");

/// Spawns the binary and reads its ready line.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> (Child, Value) {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with(r#"{"ready":true,"port":"#), "{line:?}");
    assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    (child, ready)
}

/// Waits for the child to exit, failing (and killing it) after 20 s.
fn wait_exit(mut child: Child) -> ExitStatus {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    if rx.recv_timeout(Duration::from_secs(20)).is_err() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("the emulator did not exit");
    }
    waiter.join().unwrap().unwrap()
}

#[test]
fn prints_one_ready_line_and_exits_when_stdin_closes() {
    let (mut child, ready) = spawn(&["--port", "0", "--exit-on-stdin-eof"], &[]);
    let port = ready["port"].as_u64().unwrap() as u16;
    assert_ne!(port, 0);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["issuer"], base);
    assert_eq!(ready["token_endpoint"], format!("{base}/connect/token"));
    assert_eq!(
        ready["authorization_endpoint"],
        format!("{base}/connect/authorize")
    );
    assert_eq!(ready["api_endpoint"], format!("{base}/graphql"));
    assert_eq!(ready["admin_endpoint"], format!("{base}/admin"));
    assert_eq!(
        ready["revocation_endpoint"],
        format!("{base}/connect/revocation")
    );
    assert_eq!(
        ready["discovery_endpoint"],
        format!("{base}/.well-known/openid-configuration")
    );

    let seeded = admin(port, "POST", "seed", None).json();
    assert_eq!(
        refresh(port, seeded["refresh_token"].as_str().unwrap()).status,
        200
    );

    drop(child.stdin.take());
    assert!(wait_exit(child).success());
}

#[test]
fn reads_env_and_lets_flags_win() {
    let (mut child, ready) = spawn(
        &[
            "--exit-on-stdin-eof",
            "--access-ttl",
            "42",
            "--client",
            "cli:pa:ss",
            "--public-client",
            "pub",
        ],
        &[
            ("FRESHTOKEN_EMULATOR_ACCESS_TTL", "7"),
            ("FRESHTOKEN_EMULATOR_CLIENT_TTL", "8"),
            ("FRESHTOKEN_EMULATOR_REUSE_DETECTION", "0"),
        ],
    );
    let port = ready["port"].as_u64().unwrap() as u16;
    let config = admin(port, "GET", "config", None).json();
    assert_eq!(config["access_ttl_secs"], 42);
    assert_eq!(config["client_ttl_secs"], 8);
    assert_eq!(config["reuse_detection"], false);
    let cc = token(
        port,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "cli"),
            ("client_secret", "pa:ss"),
        ],
    );
    assert_eq!(cc.status, 200);
    // The defaults were replaced.
    assert_eq!(client_credentials(port, &[]).status, 401);
    drop(child.stdin.take());
    assert!(wait_exit(child).success());
}

#[cfg(unix)]
#[test]
fn exits_on_sigterm() {
    let (child, _ready) = spawn(&[], &[]);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(wait_exit(child).success());
}

#[test]
fn bad_flags_print_usage_and_exit_2() {
    for args in [
        &["--bogus"][..],
        &["--port", "x"],
        &["--client", "nosecret"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: freshtoken-emulator"));
        assert!(out.stdout.is_empty());
    }
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--exit-on-stdin-eof"));
}
