//! `freshtoken emulator`: the token-endpoint emulator with Stitch's rules
//! (the `freshtoken-emulator` library), for users' own integration tests.

use crate::args::EmulatorArgs;
use crate::failure::Failure;
use crate::file_store::{read_capped, write_private};
use crate::output::{write_stdout, Output};
use freshtoken_emulator::{ClientSpec, Emulator, Options};
use std::future::Future;
use std::io::Read;
use std::pin::Pin;

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

/// The ready line, keys in the documented order (the emulator binary's).
fn ready_line(emulator: &Emulator) -> String {
    let quoted = |s: String| serde_json::Value::from(s).to_string();
    format!(
        "{{\"ready\":true,\"port\":{},\"issuer\":{},\"token_endpoint\":{},\
         \"authorization_endpoint\":{},\"api_endpoint\":{},\"admin_endpoint\":{},\
         \"revocation_endpoint\":{},\"discovery_endpoint\":{}}}\n",
        emulator.port(),
        quoted(emulator.base_url()),
        quoted(emulator.token_endpoint()),
        quoted(emulator.authorization_endpoint()),
        quoted(emulator.api_endpoint()),
        quoted(emulator.admin_endpoint()),
        quoted(emulator.revocation_endpoint()),
        quoted(emulator.discovery_endpoint()),
    )
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

type ExitSignal = Pin<Box<dyn Future<Output = ()>>>;

/// SIGINT, SIGTERM and, if asked, the end of standard input.
fn exit_signals(exit_on_stdin_eof: bool) -> Vec<ExitSignal> {
    let mut signals: Vec<ExitSignal> = Vec::new();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
            if let Ok(mut stream) = signal(kind) {
                signals.push(Box::pin(async move {
                    stream.recv().await;
                }));
            }
        }
    }
    #[cfg(not(unix))]
    signals.push(Box::pin(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }));
    if exit_on_stdin_eof {
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = eof_tx.send(());
        });
        signals.push(Box::pin(async move {
            let _ = eof_rx.await;
        }));
    }
    signals
}

/// Serves until a signal (or stdin's end): prints the ready line first.
/// Call inside the tokio runtime (for the signal handlers).
pub async fn run(args: EmulatorArgs, out: Output) -> Result<(), Failure> {
    let options = options(&args)?;
    // Handlers are in place before the ready line, so a harness that
    // signals right after reading it never kills the process uncleanly.
    let signals = exit_signals(args.exit_on_stdin_eof);
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
    write_stdout(&ready_line(&emulator))?;
    out.note(&format!(
        "freshtoken emulator: token endpoint {} (client test-client / test-secret unless replaced); Ctrl-C stops it",
        emulator.token_endpoint()
    ));
    first_of(signals).await;
    drop(emulator);
    Ok(())
}

/// Resolves when the first of the signals does (never if none).
async fn first_of(mut signals: Vec<ExitSignal>) {
    std::future::poll_fn(|cx| {
        if signals.iter_mut().any(|f| f.as_mut().poll(cx).is_ready()) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
