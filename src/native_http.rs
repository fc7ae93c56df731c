//! A reqwest-based [`HttpClient`] for Rust users and the Rust tests
//! (feature `native-http`; never built for wasm). Needs a tokio runtime.

use crate::error::Error;
use crate::http::{HttpClient, HttpError, HttpRequest, HttpResponse};
use async_trait::async_trait;
use std::time::Duration;

/// HTTP over reqwest with rustls (ring): no redirects followed, bodies read
/// up to the cap and no further.
#[derive(Clone, Debug)]
pub struct NativeHttp {
    client: reqwest::Client,
}

impl NativeHttp {
    /// A new transport with its own connection pool.
    pub fn new() -> Result<Self, Error> {
        // Another library may already have installed a provider; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // freshtoken decides every retry itself: a single-use refresh
            // token must never be resent behind its back.
            .retry(reqwest::retry::never())
            .build()
            .map_err(|e| Error::config("http", format!("cannot build the HTTP client: {e}")))?;
        Ok(NativeHttp { client })
    }
}

#[async_trait]
impl HttpClient for NativeHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HttpError::NotSent("invalid HTTP method".into()))?;
        let mut builder = self
            .client
            .request(method, &request.url)
            .timeout(Duration::from_millis(request.timeout_ms))
            .body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let mut response = builder.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        // Read at most one byte past the cap: the core judges an oversize
        // body by the status (a big 5xx page is still retried).
        let limit = request.max_response_bytes.saturating_add(1);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            let room = limit - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == limit {
                break;
            }
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// Runs detached refreshes on a tokio runtime (see [`crate::Spawn`]).
#[derive(Clone, Debug)]
pub struct TokioSpawner(tokio::runtime::Handle);

impl TokioSpawner {
    /// The runtime this is called in; a `config` error outside one.
    pub fn current() -> Result<Self, Error> {
        tokio::runtime::Handle::try_current()
            .map(TokioSpawner)
            .map_err(|_| Error::config("runtime", "must be called inside a tokio runtime"))
    }
}

impl crate::Spawn for TokioSpawner {
    fn spawn(&self, task: crate::BoxFuture<'static, ()>) {
        drop(self.0.spawn(task));
    }
}

/// Connection failures never reached the server; everything else may have.
fn transport_error(e: reqwest::Error) -> HttpError {
    let message = describe(&e);
    if e.is_connect() {
        HttpError::NotSent(message)
    } else if e.is_timeout() {
        HttpError::Timeout
    } else {
        HttpError::Interrupted(message)
    }
}

/// The error and its causes, without the URL (which may carry a query).
fn describe(e: &reqwest::Error) -> String {
    let mut message = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&s.to_string());
        source = s.source();
    }
    if message.is_empty() {
        message = "request failed".into();
    }
    message
}
