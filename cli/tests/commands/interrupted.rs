//! A signal while a token request is in flight (Ctrl-C, `timeout`'s
//! SIGTERM, a closed terminal's SIGHUP) no longer ends the process before
//! the answer is saved: the command finishes the request, saves its
//! result, prints nothing and exits 128 + the signal. The emulator holds
//! the request while the signal is sent, so the signal always arrives
//! mid-request. A signal between the attempts of a revocation whose server
//! cannot be reached ends it with nothing sent, and says what it left here.
#![cfg(unix)]

use crate::support::{authorize, wait_at_most, Env, REDIRECT_URI};
use freshtoken_emulator::{Fault, TokenState};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Sends `signal` to `child` while the emulator holds its request, then
/// lets the request go on and waits for the child.
fn signal_mid_request(env: &Env, child: Child, signal: &str) -> Output {
    env.emu.wait_held(1);
    crate::support::send_signal(&child, signal);
    env.emu.release_held();
    child.wait_with_output().unwrap()
}

#[test]
fn a_refresh_in_flight_is_finished_and_its_rotation_saved() {
    let env = Env::new("interrupted-refresh");
    for (key, signal, status) in [("ctrl-c", "INT", 130), ("timeout", "TERM", 143)] {
        env.link(key);
        let old_refresh = env.refresh_token(key);
        env.expire_access_token(key);
        env.emu.push_fault(Fault::hold().for_grant("refresh_token"));
        let child = env.full(&["-q", "token"], key).spawn();
        let output = signal_mid_request(&env, child, signal);

        assert_eq!(output.status.code(), Some(status), "{signal}");
        assert!(output.stdout.is_empty(), "nothing printed after a signal");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("interrupted by SIG"), "{stderr}");
        let record = env.record(key).unwrap();
        assert!(!record.in_doubt, "the answer was saved ({signal})");
        let new_refresh = env.refresh_token(key);
        assert_eq!(
            env.emu.refresh_token_state(&old_refresh),
            TokenState::Consumed
        );
        assert_eq!(
            env.emu.refresh_token_state(&new_refresh),
            TokenState::Active
        );
        // The next run serves the saved token without a request.
        let requests = env.emu.counters().token_requests;
        let token = env.full(&["-q", "token"], key).run().ok().stdout;
        assert_eq!(token.trim(), env.access_token(key));
        assert_eq!(env.emu.counters().token_requests, requests);
    }
}

#[test]
fn a_signal_before_a_server_error_ends_with_the_signals_status_not_a_network_error() {
    // The answer in flight is a 503: the core's retry is not sent for the
    // signal, and that refusal is the signal's doing, not the network's.
    let env = Env::new("interrupted-then-503");
    let key = "busy";
    env.link(key);
    let old_refresh = env.refresh_token(key);
    env.expire_access_token(key);
    env.emu.push_fault(Fault::hold().for_grant("refresh_token"));
    env.emu
        .push_fault(Fault::status(503).for_grant("refresh_token"));
    let child = env.full(&["-q", "token"], key).spawn();
    let output = signal_mid_request(&env, child, "INT");

    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIG"), "{stderr}");
    assert_eq!(
        env.emu.counters().token_requests,
        2,
        "link, then the one refresh"
    );
    assert_eq!(
        env.emu.refresh_token_state(&old_refresh),
        TokenState::Active
    );
}

#[test]
fn a_signal_the_command_was_started_ignoring_stays_ignored() {
    // `nohup freshtoken token …` from cron: a hangup mid-refresh must not
    // end the command as interrupted.
    let env = Env::new("interrupted-nohup");
    let key = "nohup";
    env.link(key);
    env.expire_access_token(key);
    env.emu.push_fault(Fault::hold().for_grant("refresh_token"));
    let child = env.full(&["-q", "token"], key).ignoring("HUP").spawn();
    let output = signal_mid_request(&env, child, "HUP");

    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let token = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        token.trim(),
        env.access_token(key),
        "the renewed token is printed"
    );
}

#[test]
fn a_code_exchange_in_flight_is_finished_and_the_session_saved() {
    let env = Env::new("interrupted-link");
    let state_file = env.scratch.path("link.json");
    let url = env
        .with_creds(&["-q", "link", "--redirect-uri", REDIRECT_URI])
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .run()
        .ok()
        .stdout;
    let redirect = authorize(url.trim());
    env.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let mut child = env
        .full(&["link", "--code-stdin"], "user-42")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .spawn();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{redirect}").unwrap();
    drop(stdin);
    let output = signal_mid_request(&env, child, "INT");

    assert_eq!(output.status.code(), Some(130));
    let refresh = env.refresh_token("user-42");
    assert_eq!(env.emu.refresh_token_state(&refresh), TokenState::Active);
}

#[test]
fn a_one_step_link_interrupted_mid_exchange_uses_up_its_state_file() {
    // Its code was sent: finishing the state file later would send it
    // again, and the server would revoke the session just saved.
    let env = Env::new("interrupted-one-step");
    let state_file = env.scratch.path("link.json");
    env.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let (mut child, redirect) = env.one_step_link("dave", Some(&state_file));
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{redirect}").unwrap();
    drop(stdin);
    let output = signal_mid_request(&env, child, "INT");

    assert_eq!(output.status.code(), Some(130));
    let refresh = env.refresh_token("dave");
    assert_eq!(
        env.emu.refresh_token_state(&refresh),
        TokenState::Active,
        "saved"
    );
    let left = state_file.exists();
    let run = env
        .full(&["--json", "link", "--code-stdin"], "dave")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(redirect)
        .run();
    assert!(
        !left,
        "state file kept after its code was sent (second finish exit {}, stored refresh token {:?})",
        run.code,
        env.emu.refresh_token_state(&refresh)
    );
    assert_eq!(run.exits(3).json()["error"]["code"], "config");
    assert_eq!(
        env.emu.counters().by_grant.get("authorization_code"),
        Some(&1),
        "the code was sent once"
    );
    assert_eq!(env.emu.refresh_token_state(&refresh), TokenState::Active);
    let claimed: Vec<_> = std::fs::read_dir(&env.scratch.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("link.json"))
        .collect();
    assert!(claimed.is_empty(), "no claimed file is left: {claimed:?}");
}

#[test]
fn a_revocation_in_flight_is_finished_and_the_session_marked() {
    let env = Env::new("interrupted-revoke");
    env.link("user-42");
    let refresh = env.refresh_token("user-42");
    env.emu.push_fault(Fault::hold().for_revocation());
    let child = env.full(&["revoke"], "user-42").spawn();
    let output = signal_mid_request(&env, child, "HUP");

    assert_eq!(output.status.code(), Some(129));
    assert_eq!(env.emu.refresh_token_state(&refresh), TokenState::Revoked);
    let record = env.record("user-42").unwrap();
    assert_eq!(record.reauth.map(|r| r.as_str()), Some("revoked"));
}

/// A revocation endpoint on loopback whose TLS handshakes this test fails:
/// a request to it never reaches a server (a failed connect, which the
/// command retries after a backoff), and the test sees each attempt start
/// and end.
struct FailingTls(TcpListener);

impl FailingTls {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        FailingTls(listener)
    }

    fn url(&self) -> String {
        let port = self.0.local_addr().unwrap().port();
        format!("https://127.0.0.1:{port}/revocation")
    }

    /// Waits for `child`'s next connection (failing if it exits first),
    /// answers its TLS handshake with bytes that are no TLS, and returns
    /// once the command has dropped the connection: its attempt has ended,
    /// as not sent, and its backoff before the next one begun.
    fn fail_next_handshake(&self, child: &mut Child) {
        let limit = Instant::now() + Duration::from_secs(30);
        let mut stream = loop {
            match self.0.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept: {e}"),
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the command ended ({status}) before its revocation request");
            }
            assert!(Instant::now() < limit, "no revocation request came");
            std::thread::sleep(Duration::from_millis(5));
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) => assert_ne!(e.kind(), ErrorKind::WouldBlock, "never dropped"),
        }
    }
}

#[test]
fn a_revocation_interrupted_after_its_mark_and_before_its_request_says_so() {
    // The server cannot be reached (its handshakes fail): the session is
    // marked revoked here and saved, then the request is retried after a
    // backoff; Ctrl-C comes then, with nothing sent.
    let env = Env::new("interrupted-revoke-unsent");
    env.link("user-42");
    let refresh = env.refresh_token("user-42");
    let access = env.access_token("user-42");
    let server = FailingTls::new();
    // Up to 20 attempts: the signal comes after the fifth failed, in a
    // backoff of 2 s at least, so that it never meets an attempt under way
    // on a slow machine.
    let revocation = [
        "--revocation-endpoint".to_owned(),
        server.url(),
        "--attempts".to_owned(),
        "20".to_owned(),
    ];

    // Twice: the first run marks the session revoked before the signal;
    // the second finds it marked by the first (nothing sent) and is
    // interrupted the same way.
    for json in [true, false] {
        let args: &[&str] = if json {
            &["--json", "revoke"]
        } else {
            &["revoke"]
        };
        let mut child = env.full(args, "user-42").args(&revocation).spawn();
        for _ in 0..5 {
            server.fail_next_handshake(&mut child);
        }
        crate::support::send_signal(&child, "INT");
        let output = wait_at_most(child, Duration::from_secs(60));

        assert_eq!(output.status.code(), Some(130), "json: {json}");
        let (stdout, stderr) = (
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        );
        let message = if json {
            let value: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            let error = &value["error"];
            assert_eq!(error["code"], "interrupted");
            assert_eq!(error["server_may_hold_token"], true, "{value}");
            error["message"].as_str().unwrap().to_owned()
        } else {
            assert!(stdout.is_empty(), "nothing printed");
            stderr.clone()
        };
        for said in [
            "nothing was sent",
            "the session is marked revoked here",
            "the server, not told, may still hold its tokens",
            "`freshtoken revoke` again",
        ] {
            assert!(message.contains(said), "json {json}: {said:?} in {message}");
        }
        for secret in [&refresh, &access] {
            assert!(!stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()));
        }
        // As said: dead here, its tokens kept for the server, which was not told.
        let record = env.record("user-42").unwrap();
        assert_eq!(record.reauth.map(|r| r.as_str()), Some("revoked"));
        assert_eq!(env.refresh_token("user-42"), refresh);
        assert_eq!(env.emu.refresh_token_state(&refresh), TokenState::Active);
        assert_eq!(env.emu.counters().revocation_requests, 0);
    }

    // And `revoke` again revokes them there.
    let run = env.full(&["revoke"], "user-42").run().ok();
    assert!(run.stdout.starts_with("Revoked user-42"), "{}", run.stdout);
    assert_eq!(env.emu.refresh_token_state(&refresh), TokenState::Revoked);
    assert!(!env.api_accepts(&access));
    let inspect = env.on(&["--json", "inspect"], "user-42").run().ok().json();
    assert_eq!(inspect["revocation_pending"], false);
}
