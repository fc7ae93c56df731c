//! Redeeming an authorization code (RFC 6749 §4.1.3 with PKCE) and saving
//! the first record it brings, as one task that outlives its caller.

use crate::attached::Attached;
use crate::error::Error;
use crate::exchange::{self, Context};
use crate::grant::Grant;
use crate::secret::Secret;
use crate::store::Record;
use crate::tokens::AccessToken;
use std::sync::Arc;

/// The code and the PKCE parameters it is redeemed with.
pub(crate) struct Code {
    pub(crate) code: Secret,
    pub(crate) code_verifier: Secret,
    pub(crate) redirect_uri: String,
}

/// Sends the code and saves the record it brings into `session`: the first
/// tokens, or the refresh token of an unusable answer that still carries
/// one (kept, or the user has to log in again).
pub(crate) async fn redeem(ctx: Arc<Context>, session: Attached, code: Code) -> Result<(), Error> {
    let config = &ctx.config;
    let grant = Grant::AuthorizationCode {
        code: code.code.expose(),
        code_verifier: code.code_verifier.expose(),
        redirect_uri: &code.redirect_uri,
    };
    let issued = match exchange::call(&ctx, &grant).await {
        Ok(issued) => issued,
        Err(mut failure) => {
            if let Some(refresh_token) = failure.salvaged.take() {
                let now = ctx.clock.now_ms();
                let record = Record {
                    refresh_token: Some(refresh_token),
                    refresh_expires_at_ms: Some(
                        now.saturating_add(config.refresh_token_lifetime_ms),
                    ),
                    updated_at_ms: now,
                    ..Record::default()
                };
                if let Err(e) = session.replace(record).await {
                    log::warn!("freshtoken: session {}: {e}", session.key);
                }
            }
            return Err(failure.into_error());
        }
    };
    let response = issued.response;
    let record = Record {
        access_token: Some(AccessToken::new(
            response.access_token,
            issued.sent_at_ms,
            response.expires_in,
            config.user_token_lifetime_secs,
        )),
        scope: response.scope,
        id_token: response.id_token,
        refresh_expires_at_ms: response.refresh_token.as_ref().map(|_| {
            issued
                .sent_at_ms
                .saturating_add(config.refresh_token_lifetime_ms)
        }),
        refresh_token: response.refresh_token,
        reauth: None,
        in_doubt: false,
        updated_at_ms: ctx.clock.now_ms(),
    };
    session.replace(record).await
}
