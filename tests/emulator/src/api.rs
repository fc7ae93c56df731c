//! The protected resources: Stitch-shaped `/graphql` (always 200, errors in
//! the body) and a REST-shaped `/api/*` (401 with `WWW-Authenticate`).

use serde_json::{json, Value};

use crate::http::{Request, Response};
use crate::state::Shared;

/// Stitch's message for a missing, unknown, expired or revoked token.
const UNAUTHENTICATED: &str = "UNAUTHENTICATED: Token is expired or malformed";

/// The client and scope of a valid bearer token, counting the request.
fn authenticate(shared: &Shared, req: &Request) -> Result<(String, String), bool> {
    let token = bearer(req);
    let mut st = shared.lock();
    st.counters.api_requests += 1;
    let found = token
        .and_then(|t| st.valid_access(t))
        .map(|r| (r.client_id.clone(), r.scope.clone()));
    if found.is_none() {
        st.counters.api_unauthenticated += 1;
    }
    found.ok_or(token.is_some())
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(req: &Request) -> Option<&str> {
    let (scheme, token) = req.header("authorization")?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `GET`/`POST /graphql`: the viewer for a good token, else Stitch's error.
pub(crate) fn graphql(shared: &Shared, req: &Request) -> Response {
    if req.method != "GET" && req.method != "POST" {
        return Response::error(405, "invalid_request", "use GET or POST")
            .header("Allow", "GET, POST, OPTIONS");
    }
    let body: Value = match authenticate(shared, req) {
        Ok((client_id, scope)) => {
            json!({"data": {"viewer": {"clientId": client_id, "scope": scope}}})
        }
        Err(_) => json!({"errors": [{
            "message": UNAUTHENTICATED,
            "extensions": {"code": "UNAUTHENTICATED"},
        }]}),
    };
    Response::json(200, &body)
}

/// Any method on `/api/*`: 200 JSON for a good token, 401 otherwise.
pub(crate) fn rest(shared: &Shared, req: &Request) -> Response {
    match authenticate(shared, req) {
        Ok((client_id, scope)) => Response::json(
            200,
            &json!({"client_id": client_id, "scope": scope, "path": req.path}),
        ),
        Err(sent_token) => {
            let challenge = if sent_token {
                "Bearer error=\"invalid_token\", error_description=\"Token is expired or malformed\""
            } else {
                "Bearer"
            };
            Response::error(401, "invalid_token", UNAUTHENTICATED)
                .header("WWW-Authenticate", challenge)
        }
    }
}
