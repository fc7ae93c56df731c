//! The command's lock files against the other file stores' (Python and
//! Kotlin `FileTokenStore`): this test process takes them as those stores
//! do, a POSIX record lock (a JVM's `FileLock`) on `<stem>.lock` for the
//! refresh lease and `<stem>.write.lock` for a write, and the command must
//! wait for them. Waits are on conditions (the kernel's lock table, the
//! emulator's held requests), never on time.
#![cfg(target_os = "linux")]

use crate::support::{authorize, wait_at_most, Env, REDIRECT_URI};
use freshtoken_emulator::{Fault, TokenState};
use rustix::fs::{fcntl_lock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// The lock file `<stem><suffix>` beside `key`'s record.
fn lock_path(env: &Env, key: &str, suffix: &str) -> PathBuf {
    let record = env.record_path(key);
    let stem = record.to_str().unwrap().strip_suffix(".json").unwrap();
    PathBuf::from(format!("{stem}{suffix}"))
}

/// A POSIX record lock on the whole file, as a JVM's `FileLock` takes it
/// (held until the file is closed).
fn record_lock(path: &Path) -> File {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive).expect("the lock is free");
    file
}

/// Waits until `child` waits for the record lock on `path`: it then holds
/// the file's `flock` (taken first) and tries the record lock again and
/// again (never blocking in the kernel, so that it can give up); fails at
/// once if it exits first.
fn wait_waiting_for_record_lock(child: &mut Child, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let pid = child.id().to_string();
    let inode = format!(":{}", std::fs::metadata(path).unwrap().ino());
    let limit = Instant::now() + Duration::from_secs(30);
    loop {
        let table = std::fs::read_to_string("/proc/locks").unwrap();
        let waiting = table.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.get(1) == Some(&"FLOCK")
                && words.get(4) == Some(&pid.as_str())
                && words.get(5).is_some_and(|w| w.ends_with(&inode))
        });
        if waiting {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the command ended ({status}) instead of waiting for the lock");
        }
        assert!(
            Instant::now() < limit,
            "the command never waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads `child`'s stderr until a line containing `text`; fails if it
/// ends first.
fn read_stderr_until(child: &mut Child, text: &str) {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("the command ended without saying {text:?}");
        }
        if line.contains(text) {
            return;
        }
    }
}

/// `key`'s record text.
fn record_text(env: &Env, key: &str) -> String {
    std::fs::read_to_string(env.record_path(key)).unwrap()
}

#[test]
fn the_command_waits_for_a_lease_taken_as_a_record_lock_and_uses_the_saved_record() {
    let env = Env::new("locks-lease");
    env.link("user-42");
    env.link("holder"); // a fresh record, as the lease holder's refresh saves it
    env.expire_access_token("user-42");
    let lease_path = lock_path(&env, "user-42", ".lock");
    let lease = record_lock(&lease_path);
    let requests = env.emu.counters().token_requests;

    let mut child = env.full(&["-q", "token"], "user-42").spawn();
    wait_waiting_for_record_lock(&mut child, &lease_path);
    assert_eq!(
        env.emu.counters().token_requests,
        requests,
        "nothing is sent while another process holds the lease"
    );
    // The holder saves its refreshed record and gives the lease back.
    std::fs::write(env.record_path("user-42"), record_text(&env, "holder")).unwrap();
    drop(lease);

    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8(output.stdout).unwrap().trim() == env.access_token("holder"),
        "the command serves the record the holder saved"
    );
    assert_eq!(
        env.emu.counters().token_requests,
        requests,
        "and sends nothing"
    );
}

#[test]
fn a_relink_saved_during_the_commands_refresh_is_kept() {
    let env = Env::new("locks-relink");
    env.link("user-42");
    env.link("relinked"); // the new link another process saves
    env.expire_access_token("user-42");
    let relink = record_text(&env, "relinked");
    env.emu.push_fault(Fault::hold().for_grant("refresh_token"));

    let mut child = env.full(&["-q", "token"], "user-42").spawn();
    env.emu.wait_held(1);
    // Another store's seed: the new record written under the write lock,
    // which the command's save must then wait for.
    let write_lock = lock_path(&env, "user-42", ".write.lock");
    let writing = record_lock(&write_lock);
    std::fs::write(env.record_path("user-42"), &relink).unwrap();
    env.emu.release_held();
    wait_waiting_for_record_lock(&mut child, &write_lock);
    drop(writing);

    let output = child.wait_with_output().unwrap();
    assert!(
        record_text(&env, "user-42") == relink,
        "the re-link is kept"
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8(output.stdout).unwrap().trim() == env.access_token("relinked"),
        "the command serves the re-linked session once its save conflicted"
    );
    assert_eq!(
        env.emu.counters().rotations,
        1,
        "one refresh, of the old link"
    );
}

#[test]
fn a_stalled_lease_holder_ends_the_wait_with_conflict_and_nothing_sent() {
    let env = Env::new("locks-stalled-lease");
    env.link("user-42");
    env.expire_access_token("user-42");
    // A process that took the lease and stopped (SIGSTOP, a debugger).
    let _lease = record_lock(&lock_path(&env, "user-42", ".lock"));
    let requests = env.emu.counters().token_requests;

    let child = env
        .full(&["--json", "token", "--lock-wait", "1"], "user-42")
        .spawn();
    let output = wait_at_most(child, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(12), "conflict");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nothing was sent"));
    assert_eq!(env.emu.counters().token_requests, requests);
}

#[test]
fn a_stalled_writer_fails_the_write_ahead_with_storage_and_nothing_sent() {
    let env = Env::new("locks-stalled-writer");
    env.link("user-42");
    env.expire_access_token("user-42");
    let before = record_text(&env, "user-42");
    // A process that stopped in the middle of a save.
    let _writing = record_lock(&lock_path(&env, "user-42", ".write.lock"));
    let requests = env.emu.counters().token_requests;

    let child = env.full(&["--json", "token"], "user-42").spawn();
    // Three tries (the command's retries of a storage failure) of 4 s each.
    let output = wait_at_most(child, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(11), "storage");
    assert_eq!(
        env.emu.counters().token_requests,
        requests,
        "no refresh token is spent while the record cannot be written"
    );
    assert!(
        record_text(&env, "user-42") == before,
        "the record is untouched"
    );
}

#[test]
fn a_forced_refresh_is_served_by_a_renewal_made_while_it_waited() {
    let env = Env::new("locks-forced");
    env.link("user-42");
    env.link("renewed"); // the record another process's refresh saves
    let lease_path = lock_path(&env, "user-42", ".lock");
    let lease = record_lock(&lease_path);
    let rotations = env.emu.counters().rotations;

    // The API rejected the stored token; the command is asked to replace it
    // while another process (a worker that got the same rejection) renews.
    let mut child = env.full(&["-q", "token", "--refresh"], "user-42").spawn();
    wait_waiting_for_record_lock(&mut child, &lease_path);
    std::fs::write(env.record_path("user-42"), record_text(&env, "renewed")).unwrap();
    drop(lease);

    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8(output.stdout).unwrap().trim() == env.access_token("renewed"),
        "the command serves the renewed token"
    );
    assert_eq!(
        env.emu.counters().rotations,
        rotations,
        "and spends no second banking session"
    );
    // Asked again now, for the token it holds, it refreshes.
    env.full(&["-q", "token", "--refresh"], "user-42")
        .run()
        .ok();
    assert_eq!(env.emu.counters().rotations, rotations + 1);
}

/// A `token` run (with `extra` arguments) whose refresh the server rotates
/// while another process has stopped mid-save: the rotated refresh token
/// exists only in the command's memory until the writer goes on.
fn rotation_saved_once_the_writer_goes_on(name: &str, extra: &[&str]) {
    let env = Env::new(name);
    env.link("user-42");
    env.expire_access_token("user-42");
    let old_refresh = env.refresh_token("user-42");
    env.emu.push_fault(Fault::hold().for_grant("refresh_token"));

    let args: Vec<&str> = ["token"].iter().chain(extra).copied().collect();
    let mut child = env.full(&args, "user-42").spawn();
    env.emu.wait_held(1);
    let writing = record_lock(&lock_path(&env, "user-42", ".write.lock"));
    env.emu.release_held();
    read_stderr_until(&mut child, "could not be saved yet");
    drop(writing);

    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {}", output.status);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.lines().last() == Some(env.access_token("user-42").as_str()));
    assert!(
        !env.record("user-42").unwrap().in_doubt,
        "the rotation is saved"
    );
    assert_eq!(env.emu.counters().rotations, 1);
    let new_refresh = env.refresh_token("user-42");
    assert_eq!(
        env.emu.refresh_token_state(&old_refresh),
        TokenState::Consumed
    );
    assert_eq!(
        env.emu.refresh_token_state(&new_refresh),
        TokenState::Active
    );
}

/// A `link --code-stdin` run (with `extra` arguments) whose code is
/// redeemed while another process has stopped mid-save.
fn new_link_saved_once_the_writer_goes_on(name: &str, extra: &[&str]) {
    let env = Env::new(name);
    let state_file = env.scratch.path("link.json");
    let url = env
        .with_creds(&["-q", "link", "--redirect-uri", REDIRECT_URI])
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .run()
        .ok()
        .stdout;
    let redirect = authorize(url.trim());
    std::fs::create_dir_all(&env.store).unwrap();
    env.emu
        .push_fault(Fault::hold().for_grant("authorization_code"));
    let args: Vec<&str> = ["link", "--code-stdin"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let mut child = env
        .full(&args, "user-42")
        .args(["--state-file".as_ref(), state_file.as_os_str()])
        .spawn();
    writeln!(child.stdin.take().unwrap(), "{redirect}").unwrap();
    env.emu.wait_held(1);
    let writing = record_lock(&lock_path(&env, "user-42", ".write.lock"));
    env.emu.release_held();
    read_stderr_until(&mut child, "could not be saved yet");
    drop(writing);

    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {}", output.status);
    let refresh = env.refresh_token("user-42");
    assert_eq!(env.emu.refresh_token_state(&refresh), TokenState::Active);
}

#[test]
fn a_rotation_that_cannot_be_saved_yet_is_saved_once_the_writer_goes_on() {
    rotation_saved_once_the_writer_goes_on("locks-unsaved", &[]);
}

#[test]
fn a_new_link_that_cannot_be_saved_yet_is_saved_once_the_writer_goes_on() {
    new_link_saved_once_the_writer_goes_on("locks-unsaved-link", &[]);
}

#[test]
fn a_relink_that_ends_a_stalled_save_is_kept_and_served() {
    let env = Env::new("locks-unsaved-relink");
    env.link("user-42");
    env.link("relinked");
    env.expire_access_token("user-42");
    let relink = record_text(&env, "relinked");
    env.emu.push_fault(Fault::hold().for_grant("refresh_token"));

    let mut child = env.full(&["token"], "user-42").spawn();
    env.emu.wait_held(1);
    let writing = record_lock(&lock_path(&env, "user-42", ".write.lock"));
    env.emu.release_held();
    read_stderr_until(&mut child, "could not be saved yet");
    // The stalled process goes on: its save was a new link.
    std::fs::write(env.record_path("user-42"), &relink).unwrap();
    drop(writing);

    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {}", output.status);
    assert!(
        record_text(&env, "user-42") == relink,
        "the re-link is kept"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.lines().last() == Some(env.access_token("relinked").as_str()),
        "and served"
    );
}

// --lock-wait 0: no waiting for another process before sending, which
// must not also mean no second try at saving what the server rotated.
#[test]
fn with_no_lock_wait_a_rotation_that_cannot_be_saved_yet_is_still_saved() {
    rotation_saved_once_the_writer_goes_on("locks-unsaved-no-wait", &["--lock-wait", "0"]);
}

#[test]
fn with_no_lock_wait_a_new_link_that_cannot_be_saved_yet_is_still_saved() {
    new_link_saved_once_the_writer_goes_on("locks-unsaved-link-no-wait", &["--lock-wait", "0"]);
}

#[test]
fn a_rotation_never_saved_ends_with_the_message_that_a_new_link_is_needed() {
    let env = Env::new("locks-never-saved");
    env.link("user-42");
    env.expire_access_token("user-42");
    env.emu.push_fault(Fault::hold().for_grant("refresh_token"));
    let requests = env.emu.counters().token_requests;

    // --timeout 5: the save is tried for 5 s + the 5 s store deadline.
    let child = env
        .full(&["--json", "token", "--timeout", "5"], "user-42")
        .spawn();
    env.emu.wait_held(1);
    // A writer that never goes on (held until the command has ended).
    let writing = record_lock(&lock_path(&env, "user-42", ".write.lock"));
    env.emu.release_held();
    let output = wait_at_most(child, Duration::from_secs(60));
    drop(writing);

    assert_eq!(output.status.code(), Some(11), "storage");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("this session will need a new link"),
        "the give-up message says what it costs: {message}"
    );
    assert_eq!(env.emu.counters().token_requests, requests + 1);
}

#[test]
fn a_signal_before_the_refresh_is_sent_ends_the_command_with_nothing_sent() {
    let env = Env::new("locks-signal-before-send");
    env.link("user-42");
    env.expire_access_token("user-42");
    let old_refresh = env.refresh_token("user-42");
    let before = record_text(&env, "user-42");
    let requests = env.emu.counters().token_requests;
    // A writer stalled mid-save: the command waits for it to save the
    // write-ahead marker, before anything can be sent.
    let write_lock = lock_path(&env, "user-42", ".write.lock");
    let writing = record_lock(&write_lock);

    let mut child = env.full(&["token"], "user-42").spawn();
    wait_waiting_for_record_lock(&mut child, &write_lock);
    crate::support::send_signal(&child, "TERM");
    // The writer stays stalled until the command has ended: it ends on the
    // signal, not once the writer goes on.
    let output = wait_at_most(child, Duration::from_secs(60));
    drop(writing);

    assert_eq!(output.status.code(), Some(143), "128 + SIGTERM");
    assert!(output.stdout.is_empty(), "nothing printed");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("before any token request was sent"),
        "{stderr}"
    );
    assert!(!stderr.contains("in flight"), "{stderr}");
    assert_eq!(env.emu.counters().token_requests, requests, "nothing sent");
    assert!(record_text(&env, "user-42") == before, "nothing saved");
    assert_eq!(
        env.emu.refresh_token_state(&old_refresh),
        TokenState::Active
    );
}

#[test]
fn a_signal_while_waiting_for_the_sessions_lock_ends_token_and_revoke_with_their_json() {
    // The wait for another process's lease was outside the command's
    // signal handling: the signal's default action ended the process, and
    // `--json` printed nothing.
    let env = Env::new("locks-signal-in-lock-wait");
    env.link("user-42");
    let before = record_text(&env, "user-42");
    let requests = env.emu.counters().token_requests;
    let lease = lock_path(&env, "user-42", ".lock");
    let held = record_lock(&lease);
    for command in ["token", "revoke"] {
        let mut child = env.full(&["--json", command], "user-42").spawn();
        wait_waiting_for_record_lock(&mut child, &lease);
        crate::support::send_signal(&child, "INT");
        let output = wait_at_most(child, Duration::from_secs(60));

        assert_eq!(output.status.code(), Some(130), "{command}: 128 + SIGINT");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{command}: {e}: {:?}", output.stdout));
        assert_eq!(json["error"]["code"], "interrupted", "{command}: {json}");
    }
    drop(held);
    assert_eq!(env.emu.counters().token_requests, requests, "nothing sent");
    assert!(record_text(&env, "user-42") == before, "nothing saved");
}

#[test]
fn a_temporary_file_is_left_to_the_writer_holding_the_write_lock() {
    let env = Env::new("locks-temp-of-a-writer");
    env.link("user-42");
    let before = record_text(&env, "user-42");
    // A Python or Kotlin save in progress: its temporary file, not whole
    // yet, and the write lock it holds while that file exists.
    let temp = env.store.join(".x.757365722d3432.json.tmp");
    std::fs::write(&temp, &before[..before.len() / 2]).unwrap();
    let writing = record_lock(&lock_path(&env, "user-42", ".write.lock"));
    let requests = env.emu.counters().token_requests;

    let child = env.full(&["--json", "token"], "user-42").spawn();
    let output = wait_at_most(child, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(11), "storage");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("nothing was sent"), "{message}");
    assert_eq!(env.emu.counters().token_requests, requests, "nothing sent");
    assert!(temp.exists(), "the writer's file is left alone");
    assert!(record_text(&env, "user-42") == before);

    // The writer was killed: its lock is given back, and its file, cut
    // off, is removed.
    drop(writing);
    let token = env.full(&["-q", "token"], "user-42").run().ok().stdout;
    assert_eq!(token.trim(), env.access_token("user-42"));
    assert!(!temp.exists());
    assert!(record_text(&env, "user-42") == before);
}
