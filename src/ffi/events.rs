//! Events for Kotlin, Swift and Python: the host's [`EventListener`],
//! called on a freshtoken thread of its own, so that a slow or throwing
//! listener never delays or fails a refresh.

use super::error::HostError;
use super::host_exit::{self, HostObject};
use super::types::{signed, ReauthorizationReason};
use crate::per_process::PerProcess;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

/// Events waiting for a slow listener at most; later ones are dropped.
const QUEUE: usize = 1024;

/// Receives the client's events (the `on_event` option). Called on one
/// freshtoken thread per client, in order, after the fact; what it throws
/// is ignored. Return quickly: events that find 1,024 others waiting are
/// dropped.
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    /// Called once per event.
    fn on_event(&self, event: TokenEvent) -> Result<(), HostError>;
}

/// What happened (the same names as the core's, `refresh_started`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum EventKind {
    /// A refresh request is about to be sent (after the write-ahead save).
    RefreshStarted,
    /// A refresh succeeded and its rotated record is saved.
    Refreshed,
    /// A refresh failed with anything but reauthorization.
    RefreshFailed,
    /// The session became dead: the user must authorize again.
    ReauthorizationRequired,
    /// A record was saved (the write-ahead marker included).
    Saved,
    /// A save failed.
    SaveFailed,
    /// This process waited for another process's fleet lease.
    LeaseWaited,
    /// A client-credentials token was issued.
    ClientTokenIssued,
    /// A client-credentials request failed.
    ClientTokenFailed,
    /// A session's tokens (or a client token) were revoked.
    Revoked,
}

impl From<crate::EventKind> for EventKind {
    fn from(kind: crate::EventKind) -> Self {
        use crate::EventKind as K;
        match kind {
            K::RefreshStarted => EventKind::RefreshStarted,
            K::Refreshed => EventKind::Refreshed,
            K::RefreshFailed => EventKind::RefreshFailed,
            K::ReauthorizationRequired => EventKind::ReauthorizationRequired,
            K::Saved => EventKind::Saved,
            K::SaveFailed => EventKind::SaveFailed,
            K::LeaseWaited => EventKind::LeaseWaited,
            K::ClientTokenIssued => EventKind::ClientTokenIssued,
            K::ClientTokenFailed => EventKind::ClientTokenFailed,
            K::Revoked => EventKind::Revoked,
        }
    }
}

/// One event: never a token, a secret or a message.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TokenEvent {
    /// What happened.
    pub kind: EventKind,
    /// The session key (absent with `event_keys = "hidden"`, and for client tokens).
    pub key: Option<String>,
    /// The scope set of a client token.
    pub scope: Option<String>,
    /// How long it took, in ms.
    pub duration_ms: Option<i64>,
    /// Token requests sent (retries included).
    pub attempts: Option<i32>,
    /// The failure's stable code (`storage`, `transient`, …: the error codes).
    pub error_code: Option<String>,
    /// Why the user must authorize again.
    pub reason: Option<ReauthorizationReason>,
    /// When it happened, on the client's clock (Unix ms).
    pub at_ms: i64,
}

impl From<&crate::Event> for TokenEvent {
    fn from(e: &crate::Event) -> Self {
        TokenEvent {
            kind: e.kind.into(),
            key: e.key.clone(),
            scope: e.scope.clone(),
            duration_ms: e.duration_ms.map(signed),
            attempts: e.attempts.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            error_code: e.error_code.map(|c| c.as_str().to_owned()),
            reason: e.reason.map(Into::into),
            at_ms: signed(e.at_ms),
        }
    }
}

/// Calls the listener unless the host is exiting (a crossing into the
/// host, see [`super::host_exit`]).
fn deliver(listener: &dyn EventListener, event: TokenEvent) {
    if let Some(_crossing) = host_exit::enter() {
        let _ = catch_unwind(AssertUnwindSafe(|| listener.on_event(event)));
    }
}

/// Drops a reference to the listener: its last release calls into the
/// host, so once the host is exiting it is leaked instead.
fn release(listener: Arc<dyn EventListener>) {
    drop(HostObject::new(listener));
}

/// The host's listener as the core's sink: events queue for the listener's
/// thread, which ends when the client is dropped. Each process has its own
/// thread: a child forked after the client was made (a prefork server's
/// worker) has none of its parent's, and starts one at its first event.
pub(crate) struct ListenerSink {
    /// Per process, the queue of its listener thread; `None` when no thread
    /// could be started: then the listener is called inline. Always `Some`
    /// before the sink is dropped.
    queues: Option<PerProcess<Option<SyncSender<TokenEvent>>>>,
    /// Released through [`release`] when the sink is dropped (always `Some` before).
    listener: Option<Arc<dyn EventListener>>,
}

/// Starts a thread that hands `listener` the events of the returned queue,
/// then releases it once the queue is closed; `None` if none could start.
fn listener_thread(listener: Arc<dyn EventListener>) -> Option<SyncSender<TokenEvent>> {
    let (queue, events) = sync_channel::<TokenEvent>(QUEUE);
    let thread = std::thread::Builder::new()
        .name("freshtoken-events".into())
        .spawn(move || {
            for event in events {
                deliver(listener.as_ref(), event);
            }
            release(listener);
        });
    thread.ok().map(|_| queue)
}

impl ListenerSink {
    /// Starts the listener's thread in this process.
    pub(crate) fn new(listener: Arc<dyn EventListener>) -> Self {
        let sink = ListenerSink {
            queues: Some(PerProcess::new()),
            listener: Some(listener),
        };
        sink.queue();
        sink
    }

    /// This process's queue, its thread started on first use.
    fn queue(&self) -> Option<&SyncSender<TokenEvent>> {
        let listener = self.listener.as_ref()?;
        let queues = self.queues.as_ref()?;
        queues.get(|| listener_thread(listener.clone()))?.as_ref()
    }
}

impl Drop for ListenerSink {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            release(listener);
        }
        // Closes this process's queue: its thread ends and releases its
        // reference. The queues of the parents' threads are left alone.
        drop(self.queues.take().and_then(PerProcess::into_own));
    }
}

impl crate::EventSink for ListenerSink {
    fn on_event(&self, event: &crate::Event) {
        let event = TokenEvent::from(event);
        match self.queue() {
            Some(queue) => {
                if queue.try_send(event).is_err() {
                    log::warn!("freshtoken: the event listener is behind; an event was dropped");
                }
            }
            None => {
                if let Some(listener) = &self.listener {
                    deliver(listener.as_ref(), event);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, Sender};
    use std::sync::Mutex;

    struct Forward(Mutex<Sender<TokenEvent>>);

    impl EventListener for Forward {
        fn on_event(&self, event: TokenEvent) -> Result<(), HostError> {
            let _ = self.0.lock().unwrap().send(event);
            Err(HostError::Failed {
                detail: "a listener that throws".into(),
            })
        }
    }

    #[test]
    fn events_reach_the_listener_in_order_on_its_thread() {
        let (tx, rx) = channel();
        let sink = ListenerSink::new(Arc::new(Forward(Mutex::new(tx))));
        let core = |kind| crate::Event {
            kind,
            key: Some("user-1".into()),
            scope: None,
            duration_ms: Some(12),
            attempts: Some(2),
            error_code: Some(crate::ErrorCode::Transient),
            reason: None,
            at_ms: 1_700_000_000_000,
        };
        for kind in crate::EventKind::ALL {
            crate::EventSink::on_event(&sink, &core(kind));
        }
        let seen: Vec<TokenEvent> = crate::EventKind::ALL
            .iter()
            .map(|_| rx.recv().unwrap())
            .collect();
        let kinds: Vec<EventKind> = crate::EventKind::ALL.into_iter().map(Into::into).collect();
        assert_eq!(seen.iter().map(|e| e.kind).collect::<Vec<_>>(), kinds);
        assert_eq!(seen[0].key.as_deref(), Some("user-1"));
        assert_eq!(seen[0].duration_ms, Some(12));
        assert_eq!(seen[0].attempts, Some(2));
        assert_eq!(seen[0].error_code.as_deref(), Some("transient"));
        assert_eq!(seen[0].at_ms, 1_700_000_000_000);
    }
}

/// [`host_exit::shutdown_host_calls`] is process-wide for good, so its test runs in a
/// child process of its own (this test binary, filtered to it).
#[cfg(test)]
mod exit_tests {
    use super::super::host_exit::tests::ran_in_a_child_process;
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::{Barrier, Mutex};

    /// Counts its calls, can hold one until released, and notes its drop.
    struct Probe {
        calls: AtomicUsize,
        entered: Mutex<Sender<()>>,
        hold: Option<Arc<Barrier>>,
        dropped: Arc<AtomicBool>,
    }

    impl EventListener for Probe {
        fn on_event(&self, _: TokenEvent) -> Result<(), HostError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _ = self.entered.lock().unwrap().send(());
            if let Some(hold) = &self.hold {
                hold.wait();
            }
            Ok(())
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    fn probe(hold: Option<Arc<Barrier>>) -> (Arc<Probe>, Receiver<()>, Arc<AtomicBool>) {
        let (tx, rx) = channel();
        let dropped = Arc::new(AtomicBool::new(false));
        let probe = Probe {
            calls: AtomicUsize::new(0),
            entered: Mutex::new(tx),
            hold,
            dropped: dropped.clone(),
        };
        (Arc::new(probe), rx, dropped)
    }

    fn event() -> TokenEvent {
        TokenEvent {
            kind: EventKind::Saved,
            key: None,
            scope: None,
            duration_ms: None,
            attempts: None,
            error_code: None,
            reason: None,
            at_ms: 0,
        }
    }

    #[test]
    fn after_shutdown_no_listener_is_called_or_released() {
        if ran_in_a_child_process(
            "ffi::events::exit_tests::after_shutdown_no_listener_is_called_or_released",
        ) {
            return;
        }

        // Before: a released listener is dropped.
        let (released, _, released_dropped) = probe(None);
        release(released);
        assert!(released_dropped.load(Ordering::SeqCst));

        // A call in progress holds up shutdown until it returns.
        let hold = Arc::new(Barrier::new(2));
        let (held, entered, _) = probe(Some(hold.clone()));
        let sink = ListenerSink::new(held.clone());
        let saved = crate::Event {
            kind: crate::EventKind::Saved,
            key: None,
            scope: None,
            duration_ms: None,
            attempts: None,
            error_code: None,
            reason: None,
            at_ms: 0,
        };
        crate::EventSink::on_event(&sink, &saved);
        entered.recv().unwrap();
        assert!(
            !host_exit::shutdown_host_calls(10),
            "a listener call is still running"
        );
        hold.wait();
        assert!(host_exit::shutdown_host_calls(10_000), "the call returned");
        assert_eq!(held.calls.load(Ordering::SeqCst), 1);

        // After: nothing is delivered, inline or queued, and the last
        // reference is leaked instead of released.
        let (after, _, after_dropped) = probe(None);
        deliver(after.as_ref(), event());
        assert_eq!(after.calls.load(Ordering::SeqCst), 0);
        let only = after.clone();
        drop(after);
        release(only);
        assert!(
            !after_dropped.load(Ordering::SeqCst),
            "leaked, not released"
        );
        drop(sink);
    }
}
