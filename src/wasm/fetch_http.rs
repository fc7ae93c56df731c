//! HTTP for wasm through `fetch` with web-sys types: the global `fetch`
//! (Node ≥ 20, browsers, workers: taken from `globalThis`, never `window`)
//! or the host's own. An `AbortController` bounds each request in time and
//! aborts it when the core stops waiting; the body is read from its stream
//! and the stream cancelled one byte past the cap.
//!
//! Host code runs in three places here: the `fetch` call itself (through
//! the package's catching `attempt`, see `host.rs`), the Promises it hands
//! back (awaited with `host::settle`, inside the engine), and the answer's
//! plain properties (`status`, `headers`, `body`). A host `fetch` may answer
//! with its own object instead of a `Response`; its properties are read the
//! same way, and what may fail by design (`headers.get`, `arrayBuffer`, the
//! body stream) is caught or is a Promise.

use super::host;
use super::timeout::Timeout;
use crate::{HttpClient, HttpError, HttpRequest, HttpResponse};
use async_trait::async_trait;
use futures_util::future::{select, Either};
use js_sys::Function;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{
    AbortController, AbortSignal, Headers, ReadableStream, RequestCredentials, RequestInit,
    RequestRedirect,
};

/// Error codes that show the request never left (Node's system errors, as
/// undici and node-fetch report them).
const NOT_SENT_CODES: &[&str] = &[
    "ECONNREFUSED",
    "ENOTFOUND",
    "EAI_AGAIN",
    "EHOSTUNREACH",
    "ENETUNREACH",
    "UND_ERR_CONNECT_TIMEOUT",
];

/// The answer headers the core looks at.
const HEADERS_READ: &[&str] = &[
    "retry-after",
    "content-type",
    "content-length",
    "www-authenticate",
];

/// `fetch`, from the options or from `globalThis` at call time.
pub(crate) struct FetchHttp {
    pub(crate) fetch: Option<Function>,
}

/// Aborts the request when dropped before [`AbortOnDrop::finished`]: on the
/// timeout, on a failure, and when the core stops waiting (its own deadline,
/// a dropped caller), so no connection outlives the call. A successful
/// exchange (its body read to the end or its stream cancelled) is not
/// aborted: in Node,
/// `abort()` on a finished fetch still builds and dispatches an
/// `AbortError`, about 0.7 ms a request (half of what a refresh adds to a
/// raw `fetch`, `bench/results.md` row 3), and changes nothing.
struct AbortOnDrop(Option<AbortController>);

impl AbortOnDrop {
    /// The exchange is over: nothing to abort.
    fn finished(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(controller) = &self.0 {
            controller.abort();
        }
    }
}

/// An error's message, if it is an `Error` (read through a catching host call).
fn message_of(error: &JsValue) -> Option<String> {
    error
        .is_instance_of::<js_sys::Error>()
        .then(|| text(error, "message"))
        .flatten()
}

/// A string member of a host object, `None` if absent or if reading it threw.
fn text(obj: &JsValue, name: &str) -> Option<String> {
    host::get(obj, name)
        .ok()
        .and_then(|v| host::message_text(&v))
}

/// Sorts a failed `fetch` into "never sent", "timed out" or "maybe sent".
/// Every member is read through a catching host call: the error is the
/// host's object, and a getter of it may throw.
fn transport_error(error: &JsValue) -> HttpError {
    if !error.is_instance_of::<js_sys::Error>() {
        return HttpError::Interrupted(
            host::message_text(error).unwrap_or_else(|| "fetch failed".into()),
        );
    }
    let name = text(error, "name").unwrap_or_default();
    if name == "TimeoutError" || name == "AbortError" {
        return HttpError::Timeout;
    }
    let cause = host::get(error, "cause").unwrap_or(JsValue::UNDEFINED);
    // Node's fetch (undici) puts the system error's code on the cause;
    // node-fetch and other custom fetches on the error itself.
    let code = (text(&cause, "code").or_else(|| text(error, "code"))).unwrap_or_default();
    let mut message = text(error, "message").unwrap_or_else(|| "fetch failed".into());
    if let Some(detail) = message_of(&cause) {
        message.push_str(": ");
        message.push_str(&detail);
    }
    if NOT_SENT_CODES.contains(&code.as_str()) {
        HttpError::NotSent(message)
    } else {
        HttpError::Interrupted(message)
    }
}

/// Whether the host says it has no network (`navigator.onLine === false`,
/// browsers only), read before a request is sent. A browser's failed
/// `fetch` never says whether the request left (Node's error codes do), so
/// it counts as maybe sent; one that fails after the browser said it was
/// offline before it (a laptop that woke before its Wi-Fi) is "not sent",
/// retried within the budget, instead of a refresh token in doubt. Only a
/// failure: the request is sent all the same (some setups say offline
/// wrongly, and would otherwise never refresh). Never read after the
/// failure: the network may have gone after the request left.
fn offline() -> bool {
    host::get(&js_sys::global(), "navigator")
        .and_then(|navigator| host::get(&navigator, "onLine"))
        .is_ok_and(|online| online == JsValue::FALSE)
}

/// A failure once an answer arrived: the request was sent, so whatever the
/// host's error says, never "not sent" (a retry would resend a refresh
/// token the server may have consumed).
fn answered(error: &JsValue) -> HttpError {
    match transport_error(error) {
        HttpError::NotSent(message) => HttpError::Interrupted(message),
        other => other,
    }
}

/// The answer's status: a number (or a numeric string, as some adapters
/// give), else 0, which the core reads as "not an HTTP status".
fn status_of(answer: &JsValue) -> Result<u16, JsValue> {
    let status = host::get(answer, "status")?;
    // (An integer parse: a float one would link core's float tables, ~10 KB.)
    let number = status.as_f64().or_else(|| {
        let text = host::text_within(&status, 16)?;
        // Through the u64 parser the core links anyway (a u16 one of its
        // own cost wasm bytes); the same texts read, the same fail.
        let number = text.trim().parse::<u64>().ok();
        number.and_then(|n| u16::try_from(n).ok()).map(f64::from)
    });
    Ok(number
        .filter(|n| n.fract() == 0.0 && (0.0..=65_535.0).contains(n))
        .map_or(0, |n| n as u16))
}

/// The message of an answer that is not a `Response` the core can read.
fn not_a_response(what: &str) -> JsValue {
    JsValue::from_str(&format!(
        "fetch resolved with something that is not a Response ({what})"
    ))
}

/// The first `limit` bytes of the body (fewer if it ends first), read from
/// its stream chunk by chunk; the stream is cancelled once `limit` is
/// reached. An answer without a stream (a host's own `fetch`) is read whole.
/// The answer, its stream, reader and chunks are the host's objects: every
/// member is read and called through a catching host call, and the bytes of
/// each chunk (or of the `ArrayBuffer`) are copied by [`host::bytes`], never
/// by calling the host's object: one that cannot be read fails the request.
async fn read_body(response: &JsValue, limit: usize) -> Result<Vec<u8>, JsValue> {
    let stream = match host::get(response, "body")?.dyn_into::<ReadableStream>() {
        Ok(stream) if !host::get(&stream, "locked")?.is_truthy() => Some(stream),
        _ => None,
    };
    let Some(stream) = stream else {
        let read = host::method(response, "arrayBuffer")?
            .ok_or_else(|| not_a_response("no body stream and no arrayBuffer()"))?;
        let buffer = host::settle(&host::call(&read, response, &[])?).await?;
        return host::bytes(&buffer, limit, true)?
            .ok_or_else(|| JsValue::from_str("arrayBuffer() did not give an ArrayBuffer"));
    };
    let get_reader = host::method(&stream, "getReader")?
        .ok_or_else(|| not_a_response("a body stream without getReader()"))?;
    let reader = host::call(&get_reader, &stream, &[])?;
    let read = host::method(&reader, "read")?
        .ok_or_else(|| not_a_response("a body reader without read()"))?;
    let mut body = Vec::new();
    while body.len() < limit {
        let chunk = host::settle(&host::call(&read, &reader, &[])?).await?;
        if host::get(&chunk, "done")?.is_truthy() {
            return Ok(body);
        }
        let value = host::get(&chunk, "value")?;
        let bytes = host::bytes(&value, limit - body.len(), false)?
            .ok_or_else(|| JsValue::from_str("the body stream gave no bytes"))?;
        body.extend_from_slice(&bytes);
    }
    host::cancel(&reader);
    Ok(body)
}

impl FetchHttp {
    /// The request, its answer and (up to the cap) its body.
    async fn exchange(
        &self,
        request: HttpRequest,
        signal: AbortSignal,
    ) -> Result<HttpResponse, HttpError> {
        let fetch = match &self.fetch {
            Some(f) => f.clone(),
            None => host::method(&js_sys::global(), "fetch")
                .ok()
                .flatten()
                .ok_or_else(|| HttpError::NotSent("no global fetch: pass options.fetch".into()))?,
        };
        // The page's own network, for the global fetch only (a host's may
        // use another: a native bridge, a worker's channel).
        let offline_before = self.fetch.is_none() && offline();
        // Plain header names and values (the core's own), so `set` accepts them.
        let headers = Headers::new().map_err(|e| transport_error(&e))?;
        for (name, value) in &request.headers {
            let _ = headers.set(name, value);
        }
        // Without a prototype: a setter on Object.prototype (`redirect`,
        // `body`) would run host code inside the wasm, and one that threw
        // there would leave this flight wedged for good.
        let init: RequestInit =
            js_sys::Object::create(JsValue::NULL.unchecked_ref::<js_sys::Object>())
                .unchecked_into();
        init.set_method(&request.method);
        init.set_headers(&headers);
        if request.method != "GET" {
            init.set_body(&JsValue::from_str(&request.body));
        }
        init.set_redirect(RequestRedirect::Manual);
        init.set_credentials(RequestCredentials::Omit);
        init.set_signal(Some(&signal));
        let url = JsValue::from_str(&request.url);
        // A `fetch` that throws instead of rejecting may have sent the
        // request first (a wrapper that fails after calling the real one):
        // only a rejection's cause can prove it never left (DESIGN point 5).
        let pending = host::call(&fetch, &JsValue::NULL, &[url, init.into()]).map_err(|e| {
            HttpError::Interrupted(message_of(&e).unwrap_or_else(|| "fetch threw".into()))
        })?;
        let answer = host::settle(&pending)
            .await
            .map_err(|e| match transport_error(&e) {
                HttpError::Interrupted(message) if offline_before => HttpError::NotSent(format!(
                    "{message} (the browser was offline: navigator.onLine was false)"
                )),
                other => other,
            })?;
        if !answer.is_object() {
            return Err(HttpError::Interrupted("fetch gave no Response".into()));
        }
        let status = status_of(&answer).map_err(|e| answered(&e))?;
        // The host's `headers.get`, called through a catching call: its
        // answer may be anything, and only a string within the cap is read.
        let answer_headers = host::get(&answer, "headers").map_err(|e| answered(&e))?;
        let get = host::method(&answer_headers, "get").ok().flatten();
        let mut headers = Vec::new();
        for name in HEADERS_READ.iter().filter(|_| get.is_some()) {
            let value = get
                .as_ref()
                .and_then(|get| host::call(get, &answer_headers, &[(*name).into()]).ok())
                .and_then(|value| host::text_within(&value, request.max_response_bytes));
            if let Some(value) = value {
                headers.push(((*name).to_owned(), value));
            }
        }
        let limit = request.max_response_bytes.saturating_add(1);
        let declared = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            // (Through the u64 parser, as the status above.)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .and_then(|n| usize::try_from(n).ok());
        if declared.is_some_and(|len| len >= limit) {
            if let Ok(stream) = host::get(&answer, "body") {
                host::cancel(&stream);
            }
            // Unread: a body one byte over the cap stands for it, so the
            // core judges the answer by its status like any oversize one.
            return Ok(HttpResponse {
                status,
                headers,
                body: vec![0; limit],
            });
        }
        let body = read_body(&answer, limit).await.map_err(|e| answered(&e))?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

#[async_trait(?Send)]
impl HttpClient for FetchHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let controller = AbortController::new().map_err(|e| transport_error(&e))?;
        let signal = controller.signal();
        let abort = AbortOnDrop(Some(controller));
        let mut timeout = Timeout::deadline(request.timeout_ms);
        // Set before `fetch` is called: a host whose `setTimeout` throws gets
        // "not sent", never a request in doubt (a refresh token in doubt
        // may cost the user a re-link).
        timeout.start().map_err(|why| {
            HttpError::NotSent(format!(
                "the request was not sent: {}",
                crate::deadline::no_timer_text(&why)
            ))
        })?;
        let exchange = Box::pin(self.exchange(request, signal));
        match select(exchange, timeout).await {
            Either::Left((answer, _)) => {
                // A failed exchange may have left a body unread: abort it.
                if answer.is_ok() {
                    abort.finished();
                }
                answer
            }
            // The exchange is dropped here, then `abort` aborts the request.
            // (The timer is set, so it only ends by firing.)
            Either::Right(_) => Err(HttpError::Timeout),
        }
    }
}
