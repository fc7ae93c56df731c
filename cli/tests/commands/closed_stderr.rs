//! Nobody reading stderr (a closed pipe) changes no exit status: the
//! message is lost, the documented code stays (it used to be a panic's 101).
#![cfg(unix)]

use crate::support::{freshtoken, Env};
use serde_json::Value;
use std::io::{BufRead, BufReader};

/// A pipe whose reading end is already closed: every write fails (EPIPE).
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

#[test]
fn a_failure_keeps_its_exit_status() {
    let env = Env::new("closed-stderr");
    std::fs::create_dir_all(&env.store).unwrap();
    let child = env
        .full(&["token"], "nobody")
        .spawn_with_stderr(closed_pipe());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(4), "reauthorization_required");
}

#[test]
fn the_emulator_keeps_serving_after_its_note() {
    let mut child = freshtoken(["emulator", "--port", "0", "--exit-on-stdin-eof"])
        .spawn_with_stderr(closed_pipe());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let ready: Value = serde_json::from_str(&line).expect("a JSON ready line");
    // The note for people goes to stderr after the ready line; the
    // emulator must still answer, and exit cleanly when stdin closes.
    let (status, _) = crate::support::http_get(ready["discovery_endpoint"].as_str().unwrap(), None);
    assert_eq!(status, 200);
    drop(child.stdin.take());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
