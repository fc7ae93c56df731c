//! Signals during a token request. Once a refresh, a code exchange or a
//! revocation may have reached the server, the rotated refresh token (or
//! the new session) exists only in its answer: a process that died then
//! would leave the session to a re-link. While such a request is in
//! flight, SIGINT, SIGTERM and SIGHUP (Ctrl-C, `timeout`, a closed
//! terminal) are held until it has ended and its record is saved; the
//! command then exits 128 + the signal's number without printing its
//! result. The wait is bounded by the request's own deadlines (`--timeout`,
//! `--attempts`); SIGQUIT and SIGKILL still end the process at once.

use crate::failure::Failure;
use std::future::{poll_fn, Future};
use std::task::Poll;

/// A signal held while a token request was in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caught {
    /// The signal's name (`SIGINT`, …).
    pub name: &'static str,
    /// Its number (the exit status is 128 + it).
    pub number: u8,
}

/// Runs `flow` to its end even if one of the signals above arrives
/// meanwhile; `Err(Failure::Interrupted)` after a successful flow if one
/// did (a failed flow reports its own failure). `note` is told once, when
/// the first signal arrives.
pub async fn shielded<T>(
    flow: impl Future<Output = Result<T, Failure>>,
    note: impl Fn(&str),
) -> Result<T, Failure> {
    let mut signals = listen()?;
    let mut flow = std::pin::pin!(flow);
    let mut caught: Option<Caught> = None;
    let result = poll_fn(|cx| {
        for (kind, signal) in &mut signals {
            while let Poll::Ready(Some(())) = signal.poll_recv(cx) {
                if caught.is_none() {
                    note(&format!(
                        "freshtoken: {}: finishing the token request in flight first, so that its result is saved",
                        kind.name
                    ));
                    caught = Some(*kind);
                }
            }
        }
        flow.as_mut().poll(cx)
    })
    .await?;
    match caught {
        Some(signal) => Err(Failure::Interrupted(signal)),
        None => Ok(result),
    }
}

#[cfg(unix)]
type Listener = tokio::signal::unix::Signal;

/// Handlers for the held signals (replacing their default of ending the
/// process for as long as this process lives).
#[cfg(unix)]
fn listen() -> Result<Vec<(Caught, Listener)>, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    [
        ("SIGINT", SignalKind::interrupt()),
        ("SIGTERM", SignalKind::terminate()),
        ("SIGHUP", SignalKind::hangup()),
    ]
    .into_iter()
    .map(|(name, kind)| {
        let number = u8::try_from(kind.as_raw_value()).unwrap_or(0);
        signal(kind)
            .map(|listener| (Caught { name, number }, listener))
            .map_err(|e| Failure::Other(format!("cannot handle {name} ({})", e.kind())))
    })
    .collect()
}

/// Elsewhere, no signal is held (Ctrl-C there ends the process as before).
#[cfg(not(unix))]
fn listen() -> Result<Vec<(Caught, NoSignal)>, Failure> {
    Ok(Vec::new())
}

#[cfg(not(unix))]
struct NoSignal;

#[cfg(not(unix))]
impl NoSignal {
    fn poll_recv(&mut self, _: &mut std::task::Context<'_>) -> Poll<Option<()>> {
        Poll::Pending
    }
}
