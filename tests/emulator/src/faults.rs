//! Injected faults for the token and revocation endpoints: their JSON
//! shape, the FIFO queue they wait in, which requests they match, and the
//! responses the non-processing ones produce.

use std::collections::VecDeque;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use crate::endless::Framing;
use crate::http::Response;

/// A fault for the next token-endpoint request(s). JSON: the kind's fields
/// tagged by `"kind"`, plus optional `"count"` (default 1) and `"grant"`,
/// e.g. `{"kind":"status","status":503,"count":2,"grant":"refresh_token"}`.
/// With `"grant":"revocation"` ([`REVOCATION_SELECTOR`]) it is for the
/// revocation endpoint instead, which no other fault matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many matching requests it applies to before leaving the queue
    /// (0 counts as 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Only token requests with this `grant_type` match; others pass it by
    /// and it stays queued. [`REVOCATION_SELECTOR`] matches revocation
    /// requests (and nothing else); `None` matches every token request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// The `grant` of faults for `POST /connect/revocation`: a pseudo grant
/// that only revocation requests match.
pub const REVOCATION_SELECTOR: &str = "revocation";

/// The request a fault is taken for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// A token request, with its `grant_type` if it has one.
    Token(Option<&'a str>),
    /// A revocation request.
    Revocation,
}

impl Target<'_> {
    /// Whether a fault with this `grant` selector applies.
    fn matches(self, selector: Option<&str>) -> bool {
        match (self, selector) {
            (Target::Revocation, s) => s == Some(REVOCATION_SELECTOR),
            (Target::Token(_), None) => true,
            (Target::Token(_), Some(REVOCATION_SELECTOR)) => false,
            (Target::Token(grant), s) => s == grant,
        }
    }
}

fn one() -> u32 {
    1
}

/// What a fault does (serde: internally tagged by `"kind"`, snake_case).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Wait `ms` milliseconds, then handle the request normally.
    Delay {
        /// Milliseconds to wait.
        ms: u64,
    },
    /// Answer `status` (default 503) with `body` or
    /// `{"error":"temporarily_unavailable"}`; the grant is not processed.
    Status {
        /// HTTP status.
        #[serde(default = "status_503")]
        status: u16,
        /// JSON body to send instead of the default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// Answer 429 with `Retry-After` exactly as given (seconds or an
    /// HTTP-date; a JSON number is accepted too); not processed.
    RateLimit {
        /// The `Retry-After` value; omitted when absent.
        #[serde(
            default,
            deserialize_with = "string_or_number",
            skip_serializing_if = "Option::is_none"
        )]
        retry_after: Option<String>,
    },
    /// Close the socket without processing or answering.
    DropBefore,
    /// Process the grant fully (rotation committed), then close the socket
    /// without writing a byte.
    DropAfterCommit,
    /// Answer 200 `application/json` with truncated JSON; not processed.
    MalformedJson,
    /// Process the grant fully (rotation committed) and answer as usual,
    /// but with the success body's `expires_in` set to `value`: a
    /// provider's dialect, such as `"3599"` (a string) or `3599.5`.
    ExpiresInAs {
        /// The JSON value sent as `expires_in`.
        value: serde_json::Value,
    },
    /// Answer exactly this response; not processed.
    Body {
        /// HTTP status (default 200).
        #[serde(default = "status_200")]
        status: u16,
        /// The body, sent verbatim.
        body: String,
        /// The `Content-Type` (default `application/json`).
        #[serde(default = "json_type")]
        content_type: String,
    },
    /// Answer 200 `application/json` with a valid JSON body of exactly
    /// `bytes` bytes (at least 2); not processed.
    Oversize {
        /// Body size in bytes.
        bytes: usize,
    },
    /// Answer a `text/html` error page with `status` (default 502); not
    /// processed.
    Html {
        /// HTTP status.
        #[serde(default = "status_502")]
        status: u16,
    },
    /// Hold the request, unanswered, until the test releases the held
    /// requests; then it goes on to the next queued fault, or is processed.
    Hold,
    /// Answer `status` (default 200) with a JSON-looking body that never
    /// ends, until the client closes the connection (or `max_bytes` were
    /// written); not processed. What each one wrote is kept for the test.
    Endless {
        /// HTTP status.
        #[serde(default = "status_200")]
        status: u16,
        /// How the body is framed (default chunked).
        #[serde(default)]
        framing: Framing,
        /// A safety stop for clients that never stop reading (default
        /// 64 MiB): past it the emulator closes the connection.
        #[serde(default = "endless_max_bytes")]
        max_bytes: u64,
    },
}

/// The default `max_bytes` of an `endless` fault: 64 MiB.
pub const DEFAULT_ENDLESS_MAX_BYTES: u64 = 64 * 1024 * 1024;

fn endless_max_bytes() -> u64 {
    DEFAULT_ENDLESS_MAX_BYTES
}

fn status_200() -> u16 {
    200
}
fn status_502() -> u16 {
    502
}
fn status_503() -> u16 {
    503
}
fn json_type() -> String {
    "application/json".into()
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(Option::<Either>::deserialize(d)?.map(|v| match v {
        Either::Text(s) => s,
        Either::Number(n) => n.to_string(),
    }))
}

impl Fault {
    /// A fault of this kind for the next request.
    pub fn new(kind: FaultKind) -> Self {
        Fault {
            kind,
            count: 1,
            grant: None,
        }
    }

    /// `{"kind":"delay","ms":ms}`.
    pub fn delay(ms: u64) -> Self {
        Fault::new(FaultKind::Delay { ms })
    }

    /// `{"kind":"status","status":status}`.
    pub fn status(status: u16) -> Self {
        Fault::new(FaultKind::Status { status, body: None })
    }

    /// `{"kind":"rate_limit","retry_after":retry_after}`.
    pub fn rate_limit(retry_after: impl Into<String>) -> Self {
        Fault::new(FaultKind::RateLimit {
            retry_after: Some(retry_after.into()),
        })
    }

    /// `{"kind":"drop_before"}`.
    pub fn drop_before() -> Self {
        Fault::new(FaultKind::DropBefore)
    }

    /// `{"kind":"drop_after_commit"}`.
    pub fn drop_after_commit() -> Self {
        Fault::new(FaultKind::DropAfterCommit)
    }

    /// `{"kind":"malformed_json"}`.
    pub fn malformed_json() -> Self {
        Fault::new(FaultKind::MalformedJson)
    }

    /// `{"kind":"body","status":status,"body":body}` (JSON content type).
    pub fn body(status: u16, body: impl Into<String>) -> Self {
        Fault::new(FaultKind::Body {
            status,
            body: body.into(),
            content_type: json_type(),
        })
    }

    /// `{"kind":"expires_in_as","value":value}`: processed, with this `expires_in`.
    pub fn expires_in_as(value: serde_json::Value) -> Self {
        Fault::new(FaultKind::ExpiresInAs { value })
    }

    /// `{"kind":"oversize","bytes":bytes}`.
    pub fn oversize(bytes: usize) -> Self {
        Fault::new(FaultKind::Oversize { bytes })
    }

    /// `{"kind":"html","status":status}`.
    pub fn html(status: u16) -> Self {
        Fault::new(FaultKind::Html { status })
    }

    /// `{"kind":"hold"}`.
    pub fn hold() -> Self {
        Fault::new(FaultKind::Hold)
    }

    /// `{"kind":"endless"}`: 200, chunked, the default `max_bytes`.
    pub fn endless() -> Self {
        Fault::new(FaultKind::Endless {
            status: 200,
            framing: Framing::Chunked,
            max_bytes: DEFAULT_ENDLESS_MAX_BYTES,
        })
    }

    /// Applies to `count` matching requests.
    pub fn times(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Matches only token requests with this `grant_type`.
    pub fn for_grant(mut self, grant: impl Into<String>) -> Self {
        self.grant = Some(grant.into());
        self
    }

    /// Matches only revocation requests (`"grant":"revocation"`).
    pub fn for_revocation(self) -> Self {
        self.for_grant(REVOCATION_SELECTOR)
    }
}

impl From<FaultKind> for Fault {
    fn from(kind: FaultKind) -> Self {
        Fault::new(kind)
    }
}

/// The FIFO queue of pending faults.
#[derive(Default)]
pub(crate) struct FaultQueue {
    items: VecDeque<Fault>,
}

impl FaultQueue {
    /// Appends a fault.
    pub fn push(&mut self, mut fault: Fault) {
        fault.count = fault.count.max(1);
        self.items.push_back(fault);
    }

    /// Forgets every fault; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        n
    }

    /// The queued faults, first first.
    pub fn pending(&self) -> Vec<Fault> {
        self.items.iter().cloned().collect()
    }

    /// Takes one application of the first fault matching `target`.
    pub fn take(&mut self, target: Target<'_>) -> Option<FaultKind> {
        self.take_where(target, |_| true)
    }

    /// Like [`FaultQueue::take`], passing `hold` faults by: a released
    /// request is never held twice.
    pub fn take_after_hold(&mut self, target: Target<'_>) -> Option<FaultKind> {
        self.take_where(target, |kind| *kind != FaultKind::Hold)
    }

    fn take_where(
        &mut self,
        target: Target<'_>,
        wanted: impl Fn(&FaultKind) -> bool,
    ) -> Option<FaultKind> {
        let index = self
            .items
            .iter()
            .position(|f| target.matches(f.grant.as_deref()) && wanted(&f.kind))?;
        let fault = &mut self.items[index];
        fault.count = fault.count.saturating_sub(1);
        if fault.count == 0 {
            self.items.remove(index).map(|f| f.kind)
        } else {
            Some(fault.kind.clone())
        }
    }
}

/// The response of a fault that answers at once instead of processing the
/// grant (`None` for delay, the two drops, hold and endless).
pub(crate) fn response(kind: &FaultKind) -> Option<Response> {
    let response = match kind {
        FaultKind::Delay { .. }
        | FaultKind::ExpiresInAs { .. }
        | FaultKind::DropBefore
        | FaultKind::DropAfterCommit
        | FaultKind::Hold
        | FaultKind::Endless { .. } => return None,
        FaultKind::Status { status, body } => {
            let body = body
                .clone()
                .unwrap_or_else(|| json!({"error": "temporarily_unavailable"}).to_string());
            Response::with_body(*status, "application/json", body)
                .header("Cache-Control", "no-store")
        }
        FaultKind::RateLimit { retry_after } => {
            let r = Response::error(429, "temporarily_unavailable", "rate limited");
            match retry_after {
                Some(value) => r.header("Retry-After", value.clone()),
                None => r,
            }
        }
        FaultKind::MalformedJson => {
            Response::with_body(200, "application/json", r#"{"access_token":"truncat"#)
        }
        FaultKind::Body {
            status,
            body,
            content_type,
        } => Response::with_body(*status, content_type, body.clone()),
        FaultKind::Oversize { bytes } => {
            Response::with_body(200, "application/json", padded_json(*bytes))
        }
        FaultKind::Html { status } => Response::with_body(
            *status,
            "text/html; charset=utf-8",
            format!(
                "<!DOCTYPE html>\n<html><head><title>{status} Error</title></head>\
                 <body><h1>{status} Error</h1><p>The upstream server failed.</p></body></html>\n"
            ),
        ),
    };
    Some(response)
}

/// Valid JSON of exactly `bytes` bytes (`{}` padded with spaces when too
/// small for the padded token shape; at least 2 bytes).
fn padded_json(bytes: usize) -> Vec<u8> {
    const HEAD: &str = r#"{"access_token":"x","pad":""#;
    const TAIL: &str = r#""}"#;
    let frame = HEAD.len() + TAIL.len();
    if bytes < frame {
        let mut body = b"{}".to_vec();
        body.resize(bytes.max(2), b' ');
        return body;
    }
    let mut body = Vec::with_capacity(bytes);
    body.extend_from_slice(HEAD.as_bytes());
    body.resize(bytes - TAIL.len(), b'a');
    body.extend_from_slice(TAIL.as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_round_trip_through_json() {
        let f: Fault = serde_json::from_str(
            r#"{"kind":"status","status":503,"count":2,"grant":"refresh_token"}"#,
        )
        .unwrap();
        assert_eq!(f, Fault::status(503).times(2).for_grant("refresh_token"));
        let back = serde_json::to_value(&f).unwrap();
        assert_eq!(back["kind"], "status");
        assert_eq!(back["count"], 2);
        let unit: Fault = serde_json::from_str(r#"{"kind":"drop_after_commit"}"#).unwrap();
        assert_eq!(unit, Fault::drop_after_commit());
        let rl: Fault = serde_json::from_str(r#"{"kind":"rate_limit","retry_after":2}"#).unwrap();
        assert_eq!(rl, Fault::rate_limit("2"));
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"nope"}"#).is_err());
        let hold: Fault = serde_json::from_str(r#"{"kind":"hold","count":3}"#).unwrap();
        assert_eq!(hold, Fault::hold().times(3));
        let endless: Fault = serde_json::from_str(r#"{"kind":"endless"}"#).unwrap();
        assert_eq!(endless, Fault::endless());
        let framed: Fault = serde_json::from_str(
            r#"{"kind":"endless","status":500,"framing":"length","max_bytes":10}"#,
        )
        .unwrap();
        assert_eq!(
            framed.kind,
            FaultKind::Endless {
                status: 500,
                framing: Framing::Length,
                max_bytes: 10
            }
        );
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"endless","framing":"odd"}"#).is_err());
    }

    #[test]
    fn queue_is_fifo_counts_down_and_honours_grant_filters() {
        let mut q = FaultQueue::default();
        q.push(Fault::status(500).for_grant("refresh_token"));
        q.push(Fault::delay(1).times(2));
        assert_eq!(
            q.take(Target::Token(Some("client_credentials"))),
            Some(FaultKind::Delay { ms: 1 })
        );
        assert_eq!(
            q.take(Target::Token(Some("refresh_token"))),
            Some(FaultKind::Status {
                status: 500,
                body: None
            })
        );
        assert_eq!(
            q.take(Target::Token(None)),
            Some(FaultKind::Delay { ms: 1 })
        );
        assert_eq!(q.take(Target::Token(None)), None);

        q.push(Fault::hold().times(2));
        q.push(Fault::status(503));
        assert_eq!(q.take(Target::Token(None)), Some(FaultKind::Hold));
        assert_eq!(
            q.take_after_hold(Target::Token(None)),
            Some(FaultKind::Status {
                status: 503,
                body: None
            })
        );
        assert_eq!(
            q.take_after_hold(Target::Token(None)),
            None,
            "the other hold stays"
        );
        assert_eq!(q.pending(), vec![Fault::hold()]);
    }

    #[test]
    fn revocation_faults_and_token_faults_never_meet() {
        let mut q = FaultQueue::default();
        q.push(Fault::status(500));
        q.push(Fault::status(503).for_revocation());
        assert_eq!(q.pending()[1].grant.as_deref(), Some("revocation"));
        // A revocation request passes the unfiltered fault by.
        assert_eq!(
            q.take(Target::Revocation),
            Some(FaultKind::Status {
                status: 503,
                body: None
            })
        );
        assert_eq!(q.take(Target::Revocation), None);
        // A token request never takes a revocation fault, whatever its
        // grant_type says.
        q.clear();
        q.push(Fault::status(503).for_revocation());
        assert_eq!(q.take(Target::Token(Some("revocation"))), None);
        assert_eq!(q.take(Target::Token(None)), None);
        assert_eq!(q.pending().len(), 1);
    }

    #[test]
    fn padded_json_has_the_exact_size_and_parses() {
        for n in [0, 2, 10, 30, 31, 1000] {
            let body = padded_json(n);
            assert_eq!(body.len(), n.max(2));
            serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        }
    }
}
