//! `/admin/*`: the HTTP twins of [`Emulator`](crate::Emulator)'s methods,
//! JSON in and JSON out, for tests in other languages.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::discovery::DiscoveryMode;
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

/// The body of the long-polls `POST /admin/held/wait` and
/// `POST /admin/streams/wait`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitBody {
    count: Option<usize>,
    timeout_ms: Option<u64>,
}

/// The answer to a `POST /admin/discovery` without a body.
const DISCOVERY_HELP: &str = "send {\"mode\":\"normal\"|\"not_found\"|\"wrong_issuer\"|\"insecure_token_endpoint\"|\"invalid_json\"}";

/// How long a long-poll waits when not told.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// The longest a long-poll waits.
const MAX_WAIT: Duration = Duration::from_secs(120);

impl WaitBody {
    fn parse(req: &Request) -> Result<(usize, Duration), Response> {
        let b = parse_body::<WaitBody>(req)?;
        let count = b.as_ref().and_then(|b| b.count).unwrap_or(1);
        let limit = b
            .and_then(|b| b.timeout_ms)
            .map_or(DEFAULT_WAIT, Duration::from_millis)
            .min(MAX_WAIT);
        Ok((count, limit))
    }
}

/// Handles one admin request.
pub(crate) async fn handle(shared: &Shared, req: &Request) -> Response {
    let route = req.path.trim_start_matches("/admin/");
    match (req.method.as_str(), route) {
        ("GET", "held") => ok(&json!({"held": shared.holds.count()})),
        ("POST", "held/wait") => {
            let (count, limit) = match WaitBody::parse(req) {
                Ok(parsed) => parsed,
                Err(response) => return response,
            };
            match shared.holds.wait(count, limit).await {
                Ok(held) => ok(&json!({"held": held})),
                Err(held) => timed_out(
                    &format!("{held} of {count} token request(s) held after {limit:?}"),
                    "held",
                    json!(held),
                ),
            }
        }
        ("POST", "held/release") => ok(&json!({"released": shared.holds.release()})),
        ("GET", "streams") => ok(&json!(shared.streams.list())),
        ("POST", "streams/wait") => {
            let (count, limit) = match WaitBody::parse(req) {
                Ok(parsed) => parsed,
                Err(response) => return response,
            };
            match shared.streams.wait_ended(count, limit).await {
                Ok(streams) => ok(&json!(streams)),
                Err(streams) => timed_out(
                    &format!("{count} endless response(s) not all ended after {limit:?}"),
                    "streams",
                    json!(streams),
                ),
            }
        }
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
        ("GET", "discovery") => ok(&json!(shared.lock().discovery)),
        ("POST", "discovery") => with_body(req, |b: Option<DiscoveryMode>| {
            let Some(mode) = b else {
                return bad(DISCOVERY_HELP);
            };
            let mut st = shared.lock();
            st.discovery = mode;
            ok(&json!(st.discovery))
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
            shared.reset();
            ok(&json!({"reset": true}))
        }
        (
            _,
            "seed"
            | "counters"
            | "faults"
            | "clock"
            | "config"
            | "discovery"
            | "refresh-token-state"
            | "reset"
            | "connections"
            | "held"
            | "held/wait"
            | "held/release"
            | "streams"
            | "streams/wait",
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
    match parse_body(req) {
        Ok(body) => f(body),
        Err(response) => response,
    }
}

/// An optional JSON body (empty means `None`), or the 400 answer.
fn parse_body<T: DeserializeOwned>(req: &Request) -> Result<Option<T>, Response> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<T>(&req.body)
        .map(Some)
        .map_err(|e| bad(&format!("invalid JSON body: {e}")))
}

/// A long-poll that gave up: 504 with what it saw under `field`.
fn timed_out(description: &str, field: &str, seen: Value) -> Response {
    let mut body = json!({"error": "timeout", "error_description": description});
    body[field] = seen;
    Response::json(504, &body).header("Cache-Control", "no-store")
}

fn ok(value: &Value) -> Response {
    Response::json(200, value).header("Cache-Control", "no-store")
}

fn bad(description: &str) -> Response {
    Response::error(400, "invalid_request", description)
}
