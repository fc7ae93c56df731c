//! Events for Kotlin, Swift and Python: the host's [`EventListener`],
//! called on a freshtoken thread of its own, so that a slow or throwing
//! listener never delays or fails a refresh.

use super::error::HostError;
use super::types::{signed, ReauthorizationReason};
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

/// The host's listener as the core's sink: events queue for the listener's
/// thread, which ends when the client is dropped.
pub(crate) struct ListenerSink {
    /// `None` when no thread could be started: then the listener is called inline.
    queue: Option<SyncSender<TokenEvent>>,
    listener: Arc<dyn EventListener>,
}

impl ListenerSink {
    /// Starts the listener's thread.
    pub(crate) fn new(listener: Arc<dyn EventListener>) -> Self {
        let (queue, events) = sync_channel::<TokenEvent>(QUEUE);
        let host = listener.clone();
        let thread = std::thread::Builder::new()
            .name("freshtoken-events".into())
            .spawn(move || {
                for event in events {
                    let _ = catch_unwind(AssertUnwindSafe(|| host.on_event(event)));
                }
            });
        ListenerSink {
            queue: thread.ok().map(|_| queue),
            listener,
        }
    }
}

impl crate::EventSink for ListenerSink {
    fn on_event(&self, event: &crate::Event) {
        let event = TokenEvent::from(event);
        match &self.queue {
            Some(queue) => {
                if queue.try_send(event).is_err() {
                    log::warn!("freshtoken: the event listener is behind; an event was dropped");
                }
            }
            None => {
                let _ = self.listener.on_event(event);
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
