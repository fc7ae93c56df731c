//! `freshtoken revoke` against the emulator's revocation endpoint (RFC 7009).

use crate::support::Env;
use freshtoken_emulator::{Fault, TokenState};

#[test]
fn revokes_at_the_server_and_marks_the_session_dead() {
    let env = Env::new("revoke");
    env.link("user-42");
    let refresh = env.refresh_token("user-42");
    let access = env.access_token("user-42");

    let run = env.full(&["revoke"], "user-42").run().ok();
    assert!(run.stdout.starts_with("Revoked user-42"), "{}", run.stdout);
    assert_eq!(env.emu.refresh_token_state(&refresh), TokenState::Revoked);
    assert!(!env.api_accepts(&access));
    // The refresh token, then the live access token.
    assert_eq!(env.emu.counters().revocation_requests, 2);
    let record = env.record("user-42").unwrap();
    assert_eq!(record.reauth.map(|r| r.as_str()), Some("revoked"));
    assert!(record.refresh_token.is_none() && record.access_token.is_none());

    // Every later `token` fails fast with reason revoked (4).
    let run = env.full(&["--json", "token"], "user-42").run().exits(4);
    assert_eq!(run.json()["error"]["reason"], "revoked");
    // Revoking again, or a key with nothing stored, is no error; neither
    // claims the server was told anything.
    let run = env.full(&["revoke"], "user-42").run().ok();
    assert!(
        run.stdout.contains("revoked before; nothing was sent"),
        "{}",
        run.stdout
    );
    let json = env.full(&["--json", "revoke"], "user-42").run().ok().json();
    assert_eq!(
        (&json["revoked"], &json["already_revoked"]),
        (&true.into(), &true.into())
    );
    let json = env.full(&["--json", "revoke"], "nobody").run().ok().json();
    assert_eq!(json["revoked"], false);
    assert_eq!(
        env.emu.counters().revocation_requests,
        2,
        "nothing left to revoke"
    );
}

#[test]
fn a_failed_revocation_says_the_server_may_hold_the_token_and_can_be_retried() {
    let env = Env::new("revoke-fails");
    env.link("user-42");
    let refresh = env.refresh_token("user-42");
    env.emu
        .push_fault(Fault::status(503).for_revocation().times(2));
    let run = env
        .full(&["--json", "revoke", "--attempts", "2"], "user-42")
        .run()
        .exits(7);
    let error = &run.json()["error"];
    assert_eq!(error["code"], "transient");
    assert_eq!(error["server_may_hold_token"], true);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("server may still hold"));
    assert_eq!(env.emu.refresh_token_state(&refresh), TokenState::Active);
    // Dead here all the same, `inspect` shows the revocation pending, and
    // `revoke` again finishes the job.
    env.full(&["token"], "user-42").run().exits(4);
    let pending = |env: &Env| {
        let run = env.on(&["--json", "inspect"], "user-42").run().ok();
        run.json()["revocation_pending"].clone()
    };
    assert_eq!(pending(&env), true);
    let json = env.full(&["--json", "revoke"], "user-42").run().ok().json();
    assert_eq!(json["already_revoked"], false);
    assert_eq!(env.emu.refresh_token_state(&refresh), TokenState::Revoked);
    assert_eq!(pending(&env), false);
}

#[test]
fn a_rejected_client_cannot_revoke() {
    let env = Env::new("revoke-client");
    env.link("user-42");
    env.full(&["revoke"], "user-42")
        .env("FRESHTOKEN_CLIENT_SECRET", "not-the-secret")
        .run()
        .exits(5);
}
