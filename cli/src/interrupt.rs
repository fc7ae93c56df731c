//! Signals during a token request. Once a refresh, a code exchange or a
//! revocation may have reached the server, the rotated refresh token (or
//! the new session) exists only in its answer: a process that died then
//! would leave the session to a re-link. While such a request is in
//! flight, SIGINT, SIGTERM and SIGHUP (Ctrl-C, `timeout`, a closed
//! terminal) are held until it has ended and its record is saved; the
//! command then exits 128 + the signal's number without printing its
//! result, and sends no new token request (no retry). A signal that arrives
//! before any request may have reached the server ends the command at
//! once, with nothing sent. The wait is bounded by the request's own
//! deadlines (`--timeout`, `--attempts`); SIGQUIT and SIGKILL still end
//! the process at once.
//!
//! Whether a request may have reached the server is known exactly: every
//! request goes through the command's transport (`client::GuardedHttp`),
//! which counts it here before it is handed on ([`may_send`]) and uncounts
//! it when the transport says it never left ([`never_left`]).

use crate::failure::Failure;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;

/// Requests of this process that may have reached the server.
static MAY_HAVE_REACHED: AtomicU64 = AtomicU64::new(0);

/// Set once a held signal has arrived: no token request is sent after it.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Called by the transport before it sends a request: `false` for a
/// `grant` (a token request) once a signal has arrived (it must not be
/// sent), else counts it.
pub fn may_send(grant: bool) -> bool {
    if grant && STOPPING.load(Ordering::SeqCst) {
        return false;
    }
    MAY_HAVE_REACHED.fetch_add(1, Ordering::SeqCst);
    true
}

/// Called by the transport when a request counted by [`may_send`] never
/// left (connection refused, DNS): it reached nothing.
pub fn never_left() {
    MAY_HAVE_REACHED.fetch_sub(1, Ordering::SeqCst);
}

/// How many requests of this process may have reached the server so far:
/// compare two readings to learn whether anything may have been sent.
pub fn may_have_reached() -> u64 {
    MAY_HAVE_REACHED.load(Ordering::SeqCst)
}

/// Whether a held signal has arrived (start no new attempt then).
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// A signal that arrived during a token flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caught {
    /// The signal's name (`SIGINT`, …).
    pub name: &'static str,
    /// Its number (the exit status is 128 + it).
    pub number: u8,
}

/// Runs `flow` to its end even if one of the signals above arrives after
/// a request of it may have reached the server; `Err(Failure::Interrupted)`
/// after a successful flow if one did, or after a failed one whose next
/// attempt was not sent for the signal (any other failed flow reports its
/// own failure: a re-link needed, say). A signal that arrives while
/// nothing of `flow` may have reached the server drops `flow` there and then (whatever it was waiting
/// for: a lock, a store, a backoff) and ends with `Failure::Interrupted`
/// saying nothing was sent. `note` is told once, when the first signal
/// arrives during a request.
pub async fn shielded<T>(
    flow: impl Future<Output = Result<T, Failure>>,
    note: impl Fn(&str),
) -> Result<T, Failure> {
    let mut signals = listen()?;
    let before = may_have_reached();
    let mut flow = std::pin::pin!(flow);
    let mut caught: Option<Caught> = None;
    let result = poll_fn(|cx| {
        for (kind, signal) in &mut signals {
            while let Poll::Ready(Some(())) = signal.poll_recv(cx) {
                if caught.is_some() {
                    continue;
                }
                // From here on no token request is sent (see may_send).
                STOPPING.store(true, Ordering::SeqCst);
                // Single-threaded: no request of `flow` can be handed to
                // the transport between this reading and the return below.
                if may_have_reached() == before {
                    return Poll::Ready(Err(Failure::Interrupted {
                        signal: *kind,
                        sent: false,
                        left: None,
                    }));
                }
                note(&format!(
                    "freshtoken: {}: finishing the token request in flight first, so that its result is saved (no new one is sent)",
                    kind.name
                ));
                caught = Some(*kind);
            }
        }
        flow.as_mut().poll(cx)
    })
    .await;
    let result = match (result, caught) {
        (Err(failure), Some(signal)) if refused(&failure) => {
            return Err(Failure::Interrupted {
                signal,
                sent: true,
                left: None,
            })
        }
        (result, _) => result?,
    };
    match caught {
        Some(signal) => Err(Failure::Interrupted {
            signal,
            sent: true,
            left: None,
        }),
        None => Ok(result),
    }
}

/// Whether `failure` is the transport's refusal of a token request for
/// the signal ([`crate::client`]'s `GuardedHttp`), as the core reports it
/// once no attempt is left; any other failure is the flow's own to report
/// (a re-link needed, a code exchange that failed).
fn refused(failure: &Failure) -> bool {
    matches!(failure, Failure::Core(e)
        if e.code() == freshtoken::ErrorCode::Network && e.to_string().contains(REFUSAL))
}

/// What the transport says when it refuses a token request for a signal.
pub const REFUSAL: &str = "not sent: the command was interrupted by a signal";

#[cfg(unix)]
type Listener = tokio::signal::unix::Signal;

/// Handlers for the held signals (replacing their default of ending the
/// process for as long as this process lives), except those the process
/// was started ignoring ([`ignored_at_start`]).
#[cfg(unix)]
fn listen() -> Result<Vec<(Caught, Listener)>, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let ignored = ignored_at_start();
    [
        ("SIGINT", SignalKind::interrupt()),
        ("SIGTERM", SignalKind::terminate()),
        ("SIGHUP", SignalKind::hangup()),
    ]
    .into_iter()
    .filter(|(_, kind)| {
        let bit = u32::try_from(kind.as_raw_value() - 1).unwrap_or(64);
        ignored.checked_shr(bit).is_none_or(|mask| mask & 1 == 0)
    })
    .map(|(name, kind)| {
        let number = u8::try_from(kind.as_raw_value()).unwrap_or(0);
        signal(kind)
            .map(|listener| (Caught { name, number }, listener))
            .map_err(|e| Failure::Other(format!("cannot handle {name} ({})", e.kind())))
    })
    .collect()
}

/// The signals this process was started ignoring (`nohup`, `trap '' HUP`),
/// as a mask (bit n - 1 for signal n), read once, before any handler is
/// installed: from Linux's `/proc/self/status` (`SigIgn`); none elsewhere.
/// They stay ignored: a handler would end, as interrupted, a command whose
/// caller asked that a hangup not end it.
#[cfg(unix)]
fn ignored_at_start() -> u64 {
    static MASK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let mask = status.lines().find_map(|line| line.strip_prefix("SigIgn:"));
        mask.and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0)
    })
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
