//! `--help` everywhere, usage errors, and no option that takes a secret.

use crate::support::freshtoken;

const SUBCOMMANDS: [&str; 6] = [
    "client-token",
    "link",
    "token",
    "inspect",
    "revoke",
    "emulator",
];

#[test]
fn every_subcommand_has_help_with_the_exit_codes() {
    let top = freshtoken(["--help"]).run().ok();
    for sub in SUBCOMMANDS {
        assert!(top.stdout.contains(sub), "top-level help lists {sub}");
        let help = freshtoken([sub, "--help"]).run().ok();
        assert!(
            help.stdout.contains("Usage: freshtoken"),
            "{sub}: {}",
            help.stdout
        );
        if sub != "emulator" {
            assert!(
                help.stdout.contains("Exit status"),
                "{sub} documents its exit status"
            );
        }
    }
    for row in [
        "4   reauthorization_required",
        "5   invalid_client",
        "13  state_mismatch",
    ] {
        assert!(top.stdout.contains(row), "the table has {row:?}");
    }
}

#[test]
fn no_option_takes_a_secret() {
    for sub in SUBCOMMANDS {
        let help = freshtoken([sub, "--help"]).run().ok().stdout;
        for flag in [
            "--client-secret",
            "--secret",
            "--refresh-token",
            "--password",
            "--code ",
            "--code=",
            "--certificate",
        ] {
            assert!(!help.contains(flag), "{sub} offers {flag}");
        }
    }
    // The secret has no flag: clap refuses it as a usage error.
    freshtoken([
        "client-token",
        "--credentials",
        "c.json",
        "--scope",
        "a",
        "--client-secret",
        "x",
    ])
    .run()
    .exits(2);
}

#[test]
fn usage_errors_exit_2() {
    let run = freshtoken(["token"]).run().exits(2);
    assert!(run.stderr.contains("--store"), "{}", run.stderr);
    freshtoken(["no-such-command"]).run().exits(2);
    freshtoken(["inspect", "--store", "d", "--key", ""])
        .run()
        .exits(2);
    // Standard input cannot carry both the credentials and the code.
    freshtoken([
        "link",
        "--credentials",
        "-",
        "--state-file",
        "l",
        "--store",
        "d",
        "--key",
        "k",
        "--code-stdin",
    ])
    .run()
    .exits(2);
    freshtoken(["--json", "--quiet", "inspect", "--store", "d", "--key", "k"])
        .run()
        .exits(2);
    // `link` modes checked after parsing: still 2, and with --json as JSON.
    let run = freshtoken([
        "--json",
        "link",
        "--credentials",
        "c.json",
        "--redirect-uri",
        "http://x/cb",
    ])
    .run()
    .exits(2);
    assert_eq!(run.json()["error"]["code"], "usage");
    assert!(run.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--state-file"));
}

#[test]
fn version_prints_the_package_version() {
    let run = freshtoken(["--version"]).run().ok();
    assert_eq!(
        run.stdout.trim(),
        format!("freshtoken {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_clap_finds_are_json_with_json() {
    for args in [
        &["--json", "token", "--store", "d"][..],
        &[
            "--json",
            "token",
            "--store",
            "d",
            "--key",
            "u",
            "--timeout",
            "0",
        ],
        &[
            "--json", "inspect", "--store", "d", "--key", "u", "--key", "v",
        ],
        &["--json", "--quiet", "inspect", "--store", "d", "--key", "k"],
        &["--json", "no-such-command"],
    ] {
        let run = freshtoken(args).run().exits(2);
        let error = &run.json()["error"];
        assert_eq!(error["code"], "usage", "{args:?}");
        assert_eq!(error["exit_code"], 2, "{args:?}");
        assert!(!error["message"].as_str().unwrap().is_empty());
        assert!(run.stderr.is_empty(), "{args:?}: {}", run.stderr);
    }
    let run = freshtoken(["--json", "token", "--store", "d"])
        .run()
        .exits(2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("--key"), "{message}");
    // Help is still help, and without --json errors are still clap's text.
    let help = freshtoken(["--json", "token", "--help"]).run().ok();
    assert!(help.stdout.contains("Usage: freshtoken"));
    let run = freshtoken(["token", "--store", "d"]).run().exits(2);
    assert!(run.stdout.is_empty() && run.stderr.contains("--key"));
}
