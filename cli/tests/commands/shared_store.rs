//! The store directory is shared with the npm package's FileStore
//! (pkg/src/file-store.js, run here under Node): each reads what the other
//! wrote.

use crate::support::Env;
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
