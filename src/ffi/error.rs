//! The exported error enum: the core's codes, one variant each.

use crate::{Error, ErrorCode};

use super::types::ReauthorizationReason;

/// Every failure, one variant per stable code (same codes as JavaScript's
/// `FreshTokenError.code`). `detail` is the human-readable message; it never
/// contains a token or a secret. `server_may_hold_token` is JavaScript's
/// `serverMayHoldToken`: set on the cause's variant when a revocation failed.
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
        /// True when `revoke()` failed for good or cannot be confirmed: the
        /// session is marked revoked, but the server may still hold a token.
        server_may_hold_token: bool,
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
        /// True when `revoke()` failed for good or cannot be confirmed: the
        /// session is marked revoked, but the server may still hold a token.
        server_may_hold_token: bool,
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
        /// True when `revoke()` failed for good or cannot be confirmed: the
        /// session is marked revoked, but the server may still hold a token.
        server_may_hold_token: bool,
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
        /// True when `revoke()` failed for good or cannot be confirmed: the
        /// session is marked revoked, but the server may still hold a token.
        server_may_hold_token: bool,
    },
    /// A transport failure; `maybe_sent` is false when the request surely never left.
    #[error("{detail}")]
    Network {
        /// False when the request surely never reached the server.
        maybe_sent: bool,
        /// The message (never contains a token or secret).
        detail: String,
        /// True when `revoke()` failed for good or cannot be confirmed: the
        /// session is marked revoked, but the server may still hold a token.
        server_may_hold_token: bool,
    },
    /// A request to the authorization server timed out.
    #[error("{detail}")]
    Timeout {
        /// The message (never contains a token or secret).
        detail: String,
        /// True when `revoke()` failed for good or cannot be confirmed: the
        /// session is marked revoked, but the server may still hold a token.
        server_may_hold_token: bool,
    },
    /// The authorization server's answer could not be understood.
    #[error("{detail}")]
    InvalidResponse {
        /// HTTP status of the answer, when there was one.
        status: Option<i32>,
        /// The message (never contains a token or secret).
        detail: String,
        /// True when `revoke()` failed for good or cannot be confirmed: the
        /// session is marked revoked, but the server may still hold a token.
        server_may_hold_token: bool,
    },
    /// The host's store failed; anything renewed is kept and saved on the next call.
    #[error("{detail}")]
    Storage {
        /// The message (never contains a token or secret).
        detail: String,
        /// True when `revoke()` failed for good or cannot be confirmed: the
        /// session is marked revoked, but the server may still hold a token.
        server_may_hold_token: bool,
    },
    /// A compare-and-swap save lost to a newer version.
    #[error("{detail}")]
    Conflict {
        /// The message (never contains a token or secret).
        detail: String,
        /// True when `revoke()` failed for good or cannot be confirmed: the
        /// session is marked revoked, but the server may still hold a token.
        server_may_hold_token: bool,
    },
    /// Invalid configuration or argument; `field` names it.
    #[error("{detail}")]
    Config {
        /// The offending option or argument.
        field: String,
        /// The message (never contains a token or secret).
        detail: String,
        /// True when `revoke()` failed for good or cannot be confirmed: the
        /// session is marked revoked, but the server may still hold a token.
        server_may_hold_token: bool,
    },
}

/// A core field name as the exported options spell it: durations in
/// seconds are `…_seconds` there (`ClientOptions.leeway_seconds`, Kotlin's
/// `leewaySeconds`), `…_secs` in the core's builder; the key is
/// `private_key_pem`, further authorize parameters `extra_params`.
fn ffi_field(field: String) -> String {
    match field.as_str() {
        "private_key" => return "private_key_pem".to_owned(),
        "extra" => return "extra_params".to_owned(),
        _ => {}
    }
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
                    server_may_hold_token: false,
                }
            }
            Error::InvalidClient { status, .. } => FreshTokenError::InvalidClient {
                status: status.into(),
                description,
                detail,
                server_may_hold_token: false,
            },
            Error::OAuth { status, error, .. } => FreshTokenError::OAuth {
                status: status.into(),
                error,
                description,
                detail,
                server_may_hold_token: false,
            },
            Error::Transient {
                status,
                retry_after_ms,
                ..
            } => FreshTokenError::Transient {
                status: status.into(),
                retry_after_ms: retry_after_ms.map(super::types::signed),
                detail,
                server_may_hold_token: false,
            },
            Error::Network { maybe_sent, .. } => FreshTokenError::Network {
                maybe_sent,
                detail,
                server_may_hold_token: false,
            },
            Error::Timeout => FreshTokenError::Timeout {
                detail,
                server_may_hold_token: false,
            },
            Error::InvalidResponse { .. } => FreshTokenError::InvalidResponse {
                status: status.map(Into::into),
                detail,
                server_may_hold_token: false,
            },
            Error::Storage { .. } => FreshTokenError::Storage {
                detail,
                server_may_hold_token: false,
            },
            Error::Conflict { .. } => FreshTokenError::Conflict {
                detail,
                server_may_hold_token: false,
            },
            Error::Config { field, .. } => FreshTokenError::Config {
                field,
                detail,
                server_may_hold_token: false,
            },
            // The cause's variant and fields, with the whole message and the flag.
            Error::RevocationIncomplete { cause } => {
                let mut exported = FreshTokenError::from(*cause);
                let (message, flag) = exported.detail_and_flag_mut();
                *message = detail;
                *flag = true;
                exported
            }
        }
    }
}

impl FreshTokenError {
    /// The message and the server-may-hold-the-token flag, of any variant.
    fn detail_and_flag_mut(&mut self) -> (&mut String, &mut bool) {
        match self {
            FreshTokenError::ReauthorizationRequired {
                detail,
                server_may_hold_token,
                ..
            }
            | FreshTokenError::InvalidClient {
                detail,
                server_may_hold_token,
                ..
            }
            | FreshTokenError::OAuth {
                detail,
                server_may_hold_token,
                ..
            }
            | FreshTokenError::Transient {
                detail,
                server_may_hold_token,
                ..
            }
            | FreshTokenError::Network {
                detail,
                server_may_hold_token,
                ..
            }
            | FreshTokenError::Timeout {
                detail,
                server_may_hold_token,
            }
            | FreshTokenError::InvalidResponse {
                detail,
                server_may_hold_token,
                ..
            }
            | FreshTokenError::Storage {
                detail,
                server_may_hold_token,
            }
            | FreshTokenError::Conflict {
                detail,
                server_may_hold_token,
            }
            | FreshTokenError::Config {
                detail,
                server_may_hold_token,
                ..
            } => (detail, server_may_hold_token),
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
    fn a_revocation_that_failed_sets_the_flag_on_its_causes_variant_only() {
        let flag = |e: &FreshTokenError| match e {
            FreshTokenError::Transient {
                server_may_hold_token,
                ..
            }
            | FreshTokenError::Storage {
                server_may_hold_token,
                ..
            } => *server_may_hold_token,
            other => panic!("unexpected {other:?}"),
        };
        let transient = || Error::Transient {
            status: 503,
            attempts: 1,
            retry_after_ms: None,
        };
        let incomplete = FreshTokenError::from(Error::RevocationIncomplete {
            cause: Box::new(transient()),
        });
        assert!(matches!(incomplete, FreshTokenError::Transient { .. }));
        assert!(flag(&incomplete), "{incomplete}");
        assert!(incomplete.to_string().contains("server may still hold"));
        assert!(!flag(&FreshTokenError::from(transient())));
        assert!(!flag(&FreshTokenError::from(Error::storage("x"))));
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
            FreshTokenError::Config { field, detail, .. } => {
                assert_eq!(field, "leeway_seconds");
                assert!(detail.contains("`leeway_seconds`"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let exported = FreshTokenError::from(Error::config("timeout_ms", "is too long"));
        assert!(matches!(exported, FreshTokenError::Config { field, .. } if field == "timeout_ms"));
        let exported = FreshTokenError::from(Error::config("private_key", "is not PEM"));
        assert!(
            matches!(&exported, FreshTokenError::Config { field, .. } if field == "private_key_pem"),
            "{exported:?}"
        );
    }
}
