//! `/admin/*`: the HTTP twins of [`Emulator`](crate::Emulator)'s methods,
//! JSON in and JSON out, for tests in other languages.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::faults::Fault;
use crate::http::{Request, Response};
use crate::options::DEFAULT_CLIENT_ID;
use crate::state::Shared;

/// The scope `POST /admin/seed` grants by default.
pub(crate) const DEFAULT_SEED_SCOPE: &str = "openid offline_access accounts";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedBody {
    client_id: Option<String>,
    scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    advance_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    reuse_detection: Option<bool>,
    access_ttl_secs: Option<u64>,
    client_ttl_secs: Option<u64>,
    refresh_ttl_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    refresh_token: String,
}

/// Handles one admin request.
pub(crate) fn handle(shared: &Shared, req: &Request) -> Response {
    let route = req.path.trim_start_matches("/admin/");
    match (req.method.as_str(), route) {
        ("POST", "seed") => with_body(req, |b: Option<SeedBody>| {
            let b = b.unwrap_or(SeedBody {
                client_id: None,
                scope: None,
            });
            let client_id = b.client_id.as_deref().unwrap_or(DEFAULT_CLIENT_ID);
            let scope = b.scope.as_deref().unwrap_or(DEFAULT_SEED_SCOPE);
            let mut st = shared.lock();
            if !st.clients.contains_key(client_id) {
                return Response::error(400, "invalid_request", "unknown client_id");
            }
            let seeded = st.seed(&shared.base_url, client_id, scope);
            ok(&json!(seeded))
        }),
        ("GET", "counters") => ok(&json!(shared.lock().counters)),
        ("GET", "faults") => ok(&json!(shared.lock().faults.pending())),
        ("POST", "faults") => with_body(req, |b: Option<Value>| {
            let parsed = match b {
                Some(list @ Value::Array(_)) => serde_json::from_value::<Vec<Fault>>(list),
                Some(one) => serde_json::from_value::<Fault>(one).map(|f| vec![f]),
                None => return bad("send a fault object or an array of them"),
            };
            let faults = match parsed {
                Ok(faults) => faults,
                Err(e) => return bad(&format!("invalid fault: {e}")),
            };
            let mut st = shared.lock();
            let added = faults.len();
            for f in faults {
                st.faults.push(f);
            }
            ok(&json!({"added": added, "queued": st.faults.pending().len()}))
        }),
        ("DELETE", "faults") => {
            let cleared = shared.lock().faults.clear();
            ok(&json!({"cleared": cleared}))
        }
        ("POST", "clock") => with_body(req, |b: Option<ClockBody>| {
            let Some(b) = b else {
                return bad("send {\"advance_secs\":N}");
            };
            let mut st = shared.lock();
            let offset = st.advance_clock(b.advance_secs);
            ok(&json!({"offset_secs": offset, "now": st.now()}))
        }),
        ("GET", "config") => ok(&json!(shared.lock().config)),
        ("POST", "config") => with_body(req, |b: Option<ConfigBody>| {
            let mut st = shared.lock();
            if let Some(b) = b {
                let c = &mut st.config;
                c.reuse_detection = b.reuse_detection.unwrap_or(c.reuse_detection);
                c.access_ttl_secs = b.access_ttl_secs.unwrap_or(c.access_ttl_secs);
                c.client_ttl_secs = b.client_ttl_secs.unwrap_or(c.client_ttl_secs);
                c.refresh_ttl_secs = b.refresh_ttl_secs.unwrap_or(c.refresh_ttl_secs);
            }
            ok(&json!(st.config))
        }),
        ("POST", "refresh-token-state") => with_body(req, |b: Option<StateBody>| match b {
            Some(b) => {
                let st = shared.lock();
                let mut answer = json!({"state": st.refresh_state(&b.refresh_token)});
                // Known tokens also say where they sit in their family's chain.
                if let (Some(lineage), Some(map)) =
                    (st.lineage(&b.refresh_token), answer.as_object_mut())
                {
                    if let Value::Object(more) = json!(lineage) {
                        map.extend(more);
                    }
                }
                ok(&answer)
            }
            None => bad("send {\"refresh_token\":\"…\"}"),
        }),
        ("GET", "connections") => {
            // The asking connection is open too: it is not counted.
            let st = shared.lock();
            let open = st.open_connections.saturating_sub(1);
            ok(&json!({"open": open, "token_requests_in_flight": st.in_flight}))
        }
        ("POST", "reset") => {
            shared.lock().reset();
            ok(&json!({"reset": true}))
        }
        (
            _,
            "seed"
            | "counters"
            | "faults"
            | "clock"
            | "config"
            | "refresh-token-state"
            | "reset"
            | "connections",
        ) => Response::error(
            405,
            "invalid_request",
            "method not allowed for this admin route",
        ),
        _ => Response::error(404, "not_found", "no such admin route"),
    }
}

/// Parses an optional JSON body (empty means `None`) and runs `f`.
fn with_body<T: DeserializeOwned>(
    req: &Request,
    f: impl FnOnce(Option<T>) -> Response,
) -> Response {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return f(None);
    }
    match serde_json::from_slice::<T>(&req.body) {
        Ok(v) => f(Some(v)),
        Err(e) => bad(&format!("invalid JSON body: {e}")),
    }
}

fn ok(value: &Value) -> Response {
    Response::json(200, value).header("Cache-Control", "no-store")
}

fn bad(description: &str) -> Response {
    Response::error(400, "invalid_request", description)
}
