//! Command-line and environment parsing for the `freshtoken-emulator` binary.

use freshtoken_emulator::{ClientSpec, Options};

/// The usage text (printed on stderr for bad flags, stdout for `--help`).
pub(crate) const USAGE: &str = "\
usage: freshtoken-emulator [options]

  --port N                 port on 127.0.0.1 (0 = any free port; default 0)
  --access-ttl S           user access token lifetime in seconds (default 900)
  --client-ttl S           client_credentials token lifetime (default 3600)
  --refresh-ttl S          sliding refresh token lifetime (default 31536000)
  --no-reuse-detection     do not revoke a family when a used refresh token returns
  --reuse-detection        revoke it (the default)
  --client ID:SECRET       a confidential client (repeatable)
  --public-client ID       a public client (repeatable)
                           any --client/--public-client replaces the defaults
                           (test-client:test-secret and public-client)
  --exit-on-stdin-eof      exit when standard input closes
  --verbose                log method, path and status of each request to stderr
  -h, --help               this text

environment (flags win): FRESHTOKEN_EMULATOR_PORT, FRESHTOKEN_EMULATOR_ACCESS_TTL,
FRESHTOKEN_EMULATOR_CLIENT_TTL, FRESHTOKEN_EMULATOR_REFRESH_TTL,
FRESHTOKEN_EMULATOR_REUSE_DETECTION=0|1

When ready it prints one JSON line to stdout:
{\"ready\":true,\"port\":P,\"issuer\":…,\"token_endpoint\":…,\"authorization_endpoint\":…,
 \"api_endpoint\":…,\"admin_endpoint\":…}
";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum Command {
    /// Print the usage and exit 0.
    Help,
    /// Run with these options.
    Run {
        options: Options,
        exit_on_stdin_eof: bool,
    },
}

/// Parses the arguments (without the program name) over the environment.
pub(crate) fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut options = Options::default();
    if let Some(v) = env("FRESHTOKEN_EMULATOR_PORT") {
        options.port = number(&v, "FRESHTOKEN_EMULATOR_PORT")?;
    }
    for (var, field) in [
        (
            "FRESHTOKEN_EMULATOR_ACCESS_TTL",
            &mut options.access_ttl_secs,
        ),
        (
            "FRESHTOKEN_EMULATOR_CLIENT_TTL",
            &mut options.client_ttl_secs,
        ),
        (
            "FRESHTOKEN_EMULATOR_REFRESH_TTL",
            &mut options.refresh_ttl_secs,
        ),
    ] {
        if let Some(v) = env(var) {
            *field = number(&v, var)?;
        }
    }
    if let Some(v) = env("FRESHTOKEN_EMULATOR_REUSE_DETECTION") {
        options.reuse_detection = match v.trim() {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return Err("FRESHTOKEN_EMULATOR_REUSE_DETECTION must be 0 or 1".into()),
        };
    }
    let mut clients: Vec<ClientSpec> = Vec::new();
    let mut exit_on_stdin_eof = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--port" => options.port = number(&value("--port")?, "--port")?,
            "--access-ttl" => {
                options.access_ttl_secs = number(&value("--access-ttl")?, "--access-ttl")?
            }
            "--client-ttl" => {
                options.client_ttl_secs = number(&value("--client-ttl")?, "--client-ttl")?
            }
            "--refresh-ttl" => {
                options.refresh_ttl_secs = number(&value("--refresh-ttl")?, "--refresh-ttl")?
            }
            "--no-reuse-detection" => options.reuse_detection = false,
            "--reuse-detection" => options.reuse_detection = true,
            "--client" => {
                let v = value("--client")?;
                match v.split_once(':') {
                    Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
                        clients.push(ClientSpec::confidential(id, secret))
                    }
                    _ => return Err("--client takes ID:SECRET".into()),
                }
            }
            "--public-client" => {
                let id = value("--public-client")?;
                if id.is_empty() {
                    return Err("--public-client takes an ID".into());
                }
                clients.push(ClientSpec::public(id));
            }
            "--exit-on-stdin-eof" => exit_on_stdin_eof = true,
            "--verbose" => options.verbose = true,
            other => return Err(format!("unknown argument {other}")),
        }
        if inline.is_some()
            && matches!(
                flag.as_str(),
                "--no-reuse-detection" | "--reuse-detection" | "--exit-on-stdin-eof" | "--verbose"
            )
        {
            return Err(format!("{flag} takes no value"));
        }
    }
    if !clients.is_empty() {
        options.clients = clients;
    }
    Ok(Command::Run {
        options,
        exit_on_stdin_eof,
    })
}

fn number<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{what}: not a valid number: {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Command, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(args.iter().map(|s| s.to_string()), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    fn options(cmd: Command) -> (Options, bool) {
        match cmd {
            Command::Run {
                options,
                exit_on_stdin_eof,
            } => (options, exit_on_stdin_eof),
            Command::Help => panic!("expected run"),
        }
    }

    #[test]
    fn defaults_without_anything() {
        let (o, eof) = options(run(&[], &[]).unwrap());
        assert_eq!(o, Options::default());
        assert!(!eof);
    }

    #[test]
    fn flags_win_over_env() {
        let (o, eof) = options(
            run(
                &["--port", "0", "--access-ttl=5", "--exit-on-stdin-eof"],
                &[
                    ("FRESHTOKEN_EMULATOR_PORT", "4000"),
                    ("FRESHTOKEN_EMULATOR_ACCESS_TTL", "7"),
                    ("FRESHTOKEN_EMULATOR_CLIENT_TTL", "8"),
                    ("FRESHTOKEN_EMULATOR_REUSE_DETECTION", "0"),
                ],
            )
            .unwrap(),
        );
        assert_eq!((o.port, o.access_ttl_secs, o.client_ttl_secs), (0, 5, 8));
        assert!(!o.reuse_detection);
        assert!(eof);
        let (o, _) = options(
            run(
                &["--reuse-detection"],
                &[("FRESHTOKEN_EMULATOR_REUSE_DETECTION", "0")],
            )
            .unwrap(),
        );
        assert!(o.reuse_detection);
    }

    #[test]
    fn clients_replace_the_defaults_and_secrets_may_hold_colons() {
        let (o, _) = options(run(&["--client", "a:b:c", "--public-client", "p"], &[]).unwrap());
        assert_eq!(
            o.clients,
            vec![
                ClientSpec::confidential("a", "b:c"),
                ClientSpec::public("p")
            ]
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        for args in [
            &["--port"][..],
            &["--port", "x"],
            &["--port", "70000"],
            &["--bogus"],
            &["--client", "nosecret"],
            &["--verbose=1"],
        ] {
            assert!(run(args, &[]).is_err(), "{args:?}");
        }
        assert!(run(&[], &[("FRESHTOKEN_EMULATOR_REUSE_DETECTION", "maybe")]).is_err());
        assert_eq!(run(&["--help"], &[]).unwrap(), Command::Help);
    }
}
