//! Start-up options: port, token lifetimes, reuse detection and clients.

use std::fmt;

/// The confidential client configured by default.
pub const DEFAULT_CLIENT_ID: &str = "test-client";
/// The secret of [`DEFAULT_CLIENT_ID`].
pub const DEFAULT_CLIENT_SECRET: &str = "test-secret";
/// The public client (no secret) configured by default.
pub const DEFAULT_PUBLIC_CLIENT_ID: &str = "public-client";

/// How to start an [`Emulator`](crate::Emulator). `Default` gives Stitch's
/// lifetimes, port 0 (any free port) and the two default clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// `expires_in` of user access tokens (default 900).
    pub access_ttl_secs: u64,
    /// `expires_in` of `client_credentials` tokens (default 3600).
    pub client_ttl_secs: u64,
    /// Sliding refresh-token lifetime (default 31 536 000, 365 days).
    pub refresh_ttl_secs: u64,
    /// Revoke a token family when a consumed refresh token is presented
    /// again (default true).
    pub reuse_detection: bool,
    /// The registered clients.
    pub clients: Vec<ClientSpec>,
    /// Log one line per request (method, path, status; never tokens) to
    /// stderr (default false).
    pub verbose: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 0,
            access_ttl_secs: 900,
            client_ttl_secs: 3600,
            refresh_ttl_secs: 31_536_000,
            reuse_detection: true,
            clients: vec![
                ClientSpec::confidential(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
                ClientSpec::public(DEFAULT_PUBLIC_CLIENT_ID),
            ],
            verbose: false,
        }
    }
}

/// A registered client: confidential when it has a secret, public otherwise.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSpec {
    /// The `client_id`.
    pub id: String,
    /// The `client_secret`; `None` makes a public client.
    pub secret: Option<String>,
}

impl ClientSpec {
    /// A confidential client authenticating with `secret`.
    pub fn confidential(id: impl Into<String>, secret: impl Into<String>) -> Self {
        ClientSpec {
            id: id.into(),
            secret: Some(secret.into()),
        }
    }

    /// A public client (sends only its `client_id`).
    pub fn public(id: impl Into<String>) -> Self {
        ClientSpec {
            id: id.into(),
            secret: None,
        }
    }
}

impl fmt::Debug for ClientSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSpec")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
