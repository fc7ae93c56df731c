//! The one error type and its stable codes, shared by every language binding.

use crate::secret::Secret;
use std::fmt;

/// Why the user must authorize again (sign in, or re-link their bank).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReauthReason {
    /// The server rejected the refresh token (`invalid_grant`): revoked,
    /// expired on the server, or already used.
    InvalidGrant,
    /// The refresh token passed its sliding lifetime; no request was sent.
    RefreshExpired,
    /// A refresh response was lost after the server may have rotated the
    /// token, and the server now rejects the token we still hold.
    LostRotation,
    /// There is no refresh token to use (none stored, or none issued).
    NoRefreshToken,
    /// The session was revoked (`revoke()`): the user unlinked or left.
    Revoked,
}

impl ReauthReason {
    /// The stable string form (`invalid_grant`, `refresh_expired`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ReauthReason::InvalidGrant => "invalid_grant",
            ReauthReason::RefreshExpired => "refresh_expired",
            ReauthReason::LostRotation => "lost_rotation",
            ReauthReason::NoRefreshToken => "no_refresh_token",
            ReauthReason::Revoked => "revoked",
        }
    }
}

impl ReauthReason {
    /// The reason named by its stable string, if it is one.
    pub fn parse(value: &str) -> Option<Self> {
        [
            ReauthReason::InvalidGrant,
            ReauthReason::RefreshExpired,
            ReauthReason::LostRotation,
            ReauthReason::NoRefreshToken,
            ReauthReason::Revoked,
        ]
        .into_iter()
        .find(|r| r.as_str() == value)
    }
}

impl fmt::Display for ReauthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stable error codes, identical in every language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The user must authorize again; see [`ReauthReason`].
    ReauthorizationRequired,
    /// The server rejected the client's credentials.
    InvalidClient,
    /// Any other RFC 6749 §5.2 error from the token endpoint.
    OAuth,
    /// 5xx or 429 answers that outlasted the retries.
    Transient,
    /// The request failed in transport.
    Network,
    /// The request timed out.
    Timeout,
    /// The server's answer could not be understood.
    InvalidResponse,
    /// The host's store failed.
    Storage,
    /// A compare-and-swap save found a newer version.
    Conflict,
    /// The configuration or an argument is invalid.
    Config,
}

impl ErrorCode {
    /// The stable string form used by every binding (`reauthorization_required`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ReauthorizationRequired => "reauthorization_required",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::OAuth => "oauth",
            ErrorCode::Transient => "transient",
            ErrorCode::Network => "network",
            ErrorCode::Timeout => "timeout",
            ErrorCode::InvalidResponse => "invalid_response",
            ErrorCode::Storage => "storage",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Config => "config",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong. Messages never contain tokens or secrets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user must authorize again; `reason` says why.
    #[error("reauthorization required ({reason}): the user must authorize again")]
    ReauthorizationRequired {
        /// Why the session cannot continue.
        reason: ReauthReason,
        /// The server's `error_description`, if it sent one.
        description: Option<String>,
    },
    /// The authorization server (its token or revocation endpoint) rejected
    /// the client credentials.
    #[error(
        "the authorization server rejected the client credentials (HTTP {status}){}",
        suffix(description)
    )]
    InvalidClient {
        /// HTTP status of the answer.
        status: u16,
        /// The server's `error_description`, if any.
        description: Option<String>,
    },
    /// Another RFC 6749 §5.2 error.
    #[error(
        "the authorization server answered `{error}` (HTTP {status}){}",
        suffix(description)
    )]
    OAuth {
        /// HTTP status of the answer.
        status: u16,
        /// The RFC 6749 `error` code.
        error: String,
        /// `error_description`, if any.
        description: Option<String>,
        /// `error_uri`, if any.
        uri: Option<String>,
    },
    /// 5xx or 429 answers after every allowed retry.
    #[error("the authorization server is unavailable (HTTP {status}) after {attempts} attempt(s)")]
    Transient {
        /// Status of the last answer.
        status: u16,
        /// How many requests were sent.
        attempts: u32,
        /// The server's last `Retry-After`, in milliseconds, if any.
        retry_after_ms: Option<u64>,
    },
    /// A transport failure.
    #[error("network error: {message}")]
    Network {
        /// What failed (no secrets).
        message: String,
        /// False when the request certainly never reached the server.
        maybe_sent: bool,
    },
    /// The request timed out.
    #[error("the request to the authorization server timed out")]
    Timeout,
    /// An answer that could not be understood.
    #[error("invalid response from the authorization server{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    InvalidResponse {
        /// HTTP status, when there was an answer.
        status: Option<u16>,
        /// What was wrong with it (never its content).
        message: String,
        /// The new refresh token a 2xx answer carried although the rest of
        /// it could not be used: the one sent is consumed, and this one
        /// must be stored in its place. Set only by
        /// [`crate::TokenClient::refresh_once`], whose caller stores tokens
        /// itself (a session keeps it on its own). Never in the message.
        rotated_refresh_token: Option<Secret>,
    },
    /// The host's store failed; anything renewed is kept in memory and
    /// saved again on the next call.
    #[error("token storage failed: {message}")]
    Storage {
        /// The store's message.
        message: String,
    },
    /// A compare-and-swap save lost to a newer version.
    #[error("token storage conflict: {message}")]
    Conflict {
        /// What conflicted.
        message: String,
    },
    /// Invalid configuration or argument; `field` names it.
    #[error("invalid configuration `{field}`: {message}")]
    Config {
        /// The offending field or argument.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A revocation that failed for good: the session is marked revoked
    /// here, but the server may still hold the token. Its code, status and
    /// other fields are those of `cause`.
    #[error("the session is marked revoked, but the server may still hold its token: {cause}")]
    RevocationIncomplete {
        /// Why the revocation request failed.
        cause: Box<Error>,
    },
}

fn suffix(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::ReauthorizationRequired { .. } => ErrorCode::ReauthorizationRequired,
            Error::InvalidClient { .. } => ErrorCode::InvalidClient,
            Error::OAuth { .. } => ErrorCode::OAuth,
            Error::Transient { .. } => ErrorCode::Transient,
            Error::Network { .. } => ErrorCode::Network,
            Error::Timeout => ErrorCode::Timeout,
            Error::InvalidResponse { .. } => ErrorCode::InvalidResponse,
            Error::Storage { .. } => ErrorCode::Storage,
            Error::Conflict { .. } => ErrorCode::Conflict,
            Error::Config { .. } => ErrorCode::Config,
            Error::RevocationIncomplete { cause } => cause.code(),
        }
    }

    /// True when a revocation failed for good: the server may still hold
    /// the token (the session is marked revoked all the same).
    pub fn server_may_hold_token(&self) -> bool {
        matches!(self, Error::RevocationIncomplete { .. })
    }

    /// The reauthorization reason, for `reauthorization_required` errors.
    pub fn reason(&self) -> Option<ReauthReason> {
        match self {
            Error::ReauthorizationRequired { reason, .. } => Some(*reason),
            Error::RevocationIncomplete { cause } => cause.reason(),
            _ => None,
        }
    }

    /// The HTTP status of the answer behind this error, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::InvalidClient { status, .. }
            | Error::OAuth { status, .. }
            | Error::Transient { status, .. } => Some(*status),
            Error::InvalidResponse { status, .. } => *status,
            Error::RevocationIncomplete { cause } => cause.status(),
            _ => None,
        }
    }

    /// The RFC 6749 `error` code of the answer behind this error, if any.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            Error::OAuth { error, .. } => Some(error),
            Error::InvalidClient { .. } => Some("invalid_client"),
            Error::ReauthorizationRequired {
                reason: ReauthReason::InvalidGrant | ReauthReason::LostRotation,
                ..
            } => Some("invalid_grant"),
            Error::RevocationIncomplete { cause } => cause.oauth_error(),
            _ => None,
        }
    }

    /// The rotated refresh token an unusable 2xx answer carried (see
    /// [`Error::InvalidResponse`]).
    pub fn rotated_refresh_token(&self) -> Option<&Secret> {
        match self {
            Error::InvalidResponse {
                rotated_refresh_token,
                ..
            } => rotated_refresh_token.as_ref(),
            _ => None,
        }
    }

    /// The server's `error_description`, if any.
    pub fn description(&self) -> Option<&str> {
        match self {
            Error::ReauthorizationRequired { description, .. }
            | Error::InvalidClient { description, .. }
            | Error::OAuth { description, .. } => description.as_deref(),
            Error::RevocationIncomplete { cause } => cause.description(),
            _ => None,
        }
    }

    /// A `reauthorization_required` error without a server description.
    pub fn reauth(reason: ReauthReason) -> Self {
        Error::ReauthorizationRequired {
            reason,
            description: None,
        }
    }

    /// A `config` error naming `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A `storage` error.
    pub fn storage(message: impl Into<String>) -> Self {
        Error::Storage {
            message: message.into(),
        }
    }

    pub(crate) fn invalid_response(status: Option<u16>, message: impl Into<String>) -> Self {
        Error::InvalidResponse {
            status,
            message: message.into(),
            rotated_refresh_token: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_strings() {
        let cases = [
            (
                Error::reauth(ReauthReason::LostRotation),
                "reauthorization_required",
            ),
            (Error::Timeout, "timeout"),
            (Error::storage("disk full"), "storage"),
            (Error::config("leeway", "negative"), "config"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code().as_str(), code);
        }
        assert_eq!(
            Error::reauth(ReauthReason::LostRotation)
                .reason()
                .map(ReauthReason::as_str),
            Some("lost_rotation")
        );
    }

    #[test]
    fn messages_name_the_field_and_status() {
        let e = Error::config("token_endpoint", "must be https");
        assert_eq!(
            e.to_string(),
            "invalid configuration `token_endpoint`: must be https"
        );
        let e = Error::OAuth {
            status: 400,
            error: "invalid_scope".into(),
            description: Some("unknown scope".into()),
            uri: None,
        };
        assert_eq!(
            e.to_string(),
            "the authorization server answered `invalid_scope` (HTTP 400): unknown scope"
        );
        assert_eq!(e.status(), Some(400));
    }
}
