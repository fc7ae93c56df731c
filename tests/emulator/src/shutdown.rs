//! What ends a served emulator process: SIGINT, SIGTERM and, if asked, the
//! end of standard input. Shared by the `freshtoken-emulator` binary and the
//! `freshtoken emulator` command.

use std::future::Future;
use std::io::Read;
use std::pin::Pin;

/// A future that resolves when the process should exit.
type ExitSignal = Pin<Box<dyn Future<Output = ()>>>;

/// The exit conditions, registered (and so in place) before the ready line
/// is printed: a harness that signals right after reading it never kills
/// the process uncleanly.
pub struct ExitSignals(Vec<ExitSignal>);

impl ExitSignals {
    /// Registers SIGINT, SIGTERM and, if `exit_on_stdin_eof`, stdin's end.
    /// Must run inside a tokio runtime's context.
    pub fn register(exit_on_stdin_eof: bool) -> Self {
        ExitSignals(exit_signals(exit_on_stdin_eof))
    }

    /// Resolves when the first of them does (never if none).
    pub async fn first(mut self) {
        std::future::poll_fn(|cx| {
            if self.0.iter_mut().any(|f| f.as_mut().poll(cx).is_ready()) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }
}

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
