//! Against a real, independently written server: npm `oidc-provider` with
//! refresh-token rotation on (reusing a consumed refresh token revokes the
//! whole grant), through `cli/tests/support/oidc-provider-driver.mjs`.
//! Client tokens (secret and private_key_jwt), and a link whose session is
//! refreshed twice. Skipped with a message if the JS test dependencies are
//! not installed (`bash scripts/setup.sh --test`), unless
//! FRESHTOKEN_REQUIRE_SERVERS=1.

use crate::support::{freshtoken, Scratch};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The running server and its driver's pipes.
struct Op {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    ready: Value,
}

impl Op {
    fn start() -> Option<Op> {
        let root = repository();
        if !root.join("bindings/js/node_modules/oidc-provider").exists() {
            let message = "oidc-provider is not installed (bindings/js/node_modules); run `bash scripts/setup.sh --test`";
            if std::env::var("FRESHTOKEN_REQUIRE_SERVERS").as_deref() == Ok("1") {
                panic!("{message}");
            }
            eprintln!("SKIPPED: {message}");
            return None;
        }
        let mut child = Command::new("node")
            .arg(root.join("cli/tests/support/oidc-provider-driver.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the driver's ready line ({e}): {line:?}"));
        Some(Op {
            child,
            stdin,
            stdout,
            ready,
        })
    }

    /// Logs in and consents through oidc-provider's dev interactions;
    /// returns the redirect URL.
    fn authorize(&mut self, url: &str) -> String {
        writeln!(self.stdin.as_mut().unwrap(), "{url}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap();
        answer["redirect"]
            .as_str()
            .unwrap_or_else(|| panic!("authorization failed: {answer}"))
            .to_owned()
    }

    fn issuer(&self) -> &str {
        self.ready["issuer"].as_str().unwrap()
    }

    /// A credentials file for the client `kind`, without a token endpoint
    /// (the commands discover it from the issuer).
    fn credentials(&self, scratch: &Scratch, kind: &str) -> PathBuf {
        let client = &self.ready["clients"][kind];
        let mut creds = serde_json::json!({
            "clientId": client["clientId"],
            "slidingRefreshTokenLifetime": 31_536_000,
        });
        if kind == "jwt" {
            let pem = std::fs::read_to_string(
                repository().join("tests/fixtures/client-cert-and-key.pem"),
            )
            .unwrap();
            creds["certificate"] = pem.into();
            creds["keyId"] = "freshtoken-test".into();
        } else {
            creds["clientSecret"] = client["clientSecret"].clone();
        }
        scratch.write_private(&format!("{kind}.json"), &creds.to_string())
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

#[test]
fn client_tokens_with_a_secret_and_with_a_certificate() {
    let Some(op) = Op::start() else { return };
    let scratch = Scratch::new("op-client");
    for kind in ["confidential", "jwt"] {
        let creds = op.credentials(&scratch, kind);
        let json = freshtoken([
            "--json",
            "client-token",
            "--scope",
            "api:read",
            "--issuer",
            op.issuer(),
            "--credentials",
        ])
        .args([&creds])
        .run()
        .ok()
        .json();
        assert!(
            json["access_token"].as_str().is_some_and(|t| t.len() >= 16),
            "{kind}: {json}"
        );
        assert_eq!(json["scope"], "api:read");
    }
    // A wrong secret: invalid_client (5), and the secret never shows.
    let creds = op.credentials(&scratch, "confidential");
    let run = freshtoken([
        "--json",
        "client-token",
        "--scope",
        "api:read",
        "--issuer",
        op.issuer(),
        "--credentials",
    ])
    .args([&creds])
    .env("FRESHTOKEN_CLIENT_SECRET", "wrong-SENTINEL-secret")
    .run()
    .exits(5);
    assert_eq!(run.json()["error"]["code"], "invalid_client");
    assert!(!run.all().contains("SENTINEL"));
}

#[test]
fn a_linked_session_refreshes_with_rotation() {
    let Some(mut op) = Op::start() else { return };
    let scratch = Scratch::new("op-refresh");
    let creds = op.credentials(&scratch, "confidential");
    let store = scratch.path("tokens");
    let state_file = scratch.path("link.json");
    let redirect_uri = op.ready["redirect_uri"].as_str().unwrap().to_owned();
    let issuer = op.issuer().to_owned();
    let with = |args: &[&str]| {
        freshtoken(args)
            .args(["--issuer", &issuer, "--credentials"])
            .args([&creds])
            .args(["--state-file".as_ref(), state_file.as_os_str()])
    };
    let url = with(&[
        "-q",
        "link",
        "--redirect-uri",
        &redirect_uri,
        "--scope",
        "openid api",
    ])
    .run()
    .ok()
    .stdout;
    let redirect = op.authorize(url.trim());
    with(&["-q", "link", "--code-stdin", "--key", "user-42"])
        .args(["--store".as_ref(), store.as_os_str()])
        .stdin(redirect)
        .run()
        .ok();

    let token = |force: bool| {
        let mut args = vec!["--json", "token", "--key", "user-42"];
        if force {
            args.push("--refresh");
        }
        let store_args = ["--store".as_ref(), store.as_os_str()];
        freshtoken(args)
            .args(["--issuer", &issuer, "--credentials"])
            .args([&creds])
            .args(store_args)
            .run()
            .ok()
            .json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let linked = token(false);
    let first = token(true);
    let second = token(true);
    assert_ne!(linked, first);
    assert_ne!(first, second);
    // Had a consumed refresh token been sent again, oidc-provider would
    // have revoked the grant and the second refresh failed.
    assert_eq!(token(false), second, "fresh: served from the store");

    let inspect = freshtoken(["--json", "inspect", "--key", "user-42", "--store"])
        .args([&store])
        .run()
        .ok()
        .json();
    assert_eq!(inspect["status"], "fresh");
    assert_eq!(inspect["in_doubt"], false);

    // Revocation at oidc-provider's discovered endpoint (/token/revocation).
    freshtoken([
        "revoke",
        "--key",
        "user-42",
        "--issuer",
        &issuer,
        "--credentials",
    ])
    .args([&creds])
    .args(["--store".as_ref(), store.as_os_str()])
    .run()
    .ok();
    let run = freshtoken([
        "--json",
        "token",
        "--key",
        "user-42",
        "--issuer",
        &issuer,
        "--credentials",
    ])
    .args([&creds])
    .args(["--store".as_ref(), store.as_os_str()])
    .run()
    .exits(4);
    assert_eq!(run.json()["error"]["reason"], "revoked");
}
