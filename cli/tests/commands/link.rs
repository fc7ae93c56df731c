//! `freshtoken link` against the emulator's (self-approving) authorize
//! endpoint: both steps, the code's sources, state checks, one-step mode.

use crate::support::{authorize, query_param, Env, LINK_START, REDIRECT_URI};
use std::io::Write;
use std::path::Path;

/// Starts a link; returns the authorization URL.
fn start(env: &Env, state_file: &Path, extra: &[&str]) -> String {
    let run = env
        .with_creds(&LINK_START)
        .args(extra)
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .run()
        .ok();
    run.stdout.trim().to_owned()
}

#[test]
fn two_steps_store_the_session_and_use_the_state_file_once() {
    let env = Env::new("link-two-steps");
    let state_file = env.scratch.path("link.json");
    let url = start(&env, &state_file, &["--param", "provider=fnb"]);
    assert!(url.starts_with(&env.emu.authorization_endpoint()), "{url}");
    assert_eq!(
        query_param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query_param(&url, "scope").as_deref(),
        Some("accounts offline_access")
    );
    assert_eq!(query_param(&url, "provider").as_deref(), Some("fnb"));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    assert_eq!(
        saved["state"].as_str(),
        query_param(&url, "state").as_deref()
    );
    assert_eq!(
        saved["nonce"].as_str(),
        query_param(&url, "nonce").as_deref()
    );
    let verifier = saved["code_verifier"].as_str().unwrap();
    assert_eq!(
        query_param(&url, "code_challenge").unwrap(),
        freshtoken::code_challenge(verifier)
    );
    assert!(!url.contains(verifier));
    #[cfg(unix)]
    assert!(crate::support::is_private(&state_file));

    let redirect = authorize(&url);
    let run = env
        .full(&["link", "--code-stdin"], "user-42")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(format!("{redirect}\n"))
        .run()
        .ok();
    assert!(run.stdout.starts_with("Linked user-42."), "{}", run.stdout);
    let record = env.record("user-42").expect("the session is stored");
    assert!(record.refresh_token.is_some() && record.access_token.is_some());
    assert_eq!(record.scope.as_deref(), Some("accounts offline_access"));
    assert!(env.api_accepts(&env.access_token("user-42")));
    #[cfg(unix)]
    assert!(crate::support::is_private(&env.record_path("user-42")));
    assert!(!state_file.exists(), "the verifier is gone once used");
    assert_eq!(env.emu.counters().code_exchanges, 1);
    // The code never shows in the output.
    let code = query_param(&redirect, "code").unwrap();
    assert!(!run.all().contains(&code));

    // The state file is single use: finishing again is a config error.
    env.full(&["link", "--code-stdin"], "user-42")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(redirect)
        .run()
        .exits(3);
    assert_eq!(env.emu.counters().code_exchanges, 1);
}

#[test]
fn the_code_may_be_bare_with_state_or_come_from_the_environment() {
    let env = Env::new("link-sources");
    // A bare code on stdin, the state as an option; JSON both ways.
    let state_file = env.scratch.path("a.json");
    // FRESHTOKEN_STORE (set for `token`) does not turn a start into one step.
    let started = env
        .with_creds(&["--json", "link", "--redirect-uri", REDIRECT_URI])
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .env("FRESHTOKEN_STORE", &env.store)
        .run()
        .ok()
        .json();
    let url = started["authorization_url"].as_str().unwrap();
    let state = started["state"].as_str().unwrap();
    assert_eq!(query_param(url, "state").as_deref(), Some(state));
    assert!(started.get("code_verifier").is_none());
    let redirect = authorize(url);
    let linked = env
        .full(
            &["--json", "link", "--code-stdin", "--state", state],
            "alice",
        )
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(query_param(&redirect, "code").unwrap())
        .run()
        .ok()
        .json();
    assert_eq!(linked["key"], "alice");
    assert_eq!(linked["linked"], true);
    assert!(linked["refresh_expires_at_ms"].as_u64().unwrap() > crate::support::now_ms());

    // The whole redirect URL from FRESHTOKEN_CODE, nothing on the command line.
    let state_file = env.scratch.path("b.json");
    let redirect = authorize(&start(&env, &state_file, &[]));
    env.full(&["-q", "link", "--code-env"], "bob")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .env("FRESHTOKEN_CODE", &redirect)
        .run()
        .ok();
    assert!(env.record("bob").is_some());
    assert_eq!(env.emu.counters().code_exchanges, 2);
}

#[test]
fn a_foreign_state_or_an_error_redirect_exchanges_nothing() {
    let env = Env::new("link-refusals");
    let state_file = env.scratch.path("link.json");
    let url = start(&env, &state_file, &[]);
    let redirect = authorize(&url);
    let code = query_param(&redirect, "code").unwrap();

    // A redirect with another state: refused as a mismatch (13).
    let mismatched = |query: String| {
        let run = env
            .full(&["--json", "link", "--code-stdin"], "eve")
            .args(["--state-file".as_ref(), state_file.as_os_str()])
            .stdin(format!("{REDIRECT_URI}?{query}&state=someone-elses"))
            .run()
            .exits(13);
        assert_eq!(run.json()["error"]["code"], "state_mismatch");
    };
    mismatched(format!("code={code}"));
    let run = env
        .full(&["link", "--code-stdin", "--state", "someone-elses"], "eve")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(code.clone())
        .run()
        .exits(13);
    assert!(run.stderr.contains("state"), "{}", run.stderr);
    // A bare code without its state cannot be checked: a usage error.
    env.full(&["link", "--code-stdin"], "eve")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(code)
        .run()
        .exits(2);

    // An error redirect with another state is a mismatch too, not the
    // provider's answer (RFC 6749 4.1.2.1).
    mismatched("error=access_denied".to_owned());

    // The user said no: the server's error, exit status of `oauth` (6).
    let state = query_param(&url, "state").unwrap();
    let denied = format!(
        "{REDIRECT_URI}?error=access_denied&error_description=the+user+declined&state={state}"
    );
    let run = env
        .full(&["--json", "link", "--code-stdin"], "eve")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(denied)
        .run()
        .exits(6);
    assert_eq!(run.json()["error"]["oauth_error"], "access_denied");
    assert_eq!(run.json()["error"]["description"], "the user declined");

    assert_eq!(env.emu.counters().code_exchanges, 0);
    assert!(env.record("eve").is_none());
    assert!(
        state_file.exists(),
        "a refused answer keeps the state for the real one"
    );
    // The real answer still links.
    env.full(&["-q", "link", "--code-stdin"], "eve")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(redirect)
        .run()
        .ok();
    assert!(env.record("eve").is_some());
}

#[test]
fn one_step_prints_the_url_then_reads_the_redirect() {
    let env = Env::new("link-one-step");
    let (mut child, redirect) = env.one_step_link("carol", None);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{redirect}").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "one-step link exits 0");
    assert!(env.record("carol").is_some());
}

/// The names in the scratch directory beginning with `name` (the state
/// file, and any claimed file of it).
fn state_files(env: &Env, name: &str) -> Vec<String> {
    std::fs::read_dir(&env.scratch.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(name))
        .collect()
}

#[test]
fn a_one_step_link_whose_state_file_was_finished_meanwhile_sends_nothing() {
    let env = Env::new("link-one-step-claimed");
    let state_file = env.scratch.path("link.json");
    let (mut child, redirect) = env.one_step_link("first", Some(&state_file));
    // While the one-step run waits at its prompt, the link is finished
    // from its state file.
    env.full(&["-q", "link", "--code-stdin"], "second")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(redirect.clone())
        .run()
        .ok();
    let refresh = env.refresh_token("second");

    // The code is spent: sent again, the server would revoke that session.
    writeln!(child.stdin.take().unwrap(), "{redirect}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(3), "config");
    assert_eq!(
        env.emu.counters().by_grant.get("authorization_code"),
        Some(&1),
        "the code was sent once"
    );
    assert_eq!(
        env.emu.refresh_token_state(&refresh),
        freshtoken_emulator::TokenState::Active
    );
    assert!(env.record("first").is_none());
}

#[test]
fn a_one_step_link_keeps_its_state_file_until_the_code_is_sent() {
    let env = Env::new("link-one-step-state-file");
    let state_file = env.scratch.path("link.json");
    let (mut child, redirect) = env.one_step_link("carol", Some(&state_file));
    let state = query_param(&redirect, "state").unwrap();
    // Not this link's answer: nothing is sent, and the link can still be
    // finished from its state file.
    writeln!(
        child.stdin.take().unwrap(),
        "{REDIRECT_URI}?code=forged&state=someone-elses"
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(13), "state_mismatch");
    assert_eq!(state_files(&env, "link.json"), ["link.json"]);
    assert_eq!(env.emu.counters().by_grant.get("authorization_code"), None);
    env.full(&["-q", "link", "--code-stdin", "--state", &state], "carol")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(query_param(&redirect, "code").unwrap())
        .run()
        .ok();
    assert!(env.record("carol").is_some());

    // Linked in one step: the state file is used up.
    let state_file = env.scratch.path("again.json");
    let (mut child, redirect) = env.one_step_link("carol", Some(&state_file));
    writeln!(child.stdin.take().unwrap(), "{redirect}").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(state_files(&env, "again.json").is_empty());
    assert_eq!(env.emu.counters().code_exchanges, 2);
}

#[test]
fn linking_again_replaces_a_dead_session_and_the_next_token_comes_from_the_new_link() {
    let env = Env::new("link-again");
    env.link("user-42");
    let first = env.refresh_token("user-42");
    let mut dead = env.record("user-42").unwrap();
    dead.access_token = None;
    dead.reauth = Some(freshtoken::ReauthReason::InvalidGrant);
    env.write_record("user-42", &dead);
    env.full(&["token"], "user-42").run().exits(4);

    env.link("user-42"); // the user re-links: the stored record moved on
    let record = env.record("user-42").unwrap();
    assert!(record.reauth.is_none(), "the new link is alive");
    assert!(
        env.refresh_token("user-42") != first,
        "and holds the new link's refresh token"
    );
    let token = env.full(&["-q", "token"], "user-42").run().ok().stdout;
    assert!(env.api_accepts(token.trim()));
}

#[test]
fn a_record_that_is_not_text_is_a_storage_error_and_linking_again_replaces_it() {
    let env = Env::new("link-over-garbage");
    std::fs::create_dir_all(&env.store).unwrap();
    std::fs::write(env.record_path("user-42"), [0xff, 0xfe, b'{', 0x80]).unwrap();
    let run = env.full(&["token"], "user-42").run().exits(11);
    assert!(run.stderr.contains("storage"), "{}", run.stderr);

    env.link("user-42");
    assert!(env.record("user-42").unwrap().reauth.is_none());
    let token = env.full(&["-q", "token"], "user-42").run().ok().stdout;
    assert!(env.api_accepts(token.trim()));
}

#[test]
fn two_runs_finishing_one_link_send_its_code_once() {
    let env = Env::new("link-twice");
    let state_file = env.scratch.path("link.json");
    let redirect = authorize(&start(&env, &state_file, &[]));
    // The first run's exchange is held at the server while the second
    // (a redirect handler called twice, another key: no shared lock) runs.
    env.emu
        .push_fault(freshtoken_emulator::Fault::hold().for_grant("authorization_code"));
    let mut first = env
        .full(&["--json", "link", "--code-stdin"], "first")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .spawn();
    writeln!(first.stdin.take().unwrap(), "{redirect}").unwrap();
    env.emu.wait_held(1);

    let second = env
        .full(&["--json", "link", "--code-stdin"], "second")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(format!("{redirect}\n"))
        .run()
        .exits(3);
    assert_eq!(second.json()["error"]["code"], "config");
    let message = second.json()["error"]["message"].to_string();
    assert!(
        message.contains("claimed by another `link` run"),
        "{message}"
    );
    assert_eq!(
        env.emu.counters().by_grant.get("authorization_code"),
        Some(&1),
        "the second run sent nothing"
    );

    env.emu.release_held();
    let output = first.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {}", output.status);
    let counters = env.emu.counters();
    assert_eq!(counters.by_grant.get("authorization_code"), Some(&1));
    assert_eq!((counters.code_exchanges, counters.invalid_grant), (1, 0));
    // The session the first run stored is alive at the server.
    assert!(env.api_accepts(&env.access_token("first")));
    assert_eq!(
        env.emu.refresh_token_state(&env.refresh_token("first")),
        freshtoken_emulator::TokenState::Active
    );
    assert!(env.record("second").is_none());
    let left: Vec<_> = std::fs::read_dir(&env.scratch.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("link.json"))
        .collect();
    assert!(left.is_empty(), "the used state is gone: {left:?}");
}
