//! `POST /connect/token`: counting, fault injection, then the grant.

use std::time::Duration;

use crate::endless::Endless;
use crate::faults::{self, FaultKind};
use crate::grants::{self, GrantContext};
use crate::http::{Outcome, Request, Response};
use crate::oauth::Params;
use crate::state::{Shared, State};

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
    let mut fault = {
        let mut st = shared.lock();
        st.counters.token_requests += 1;
        if let Some(g) = &grant {
            *st.counters.by_grant.entry(g.clone()).or_default() += 1;
        }
        take_fault(&mut st, grant.as_deref(), false)
    };
    // A held request waits for its release, then meets the next fault that
    // is not a hold.
    if fault == Some(FaultKind::Hold) {
        shared.holds.hold().await;
        fault = take_fault(&mut shared.lock(), grant.as_deref(), true);
    }
    let run = || match &params {
        Ok(p) => process(shared, req, p),
        Err(e) => e.clone().into_response(),
    };
    match fault {
        None => Outcome::Respond(run()),
        Some(FaultKind::Delay { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Outcome::Respond(run())
        }
        Some(FaultKind::DropBefore) => Outcome::Close,
        Some(FaultKind::DropAfterCommit) => {
            let _ = run();
            Outcome::Close
        }
        Some(FaultKind::Endless {
            status,
            framing,
            max_bytes,
        }) => Outcome::Endless(Endless {
            status,
            framing,
            max_bytes,
        }),
        Some(other) => match faults::response(&other) {
            Some(response) => Outcome::Respond(response),
            None => Outcome::Respond(run()),
        },
    }
}

/// Takes the next fault for this grant (after a hold, the next that is not
/// one), counting its application.
fn take_fault(st: &mut State, grant: Option<&str>, released: bool) -> Option<FaultKind> {
    let fault = if released {
        st.faults.take_after_hold(grant)
    } else {
        st.faults.take(grant)
    };
    if fault.is_some() {
        st.counters.faults_applied += 1;
    }
    fault
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
