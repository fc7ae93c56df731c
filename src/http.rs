//! The HTTP contract: the host (or [`crate::NativeHttp`]) sends a request and
//! returns the answer. The core does no I/O of its own.

use crate::maybe_send::MaybeSendSync;
use async_trait::async_trait;
use std::fmt;

/// One request to the token endpoint (always a form `POST` today).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `POST`.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The `application/x-www-form-urlencoded` body. Holds secrets.
    pub body: String,
    /// Give up after this many milliseconds and report [`HttpError::Timeout`].
    pub timeout_ms: u64,
    /// The body-size cap: read at most one byte more and return it (or
    /// report [`HttpError::TooLarge`]).
    pub max_response_bytes: usize,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("header_names", &names)
            .field("body_len", &self.body.len())
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The answer: status, headers and the (capped) body.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// How a request failed in transport. The distinction matters: a request
/// that certainly never left may be retried; one that may have reached the
/// server may have consumed a single-use refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The request never reached the server (DNS, connection refused, TLS
    /// handshake): safe to retry.
    NotSent(String),
    /// No complete answer in time; the server may have processed it.
    Timeout,
    /// The connection failed after the request may have been sent.
    Interrupted(String),
    /// The answer's body exceeded the cap and its status is unknown (the
    /// built-in transports return the first `max_response_bytes + 1` bytes
    /// instead, so the core can judge the answer by its status).
    TooLarge,
}

/// Sends HTTP requests for the core. Implemented by the wasm export (fetch),
/// the uniffi export (a host callback) and [`crate::NativeHttp`].
///
/// Implementations must not follow redirects, and should read at most
/// `max_response_bytes + 1` bytes of a body and return what they read: the
/// core rejects an oversize body, or retries it when the status is 429/5xx.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait HttpClient: MaybeSendSync {
    /// Sends `request` and returns the answer, whatever its status.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_body_or_header_values() {
        let r = HttpRequest {
            method: "POST".into(),
            url: "https://x/token".into(),
            headers: vec![("Authorization".into(), "Basic SENTINEL".into())],
            body: "refresh_token=SENTINEL".into(),
            timeout_ms: 1,
            max_response_bytes: 1,
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("SENTINEL"), "{shown}");
        assert!(shown.contains("Authorization"));
    }

    #[test]
    fn header_lookup_ignores_case() {
        let r = HttpResponse {
            status: 429,
            headers: vec![("retry-after".into(), "2".into())],
            body: vec![],
        };
        assert_eq!(r.header("Retry-After"), Some("2"));
        assert_eq!(r.header("x"), None);
    }
}
