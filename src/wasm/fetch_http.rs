//! HTTP for wasm through the global `fetch` (Node ≥ 18, browsers, workers),
//! or the host's own `fetch`. Reflection instead of web-sys keeps the
//! binary small and works wherever `fetch` does.

use super::host;
use crate::{HttpClient, HttpError, HttpRequest, HttpResponse};
use async_trait::async_trait;
use js_sys::{ArrayBuffer, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// Errors whose cause shows the request never left (Node's undici codes).
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

fn set(obj: &Object, name: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(name), value);
}

/// `target.name(args…)`; a missing method is an error like a throwing one.
fn call_method(target: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    match host::method(target, name)? {
        Some(f) => host::call(&f, target, args),
        None => Err(JsValue::from_str("no such method")),
    }
}

/// Awaits `target.name(args…)`.
async fn await_method(target: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    host::settle(&call_method(target, name, args)?).await
}

fn text(value: &JsValue, name: &str) -> Option<String> {
    host::get(value, name).ok()?.as_string()
}

/// Sorts a failed `fetch` into "never sent", "timed out" or "maybe sent".
fn transport_error(error: &JsValue) -> HttpError {
    let name = text(error, "name").unwrap_or_default();
    if name == "TimeoutError" || name == "AbortError" {
        return HttpError::Timeout;
    }
    let cause = host::get(error, "cause").unwrap_or(JsValue::UNDEFINED);
    let code = text(&cause, "code").unwrap_or_default();
    let message = match (text(error, "message"), text(&cause, "message")) {
        (Some(m), Some(c)) => format!("{m}: {c}"),
        (Some(m), None) => m,
        _ => error
            .as_string()
            .unwrap_or_else(|| "fetch failed".to_owned()),
    };
    if NOT_SENT_CODES.contains(&code.as_str()) {
        HttpError::NotSent(message)
    } else {
        HttpError::Interrupted(message)
    }
}

/// The first `limit` bytes of the body (fewer if it ends first), read from
/// its stream chunk by chunk; the stream is cancelled once `limit` is reached.
/// A response without a stream (a host's own `fetch`) is read whole.
async fn read_body(response: &JsValue, limit: usize) -> Result<Vec<u8>, JsValue> {
    let stream = host::get(response, "body")?;
    if stream.is_null() || stream.is_undefined() {
        let buffer = await_method(response, "arrayBuffer", &[]).await?;
        let buffer = buffer
            .dyn_into::<ArrayBuffer>()
            .map_err(|_| JsValue::from_str("arrayBuffer() did not give an ArrayBuffer"))?;
        let bytes = Uint8Array::new(&buffer);
        let len = (bytes.length() as usize).min(limit);
        return Ok(bytes.subarray(0, len as u32).to_vec());
    }
    let reader = call_method(&stream, "getReader", &[])?;
    let mut body = Vec::new();
    while body.len() < limit {
        let chunk = await_method(&reader, "read", &[]).await?;
        if host::get(&chunk, "done")?.is_truthy() {
            return Ok(body);
        }
        let bytes = host::get(&chunk, "value")?
            .dyn_into::<Uint8Array>()
            .map_err(|_| JsValue::from_str("the body stream gave no bytes"))?;
        let start = body.len();
        let take = (bytes.length() as usize).min(limit - start);
        body.resize(start + take, 0);
        bytes.subarray(0, take as u32).copy_to(&mut body[start..]);
    }
    host::cancel(&reader);
    Ok(body)
}

#[async_trait(?Send)]
impl HttpClient for FetchHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let fetch = match &self.fetch {
            Some(f) => f.clone(),
            None => host::method(&js_sys::global(), "fetch")
                .ok()
                .flatten()
                .ok_or_else(|| HttpError::NotSent("no global fetch: pass options.fetch".into()))?,
        };
        let headers = Object::new();
        for (name, value) in &request.headers {
            set(&headers, name, &JsValue::from_str(value));
        }
        let init = Object::new();
        set(&init, "method", &request.method.as_str().into());
        set(&init, "headers", &headers);
        set(&init, "body", &request.body.as_str().into());
        set(&init, "redirect", &"manual".into());
        set(&init, "credentials", &"omit".into());
        let abort_signal = host::get(&js_sys::global(), "AbortSignal").unwrap_or_default();
        if let Ok(signal) = call_method(
            &abort_signal,
            "timeout",
            &[(request.timeout_ms as f64).into()],
        ) {
            set(&init, "signal", &signal);
        }
        let url = JsValue::from_str(&request.url);
        let pending = host::call(&fetch, &JsValue::NULL, &[url, init.into()]).map_err(|e| {
            HttpError::NotSent(text(&e, "message").unwrap_or_else(|| "fetch threw".into()))
        })?;
        let response = host::settle(&pending)
            .await
            .map_err(|e| transport_error(&e))?;

        let status = number(&response, "status") as u16;
        let answer_headers = host::get(&response, "headers").unwrap_or_default();
        let mut headers = Vec::new();
        for name in HEADERS_READ {
            if let Some(value) = call_method(&answer_headers, "get", &[(*name).into()])
                .ok()
                .and_then(|v| v.as_string())
            {
                headers.push(((*name).to_owned(), value));
            }
        }
        let limit = request.max_response_bytes.saturating_add(1);
        let declared = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        if declared.is_some_and(|len| len >= limit) {
            if let Ok(stream) = host::get(&response, "body") {
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
        let body = read_body(&response, limit)
            .await
            .map_err(|e| transport_error(&e))?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// A numeric property (0 when missing or not a number).
fn number(value: &JsValue, name: &str) -> f64 {
    host::get(value, name)
        .ok()
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0)
}
