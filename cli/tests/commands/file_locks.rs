//! The command's lock files against the other file stores' (Python and
//! Kotlin `FileTokenStore`): this test process takes them as those stores
//! do, a POSIX record lock (a JVM's `FileLock`) on `<stem>.lock` for the
//! refresh lease and `<stem>.write.lock` for a write, and the command must
//! wait for them. Waits are on conditions (the kernel's lock table, the
//! emulator's held requests), never on time.
#![cfg(target_os = "linux")]

use crate::support::Env;
use freshtoken_emulator::Fault;
use rustix::fs::{fcntl_lock, FlockOperation};
use std::fs::{File, OpenOptions};
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

/// Waits until `child` is blocked on a POSIX lock (a `->` line of
/// /proc/locks names its pid); fails at once if it exits first.
fn wait_blocked_on_record_lock(child: &mut Child) {
    let pid = child.id().to_string();
    let limit = Instant::now() + Duration::from_secs(30);
    loop {
        let table = std::fs::read_to_string("/proc/locks").unwrap();
        let waiting = table.lines().any(|line| {
            let mut words = line.split_whitespace().skip(1);
            words.next() == Some("->")
                && words.next() == Some("POSIX")
                && words.nth(2) == Some(pid.as_str())
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
    let lease = record_lock(&lock_path(&env, "user-42", ".lock"));
    let requests = env.emu.counters().token_requests;

    let mut child = env.full(&["-q", "token"], "user-42").spawn();
    wait_blocked_on_record_lock(&mut child);
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
    let writing = record_lock(&lock_path(&env, "user-42", ".write.lock"));
    std::fs::write(env.record_path("user-42"), &relink).unwrap();
    env.emu.release_held();
    wait_blocked_on_record_lock(&mut child);
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
