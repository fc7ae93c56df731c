//! Client authentication at the token endpoint: `client_secret_basic`,
//! `client_secret_post`, `private_key_jwt` (claims checked, signature not)
//! and public clients.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

use crate::http::form_decode;
use crate::oauth::{OAuthError, Params};
use crate::state::{real_now, State};

/// RFC 7523's client assertion type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on assertion `exp`/`nbf`.
const ASSERTION_LEEWAY_SECS: u64 = 60;

/// An authenticated client.
pub(crate) struct Client {
    pub id: String,
    pub confidential: bool,
}

/// Authenticates the client of a token request.
pub(crate) fn authenticate(
    state: &mut State,
    token_endpoint: &str,
    authorization: Option<&str>,
    p: &Params,
) -> Result<Client, OAuthError> {
    let basic = authorization.and_then(basic_credentials);
    let body_secret = p.get("client_secret");
    let assertion = p.get("client_assertion");
    let methods = [basic.is_some(), body_secret.is_some(), assertion.is_some()];
    if methods.iter().filter(|m| **m).count() > 1 {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method used",
        ));
    }
    if let Some(decoded) = basic {
        let Some((id, secret)) = decoded else {
            return Err(
                OAuthError::invalid_client("malformed Basic credentials").with_basic_challenge()
            );
        };
        if p.get("client_id").is_some_and(|body_id| body_id != id) {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the Basic credentials",
            ));
        }
        return check_secret(state, &id, &secret).map_err(OAuthError::with_basic_challenge);
    }
    if let Some(jwt) = assertion {
        return check_assertion(state, token_endpoint, p, jwt);
    }
    let id = p
        .get("client_id")
        .ok_or_else(|| OAuthError::invalid_client("client authentication required"))?;
    match body_secret {
        Some(secret) => check_secret(state, id, secret),
        None => match state.clients.get(id) {
            Some(None) => Ok(Client {
                id: id.to_owned(),
                confidential: false,
            }),
            Some(Some(_)) => Err(OAuthError::invalid_client(
                "confidential client sent no credentials",
            )),
            None => Err(OAuthError::invalid_client("unknown client")),
        },
    }
}

/// `None` when the header is not Basic; `Some(None)` when it is but cannot
/// be decoded; otherwise the form-url-decoded id and secret (RFC 6749 §2.3.1).
fn basic_credentials(header: &str) -> Option<Option<(String, String)>> {
    let (scheme, value) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let value = value.trim();
    let raw = STANDARD
        .decode(value)
        .or_else(|_| STANDARD_NO_PAD.decode(value))
        .ok();
    let decoded = raw
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let (id, secret) = text.split_once(':')?;
            Some((form_decode(id)?, form_decode(secret)?))
        });
    Some(decoded)
}

fn check_secret(state: &State, id: &str, secret: &str) -> Result<Client, OAuthError> {
    match state.clients.get(id) {
        Some(Some(expected)) if expected == secret => Ok(Client {
            id: id.to_owned(),
            confidential: true,
        }),
        Some(Some(_)) => Err(OAuthError::invalid_client("wrong client secret")),
        Some(None) => Err(OAuthError::invalid_client("public client sent a secret")),
        None => Err(OAuthError::invalid_client("unknown client")),
    }
}

/// Checks a `private_key_jwt` assertion's claims (RFC 7523 §3): iss = sub =
/// a confidential client, aud = the token endpoint, unexpired by the real
/// clock, and a `jti` never seen before. The signature is not verified.
fn check_assertion(
    state: &mut State,
    token_endpoint: &str,
    p: &Params,
    jwt: &str,
) -> Result<Client, OAuthError> {
    if p.get("client_assertion_type") != Some(JWT_BEARER) {
        return Err(OAuthError::invalid_client(
            "client_assertion_type must be jwt-bearer",
        ));
    }
    let bad = |why: &str| OAuthError::invalid_client(format!("client assertion rejected: {why}"));
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not a JWS compact serialization"));
    };
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| bad("payload is not base64url JSON"))?;
    let iss = claims["iss"].as_str().ok_or_else(|| bad("no iss"))?;
    if claims["sub"].as_str() != Some(iss) {
        return Err(bad("sub must equal iss"));
    }
    if p.get("client_id").is_some_and(|id| id != iss) {
        return Err(bad("client_id differs from iss"));
    }
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == token_endpoint,
        Value::Array(list) => list.iter().any(|a| a.as_str() == Some(token_endpoint)),
        _ => false,
    };
    if !aud_ok {
        return Err(bad("aud must be the token endpoint"));
    }
    let now = real_now();
    let exp = claims["exp"].as_u64().ok_or_else(|| bad("no exp"))?;
    if exp.saturating_add(ASSERTION_LEEWAY_SECS) <= now {
        return Err(bad("expired"));
    }
    if claims["nbf"]
        .as_u64()
        .is_some_and(|nbf| nbf > now.saturating_add(ASSERTION_LEEWAY_SECS))
    {
        return Err(bad("not yet valid"));
    }
    let jti = claims["jti"].as_str().ok_or_else(|| bad("no jti"))?;
    match state.clients.get(iss) {
        Some(Some(_)) => {}
        Some(None) => return Err(bad("public clients cannot use assertions")),
        None => return Err(bad("unknown client")),
    }
    if !state.seen_jtis.insert(format!("{iss}/{jti}")) {
        return Err(bad("jti already used"));
    }
    Ok(Client {
        id: iss.to_owned(),
        confidential: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded_after_splitting() {
        let header = format!("Basic {}", STANDARD.encode("my%3Aclient:s3cr%25t%2B%2F%3D"));
        assert_eq!(
            basic_credentials(&header),
            Some(Some(("my:client".into(), "s3cr%t+/=".into())))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), Some(None));
        assert_eq!(
            basic_credentials(&format!("Basic {}", STANDARD.encode("nocolon"))),
            Some(None)
        );
    }
}
