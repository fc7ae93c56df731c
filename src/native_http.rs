//! A reqwest-based [`HttpClient`] for Rust users and the Rust tests
//! (feature `native-http`; never built for wasm). Needs a tokio runtime.

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::http::{HttpClient, HttpError, HttpRequest, HttpResponse};
use async_trait::async_trait;
use futures_util::future::{select, Either};
use std::pin::pin;
use std::time::Duration;

/// HTTP over reqwest with rustls (ring): no redirects followed, bodies read
/// up to the cap and no further. Its requests must run inside a tokio
/// runtime with its I/O and time drivers on (`enable_all`, as
/// `#[tokio::main]` has); outside any runtime every request fails as not
/// sent.
///
/// Each request is bounded by its `timeout_ms` on freshtoken's own timer,
/// not reqwest's: after a pause of the process (SIGSTOP, a laptop asleep, a
/// thread that blocked the runtime) reqwest's timer would end a request
/// whose answer already arrived, and a rotated refresh token would be lost
/// with it; freshtoken's gives the answer a moment first (see
/// [`crate::SystemClock`]). A connection not made within
/// [`NativeHttp::CONNECT_TIMEOUT`] fails as not sent, and is retried; with a
/// request timeout under twice that, set a shorter one (`configured`), or
/// a stalled connection ends as a timeout, in doubt: `TokenClient::native`
/// gives a connection half the request timeout, at most 10 s.
#[derive(Clone, Debug)]
pub struct NativeHttp {
    client: reqwest::Client,
}

impl NativeHttp {
    /// How long a connection (TCP and TLS) may take by default: OkHttp's
    /// default. Its failure is known not to have sent the request, so it is
    /// retried; a request still unanswered at its `timeout_ms` may have
    /// been sent, and is not.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A new transport with its own connection pool.
    pub fn new() -> Result<Self, Error> {
        Self::configured(|builder| builder)
    }

    /// The transport of a client whose requests time out after
    /// `timeout_ms`: a connection gets half of it, at most
    /// [`NativeHttp::CONNECT_TIMEOUT`], so that a stalled one fails as not
    /// sent (retried) before the request's own timeout counts it as maybe
    /// sent.
    pub fn for_timeout(timeout_ms: u64) -> Result<Self, Error> {
        let connect = Duration::from_millis(timeout_ms / 2).min(Self::CONNECT_TIMEOUT);
        Self::configured(|builder| builder.connect_timeout(connect))
    }

    /// A transport whose reqwest client `configure` set up further: a
    /// private CA, a client certificate (mTLS), a proxy, another
    /// `connect_timeout` (the builder is [`reqwest`]'s, re-exported). Redirects stay off and reqwest's retries too,
    /// whatever `configure` did: a redirect would carry the credentials
    /// elsewhere, and a resent refresh token is a spent one. Leave reqwest's
    /// `timeout` and `read_timeout` unset: `Config::timeout_ms` bounds each
    /// request, and reqwest's timers would end one whose answer arrived
    /// during a pause.
    pub fn configured(
        configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Self, Error> {
        // Another library may already have installed a provider; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = reqwest::Client::builder().connect_timeout(Self::CONNECT_TIMEOUT);
        let client = configure(builder)
            .redirect(reqwest::redirect::Policy::none())
            // freshtoken decides every retry itself: a single-use refresh
            // token must never be resent behind its back.
            .retry(reqwest::retry::never())
            .build()
            .map_err(|e| Error::config("http", format!("cannot build the HTTP client: {e}")))?;
        Ok(NativeHttp { client })
    }

    /// The request and its body, read up to the cap.
    async fn exchange(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HttpError::NotSent("invalid HTTP method".into()))?;
        let mut builder = self.client.request(method, &request.url).body(request.body);
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

#[async_trait]
impl HttpClient for NativeHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // reqwest's I/O panics outside a tokio runtime.
        if tokio::runtime::Handle::try_current().is_err() {
            let message = "NativeHttp must be used inside a tokio runtime";
            return Err(HttpError::NotSent(message.into()));
        }
        let timer = Clock::timer(&SystemClock, request.timeout_ms);
        // The answer is polled first: on resuming from a pause, one that
        // arrived meanwhile is taken before the timer that is due too.
        match select(pin!(self.exchange(request)), pin!(timer)).await {
            Either::Left((answer, _)) => answer,
            Either::Right(((), _)) => Err(HttpError::Timeout),
        }
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
