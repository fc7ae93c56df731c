//! `POST /connect/token`: counting, fault injection, then the grant.

use crate::faults::Target;
use crate::grants::{self, GrantContext};
use crate::http::{Outcome, Request, Response};
use crate::injection;
use crate::oauth::Params;
use crate::state::Shared;

/// Handles one token request.
pub(crate) async fn handle(shared: &Shared, req: &Request) -> Outcome {
    if req.method != "POST" {
        return Outcome::Respond(
            Response::error(405, "invalid_request", "use POST").header("Allow", "POST, OPTIONS"),
        );
    }
    let params = Params::from_form_body(req);
    let grant = params
        .as_ref()
        .ok()
        .and_then(|p| p.get("grant_type"))
        .map(str::to_owned);
    let target = Target::Token(grant.as_deref());
    let fault = {
        let mut st = shared.lock();
        st.counters.token_requests += 1;
        if let Some(g) = &grant {
            *st.counters.by_grant.entry(g.clone()).or_default() += 1;
        }
        injection::take_fault(&mut st, target, false)
    };
    injection::apply(shared, target, fault, || match &params {
        Ok(p) => process(shared, req, p),
        Err(e) => e.clone().into_response(),
    })
    .await
}

/// Runs the grant and turns the result into a response, counting errors.
fn process(shared: &Shared, req: &Request, p: &Params) -> Response {
    let token_endpoint = shared.token_endpoint();
    let mut st = shared.lock();
    let mut cx = GrantContext {
        state: &mut st,
        issuer: &shared.base_url,
        token_endpoint: &token_endpoint,
    };
    match grants::run(&mut cx, req.header("authorization"), p) {
        Ok(body) => Response::no_store_json(200, &body),
        Err(e) => {
            match e.error {
                "invalid_grant" => st.counters.invalid_grant += 1,
                "invalid_client" => st.counters.invalid_client += 1,
                _ => {}
            }
            e.into_response()
        }
    }
}
