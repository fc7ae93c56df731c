//! `freshtoken emulator`: the token-endpoint emulator with Stitch's rules
//! (the `freshtoken-emulator` library), for users' own integration tests.

use crate::args::EmulatorArgs;
use crate::failure::Failure;
use crate::file_store::{read_capped, write_private};
use crate::output::{write_stdout, Output};
use freshtoken_emulator::{ClientSpec, Emulator, ExitSignals, Options};

/// The environment variable of the reuse-detection default (0 or 1).
const REUSE_ENV: &str = "FRESHTOKEN_EMULATOR_REUSE_DETECTION";

/// The emulator's options from the arguments and the environment.
fn options(args: &EmulatorArgs) -> Result<Options, Failure> {
    let mut reuse_detection = match std::env::var(REUSE_ENV).ok().as_deref().map(str::trim) {
        None | Some("1" | "true") => true,
        Some("0" | "false") => false,
        Some(_) => return Err(Failure::Usage(format!("{REUSE_ENV} must be 0 or 1"))),
    };
    if args.no_reuse_detection {
        reuse_detection = false;
    }
    if args.reuse_detection {
        reuse_detection = true;
    }
    let mut clients = Vec::new();
    if let Some(path) = &args.clients_file {
        let unreadable =
            |what: String| Failure::config("clients_file", format!("{} {what}", path.display()));
        let text = zeroize::Zeroizing::new(
            read_capped(path, 256 * 1024)
                .map_err(|e| unreadable(format!("cannot be read ({})", e.kind())))?
                .ok_or_else(|| unreadable("does not exist".into()))?,
        );
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
                    clients.push(ClientSpec::confidential(id, secret))
                }
                _ => {
                    return Err(unreadable(format!(
                        "line {}: expected ID:SECRET",
                        number + 1
                    )))
                }
            }
        }
    }
    for id in &args.public_client {
        if id.is_empty() {
            return Err(Failure::Usage("--public-client takes an ID".into()));
        }
        clients.push(ClientSpec::public(id.clone()));
    }
    let mut options = Options {
        port: args.port,
        access_ttl_secs: args.access_ttl,
        client_ttl_secs: args.client_ttl,
        refresh_ttl_secs: args.refresh_ttl,
        reuse_detection,
        verbose: args.verbose,
        ..Options::default()
    };
    if !clients.is_empty() {
        options.clients = clients;
    }
    Ok(options)
}

/// A credentials JSON for `client` at `emulator`, as a provider hands out.
fn credentials_for(client: &ClientSpec, emulator: &Emulator, refresh_ttl: u64) -> String {
    serde_json::json!({
        "clientId": client.id,
        "clientSecret": client.secret,
        "slidingRefreshTokenLifetime": refresh_ttl,
        "tokenEndpoint": emulator.token_endpoint(),
    })
    .to_string()
}

/// Serves until a signal (or stdin's end): prints the ready line first.
/// Call inside the tokio runtime (for the signal handlers).
pub async fn run(args: EmulatorArgs, out: Output) -> Result<(), Failure> {
    let options = options(&args)?;
    // Handlers are in place before the ready line, so a harness that
    // signals right after reading it never kills the process uncleanly.
    let signals = ExitSignals::register(args.exit_on_stdin_eof);
    let credentials_client = options.clients.iter().find(|c| c.secret.is_some()).cloned();
    let refresh_ttl = options.refresh_ttl_secs;
    let emulator = Emulator::start(options)
        .map_err(|e| Failure::Other(format!("the emulator cannot listen: {e}")))?;
    if let Some(path) = &args.write_credentials {
        let client = credentials_client.ok_or_else(|| {
            Failure::Usage("--write-credentials needs a confidential client".into())
        })?;
        let json = zeroize::Zeroizing::new(credentials_for(&client, &emulator, refresh_ttl));
        write_private(path, json.as_bytes()).map_err(|e| {
            Failure::config(
                "write_credentials",
                format!("cannot write {} ({})", path.display(), e.kind()),
            )
        })?;
    }
    write_stdout(&format!("{}\n", emulator.ready_line()))?;
    out.note(&format!(
        "freshtoken emulator: token endpoint {} (client test-client / test-secret unless replaced); Ctrl-C stops it",
        emulator.token_endpoint()
    ));
    signals.first().await;
    drop(emulator);
    Ok(())
}
