//! The store directory is shared with the npm package's FileStore
//! (pkg/src/file-store.js, run here under Node): each reads what the other
//! wrote. And with the Python and Kotlin `FileTokenStore`s: a save one of
//! them, the npm store or the command itself was killed in (its rotated
//! record only in the temporary file) is finished before the command
//! loads the record, as their `recover()` finishes it.

use crate::support::{ago, killed_after_the_refresh, rotated_once, set_modified, write_temp, Env};
use freshtoken::Record;
use freshtoken_emulator::TokenState;
use std::path::Path;
use std::process::Command;

/// Runs an ES module snippet with the npm FileStore imported as `FileStore`.
fn node(script: &str, args: &[&str]) -> String {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pkg/src/file-store.js");
    let url = format!("file://{}", module.canonicalize().unwrap().display());
    let source = format!("import {{ FileStore }} from {url:?};\n{script}");
    let output = Command::new("node")
        .args(["--input-type=module", "-e", &source, "--"])
        .args(args)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_command_and_the_npm_file_store_read_each_others_records() {
    let env = Env::new("shared-store");
    env.link("user-42");
    let written = std::fs::read_to_string(env.record_path("user-42")).unwrap();
    let store = env.store.to_str().unwrap();

    // Node reads the command's record under the same key.
    let read = node(
        "const [dir] = process.argv.slice(1); process.stdout.write(await new FileStore(dir).load('user-42'));",
        &[store],
    );
    assert_eq!(read, written);

    // The command serves a record Node saved (fresh: no request).
    node(
        "const [dir, record] = process.argv.slice(1); await new FileStore(dir).save('from-node', record);",
        &[store, &written],
    );
    let requests = env.emu.counters().token_requests;
    let token = env.full(&["-q", "token"], "from-node").run().ok().stdout;
    assert_eq!(token.trim(), env.access_token("user-42"));
    assert_eq!(env.emu.counters().token_requests, requests);
}

#[test]
fn a_save_a_killed_python_or_kotlin_store_left_is_finished_before_the_record_is_used() {
    let env = Env::new("store-unfinished-python-save");
    let (before, after) = rotated_once(&env, "u"); // R0 -> R1 at the server
    let rotated = Record::decode(&after).unwrap();
    let new_refresh = rotated.refresh_token.as_ref().unwrap().expose().to_owned();
    assert_ne!(
        Record::decode(&before).unwrap().refresh_token,
        rotated.refresh_token
    );
    killed_after_the_refresh(&env, "u", &before, ago(60));
    // Their temporary file's name; written after the record, as a save's
    // is (their recover() compares no times for it).
    let tmp = write_temp(&env, ".x.75.json.tmp", &after, ago(30));
    let requests = env.emu.counters().token_requests;

    let run = env.full(&["--json", "token"], "u").run();
    assert_eq!(
        env.emu.refresh_token_state(&new_refresh),
        TokenState::Active,
        "the rotated refresh token a recover() would have restored was revoked (exit {}, tmp exists: {})",
        run.code,
        tmp.exists()
    );
    let json = run.ok().json();
    assert_eq!(
        json["access_token"].as_str(),
        Some(rotated.access_token.as_ref().unwrap().value.expose()),
        "the finished save's access token, fresh"
    );
    assert_eq!(env.emu.counters().token_requests, requests, "nothing sent");
    assert!(!tmp.exists());
    assert!(std::fs::read_to_string(env.record_path("u")).unwrap() == after);
}

#[test]
fn a_save_the_command_or_the_npm_store_was_killed_in_is_finished_by_the_next_run() {
    let env = Env::new("store-unfinished-own-save");
    let (before, after) = rotated_once(&env, "u");
    let new_refresh = env.refresh_token("u");
    killed_after_the_refresh(&env, "u", &before, ago(120));
    // `<name>.json.<pid>.<12 hex>.tmp`: the killed save's, and an older
    // save's whose writer is long gone.
    let killed = write_temp(&env, "x.75.json.4242.0123456789ab.tmp", &after, ago(90));
    let older = write_temp(&env, "x.75.json.4241.ba9876543210.tmp", &before, ago(300));
    let requests = env.emu.counters().token_requests;

    let token = env.full(&["-q", "token"], "u").run().ok().stdout;
    assert_eq!(
        env.emu.refresh_token_state(&new_refresh),
        TokenState::Active
    );
    assert_eq!(env.emu.counters().token_requests, requests, "nothing sent");
    assert_eq!(token.trim(), env.access_token("u"));
    assert!(std::fs::read_to_string(env.record_path("u")).unwrap() == after);
    assert!(!killed.exists() && !older.exists());
}

#[test]
fn temporary_files_of_older_or_cut_off_records_are_removed_and_the_record_kept() {
    let env = Env::new("store-stale-temps");
    let (before, after) = rotated_once(&env, "u");
    let record = env.record_path("u");
    set_modified(&record, ago(10));
    let cut_off = &after[..after.len() / 2];
    let requests = env.emu.counters().token_requests;
    let token_now = |env: &Env| {
        let token = env.full(&["-q", "token"], "u").run().ok().stdout;
        assert_eq!(token.trim(), env.access_token("u"));
        assert_eq!(env.emu.counters().token_requests, requests, "nothing sent");
        assert!(
            std::fs::read_to_string(&record).unwrap() == after,
            "the record is kept"
        );
    };

    // Theirs, cut off (a write killed midway), with an earlier version's
    // beside it: older still, whatever its time says.
    let fixed = write_temp(&env, ".x.75.json.tmp", cut_off, ago(1));
    let uuid = ".x.75.json.0a1b2c3d-0000-4000-8000-00000000abcd.tmp";
    let earlier = write_temp(&env, uuid, &before, ago(5));
    // The npm layout's: older than the record, its writer gone (over 60 s).
    let stale = write_temp(&env, "x.75.json.4241.ba9876543210.tmp", &before, ago(300));
    // And two whose writer may still be writing them (the npm store takes
    // no lock): older than the record, or not whole yet.
    let young = write_temp(&env, "x.75.json.4242.0123456789ab.tmp", &before, ago(30));
    let writing = write_temp(&env, "x.75.json.4243.abcdefabcdef.tmp", cut_off, ago(0));
    token_now(&env);
    assert!(!fixed.exists() && !earlier.exists() && !stale.exists());
    assert!(young.exists() && writing.exists(), "left to their writers");
    std::fs::remove_file(young).unwrap();
    std::fs::remove_file(writing).unwrap();

    // An earlier version's alone: older than the record, or cut off.
    let older = write_temp(&env, uuid, &before, ago(60));
    let newer = ".x.75.json.0a1b2c3d-0000-4000-8000-00000000dcba.tmp";
    let cut = write_temp(&env, newer, cut_off, ago(0));
    token_now(&env);
    assert!(!older.exists() && !cut.exists());
    let left: Vec<_> = std::fs::read_dir(&env.store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
