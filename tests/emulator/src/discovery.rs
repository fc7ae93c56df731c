//! `GET /.well-known/openid-configuration`: the discovery document, or one
//! broken on purpose ([`DiscoveryMode`]) for tests of clients that read it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::{Request, Response};
use crate::state::Shared;

/// The `issuer` of [`DiscoveryMode::WrongIssuer`] when none is given: a
/// different host (the `.invalid` TLD never resolves).
pub const WRONG_ISSUER: &str = "https://wrong-issuer.invalid";

/// The `token_endpoint` of [`DiscoveryMode::InsecureTokenEndpoint`]: plain
/// `http` to a host that is not loopback (and never resolves).
pub const INSECURE_TOKEN_ENDPOINT: &str = "http://token-endpoint.invalid/connect/token";

/// The client authentication methods the token and revocation endpoints
/// accept (`none`: a public client sending only its `client_id`).
const AUTH_METHODS: [&str; 4] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];

/// What the discovery endpoint answers. JSON (`/admin/discovery`): tagged
/// by `"mode"`, snake_case, e.g. `{"mode":"not_found"}` or
/// `{"mode":"wrong_issuer","issuer":"http://127.0.0.1:1/"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", try_from = "ModeWire")]
pub enum DiscoveryMode {
    /// The real document (the default, and after a reset).
    #[default]
    Normal,
    /// 404 with a JSON error body.
    NotFound,
    /// The real document with another `issuer`.
    WrongIssuer {
        /// The `issuer` to send (default [`WRONG_ISSUER`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
    },
    /// The real document with `token_endpoint` =
    /// [`INSECURE_TOKEN_ENDPOINT`].
    InsecureTokenEndpoint,
    /// 200 `application/json` with truncated JSON.
    InvalidJson,
    /// 503 with a JSON error body and, when given, `Retry-After` exactly as
    /// given (seconds or an HTTP-date).
    Unavailable {
        /// The `Retry-After` header's value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<String>,
    },
}

/// The JSON of a [`DiscoveryMode`] as received: flat, so that a field the
/// mode does not take is refused rather than ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeWire {
    mode: ModeName,
    issuer: Option<String>,
    retry_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ModeName {
    Normal,
    NotFound,
    WrongIssuer,
    InsecureTokenEndpoint,
    InvalidJson,
    Unavailable,
}

impl TryFrom<ModeWire> for DiscoveryMode {
    type Error = &'static str;

    fn try_from(w: ModeWire) -> Result<Self, Self::Error> {
        if w.retry_after.is_some() && !matches!(w.mode, ModeName::Unavailable) {
            return Err("retry_after is only for the unavailable mode");
        }
        let mode = match w.mode {
            ModeName::WrongIssuer => return Ok(DiscoveryMode::WrongIssuer { issuer: w.issuer }),
            ModeName::Normal => DiscoveryMode::Normal,
            ModeName::NotFound => DiscoveryMode::NotFound,
            ModeName::InsecureTokenEndpoint => DiscoveryMode::InsecureTokenEndpoint,
            ModeName::InvalidJson => DiscoveryMode::InvalidJson,
            ModeName::Unavailable => DiscoveryMode::Unavailable {
                retry_after: w.retry_after,
            },
        };
        match w.issuer {
            Some(_) => Err("issuer is only for the wrong_issuer mode"),
            None => Ok(mode),
        }
    }
}

/// Handles one discovery request, counting it.
pub(crate) fn handle(shared: &Shared, req: &Request) -> Response {
    if req.method != "GET" {
        return Response::error(405, "invalid_request", "use GET").header("Allow", "GET, OPTIONS");
    }
    let mode = {
        let mut st = shared.lock();
        st.counters.discovery_requests += 1;
        st.discovery.clone()
    };
    answer(shared, &mode).header("Cache-Control", "no-store")
}

/// The answer in `mode`.
fn answer(shared: &Shared, mode: &DiscoveryMode) -> Response {
    let mut doc = document(shared);
    match mode {
        DiscoveryMode::Normal => {}
        DiscoveryMode::NotFound => {
            return Response::error(404, "not_found", "no discovery document")
        }
        DiscoveryMode::WrongIssuer { issuer } => {
            doc["issuer"] = json!(issuer.as_deref().unwrap_or(WRONG_ISSUER));
        }
        DiscoveryMode::InsecureTokenEndpoint => {
            doc["token_endpoint"] = json!(INSECURE_TOKEN_ENDPOINT);
        }
        DiscoveryMode::InvalidJson => {
            let cut = format!(
                "{{\"issuer\":{},\"token_endpoint\":",
                json!(shared.base_url)
            );
            return Response::with_body(200, "application/json", cut);
        }
        DiscoveryMode::Unavailable { retry_after } => {
            let answer = Response::error(503, "temporarily_unavailable", "try again later");
            return match retry_after {
                Some(value) => answer.header("Retry-After", value),
                None => answer,
            };
        }
    }
    Response::json(200, &doc)
}

/// The real document (RFC 8414 / OpenID Connect Discovery 1.0 names).
fn document(shared: &Shared) -> Value {
    json!({
        "issuer": shared.base_url,
        "authorization_endpoint": shared.authorization_endpoint(),
        "token_endpoint": shared.token_endpoint(),
        "revocation_endpoint": shared.revocation_endpoint(),
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "scopes_supported": ["openid", "offline_access"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["none"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_unknown_fields_are_refused() {
        let parse = |text: &str| serde_json::from_str::<DiscoveryMode>(text);
        assert_eq!(
            parse(r#"{"mode":"normal"}"#).unwrap(),
            DiscoveryMode::Normal
        );
        assert_eq!(
            parse(r#"{"mode":"wrong_issuer"}"#).unwrap(),
            DiscoveryMode::WrongIssuer { issuer: None }
        );
        let custom = parse(r#"{"mode":"wrong_issuer","issuer":"http://x/"}"#).unwrap();
        assert_eq!(
            serde_json::to_value(&custom).unwrap(),
            json!({"mode": "wrong_issuer", "issuer": "http://x/"})
        );
        assert_eq!(
            serde_json::to_value(DiscoveryMode::InsecureTokenEndpoint).unwrap(),
            json!({"mode": "insecure_token_endpoint"})
        );
        assert!(parse(r#"{"mode":"sideways"}"#).is_err());
        assert!(parse(r#"{"mode":"wrong_issuer","isuer":"x"}"#).is_err());
        assert!(parse(r#"{"mode":"not_found","issuer":"x"}"#).is_err());
        assert!(parse(r#"{}"#).is_err());
        assert_eq!(
            parse(r#"{"mode":"unavailable","retry_after":"7"}"#).unwrap(),
            DiscoveryMode::Unavailable {
                retry_after: Some("7".into())
            }
        );
        assert!(parse(r#"{"mode":"normal","retry_after":"7"}"#).is_err());
    }
}
