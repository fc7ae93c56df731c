//! A signal while a token request is in flight (Ctrl-C, `timeout`'s
//! SIGTERM, a closed terminal's SIGHUP) no longer ends the process before
//! the answer is saved: the command finishes the request, saves its
//! result, prints nothing and exits 128 + the signal. The emulator holds
//! the request while the signal is sent, so the signal always arrives
//! mid-request.
#![cfg(unix)]

use crate::support::{authorize, Env, REDIRECT_URI};
use freshtoken_emulator::{Fault, TokenState};
use std::io::Write;
use std::process::{Child, Command, Output};

/// Sends `signal` to `child` while the emulator holds its request, then
/// lets the request go on and waits for the child.
fn signal_mid_request(env: &Env, child: Child, signal: &str) -> Output {
    env.emu.wait_held(1);
    let sent = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
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
