//! `freshtoken inspect`: each status, expiry times, the dead reason, and
//! never a token in the output. No credentials, no request.

use crate::support::{ago, killed_after_the_refresh, rotated_once, write_temp, Env};
use freshtoken::Record;

fn status(env: &Env, key: &str) -> String {
    env.on(&["-q", "inspect"], key)
        .run()
        .ok()
        .stdout
        .trim()
        .to_owned()
}

#[test]
fn shows_each_status_with_tokens_redacted() {
    let env = Env::new("inspect");
    assert_eq!(status(&env, "user-42"), "missing");
    let missing = env.on(&["--json", "inspect"], "user-42").run().ok().json();
    assert_eq!(missing["status"], "missing");
    assert!(missing.get("access_token").is_none());

    env.link("user-42");
    let record = env.record("user-42").unwrap();
    let secrets = [
        env.access_token("user-42"),
        env.refresh_token("user-42"),
        record.id_token.as_ref().unwrap().expose().to_owned(),
    ];
    assert_eq!(status(&env, "user-42"), "fresh");
    let json = env.on(&["--json", "inspect"], "user-42").run().ok().json();
    assert_eq!(json["status"], "fresh");
    assert_eq!(json["key"], "user-42");
    assert_eq!(json["scope"], "accounts offline_access");
    assert_eq!(json["in_doubt"], false);
    let access = record.access_token.as_ref().unwrap();
    assert_eq!(json["access_expires_at_ms"], access.expires_at_ms);
    assert_eq!(
        json["refresh_expires_at_ms"],
        record.refresh_expires_at_ms.unwrap()
    );
    let shown = json["access_token"].as_str().unwrap();
    assert_eq!(
        shown,
        format!("{}… ({} chars)", &secrets[0][..3], secrets[0].len())
    );
    assert!(json["file"]
        .as_str()
        .unwrap()
        .ends_with("x.757365722d3432.json"));

    let human = env.on(&["inspect"], "user-42").run().ok();
    assert!(
        human.stdout.contains("status         fresh"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("refresh until"), "{}", human.stdout);
    for run in [&human.stdout, &json.to_string()] {
        for secret in &secrets {
            assert!(!run.contains(secret.as_str()), "a token leaked: {run}");
        }
    }

    env.expire_access_token("user-42");
    assert_eq!(status(&env, "user-42"), "refreshable");

    env.full(&["revoke"], "user-42").run().ok();
    let dead = env.on(&["--json", "inspect"], "user-42").run().ok().json();
    assert_eq!(dead["status"], "reauthorization_required");
    assert_eq!(dead["reason"], "revoked");
    let human = env.on(&["inspect"], "user-42").run().ok();
    assert!(
        human.stdout.contains("reauthorization_required (revoked)"),
        "{}",
        human.stdout
    );
    assert_eq!(
        env.emu.counters().refresh_success,
        0,
        "inspect never refreshes"
    );
}

#[test]
fn a_corrupt_record_is_a_storage_error() {
    let env = Env::new("inspect-corrupt");
    std::fs::create_dir_all(&env.store).unwrap();
    std::fs::write(env.record_path("k"), "[]").unwrap();
    let run = env.on(&["--json", "inspect"], "k").run().exits(11);
    assert_eq!(run.json()["error"]["code"], "storage");
    // People are told which file and what to do, not only "storage".
    let run = env.on(&["inspect"], "k").run().exits(11);
    assert!(
        run.stderr.contains("hint: the session's file is damaged"),
        "{}",
        run.stderr
    );
}

#[test]
fn times_past_year_9999_are_shown_not_a_panic() {
    let env = Env::new("inspect-far");
    env.link("user-42");
    // Any file in the directory is outside input: here, times no HTTP date
    // can show (year 10000 on).
    let mut record = env.record("user-42").unwrap();
    let far = 253_402_300_800_000 + 86_400_000;
    record.access_token.as_mut().unwrap().expires_at_ms = far;
    record.refresh_expires_at_ms = Some(far);
    env.write_record("user-42", &record);

    let human = env.on(&["inspect"], "user-42").run().ok();
    assert!(human.stdout.contains("far future (in "), "{}", human.stdout);
    let requests = env.emu.counters().token_requests;
    let token = env.full(&["token"], "user-42").run().ok();
    assert!(
        token
            .stdout
            .starts_with("Access token for user-42, expires far future"),
        "{}",
        token.stdout
    );
    assert_eq!(
        env.emu.counters().token_requests,
        requests,
        "served as fresh"
    );
}

#[test]
fn a_scope_with_a_terminal_escape_is_shown_without_it() {
    // The scope is the server's text, stored as sent.
    let env = Env::new("inspect-escape");
    env.link("user-42");
    let mut record = env.record("user-42").unwrap();
    record.scope = Some("openid \u{1b}]0;pwned\u{7}\u{1b}[2J\nFAKE: fresh".into());
    env.write_record("user-42", &record);

    let human = env.on(&["inspect"], "user-42").run().ok();
    assert!(!human.stdout.contains('\u{1b}'), "{:?}", human.stdout);
    assert!(!human.stdout.contains("\nFAKE"), "{:?}", human.stdout);
    assert!(
        human.stdout.contains("openid ?]0;pwned??[2J?FAKE: fresh"),
        "{:?}",
        human.stdout
    );
}

#[test]
fn a_save_a_killed_process_left_is_finished_before_the_record_is_shown() {
    let env = Env::new("inspect-killed-save");
    let (before, after) = rotated_once(&env, "u");
    let rotated = Record::decode(&after).unwrap();
    // Killed between its temporary file's fsync and its rename: the record
    // file holds the in-doubt record of the spent refresh token.
    killed_after_the_refresh(&env, "u", &before, ago(120));
    let temp = write_temp(&env, "x.75.json.4242.0123456789ab.tmp", &after, ago(90));
    let requests = env.emu.counters().token_requests;

    let json = env.on(&["--json", "inspect"], "u").run().ok().json();
    assert_eq!(
        (&json["status"], &json["in_doubt"]),
        (&"fresh".into(), &false.into()),
        "the finished save's record, not the in-doubt one: {json}"
    );
    let access = rotated.access_token.as_ref().unwrap();
    assert_eq!(json["access_expires_at_ms"], access.expires_at_ms);
    assert_eq!(json["updated_at_ms"], rotated.updated_at_ms);
    assert!(std::fs::read_to_string(env.record_path("u")).unwrap() == after);
    assert!(!temp.exists());
    assert_eq!(env.emu.counters().token_requests, requests, "nothing sent");
}

#[test]
fn a_killed_save_that_cannot_be_finished_is_a_storage_error_not_a_stale_record() {
    // A store that cannot be written (a read-only directory; the tests may
    // run as root, whom permissions do not stop): here the key's write
    // lock cannot be opened.
    let env = Env::new("inspect-killed-save-unwritable");
    let (before, after) = rotated_once(&env, "u");
    killed_after_the_refresh(&env, "u", &before, ago(120));
    let in_doubt = std::fs::read_to_string(env.record_path("u")).unwrap();
    let temp = write_temp(&env, "x.75.json.4242.0123456789ab.tmp", &after, ago(90));
    let write_lock = env.store.join("x.75.write.lock");
    std::fs::remove_file(&write_lock).unwrap();
    std::fs::create_dir(&write_lock).unwrap();

    let run = env.on(&["--json", "inspect"], "u").run().exits(11);
    let error = &run.json()["error"];
    assert_eq!(error["code"], "storage");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("cannot finish the save a killed process left"),
        "{message}"
    );
    assert!(
        std::fs::read_to_string(env.record_path("u")).unwrap() == in_doubt,
        "left as it was"
    );
    assert!(temp.exists());
    // No token in the message.
    for secret in [&before, &after] {
        let record = Record::decode(secret).unwrap();
        let refresh = record.refresh_token.unwrap();
        assert!(!run.all().contains(refresh.expose()));
    }
}
