//! HTTP for wasm through the global `fetch` (Node ≥ 18, browsers, workers),
//! or the host's own `fetch`. Reflection instead of web-sys keeps the
//! binary small and works wherever `fetch` does.

use crate::{HttpClient, HttpError, HttpRequest, HttpResponse};
use async_trait::async_trait;
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

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

fn global(name: &str) -> JsValue {
    Reflect::get(&js_sys::global(), &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn set(obj: &Object, name: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(name), value);
}

fn call_method(target: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: Function = Reflect::get(target, &JsValue::from_str(name))?.dyn_into()?;
    match args {
        [] => f.call0(target),
        [a] => f.call1(target, a),
        [a, b, ..] => f.call2(target, a, b),
    }
}

fn text(value: &JsValue, name: &str) -> Option<String> {
    Reflect::get(value, &JsValue::from_str(name))
        .ok()?
        .as_string()
}

/// Sorts a failed `fetch` into "never sent", "timed out" or "maybe sent".
fn transport_error(error: &JsValue) -> HttpError {
    let name = text(error, "name").unwrap_or_default();
    if name == "TimeoutError" || name == "AbortError" {
        return HttpError::Timeout;
    }
    let cause = Reflect::get(error, &JsValue::from_str("cause")).unwrap_or(JsValue::UNDEFINED);
    let code = text(&cause, "code").unwrap_or_default();
    let message = match (text(error, "message"), text(&cause, "message")) {
        (Some(m), Some(c)) => format!("{m}: {c}"),
        (Some(m), None) => m,
        _ => "fetch failed".to_owned(),
    };
    if NOT_SENT_CODES.contains(&code.as_str()) {
        HttpError::NotSent(message)
    } else {
        HttpError::Interrupted(message)
    }
}

#[async_trait(?Send)]
impl HttpClient for FetchHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let fetch = match &self.fetch {
            Some(f) => f.clone(),
            None => global("fetch")
                .dyn_into::<Function>()
                .map_err(|_| HttpError::NotSent("no global fetch: pass options.fetch".into()))?,
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
        let abort_signal = global("AbortSignal");
        if let Ok(signal) = call_method(
            &abort_signal,
            "timeout",
            &[(request.timeout_ms as f64).into()],
        ) {
            set(&init, "signal", &signal);
        }
        let promise: Promise = fetch
            .call2(&JsValue::NULL, &request.url.as_str().into(), &init)
            .and_then(|p| p.dyn_into())
            .map_err(|e| {
                HttpError::NotSent(text(&e, "message").unwrap_or_else(|| "fetch threw".into()))
            })?;
        let response = JsFuture::from(promise)
            .await
            .map_err(|e| transport_error(&e))?;

        let status = Reflect::get(&response, &JsValue::from_str("status"))
            .ok()
            .and_then(|s| s.as_f64())
            .unwrap_or(0.0) as u16;
        let answer_headers =
            Reflect::get(&response, &JsValue::from_str("headers")).unwrap_or(JsValue::UNDEFINED);
        let mut headers = Vec::new();
        for name in HEADERS_READ {
            if let Some(value) = call_method(&answer_headers, "get", &[(*name).into()])
                .ok()
                .and_then(|v| v.as_string())
            {
                headers.push(((*name).to_owned(), value));
            }
        }
        let declared = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        if declared.is_some_and(|len| len > request.max_response_bytes) {
            if let Ok(body) = Reflect::get(&response, &JsValue::from_str("body")) {
                let _ = call_method(&body, "cancel", &[]);
            }
            // Unread: a body one byte over the cap stands for it, so the
            // core judges the answer by its status like any oversize one.
            return Ok(HttpResponse {
                status,
                headers,
                body: vec![0; request.max_response_bytes + 1],
            });
        }
        let buffer = call_method(&response, "arrayBuffer", &[])
            .and_then(|p| p.dyn_into::<Promise>())
            .map_err(|e| transport_error(&e))?;
        let buffer = JsFuture::from(buffer)
            .await
            .map_err(|e| transport_error(&e))?;
        let bytes = Uint8Array::new(&buffer);
        Ok(HttpResponse {
            status,
            headers,
            body: bytes.to_vec(),
        })
    }
}
