//! The npm package's `freshtoken` bin (pkg/src/cli.js, what `npx freshtoken`
//! runs): it starts the native binary with the same arguments, stdio and
//! exit status, or says how to install it.

use crate::support::{Scratch, BIN};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn wrapper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pkg/src/cli.js")
}

/// The directory holding `node`, from this process's PATH.
fn node_dir() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|dir| dir.join("node").is_file())
        .expect("node on PATH")
}

/// Runs the wrapper with exactly this PATH and FRESHTOKEN_BIN.
fn npx(args: &[&str], path: &[&Path], bin: Option<&str>) -> Output {
    let mut command = Command::new(node_dir().join("node"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FRESHTOKEN_") {
            command.env_remove(name);
        }
    }
    command
        .arg(wrapper())
        .args(args)
        .env("PATH", std::env::join_paths(path).unwrap());
    if let Some(bin) = bin {
        command.env("FRESHTOKEN_BIN", bin);
    }
    command.output().unwrap()
}

#[test]
fn runs_the_native_binary_with_its_arguments_and_exit_status() {
    let node = node_dir();
    let out = npx(&["--version"], &[&node], Some(BIN));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("freshtoken {}", env!("CARGO_PKG_VERSION"))
    );
    // Found on PATH too; exit statuses pass through (config: 3).
    let bin_dir = Path::new(BIN).parent().unwrap();
    let out = npx(
        &[
            "client-token",
            "--scope",
            "a",
            "--credentials",
            "/nonexistent/creds.json",
        ],
        &[bin_dir, &node],
        None,
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("credentials"));
}

#[test]
fn without_the_binary_it_says_how_to_install_it() {
    let node = node_dir();
    // PATH holds only npm's link to the wrapper itself (as under npx): it
    // must not start itself.
    let scratch = Scratch::new("npx");
    #[cfg(unix)]
    std::os::unix::fs::symlink(wrapper(), scratch.path("freshtoken")).unwrap();
    let out = npx(&["--help"], &[&scratch.dir, &node], None);
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cargo install --locked --path cli"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
