//! `UserSession` for Kotlin, Swift and Python.

use super::error::FreshTokenError;
use super::host_exit::woken;
use super::types::{CachedToken, SeedOptions, SessionStatus, TokenInfo};

/// One user's tokens. Handles with the same key in one client share state.
#[derive(uniffi::Object)]
pub struct UserSession {
    pub(crate) inner: crate::UserSession,
}

#[uniffi::export]
impl UserSession {
    /// The session key.
    pub fn key(&self) -> String {
        self.inner.key().to_owned()
    }

    /// The access token if it is fresh in memory: no I/O, no waiting, no
    /// coroutine. Null means "call `access_token`". The language layers try
    /// this first, so the cached path costs one plain FFI call.
    pub fn cached_access_token(&self) -> Option<String> {
        self.inner.cached_access_token()
    }

    /// The fresh token with the instant until which it stays fresh, for the
    /// language layer's mirror: it serves the token without calling in
    /// again until then, and drops it when anything else is called on the key.
    /// Null while a refresh, revocation, seed or code exchange runs in the
    /// core (even one whose caller gave up): `cached_access_token` still
    /// answers then, for reading without mirroring.
    pub fn cached_token(&self) -> Option<CachedToken> {
        self.inner.cached_token().map(Into::into)
    }

    /// A fresh access token: from memory, or through one shared refresh.
    pub async fn access_token(&self) -> Result<String, FreshTokenError> {
        Ok(woken(self.inner.access_token()).await?)
    }

    /// The fresh token with its expiry, scope, ID token and refresh expiry.
    pub async fn tokens(&self) -> Result<TokenInfo, FreshTokenError> {
        Ok(woken(self.inner.tokens()).await?.into())
    }

    /// A forced refresh, shared with concurrent callers.
    pub async fn refresh(&self) -> Result<TokenInfo, FreshTokenError> {
        Ok(woken(self.inner.refresh()).await?.into())
    }

    /// The API rejected `token`: refresh, unless another caller already did.
    pub async fn token_rejected(&self, token: String) -> Result<TokenInfo, FreshTokenError> {
        Ok(woken(self.inner.token_rejected(&token)).await?.into())
    }

    /// Adopts an existing refresh token (and optionally its access token).
    pub async fn seed(&self, seed: SeedOptions) -> Result<(), FreshTokenError> {
        Ok(woken(self.inner.seed(seed.into())).await?)
    }

    /// Revokes the session at the server (RFC 7009) and marks it dead
    /// (reason `revoked`); a failure still leaves it dead, and says the
    /// server may still hold the token.
    pub async fn revoke(&self) -> Result<(), FreshTokenError> {
        Ok(woken(self.inner.revoke()).await?)
    }

    /// What is known without sending anything.
    pub async fn status(&self) -> Result<SessionStatus, FreshTokenError> {
        Ok(woken(self.inner.status()).await?.into())
    }
}
