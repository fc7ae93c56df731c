//! What the command prints: human text by default, the bare value with
//! `--quiet`, one JSON object with `--json`; errors on stderr (as JSON on
//! stdout with `--json`).

use crate::failure::Failure;
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The output mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Text for people.
    Human,
    /// The bare value a script needs.
    Quiet,
    /// One JSON object.
    Json,
}

/// Writes one command's result in the chosen format.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// The chosen format.
    pub format: Format,
}

impl Output {
    /// Prints the result: `human` text, the `quiet` value (nothing if
    /// `None`), or `json`.
    pub fn result<T: Serialize>(
        &self,
        human: impl FnOnce() -> String,
        quiet: Option<&str>,
        json: &T,
    ) -> Result<(), Failure> {
        let text = match self.format {
            Format::Human => human(),
            Format::Quiet => match quiet {
                Some(value) => format!("{value}\n"),
                None => return Ok(()),
            },
            Format::Json => json_line(json),
        };
        write_stdout(&text)
    }

    /// A note for people on stderr (not with `--quiet` or `--json`).
    pub fn note(&self, text: &str) {
        if self.format == Format::Human {
            write_stderr(&format!("{text}\n"));
        }
    }

    /// Reports a failure: a message on stderr, or with `--json` an
    /// `{"error":{…}}` object on stdout.
    pub fn failure(&self, failure: &Failure) {
        if self.format == Format::Json {
            let _ = write_stdout(&json_line(&ErrorJson::of(failure)));
            return;
        }
        let mut text = format!("freshtoken: {failure}\n");
        if let Some(hint) = hint(failure) {
            text.push_str(&format!("hint: {hint}\n"));
        }
        write_stderr(&text);
    }
}

/// The value as one line of JSON.
fn json_line<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

/// Writes to stdout; a closed pipe is a failure (exit 1), never a panic.
pub fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Other(format!("cannot write the output ({})", e.kind())))
}

/// Writes to stderr, ignoring a closed pipe or a full disk there: the
/// exit status (the outcome scripts test) must not turn into a panic's 101
/// because nobody reads the message (`eprintln!` panics on those errors).
pub fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// What to do next, for the failures where that is clear.
fn hint(failure: &Failure) -> Option<&'static str> {
    let Failure::Core(e) = failure else {
        return None;
    };
    match e.code() {
        freshtoken::ErrorCode::ReauthorizationRequired => {
            Some("the user must authorize again: freshtoken link … --store DIR --key USER")
        }
        freshtoken::ErrorCode::InvalidClient => {
            Some("check the client id and secret (credentials file or FRESHTOKEN_CLIENT_SECRET)")
        }
        // The core's words for a record it cannot read (`Record::decode`).
        freshtoken::ErrorCode::Storage if e.to_string().contains("the stored record ") => Some(
            "the session's file is damaged or not a freshtoken record (`freshtoken inspect \
             --store DIR --key USER` names it): repair it or move it aside, then link the \
             user again",
        ),
        freshtoken::ErrorCode::Storage => {
            Some("check that this user can read and write the store directory, and disk space")
        }
        _ => None,
    }
}

/// `{"error":{…}}`: the failure's code, exit status and details.
#[derive(Serialize)]
struct ErrorJson {
    error: ErrorBody,
}

#[derive(Serialize)]
struct ErrorBody {
    code: &'static str,
    exit_code: u8,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oauth_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    server_may_hold_token: bool,
}

impl ErrorJson {
    fn of(failure: &Failure) -> Self {
        let mut body = ErrorBody {
            code: failure.code(),
            exit_code: failure.exit_code(),
            message: failure.to_string(),
            reason: None,
            status: None,
            oauth_error: None,
            description: None,
            server_may_hold_token: false,
        };
        match failure {
            Failure::Core(e) => {
                body.reason = e.reason().map(|r| r.as_str());
                body.status = e.status();
                body.oauth_error = e.oauth_error().map(str::to_owned);
                body.description = e.description().map(str::to_owned);
                body.server_may_hold_token = e.server_may_hold_token();
            }
            Failure::Authorization { error, description } => {
                body.oauth_error = Some(error.clone());
                body.description = description.clone();
            }
            Failure::Interrupted { left, .. } => body.server_may_hold_token = left.is_some(),
            Failure::StateMismatch | Failure::Usage(_) | Failure::Other(_) => {}
        }
        ErrorJson { error: body }
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The first instant HTTP dates cannot show (year 10000, Unix seconds):
/// `httpdate` panics from there on.
const HTTP_DATE_END_SECS: u64 = 253_402_300_800;

/// A Unix-ms instant for people: the HTTP date and how far from now. A
/// record's times come from outside (any file in the store directory), so
/// an instant past year 9999 is shown as "far future", never a panic.
pub fn when(ms: u64) -> String {
    let date = UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .filter(|_| ms / 1000 < HTTP_DATE_END_SECS)
        .map_or_else(|| "far future".to_owned(), httpdate::fmt_http_date);
    let now = now_ms();
    if ms >= now {
        format!("{date} (in {})", span((ms - now) / 1000))
    } else {
        format!("{date} ({} ago)", span((now - ms) / 1000))
    }
}

/// Seconds as the two largest units: `14m 3s`, `364d 23h`.
fn span(secs: u64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(first) = units.iter().position(|(size, _)| secs >= *size) else {
        return "0s".into();
    };
    let (size, name) = units[first];
    let mut text = format!("{}{name}", secs / size);
    if let Some((next, next_name)) = units.get(first + 1) {
        let rest = secs % size / next;
        if rest > 0 {
            text.push_str(&format!(" {rest}{next_name}"));
        }
    }
    text
}

/// Seconds from now until `ms` (0 once past).
pub fn seconds_until(ms: u64) -> u64 {
    ms.saturating_sub(now_ms()) / 1000
}

/// A token as `inspect` shows it: a three-character prefix (for tokens of
/// 16 characters or more) and the length, as the core's `Debug` does.
pub fn redacted(token: &str) -> String {
    let len = token.chars().count();
    if len >= 16 {
        let prefix: String = token.chars().take(3).collect();
        format!("{prefix}… ({len} chars)")
    } else {
        format!("<redacted> ({len} chars)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_show_two_units() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(843), "14m 3s");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(365 * 86_400 - 3600), "364d 23h");
    }

    #[test]
    fn instants_past_year_9999_are_far_future() {
        let last = (HTTP_DATE_END_SECS - 1) * 1000;
        assert!(when(last).starts_with("Fri, 31 Dec 9999 23:59:59 GMT"));
        assert!(when(last + 1000).starts_with("far future (in "));
        assert!(when(u64::MAX).starts_with("far future (in "));
    }

    #[test]
    fn redaction_keeps_at_most_a_prefix_and_the_length() {
        assert_eq!(redacted("abcdefghijklmnopqrstuvwxyz"), "abc… (26 chars)");
        assert_eq!(redacted("short-secret"), "<redacted> (12 chars)");
    }

    #[test]
    fn json_errors_carry_code_exit_status_and_reason() {
        let failure = Failure::Core(freshtoken::Error::reauth(freshtoken::ReauthReason::Revoked));
        let v: serde_json::Value =
            serde_json::from_str(&json_line(&ErrorJson::of(&failure))).unwrap();
        assert_eq!(v["error"]["code"], "reauthorization_required");
        assert_eq!(v["error"]["exit_code"], 4);
        assert_eq!(v["error"]["reason"], "revoked");
        assert!(v["error"].get("server_may_hold_token").is_none());
    }
}
