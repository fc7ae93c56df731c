//! `freshtoken-emulator`: runs the token-endpoint emulator as a process,
//! prints one JSON "ready" line on stdout and serves until SIGINT/SIGTERM
//! (or, with `--exit-on-stdin-eof`, until stdin closes).

mod cli;

use std::future::Future;
use std::io::{Read, Write};
use std::pin::Pin;
use std::process::ExitCode;

use freshtoken_emulator::Emulator;

/// A future that resolves when the process should exit.
type ExitSignal = Pin<Box<dyn Future<Output = ()>>>;

fn main() -> ExitCode {
    let (options, exit_on_stdin_eof) =
        match cli::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
            Ok(cli::Command::Run {
                options,
                exit_on_stdin_eof,
            }) => (options, exit_on_stdin_eof),
            Ok(cli::Command::Help) => {
                print!("{}", cli::USAGE);
                return ExitCode::SUCCESS;
            }
            Err(message) => {
                eprintln!("freshtoken-emulator: {message}\n\n{}", cli::USAGE);
                return ExitCode::from(2);
            }
        };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("freshtoken-emulator: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Signal handlers are in place before the ready line, so a harness that
    // signals right after reading it never kills us uncleanly.
    let exit_signals = {
        let _context = runtime.enter();
        exit_signals(exit_on_stdin_eof)
    };
    let emulator = match Emulator::start(options) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("freshtoken-emulator: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Keys in the documented order (serde_json's map would sort them).
    let quoted = |s: String| serde_json::Value::from(s).to_string();
    let ready = format!(
        "{{\"ready\":true,\"port\":{},\"issuer\":{},\"token_endpoint\":{},\
         \"authorization_endpoint\":{},\"api_endpoint\":{},\"admin_endpoint\":{},\
         \"revocation_endpoint\":{},\"discovery_endpoint\":{}}}",
        emulator.port(),
        quoted(emulator.base_url()),
        quoted(emulator.token_endpoint()),
        quoted(emulator.authorization_endpoint()),
        quoted(emulator.api_endpoint()),
        quoted(emulator.admin_endpoint()),
        quoted(emulator.revocation_endpoint()),
        quoted(emulator.discovery_endpoint()),
    );
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{ready}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);
    runtime.block_on(first_of(exit_signals));
    drop(emulator);
    ExitCode::SUCCESS
}

/// Resolves when the first of the exit signals does (never if none).
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

/// Registers the exit conditions: SIGINT, SIGTERM and, if asked, stdin EOF.
/// Must run inside the runtime's context.
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
