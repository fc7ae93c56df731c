//! `POST /connect/revocation` (RFC 7009): counting, fault injection, client
//! authentication as at the token endpoint, then revoking the token.

use crate::client_auth::{self, Client};
use crate::faults::Target;
use crate::http::{Outcome, Request, Response};
use crate::injection;
use crate::oauth::{OAuthError, Params};
use crate::state::{Shared, State, TokenState};

/// The `token_type_hint` values the emulator knows (RFC 7009 §2.1).
const HINTS: [&str; 2] = ["refresh_token", "access_token"];

/// Handles one revocation request.
pub(crate) async fn handle(shared: &Shared, req: &Request) -> Outcome {
    if req.method != "POST" {
        return Outcome::Respond(
            Response::error(405, "invalid_request", "use POST").header("Allow", "POST, OPTIONS"),
        );
    }
    let params = Params::from_form_body(req);
    let fault = {
        let mut st = shared.lock();
        st.counters.revocation_requests += 1;
        let hint = params.as_ref().ok().and_then(|p| p.get("token_type_hint"));
        if let Some(h) = hint {
            *st.counters
                .revocation_by_hint
                .entry(h.to_owned())
                .or_default() += 1;
        }
        injection::take_fault(&mut st, Target::Revocation, false)
    };
    injection::apply(shared, Target::Revocation, fault, || match &params {
        Ok(p) => process(shared, req, p),
        Err(e) => e.clone().into_response(),
    })
    .await
}

/// Authenticates the client and revokes; 200 with an empty body whether or
/// not there was anything to revoke (RFC 7009 §2.2).
fn process(shared: &Shared, req: &Request, p: &Params) -> Response {
    let token_endpoint = shared.token_endpoint();
    let mut st = shared.lock();
    let result =
        client_auth::authenticate(&mut st, &token_endpoint, req.header("authorization"), p)
            .and_then(|client| {
                let token = p.require("token")?;
                if let Some(hint) = p.get("token_type_hint") {
                    if !HINTS.contains(&hint) {
                        return Err(OAuthError::bad_request(
                            "unsupported_token_type",
                            "token_type_hint must be refresh_token or access_token",
                        ));
                    }
                }
                Ok(revoke(&mut st, &client, token))
            });
    match result {
        Ok(revoked) => {
            if revoked {
                st.counters.tokens_revoked += 1;
            }
            Response::empty(200)
        }
        Err(e) => {
            if e.error == "invalid_client" {
                st.counters.invalid_client += 1;
            }
            e.into_response()
        }
    }
}

/// Revokes `token` if it is a live token of `client`; true if it did.
///
/// The token is looked up among refresh and access tokens alike (the hint
/// only speeds a real server's search; RFC 7009 §2.1). A live refresh token
/// revokes its whole family: itself and every access token issued in it.
/// An access token revokes only itself. Another client's token, an unknown,
/// consumed, expired or already revoked one changes nothing.
fn revoke(st: &mut State, client: &Client, token: &str) -> bool {
    if let Some(rec) = st.refresh_tokens.get(token).copied() {
        let owned = st
            .families
            .get(&rec.family)
            .is_some_and(|f| f.client_id == client.id);
        if !owned || st.refresh_state(token) != TokenState::Active {
            return false;
        }
        st.revoke_family(rec.family);
        return true;
    }
    let live = st
        .valid_access(token)
        .is_some_and(|rec| rec.client_id == client.id);
    if live {
        if let Some(rec) = st.access_tokens.get_mut(token) {
            rec.revoked = true;
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;

    fn client(id: &str) -> Client {
        Client {
            id: id.into(),
            confidential: true,
        }
    }

    #[test]
    fn a_refresh_token_takes_its_family_with_it() {
        let mut st = State::new(&Options::default());
        let a = st.seed("http://x", "test-client", "openid offline_access");
        let b = st.seed("http://x", "test-client", "openid offline_access");
        assert!(!revoke(&mut st, &client("other"), &a.refresh_token));
        assert_eq!(st.refresh_state(&a.refresh_token), TokenState::Active);
        assert!(revoke(&mut st, &client("test-client"), &a.refresh_token));
        assert_eq!(st.refresh_state(&a.refresh_token), TokenState::Revoked);
        assert!(st.valid_access(&a.access_token).is_none());
        assert!(!revoke(&mut st, &client("test-client"), &a.refresh_token));
        // The other family is untouched.
        assert_eq!(st.refresh_state(&b.refresh_token), TokenState::Active);
        assert!(st.valid_access(&b.access_token).is_some());
    }

    #[test]
    fn an_access_token_goes_alone() {
        let mut st = State::new(&Options::default());
        let a = st.seed("http://x", "test-client", "openid offline_access");
        assert!(!revoke(&mut st, &client("other"), &a.access_token));
        assert!(st.valid_access(&a.access_token).is_some());
        assert!(revoke(&mut st, &client("test-client"), &a.access_token));
        assert!(st.valid_access(&a.access_token).is_none());
        assert_eq!(st.refresh_state(&a.refresh_token), TokenState::Active);
        assert!(!revoke(&mut st, &client("test-client"), &a.access_token));
        assert!(!revoke(&mut st, &client("test-client"), "unknown"));
    }
}
