//! Events for operators (issue 14): refreshes, failures, re-links, saves
//! and lease waits, handed to one host callback as they happen, so that
//! they can be counted and timed without reading logs.
//!
//! An event carries the session key (or nothing, see [`EventKeys`]), its
//! kind, and at most a duration, an attempt count, an error code and a
//! reauthorization reason: never a token, a secret or a message. A sink
//! that panics never affects the refresh that emitted the event; emitting
//! costs one branch when no sink is configured.

use crate::attached::Attached;
use crate::error::{Error, ErrorCode, ReauthReason};
use crate::exchange::Context;
use crate::maybe_send::MaybeSendSync;
use crate::tokens::TokenInfo;
use std::fmt;
use std::sync::Arc;

/// What happened. [`EventKind::as_str`] gives the stable name every
/// language uses (`refresh_started`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A refresh request is about to be sent (after the write-ahead save).
    RefreshStarted,
    /// A refresh succeeded and its rotated record is saved: `duration_ms`
    /// (from `refresh_started`), `attempts`.
    Refreshed,
    /// A refresh failed with anything but reauthorization: `error_code`,
    /// `attempts`, `duration_ms`.
    RefreshFailed,
    /// The session became dead and the user must authorize again: `reason`.
    ReauthorizationRequired,
    /// A record was saved (every save, the write-ahead marker included):
    /// `duration_ms`.
    Saved,
    /// A save failed: `error_code` (`storage` or `conflict`), `duration_ms`.
    SaveFailed,
    /// This process waited for another process's fleet lease: `duration_ms`,
    /// and `error_code` when the wait ended in an error (`conflict`: it gave up).
    LeaseWaited,
    /// A client-credentials token was issued: `scope`, `duration_ms`, `attempts`.
    ClientTokenIssued,
    /// A client-credentials request failed (a rotated client secret is
    /// `invalid_client`): `scope`, `error_code`, `attempts`, `duration_ms`.
    ClientTokenFailed,
    /// A session's tokens (or a client token) were revoked: `duration_ms`,
    /// `scope` for a client token, and `error_code` when the call failed:
    /// the server could not be told, or the dead record was not saved (the
    /// session is dead all the same). A session's comes after its last save.
    Revoked,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 10] = [
        EventKind::RefreshStarted,
        EventKind::Refreshed,
        EventKind::RefreshFailed,
        EventKind::ReauthorizationRequired,
        EventKind::Saved,
        EventKind::SaveFailed,
        EventKind::LeaseWaited,
        EventKind::ClientTokenIssued,
        EventKind::ClientTokenFailed,
        EventKind::Revoked,
    ];

    /// The stable snake_case name (`refresh_started`, `refreshed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RefreshStarted => "refresh_started",
            EventKind::Refreshed => "refreshed",
            EventKind::RefreshFailed => "refresh_failed",
            EventKind::ReauthorizationRequired => "reauthorization_required",
            EventKind::Saved => "saved",
            EventKind::SaveFailed => "save_failed",
            EventKind::LeaseWaited => "lease_waited",
            EventKind::ClientTokenIssued => "client_token_issued",
            EventKind::ClientTokenFailed => "client_token_failed",
            EventKind::Revoked => "revoked",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event. Nothing in it is secret: tokens, secrets and error messages
/// never enter it (the error's stable code does).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The session key, unless [`EventKeys::Hidden`]; `None` for client tokens.
    pub key: Option<String>,
    /// The scope set of a client token (sorted, space-separated).
    pub scope: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: Option<u64>,
    /// Token requests sent (retries included).
    pub attempts: Option<u32>,
    /// The failure's stable code.
    pub error_code: Option<ErrorCode>,
    /// Why the user must authorize again.
    pub reason: Option<ReauthReason>,
    /// When it happened, on the client's clock (Unix ms).
    pub at_ms: u64,
}

/// Receives every event of a client. It runs inline, on the task that
/// emitted the event, so it must return quickly (hand heavy work to a
/// queue); a panic in it is caught and never reaches the refresh.
pub trait EventSink: MaybeSendSync {
    /// Called once per event.
    fn on_event(&self, event: &Event);
}

impl<F> EventSink for F
where
    F: Fn(&Event) + MaybeSendSync,
{
    fn on_event(&self, event: &Event) {
        self(event)
    }
}

/// What events show of the session key: keys may be user ids, which some
/// operators must not export to their monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventKeys {
    /// The key as the host gave it (the default).
    #[default]
    Full,
    /// No key: `Event::key` is always `None`, and the core's `log` lines
    /// show `(key hidden)` for it.
    Hidden,
}

impl EventKeys {
    /// Parses `full` or `hidden`.
    pub fn parse(value: &str) -> Result<Self, Error> {
        match value {
            "full" => Ok(EventKeys::Full),
            "hidden" => Ok(EventKeys::Hidden),
            _ => Err(Error::config("event_keys", "must be full or hidden")),
        }
    }
}

/// The sink and key redaction of a configuration (its `Debug` does not
/// show the sink).
#[derive(Clone, Default)]
pub(crate) struct Events {
    pub(crate) sink: Option<Arc<dyn EventSink>>,
    pub(crate) keys: EventKeys,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("sink", &self.sink.as_ref().map(|_| "set"))
            .field("keys", &self.keys)
            .finish()
    }
}

/// The optional fields of an event being emitted.
#[derive(Default)]
pub(crate) struct Details<'a> {
    pub(crate) scope: Option<&'a str>,
    pub(crate) duration_ms: Option<u64>,
    pub(crate) attempts: Option<u32>,
    pub(crate) error_code: Option<ErrorCode>,
    pub(crate) reason: Option<ReauthReason>,
}

impl Context {
    /// Emits `kind` about session `key` (redacted per the configuration),
    /// stamped with the clock's now. Nothing happens without a sink.
    #[inline(never)]
    pub(crate) fn emit(&self, kind: EventKind, key: Option<&str>, details: Details<'_>) {
        let events = &self.config.events;
        let Some(sink) = &events.sink else {
            return;
        };
        let event = Event {
            kind,
            key: match events.keys {
                EventKeys::Full => key.map(str::to_owned),
                EventKeys::Hidden => None,
            },
            scope: details.scope.map(str::to_owned),
            duration_ms: details.duration_ms,
            attempts: details.attempts,
            error_code: details.error_code,
            reason: details.reason,
            at_ms: self.clock.now_ms(),
        };
        deliver(sink.as_ref(), &event);
    }

    /// Session `key` as a log line shows it: hidden as events hide it
    /// ([`EventKeys::Hidden`]), since a key may name a person.
    pub(crate) fn logged_key<'a>(&self, key: &'a str) -> &'a str {
        match self.config.events.keys {
            EventKeys::Full => key,
            EventKeys::Hidden => "(key hidden)",
        }
    }

    /// Milliseconds since `started` on the client's clock.
    pub(crate) fn since(&self, started: u64) -> u64 {
        self.clock.now_ms().saturating_sub(started)
    }
}

/// Calls the sink; natively a panic in it is caught (wasm builds abort on
/// panics, and the JavaScript sink catches exceptions itself).
fn deliver(sink: &dyn EventSink, event: &Event) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let call = std::panic::AssertUnwindSafe(|| sink.on_event(event));
        if std::panic::catch_unwind(call).is_err() {
            log::warn!("freshtoken: the event sink panicked on {}", event.kind);
        }
    }
    #[cfg(target_arch = "wasm32")]
    sink.on_event(event);
}

// The helpers below are called once each from async code; not inlining
// them keeps those state machines (and the wasm) smaller.
impl Attached {
    /// Emits `kind` about this session.
    pub(crate) fn emit(&self, kind: EventKind, details: Details<'_>) {
        self.ctx.emit(kind, Some(&self.key), details);
    }

    /// Emits `refresh_started`; returns when, for the refresh's duration.
    #[inline(never)]
    pub(crate) fn refresh_started(&self) -> u64 {
        let started = self.ctx.clock.now_ms();
        self.emit(EventKind::RefreshStarted, Details::default());
        started
    }

    /// Emits `refreshed` or `refresh_failed` for a refresh's `result`
    /// (nothing for reauthorization: `kill` emits that). `refused`: the
    /// server refused the refresh token this one sent, rotated meanwhile by
    /// another process, whose record serves the call: `refresh_failed`
    /// with `conflict`, as when it does not.
    #[inline(never)]
    pub(crate) fn refresh_ended(
        &self,
        started: u64,
        attempts: u32,
        result: &Result<TokenInfo, Error>,
        refused: bool,
    ) {
        let (kind, error_code) = match result {
            Ok(_) if refused => (EventKind::RefreshFailed, Some(crate::ErrorCode::Conflict)),
            Ok(_) => (EventKind::Refreshed, None),
            Err(Error::ReauthorizationRequired { .. }) => return,
            Err(e) => (EventKind::RefreshFailed, Some(e.code())),
        };
        self.emit(
            kind,
            Details {
                duration_ms: Some(self.ctx.since(started)),
                attempts: Some(attempts),
                error_code,
                ..Details::default()
            },
        );
    }

    /// Emits `saved` or `save_failed` for a save that began at `started`.
    #[inline(never)]
    pub(crate) fn save_ended(&self, started: u64, result: &Result<(), Error>) {
        let (kind, error_code) = match result {
            Ok(()) => (EventKind::Saved, None),
            Err(e) => (EventKind::SaveFailed, Some(e.code())),
        };
        self.emit(
            kind,
            Details {
                duration_ms: Some(self.ctx.since(started)),
                error_code,
                ..Details::default()
            },
        );
    }

    /// Emits `lease_waited` for a wait that began at `since` and ended with `result`.
    #[inline(never)]
    pub(crate) fn lease_waited<T>(&self, since: u64, result: &Result<T, Error>) {
        self.emit(
            EventKind::LeaseWaited,
            Details {
                duration_ms: Some(self.ctx.since(since)),
                error_code: result.as_ref().err().map(Error::code),
                ..Details::default()
            },
        );
    }

    /// Emits `revoked` for a revocation that began at `started`, with the
    /// code of the error the call returns, if any.
    #[inline(never)]
    pub(crate) fn revoked(&self, started: u64, error: Option<&Error>) {
        self.emit(
            EventKind::Revoked,
            Details {
                duration_ms: Some(self.ctx.since(started)),
                error_code: error.map(Error::code),
                reason: error.and_then(Error::reason),
                ..Details::default()
            },
        );
    }

    /// Emits `reauthorization_required` with `reason`.
    #[inline(never)]
    pub(crate) fn reauthorization_required(&self, reason: ReauthReason) {
        self.emit(
            EventKind::ReauthorizationRequired,
            Details {
                reason: Some(reason),
                ..Details::default()
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_their_stable_names() {
        let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "refresh_started",
                "refreshed",
                "refresh_failed",
                "reauthorization_required",
                "saved",
                "save_failed",
                "lease_waited",
                "client_token_issued",
                "client_token_failed",
                "revoked",
            ]
        );
        assert_eq!(EventKind::LeaseWaited.to_string(), "lease_waited");
    }

    #[test]
    fn key_redaction_parses_from_its_names() {
        assert_eq!(EventKeys::parse("full").unwrap(), EventKeys::Full);
        assert_eq!(EventKeys::parse("hidden").unwrap(), EventKeys::Hidden);
        match EventKeys::parse("hashed") {
            Err(Error::Config { field, .. }) => assert_eq!(field, "event_keys"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_of_the_settings_does_not_show_the_sink() {
        let events = Events {
            sink: Some(Arc::new(|_: &Event| {})),
            keys: EventKeys::Hidden,
        };
        assert_eq!(
            format!("{events:?}"),
            "Events { sink: Some(\"set\"), keys: Hidden }"
        );
    }
}
