//! `GET /connect/authorize`: non-interactive approval that redirects with a
//! single-use, 60-second code bound to a PKCE S256 challenge.

use crate::http::{Request, Response};
use crate::oauth::{OAuthError, Params};
use crate::state::{CodeRecord, Shared};
use crate::tokens;

/// How long an authorization code lives.
const CODE_TTL_SECS: u64 = 60;

/// Handles one authorization request (query for GET, form body for POST).
pub(crate) fn handle(shared: &Shared, req: &Request) -> Response {
    let params = match req.method.as_str() {
        "GET" => Params::parse(req.query.as_bytes()),
        "POST" => Params::from_form_body(req),
        _ => {
            return Response::error(405, "invalid_request", "use GET")
                .header("Allow", "GET, POST, OPTIONS")
        }
    };
    let p = match params {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match authorize(shared, &p) {
        Ok(location) => Response::empty(302)
            .header("Location", location)
            .header("Cache-Control", "no-store"),
        Err(e) => e.into_response(),
    }
}

/// Validates the request and returns the redirect `Location`. Errors about
/// the client or the redirect URI are answered directly (400 JSON); the
/// others are sent to the client's redirect URI (RFC 6749 §4.1.2.1). Every
/// redirect names the issuer (`iss`, RFC 9207), as the discovery document
/// announces.
fn authorize(shared: &Shared, p: &Params) -> Result<String, OAuthError> {
    let client_id = p.require("client_id")?;
    let redirect_uri = p.require("redirect_uri")?;
    if redirect_uri.contains('#') {
        return Err(OAuthError::invalid_request(
            "redirect_uri must not have a fragment",
        ));
    }
    let mut st = shared.lock();
    if !st.clients.contains_key(client_id) {
        return Err(OAuthError::invalid_request("unknown client_id"));
    }
    let state = p.get("state");
    let issuer = shared.base_url.as_str();
    let redirect_error = |error: &str, description: &str| {
        let mut pairs = vec![("error", error), ("error_description", description)];
        pairs.extend(state.map(|s| ("state", s)));
        pairs.push(("iss", issuer));
        Ok(with_query(redirect_uri, &pairs))
    };
    if p.get("response_type") != Some("code") {
        return redirect_error("unsupported_response_type", "response_type must be code");
    }
    let Some(challenge) = p.get("code_challenge") else {
        return redirect_error("invalid_request", "code_challenge is required (PKCE)");
    };
    if p.get("code_challenge_method") != Some("S256") {
        return redirect_error("invalid_request", "code_challenge_method must be S256");
    }
    if !tokens::is_pkce_string(challenge) {
        return redirect_error("invalid_request", "malformed code_challenge");
    }
    let code = tokens::random_token();
    let record = CodeRecord {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scope: p.get("scope").unwrap_or("openid").to_owned(),
        nonce: p.get("nonce").map(str::to_owned),
        challenge: challenge.to_owned(),
        expires_at: st.now().saturating_add(CODE_TTL_SECS),
        used: false,
        family: None,
    };
    st.codes.insert(code.clone(), record);
    st.counters.codes_issued += 1;
    let mut pairs = vec![("code", code.as_str())];
    pairs.extend(state.map(|s| ("state", s)));
    pairs.push(("iss", issuer));
    Ok(with_query(redirect_uri, &pairs))
}

/// Appends form-encoded pairs to a URI's query.
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = match uri.find('?') {
        None => "?",
        Some(_) if uri.ends_with('?') || uri.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{uri}{sep}{query}")
}

/// The authorization response parameters of a redirect `Location`, for tests.
#[cfg(test)]
fn query_of(location: &str) -> Vec<(String, String)> {
    crate::http::form_pairs(location.split_once('?').map_or("", |(_, q)| q).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_query_picks_the_separator() {
        assert_eq!(
            with_query("http://a/cb", &[("code", "x")]),
            "http://a/cb?code=x"
        );
        assert_eq!(
            with_query("http://a/cb?x=1", &[("code", "a b")]),
            "http://a/cb?x=1&code=a+b"
        );
        assert_eq!(
            with_query("http://a/cb?", &[("code", "x")]),
            "http://a/cb?code=x"
        );
        let q = query_of("http://a/cb?x=1&code=a+b&state=s%26t");
        assert_eq!(q[2], ("state".into(), "s&t".into()));
    }
}
