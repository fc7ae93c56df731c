//! The exported error enum: the core's codes, one variant each.

use crate::{Error, ErrorCode};

use super::types::ReauthorizationReason;

/// Every failure, one variant per stable code (same codes as JavaScript's
/// `FreshTokenError.code`). `detail` is the human-readable message; it never
/// contains a token or a secret.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi::export(Display)]
pub enum FreshTokenError {
    /// The user must authorize again (re-link); `reason` says why.
    #[error("{detail}")]
    ReauthorizationRequired {
        /// Why the session cannot continue.
        reason: ReauthorizationReason,
        /// The server's `error_description`, if any.
        description: Option<String>,
        /// The message (never contains a token or secret).
        detail: String,
    },
    /// The server rejected the client credentials.
    #[error("{detail}")]
    InvalidClient {
        /// HTTP status of the answer.
        status: i32,
        /// The server's `error_description`, if any.
        description: Option<String>,
        /// The message (never contains a token or secret).
        detail: String,
    },
    /// Another RFC 6749 error; `error` is its code.
    #[error("{detail}")]
    OAuth {
        /// HTTP status of the answer.
        status: i32,
        /// The RFC 6749 `error` code.
        error: String,
        /// The server's `error_description`, if any.
        description: Option<String>,
        /// The message (never contains a token or secret).
        detail: String,
    },
    /// 5xx or 429 after every retry.
    #[error("{detail}")]
    Transient {
        /// HTTP status of the answer.
        status: i32,
        /// The server's last `Retry-After`, in milliseconds.
        retry_after_ms: Option<i64>,
        /// The message (never contains a token or secret).
        detail: String,
    },
    /// A transport failure; `maybe_sent` is false when the request surely never left.
    #[error("{detail}")]
    Network {
        /// False when the request surely never reached the server.
        maybe_sent: bool,
        /// The message (never contains a token or secret).
        detail: String,
    },
    /// A request to the authorization server timed out.
    #[error("{detail}")]
    Timeout {
        /// The message (never contains a token or secret).
        detail: String,
    },
    /// The authorization server's answer could not be understood.
    #[error("{detail}")]
    InvalidResponse {
        /// HTTP status of the answer, when there was one.
        status: Option<i32>,
        /// The message (never contains a token or secret).
        detail: String,
    },
    /// The host's store failed; anything renewed is kept and saved on the next call.
    #[error("{detail}")]
    Storage {
        /// The message (never contains a token or secret).
        detail: String,
    },
    /// A compare-and-swap save lost to a newer version.
    #[error("{detail}")]
    Conflict {
        /// The message (never contains a token or secret).
        detail: String,
    },
    /// Invalid configuration or argument; `field` names it.
    #[error("{detail}")]
    Config {
        /// The offending option or argument.
        field: String,
        /// The message (never contains a token or secret).
        detail: String,
    },
}

/// A core field name as the exported options spell it: durations in
/// seconds are `…_seconds` there (`ClientOptions.leeway_seconds`, Kotlin's
/// `leewaySeconds`), `…_secs` in the core's builder.
fn ffi_field(field: String) -> String {
    match field.strip_suffix("_secs") {
        Some(stem) => format!("{stem}_seconds"),
        None => field,
    }
}

impl From<Error> for FreshTokenError {
    fn from(error: Error) -> Self {
        let error = match error {
            Error::Config { field, message } => Error::Config {
                field: ffi_field(field),
                message,
            },
            other => other,
        };
        let detail = error.to_string();
        let description = error.description().map(str::to_owned);
        let status = error.status();
        match error {
            Error::ReauthorizationRequired { reason, .. } => {
                FreshTokenError::ReauthorizationRequired {
                    reason: reason.into(),
                    description,
                    detail,
                }
            }
            Error::InvalidClient { status, .. } => FreshTokenError::InvalidClient {
                status: status.into(),
                description,
                detail,
            },
            Error::OAuth { status, error, .. } => FreshTokenError::OAuth {
                status: status.into(),
                error,
                description,
                detail,
            },
            Error::Transient {
                status,
                retry_after_ms,
                ..
            } => FreshTokenError::Transient {
                status: status.into(),
                retry_after_ms: retry_after_ms.map(super::types::signed),
                detail,
            },
            Error::Network { maybe_sent, .. } => FreshTokenError::Network { maybe_sent, detail },
            Error::Timeout => FreshTokenError::Timeout { detail },
            Error::InvalidResponse { .. } => FreshTokenError::InvalidResponse {
                status: status.map(Into::into),
                detail,
            },
            Error::Storage { .. } => FreshTokenError::Storage { detail },
            Error::Conflict { .. } => FreshTokenError::Conflict { detail },
            Error::Config { field, .. } => FreshTokenError::Config { field, detail },
            // The cause's variant and fields, with the whole message.
            Error::RevocationIncomplete { cause } => {
                let mut exported = FreshTokenError::from(*cause);
                *exported.detail_mut() = detail;
                exported
            }
        }
    }
}

impl FreshTokenError {
    fn detail_mut(&mut self) -> &mut String {
        match self {
            FreshTokenError::ReauthorizationRequired { detail, .. }
            | FreshTokenError::InvalidClient { detail, .. }
            | FreshTokenError::OAuth { detail, .. }
            | FreshTokenError::Transient { detail, .. }
            | FreshTokenError::Network { detail, .. }
            | FreshTokenError::Timeout { detail }
            | FreshTokenError::InvalidResponse { detail, .. }
            | FreshTokenError::Storage { detail }
            | FreshTokenError::Conflict { detail }
            | FreshTokenError::Config { detail, .. } => detail,
        }
    }
}

impl FreshTokenError {
    /// The stable code string of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            FreshTokenError::ReauthorizationRequired { .. } => ErrorCode::ReauthorizationRequired,
            FreshTokenError::InvalidClient { .. } => ErrorCode::InvalidClient,
            FreshTokenError::OAuth { .. } => ErrorCode::OAuth,
            FreshTokenError::Transient { .. } => ErrorCode::Transient,
            FreshTokenError::Network { .. } => ErrorCode::Network,
            FreshTokenError::Timeout { .. } => ErrorCode::Timeout,
            FreshTokenError::InvalidResponse { .. } => ErrorCode::InvalidResponse,
            FreshTokenError::Storage { .. } => ErrorCode::Storage,
            FreshTokenError::Conflict { .. } => ErrorCode::Conflict,
            FreshTokenError::Config { .. } => ErrorCode::Config,
        }
    }
}

/// What a host callback (store, HTTP, clock) throws.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum HostError {
    /// The operation failed (any store failure).
    #[error("{detail}")]
    Failed {
        /// The message (never contains a token or secret).
        detail: String,
    },
    /// HTTP only: the request certainly never reached the server (DNS,
    /// connection refused); freshtoken may retry it.
    #[error("{detail}")]
    NotSent {
        /// The message (never contains a token or secret).
        detail: String,
    },
    /// HTTP only: no answer in time; the server may have processed it.
    #[error("timed out")]
    Timeout,
}

impl From<uniffi::UnexpectedUniFFICallbackError> for HostError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        HostError::Failed {
            detail: format!("host callback failed: {}", e.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReauthReason;

    #[test]
    fn every_core_error_keeps_its_code_and_message() {
        let errors = [
            Error::reauth(ReauthReason::LostRotation),
            Error::InvalidClient {
                status: 401,
                description: Some("bad".into()),
            },
            Error::OAuth {
                status: 400,
                error: "invalid_scope".into(),
                description: None,
                uri: None,
            },
            Error::Transient {
                status: 503,
                attempts: 4,
                retry_after_ms: Some(2000),
            },
            Error::Network {
                message: "refused".into(),
                maybe_sent: false,
            },
            Error::Timeout,
            Error::invalid_response(Some(200), "token_type is not Bearer"),
            Error::storage("disk full"),
            Error::Conflict {
                message: "newer version".into(),
            },
            Error::config("timeout_ms", "must not be negative"),
        ];
        for error in errors {
            let (code, message) = (error.code(), error.to_string());
            let exported = FreshTokenError::from(error);
            assert_eq!(exported.code(), code);
            assert_eq!(exported.to_string(), message);
        }
    }

    #[test]
    fn reasons_and_fields_cross_unchanged() {
        match FreshTokenError::from(Error::reauth(ReauthReason::RefreshExpired)) {
            FreshTokenError::ReauthorizationRequired { reason, .. } => {
                assert_eq!(reason, ReauthorizationReason::RefreshExpired)
            }
            other => panic!("{other:?}"),
        }
        match FreshTokenError::from(Error::config("timeout_ms", "must be greater than zero")) {
            FreshTokenError::Config { field, .. } => assert_eq!(field, "timeout_ms"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_fields_are_named_as_the_exported_options() {
        let exported = FreshTokenError::from(Error::config("leeway_secs", "must not be negative"));
        match &exported {
            FreshTokenError::Config { field, detail } => {
                assert_eq!(field, "leeway_seconds");
                assert!(detail.contains("`leeway_seconds`"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let exported = FreshTokenError::from(Error::config("timeout_ms", "is too long"));
        assert!(matches!(exported, FreshTokenError::Config { field, .. } if field == "timeout_ms"));
    }
}
