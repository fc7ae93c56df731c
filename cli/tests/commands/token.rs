//! `freshtoken token` against the emulator: no request while fresh, one
//! refresh when stale with the rotation saved, one refresh for concurrent
//! invocations, and the exit status of dead sessions and broken stores.

use crate::support::Env;
use freshtoken::Secret;
use freshtoken_emulator::{Fault, TokenState};

#[test]
fn a_fresh_stored_token_is_printed_without_a_request() {
    let env = Env::new("token-fresh");
    env.link("user-42");
    let stored = env.access_token("user-42");
    let requests = env.emu.counters().token_requests;

    let human = env.full(&["token"], "user-42").run().ok();
    assert!(
        human
            .stdout
            .starts_with("Access token for user-42, expires "),
        "{}",
        human.stdout
    );
    assert_eq!(human.stdout.lines().last(), Some(stored.as_str()));
    let quiet = env.full(&["-q", "token"], "user-42").run().ok();
    assert_eq!(quiet.stdout, format!("{stored}\n"));
    let json = env.full(&["--json", "token"], "user-42").run().ok().json();
    assert_eq!(json["access_token"], stored.as_str());
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["scope"], "accounts offline_access");
    let expires_in = json["expires_in"].as_u64().unwrap();
    assert!((800..=900).contains(&expires_in), "{expires_in}");
    assert!(json["refresh_expires_at_ms"].as_u64().is_some());

    assert_eq!(env.emu.counters().token_requests, requests, "nothing sent");
}

#[test]
fn a_stale_token_is_refreshed_once_and_the_rotation_saved() {
    let env = Env::new("token-stale");
    env.link("user-42");
    let old_access = env.access_token("user-42");
    let old_refresh = env.refresh_token("user-42");
    env.expire_access_token("user-42");

    let token = env.full(&["-q", "token"], "user-42").run().ok().stdout;
    let token = token.trim();
    assert_ne!(token, old_access);
    assert!(env.api_accepts(token));
    let new_refresh = env.refresh_token("user-42");
    assert_ne!(
        new_refresh, old_refresh,
        "the rotated refresh token is saved"
    );
    assert_eq!(
        env.emu.refresh_token_state(&old_refresh),
        TokenState::Consumed
    );
    assert_eq!(
        env.emu.refresh_token_state(&new_refresh),
        TokenState::Active
    );
    assert_eq!(env.access_token("user-42"), token);
    assert_eq!(env.emu.counters().rotations, 1);

    // Fresh again: the next run sends nothing.
    let again = env.full(&["-q", "token"], "user-42").run().ok().stdout;
    assert_eq!(again.trim(), token);
    assert_eq!(env.emu.counters().rotations, 1);

    // --refresh forces one (and saves it too).
    let forced = env
        .full(&["-q", "token", "--refresh"], "user-42")
        .run()
        .ok()
        .stdout;
    assert_ne!(forced.trim(), token);
    assert_eq!(env.emu.counters().rotations, 2);
    assert_eq!(
        env.emu.refresh_token_state(&new_refresh),
        TokenState::Consumed
    );
    assert_eq!(
        env.emu.refresh_token_state(&env.refresh_token("user-42")),
        TokenState::Active
    );
}

/// Waits until `count` processes are blocked in the kernel for the `flock`
/// on `path` (their lines in `/proc/locks` read `N: -> FLOCK …`).
#[cfg(target_os = "linux")]
fn wait_blocked_on_flock(path: &std::path::Path, count: usize) {
    use std::os::unix::fs::MetadataExt;
    let inode = format!(":{}", std::fs::metadata(path).unwrap().ino());
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let table = std::fs::read_to_string("/proc/locks").unwrap();
        let blocked: std::collections::BTreeSet<&str> = table
            .lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                (words.get(1) == Some(&"->")
                    && words.get(2) == Some(&"FLOCK")
                    && words.get(6).is_some_and(|w| w.ends_with(&inode)))
                .then(|| words[5])
            })
            .collect();
        if blocked.len() >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < limit,
            "{} of {count} processes waited for the lock",
            blocked.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn concurrent_invocations_share_one_refresh() {
    let env = Env::new("token-concurrent");
    env.link("user-42");
    env.expire_access_token("user-42");
    // One process's refresh is held at the server until the three others
    // wait for the key's lock: the lock, not the timing, makes it one refresh.
    env.emu.push_fault(Fault::hold().for_grant("refresh_token"));
    let children: Vec<_> = (0..4)
        .map(|_| env.full(&["-q", "token"], "user-42").spawn())
        .collect();
    env.emu.wait_held(1);
    #[cfg(target_os = "linux")]
    {
        let record = env.record_path("user-42");
        let stem = record.to_str().unwrap().strip_suffix(".json").unwrap();
        wait_blocked_on_flock(std::path::Path::new(&format!("{stem}.lock")), 3);
    }
    env.emu.release_held();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for output in &outputs {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            output.stdout, outputs[0].stdout,
            "every process prints the same token"
        );
    }
    assert_eq!(
        env.emu.counters().rotations,
        1,
        "the per-key lock lets one process refresh"
    );
    assert_eq!(env.emu.counters().by_grant.get("refresh_token"), Some(&1));
    assert_eq!(env.emu.counters().invalid_grant, 0);
    assert_eq!(env.emu.counters().reuse_detected, 0);
}

#[test]
fn a_rejected_refresh_token_is_reauthorization_required_and_remembered() {
    let env = Env::new("token-dead");
    env.link("user-42");
    let mut record = env.record("user-42").unwrap();
    record.refresh_token = Some(Secret::new("a-refresh-token-the-server-never-issued"));
    env.write_record("user-42", &record);
    env.expire_access_token("user-42");

    let run = env.full(&["--json", "token"], "user-42").run().exits(4);
    let error = &run.json()["error"];
    assert_eq!(error["code"], "reauthorization_required");
    assert_eq!(error["reason"], "invalid_grant");
    assert_eq!(error["exit_code"], 4);
    let requests = env.emu.counters().token_requests;
    // Remembered: the next run fails fast without sending the token again.
    let run = env.full(&["token"], "user-42").run().exits(4);
    assert!(
        run.stderr
            .contains("reauthorization required (invalid_grant)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: "), "{}", run.stderr);
    assert_eq!(env.emu.counters().token_requests, requests);
    assert_eq!(
        env.record("user-42").unwrap().reauth.map(|r| r.as_str()),
        Some("invalid_grant")
    );
}

#[test]
fn a_lost_answer_is_remembered_and_later_reads_lost_rotation() {
    let env = Env::new("token-lost");
    env.link("user-42");
    env.expire_access_token("user-42");
    // The server rotates, then the answer is lost on the way back.
    env.emu
        .push_fault(Fault::drop_after_commit().for_grant("refresh_token"));
    env.full(&["token"], "user-42").run().exits(8);
    let inspect = env.on(&["--json", "inspect"], "user-42").run().ok().json();
    assert_eq!(inspect["in_doubt"], true);
    let run = env.full(&["--json", "token"], "user-42").run().exits(4);
    assert_eq!(run.json()["error"]["reason"], "lost_rotation");
}

#[test]
fn a_missing_session_or_an_unusable_store_fails_with_its_code() {
    let env = Env::new("token-store");
    // No store directory (a mistyped --store): config (3), none made; not
    // a session to link again.
    for command in ["token", "revoke"] {
        let run = env.full(&["--json", command], "nobody").run().exits(3);
        let message = run.json()["error"]["message"].to_string();
        assert!(
            message.contains("does not exist") && message.contains("--store"),
            "{command}: {message}"
        );
        assert!(!env.store.exists(), "{command} made no directory");
    }
    // A key never linked: reauthorization_required (4).
    std::fs::create_dir_all(&env.store).unwrap();
    let run = env.full(&["--json", "token"], "nobody").run().exits(4);
    assert_eq!(run.json()["error"]["reason"], "no_refresh_token");
    assert_eq!(env.emu.counters().token_requests, 0);

    // The store path is a file: storage (11).
    let file = env.scratch.write_private("not-a-dir", "");
    let run = crate::support::freshtoken(["--json", "token", "--key", "k", "--store"])
        .args([&file])
        .args(["--credentials".as_ref(), env.creds.as_os_str()])
        .run()
        .exits(11);
    assert_eq!(run.json()["error"]["code"], "storage");

    // A stored record that is not one: storage, nothing sent.
    std::fs::create_dir_all(&env.store).unwrap();
    std::fs::write(
        env.record_path("broken"),
        "{\"schema\":\"freshtoken.record/1\",",
    )
    .unwrap();
    env.full(&["token"], "broken").run().exits(11);
    assert_eq!(env.emu.counters().token_requests, 0);
}

#[cfg(unix)]
#[test]
fn a_record_path_that_is_not_a_file_fails_at_once() {
    let env = Env::new("token-fifo");
    std::fs::create_dir_all(&env.store).unwrap();
    // A FIFO: opening it for reading would wait for a writer forever.
    let made = std::process::Command::new("mkfifo")
        .arg(env.record_path("fifo"))
        .status()
        .unwrap();
    assert!(made.success());
    let limit = std::time::Duration::from_secs(30);
    let runs = [
        env.on(&["--json", "inspect"], "fifo"),
        env.full(&["--json", "token"], "fifo"),
    ];
    for run in runs {
        let output = crate::support::wait_at_most(run.spawn(), limit);
        assert_eq!(output.status.code(), Some(11));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a regular file"));
    }
    assert_eq!(env.emu.counters().token_requests, 0);
}

#[cfg(unix)]
#[test]
fn a_record_that_is_a_symlink_is_refused_and_left_alone() {
    let env = Env::new("token-symlink");
    env.link("user-42");
    env.expire_access_token("user-42");
    // The record moved elsewhere, a link to it in its place.
    let target = env.scratch.path("elsewhere.json");
    std::fs::rename(env.record_path("user-42"), &target).unwrap();
    std::os::unix::fs::symlink(&target, env.record_path("user-42")).unwrap();
    let before = std::fs::read_to_string(&target).unwrap();
    let requests = env.emu.counters().token_requests;

    let run = env.full(&["--json", "token"], "user-42").run().exits(11);
    let message = run.json()["error"]["message"].to_string();
    assert!(message.contains("symbolic link"), "{message}");
    assert_eq!(env.emu.counters().token_requests, requests, "nothing sent");
    let link = std::fs::symlink_metadata(env.record_path("user-42")).unwrap();
    assert!(link.is_symlink(), "the link is left as it was");
    assert!(std::fs::read_to_string(&target).unwrap() == before);
}
