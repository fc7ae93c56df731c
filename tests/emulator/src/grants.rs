//! The three grants: `refresh_token` (single use, rotating, reuse
//! detection, sliding lifetime), `client_credentials` and
//! `authorization_code` with PKCE S256.

use serde_json::{json, Map, Value};

use crate::client_auth::{self, Client};
use crate::oauth::{OAuthError, Params};
use crate::state::{RefreshStatus, State};
use crate::tokens;

/// Where a grant runs: the state (locked) and the issuer's URLs.
pub(crate) struct GrantContext<'a> {
    pub state: &'a mut State,
    pub issuer: &'a str,
    pub token_endpoint: &'a str,
}

/// Runs the grant a token request asks for and returns the success body.
pub(crate) fn run(
    cx: &mut GrantContext<'_>,
    authorization: Option<&str>,
    p: &Params,
) -> Result<Value, OAuthError> {
    let grant = p.require("grant_type")?;
    if !matches!(
        grant,
        "refresh_token" | "client_credentials" | "authorization_code"
    ) {
        return Err(OAuthError::bad_request(
            "unsupported_grant_type",
            format!("grant_type {grant} is not supported"),
        ));
    }
    let client = client_auth::authenticate(cx.state, cx.token_endpoint, authorization, p)?;
    match grant {
        "refresh_token" => refresh(cx, &client, p),
        "client_credentials" => client_credentials(cx, &client, p),
        _ => authorization_code(cx, &client, p),
    }
}

fn refresh(cx: &mut GrantContext<'_>, client: &Client, p: &Params) -> Result<Value, OAuthError> {
    let token = p.require("refresh_token")?;
    let st = &mut *cx.state;
    let record = *st
        .refresh_tokens
        .get(token)
        .ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
    let (family_client, family_scope, family_revoked) = match st.families.get(&record.family) {
        Some(f) => (f.client_id.clone(), f.scope.clone(), f.revoked),
        None => return Err(OAuthError::invalid_grant("unknown refresh token")),
    };
    if family_client != client.id {
        return Err(OAuthError::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    match record.status {
        RefreshStatus::Consumed => {
            if st.config.reuse_detection {
                st.counters.reuse_detected += 1;
                st.revoke_family(record.family);
            }
            return Err(OAuthError::invalid_grant("refresh token already used"));
        }
        RefreshStatus::Revoked => return Err(OAuthError::invalid_grant("refresh token revoked")),
        RefreshStatus::Active if family_revoked => {
            return Err(OAuthError::invalid_grant("refresh token revoked"))
        }
        RefreshStatus::Active if st.now() >= record.expires_at => {
            return Err(OAuthError::invalid_grant("refresh token expired"))
        }
        RefreshStatus::Active => {}
    }
    let scope = narrowed_scope(&family_scope, p.get("scope"))?;
    if let Some(r) = st.refresh_tokens.get_mut(token) {
        r.status = RefreshStatus::Consumed;
    }
    let m = st.mint_user_tokens(cx.issuer, record.family, &scope, true);
    st.counters.refresh_success += 1;
    st.counters.rotations += 1;
    Ok(json!({
        "access_token": m.access_token,
        "expires_in": m.expires_in,
        "token_type": "Bearer",
        "refresh_token": m.refresh_token,
        "scope": scope,
        "id_token": m.id_token,
    }))
}

/// The scope a refresh grants: the family's, or a requested subset of it.
fn narrowed_scope(granted: &str, requested: Option<&str>) -> Result<String, OAuthError> {
    let Some(requested) = requested else {
        return Ok(granted.to_owned());
    };
    let granted: Vec<&str> = granted.split_whitespace().collect();
    if requested.split_whitespace().all(|s| granted.contains(&s)) {
        Ok(requested.to_owned())
    } else {
        Err(OAuthError::bad_request(
            "invalid_scope",
            "requested scope exceeds the granted scope",
        ))
    }
}

fn client_credentials(
    cx: &mut GrantContext<'_>,
    client: &Client,
    p: &Params,
) -> Result<Value, OAuthError> {
    if !client.confidential {
        return Err(OAuthError::bad_request(
            "unauthorized_client",
            "public clients cannot use client_credentials",
        ));
    }
    let st = &mut *cx.state;
    if let Some(audience) = p.get("audience") {
        st.counters.last_audience = Some(audience.to_owned());
        if audience != cx.token_endpoint {
            return Err(OAuthError::invalid_request(
                "audience must be the token endpoint URL",
            ));
        }
    }
    let scope = p.get("scope").unwrap_or("");
    let ttl = st.config.client_ttl_secs;
    let access_token = st.mint_access(&client.id, scope, None, ttl);
    st.counters.client_credentials_issued += 1;
    Ok(json!({
        "access_token": access_token,
        "expires_in": ttl,
        "token_type": "Bearer",
        "scope": scope,
    }))
}

fn authorization_code(
    cx: &mut GrantContext<'_>,
    client: &Client,
    p: &Params,
) -> Result<Value, OAuthError> {
    let code = p.require("code")?;
    let redirect_uri = p.require("redirect_uri")?;
    let verifier = p.require("code_verifier")?;
    if !tokens::is_pkce_string(verifier) {
        return Err(OAuthError::invalid_request(
            "code_verifier must be 43-128 unreserved characters",
        ));
    }
    let st = &mut *cx.state;
    let rec = st
        .codes
        .get(code)
        .cloned()
        .ok_or_else(|| OAuthError::invalid_grant("unknown authorization code"))?;
    if rec.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "code was issued to another client",
        ));
    }
    if rec.used {
        if let Some(family) = rec.family {
            st.revoke_family(family);
        }
        return Err(OAuthError::invalid_grant("authorization code already used"));
    }
    if st.now() >= rec.expires_at {
        return Err(OAuthError::invalid_grant("authorization code expired"));
    }
    if rec.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    if tokens::pkce_s256(verifier) != rec.challenge {
        return Err(OAuthError::invalid_grant("PKCE verification failed"));
    }
    let offline = rec.scope.split_whitespace().any(|s| s == "offline_access");
    let family = st.new_family(&client.id, &rec.scope, rec.nonce.clone());
    if let Some(r) = st.codes.get_mut(code) {
        r.used = true;
        r.family = Some(family);
    }
    let m = st.mint_user_tokens(cx.issuer, family, &rec.scope, offline);
    st.counters.code_exchanges += 1;
    let mut body = Map::new();
    body.insert("access_token".into(), m.access_token.into());
    body.insert("expires_in".into(), m.expires_in.into());
    body.insert("token_type".into(), "Bearer".into());
    if let Some(rt) = m.refresh_token {
        body.insert("refresh_token".into(), rt.into());
    }
    body.insert("scope".into(), rec.scope.into());
    body.insert("id_token".into(), m.id_token.into());
    Ok(Value::Object(body))
}
