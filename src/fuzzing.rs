//! Entry points for the fuzz targets in `fuzz/` and for their corpus replay
//! test (`tests/fuzz_corpus.rs`). Compiled only with the `fuzzing` feature;
//! not part of the supported API.
//!
//! Each `check_*` function takes the raw fuzzer input, runs it through the
//! same parser the library uses and panics when an invariant breaks: not
//! only "does not panic", but also round trips, documented bounds and "an
//! error or `Debug` text never repeats a credential-like string of the
//! input". The fuzz targets and the replay test call exactly these.
#![doc(hidden)]

use crate::http::HttpResponse;
use crate::json_text::{MemberName, Scalar};
use crate::response::{
    classify, parse_error_body, parse_token_response, salvage_refresh_token, Answer,
    OAuthErrorBody, TokenResponse, MAX_EXPIRES_IN_SECS,
};
use crate::retry::{parse_retry_after, RetryPolicy};
use crate::secret::Secret;
use crate::store::Record;
use crate::tokens::AccessToken;
use crate::{ErrorCode, MAX_RESPONSE_BYTES};
use serde_json::Value;
use std::collections::BTreeMap;

/// The wall clock the checks pretend it is (2023-11-14T22:13:20Z).
const NOW_MS: u64 = 1_700_000_000_000;
/// `Fri, 31 Dec 9999 23:59:59 GMT`: the latest HTTP-date.
const LAST_HTTP_DATE_SECS: u64 = 253_402_300_799;
/// Longest `error_description` / `error_uri` kept, in characters.
const MAX_DESCRIPTION_CHARS: usize = 500;

/// Seconds since the Unix epoch of an HTTP-date, through the reader
/// `Retry-After` uses (the `httpdate` crate natively).
pub fn parse_http_date(value: &str) -> Option<u64> {
    crate::retry::http_date_ms(value).map(|ms| ms / 1000)
}

// ---------------------------------------------------------------- targets

/// Fuzz target `token_response`: the input is a 2xx token-endpoint body.
pub fn check_token_response(data: &[u8]) {
    let json = body_members(data, BODY_MEMBERS);
    let words = credential_words(data);
    let parsed = parse_token_response(data);
    match &parsed {
        Ok(token) => check_accepted_token(json.as_ref(), token),
        Err(message) => assert_no_leak("parse_token_response error", message, &words),
    }
    let salvaged = salvage_refresh_token(data);
    if let Some(rt) = &salvaged {
        assert!(
            is_refresh_token(rt.expose()),
            "salvaged an unusable refresh token"
        );
        // Read alone, as the salvage reads it: another member's string
        // that a Rust string cannot hold (a lone surrogate's escape, which
        // JSON.parse reads) fails the whole-body reading, not this one.
        let alone = body_members(data, &["refresh_token"]);
        assert_eq!(
            string_member(alone.as_ref(), "refresh_token"),
            Some(rt.expose()),
            "the salvaged refresh token is not the body's"
        );
    }
    let oversize = data.len() > MAX_RESPONSE_BYTES;
    for status in [200, 201, 299] {
        match classify(&response(status, &[], data), NOW_MS) {
            Answer::Success(token) if !oversize => {
                assert_eq!(parsed.as_ref().ok(), Some(&token), "classify disagrees");
            }
            Answer::Unusable {
                message,
                refresh_token,
                ..
            } if !oversize => {
                assert!(parsed.is_err(), "a valid body was classified unusable");
                assert_eq!(Some(refresh_token), salvaged, "salvaged another token");
                assert_no_leak("Unusable message", &message, &words);
            }
            Answer::Invalid { message, .. } => {
                assert!(
                    oversize || parsed.is_err(),
                    "a valid body was classified invalid"
                );
                assert!(
                    oversize || salvaged.is_none(),
                    "a rotated refresh token was dropped"
                );
                assert_no_leak("Invalid message", &message, &words);
            }
            // An RFC 6749 error sent with a 2xx and no access token.
            Answer::OAuthError { body, .. } if !oversize => {
                assert!(parsed.is_err(), "a valid body was classified an error");
                assert!(salvaged.is_none(), "a rotated refresh token was dropped");
                let access_token = json.as_ref().and_then(|j| j.get("access_token"));
                assert!(
                    !matches!(access_token, Some(Some(_))),
                    "an answer with an access token was classified an error"
                );
                assert!(crate::response::is_oauth_error_code(&body.error));
            }
            other => panic!("a {status} answer was classified {other:?}"),
        }
    }
}

/// Fuzz target `error_response`: an answer with any status. The input is
/// `STATUS\nBODY` when its first line is a decimal `u16`, else a 400 with
/// the whole input as the body.
pub fn check_error_response(data: &[u8]) {
    let (status, body) = split_status(data);
    let json = body_members(body, BODY_MEMBERS);
    let words = credential_words(body);
    let error_body = parse_error_body(body);
    if let Some(e) = &error_body {
        check_error_body(json.as_ref(), e);
    }
    let headers = [("Retry-After", "120")];
    let answer = classify(&response(status, &headers, body), NOW_MS);
    // Over the size cap a body is never read; a 429 or 5xx may still be
    // retried on its status alone.
    let oversize = body.len() > MAX_RESPONSE_BYTES;
    let retryable = matches!(status, 429 | 500..=599);
    match (&answer, status) {
        (Answer::Success(_) | Answer::Unusable { .. }, 200..=299) if !oversize => {}
        (Answer::Invalid { message, .. }, _) => {
            if !oversize {
                assert!(
                    !(400..=499).contains(&status) || error_body.is_none(),
                    "an RFC 6749 error body was classified invalid"
                );
                assert_ne!(status, 401, "a 401 must read invalid_client");
                assert!(!retryable, "a {status} must be retryable");
            }
            assert_no_leak("Invalid message", message, &words);
        }
        // A 2xx error answer: an RFC 6749 error body and no token.
        (Answer::OAuthError { status: s, body: b }, 200..=299) if !oversize => {
            assert_eq!(*s, status);
            assert_eq!(
                Some(b),
                error_body.as_ref(),
                "classify disagrees with parse_error_body"
            );
            let access_token = json.as_ref().and_then(|j| j.get("access_token"));
            assert!(
                !matches!(access_token, Some(Some(_))),
                "an error with an access token"
            );
        }
        (Answer::OAuthError { status: s, body: b }, 400..=499) if !oversize => {
            assert_eq!(*s, status);
            match &error_body {
                Some(e) => assert_eq!(b, e, "classify disagrees with parse_error_body"),
                None => assert!(status == 401 && b.error == "invalid_client", "{b:?}"),
            }
        }
        (
            Answer::Retryable {
                status: s,
                retry_after_ms,
            },
            _,
        ) if retryable => {
            assert_eq!(*s, status);
            assert_eq!(*retry_after_ms, Some(120_000), "Retry-After was lost");
        }
        (other, _) => panic!("a {status} answer was classified {other:?}"),
    }
}

/// Fuzz target `record`: the input is a stored record string.
pub fn check_record(data: &[u8]) {
    // Stores hold strings: only UTF-8 can ever reach `Record::decode`.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let json = members(data, RECORD_MEMBERS);
    let words = credential_words(data);
    let record = match Record::decode(text) {
        Ok(record) => record,
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::Storage, "{e:?}");
            assert_no_leak("Record::decode error", &e.to_string(), &words);
            assert_no_leak("Record::decode error (Debug)", &format!("{e:?}"), &words);
            return;
        }
    };
    assert_eq!(
        string_member(json.as_ref(), "schema"),
        Some(crate::RECORD_SCHEMA_V1),
        "decoded a record without today's schema tag"
    );
    check_record_invariants(&record);
    let encoded = record.encode();
    match Record::decode(&encoded) {
        Ok(again) => assert_eq!(again, record, "encode/decode round trip changed the record"),
        Err(e) => panic!("a re-encoded record does not decode: {e}"),
    }
    assert_eq!(
        Record::decode(&encoded).map(|r| r.encode()).as_ref(),
        Ok(&encoded),
        "encoding is not canonical"
    );
}

/// Fuzz target `retry_after`: the input is a `Retry-After` header value.
pub fn check_retry_after(data: &[u8]) {
    // Header values reach the core as `&str`.
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let trimmed = value.trim();
    let is_delta = !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit());
    let date = parse_http_date(trimmed);
    if let Some(secs) = date {
        check_http_date(trimmed, secs);
        assert!(!is_delta, "digits parsed as a date");
    }
    let policy = RetryPolicy::default();
    for now_ms in [0, NOW_MS, u64::MAX] {
        let parsed = parse_retry_after(value, now_ms);
        if is_delta {
            let expected = trimmed
                .parse::<u64>()
                .map_or(u64::MAX, |s| s.saturating_mul(1000));
            assert_eq!(parsed, Some(expected), "delta-seconds misread");
        } else {
            let expected = date.map(|secs| secs.saturating_mul(1000).saturating_sub(now_ms));
            assert_eq!(parsed, expected, "HTTP-date misread");
        }
        for retry in [1, 2, 4, 40] {
            let delay = policy.delay_ms(retry, (data.len() as u32).wrapping_mul(7919), parsed);
            assert!(delay >= parsed.unwrap_or(0), "Retry-After is a floor");
            assert!(
                parsed.is_some() || delay <= policy.max_backoff_ms,
                "backoff above its cap"
            );
        }
    }
}

// ------------------------------------------------------------- invariants

fn check_accepted_token(body: Option<&Members>, token: &TokenResponse) {
    let member = |name| {
        body.and_then(|json| json.get(name))
            .and_then(Option::as_ref)
    };
    let at = token.access_token.expose();
    assert!(is_printable_token(at), "accepted an unusable access token");
    assert_eq!(string_member(body, "access_token"), Some(at));
    match member("token_type") {
        // Missing (or null) reads as Bearer.
        None => {}
        Some(Scalar::Str(t)) if t.eq_ignore_ascii_case("bearer") => {}
        other => panic!("accepted token_type {other:?}"),
    }
    if let Some(secs) = token.expires_in {
        assert!(secs <= MAX_EXPIRES_IN_SECS, "expires_in above its bound");
        assert_ne!(secs, 0, "a lifetime of 0 reads as absent");
    }
    let whole_digits = |text: &str| {
        let text = text.trim();
        assert!(
            text.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
            "read {text:?}"
        );
        text.split('.')
            .next()
            .unwrap_or_default()
            .parse::<u64>()
            .ok()
    };
    match (token.expires_in, member("expires_in")) {
        // Past ten years reads as ten years.
        (Some(secs), Some(Scalar::Int(n))) => {
            assert_eq!(
                i64::try_from(secs).ok(),
                Some((*n).min(MAX_EXPIRES_IN_SECS as i64))
            );
        }
        // A fraction is cut to whole seconds, never rounded up.
        (Some(secs), Some(Scalar::OtherNumber(n))) => {
            assert!(*n >= 1.0 && (secs as f64) <= *n, "{n} read as {secs}");
            assert!(
                *n < secs as f64 + 1.0 || secs == MAX_EXPIRES_IN_SECS,
                "{n} read as {secs}"
            );
        }
        // A decimal string: its whole part, and nothing but digits and one dot.
        (Some(secs), Some(Scalar::Str(text))) => {
            let whole = whole_digits(text)
                .unwrap_or(u64::MAX)
                .min(MAX_EXPIRES_IN_SECS);
            assert_eq!(whole, secs, "{text:?} read as {secs}");
        }
        // Zero whole seconds, or a negative number, reads as absent (the
        // grant's default lifetime).
        (None, Some(Scalar::Int(n))) => assert!(*n <= 0, "{n} read as absent"),
        (None, Some(Scalar::OtherNumber(n))) => {
            assert!(*n < 1.0, "{n} read as absent");
        }
        (None, Some(Scalar::Str(text))) => match text.trim().strip_prefix('-') {
            Some(negative) => assert!(whole_digits(negative).is_some(), "{text:?}"),
            None => assert_eq!(whole_digits(text), Some(0), "{text:?} read as absent"),
        },
        (None, None) => {}
        (got, member) => panic!("expires_in {got:?} from {member:?}"),
    }
    match (&token.refresh_token, member("refresh_token")) {
        (Some(rt), Some(Scalar::Str(s))) => {
            assert!(
                is_refresh_token(rt.expose()),
                "accepted an unusable refresh token"
            );
            assert_eq!(rt.expose(), s);
        }
        (None, None) => {}
        (None, Some(Scalar::Str(s))) => assert!(s.is_empty(), "a refresh token was dropped"),
        (got, member) => panic!("refresh_token {got:?} from {member:?}"),
    }
    if let Some(id) = &token.id_token {
        assert!(!id.is_empty());
        assert_eq!(string_member(body, "id_token"), Some(id.expose()));
    }
    // Debug must not show the tokens. Scope and expires_in are shown in
    // clear on purpose: leave them out so they cannot match by accident.
    let shown = format!(
        "{:?}",
        TokenResponse {
            scope: None,
            expires_in: None,
            ..token.clone()
        }
    );
    for secret in secrets_of(token) {
        assert!(!shown.contains(secret), "Debug shows a token: {shown}");
    }
    // What the session keeps from an accepted answer survives the store.
    let record = Record {
        access_token: Some(AccessToken::new(
            token.access_token.clone(),
            NOW_MS,
            token.expires_in,
            900, // DEFAULT_USER_TOKEN_LIFETIME_SECS
        )),
        scope: token.scope.clone(),
        id_token: token.id_token.clone(),
        refresh_token: token.refresh_token.clone(),
        refresh_expires_at_ms: Some(NOW_MS + 365 * 86_400_000),
        reauth: None,
        in_doubt: false,
        updated_at_ms: NOW_MS,
        from_code: None,
    };
    check_record_invariants(&record);
    assert_eq!(
        Record::decode(&record.encode()).as_ref(),
        Ok(&record),
        "an accepted token does not survive the store"
    );
}

fn secrets_of(token: &TokenResponse) -> Vec<&str> {
    [
        Some(&token.access_token),
        token.refresh_token.as_ref(),
        token.id_token.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(Secret::expose)
    .filter(|s| is_credential_like(s))
    .collect()
}

fn check_error_body(body: Option<&Members>, e: &OAuthErrorBody) {
    assert!(
        !e.error.is_empty() && e.error.len() <= 100,
        "error code length"
    );
    assert!(
        e.error
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
        "error code outside RFC 6749's character set"
    );
    assert_eq!(string_member(body, "error"), Some(e.error.as_str()));
    for (name, text) in [("error_description", &e.description), ("error_uri", &e.uri)] {
        let Some(text) = text else { continue };
        assert!(!text.is_empty(), "empty {name} kept");
        assert!(
            text.chars().count() <= MAX_DESCRIPTION_CHARS,
            "{name} not cut"
        );
        assert!(
            !text.chars().any(crate::response::is_unprintable),
            "{name} keeps control or bidi characters"
        );
        let Some(original) = string_member(body, name) else {
            panic!("{name} kept but not a string member");
        };
        let expected: String = original
            .chars()
            .map(|c| {
                if crate::response::is_unprintable(c) {
                    ' '
                } else {
                    c
                }
            })
            .take(MAX_DESCRIPTION_CHARS)
            .collect();
        assert_eq!(text, &expected, "{name} is not the server's text");
    }
}

fn check_record_invariants(record: &Record) {
    if let Some(at) = &record.access_token {
        assert!(!at.value.is_empty(), "an empty access token was kept");
        assert!(
            at.issued_at_ms <= at.expires_at_ms,
            "issued after it expires"
        );
    }
    if let Some(rt) = &record.refresh_token {
        assert!(!rt.is_empty(), "an empty refresh token was kept");
    }
    // Debug hides every token. Times and scope are shown in clear on
    // purpose: zero them so they cannot match by accident.
    let shown = format!(
        "{:?}",
        Record {
            access_token: record.access_token.as_ref().map(|a| AccessToken {
                value: a.value.clone(),
                issued_at_ms: 0,
                expires_at_ms: 0,
            }),
            scope: None,
            refresh_expires_at_ms: record.refresh_expires_at_ms.map(|_| 0),
            updated_at_ms: 0,
            ..record.clone()
        }
    );
    let secrets = [
        record.access_token.as_ref().map(|a| &a.value),
        record.refresh_token.as_ref(),
        record.id_token.as_ref(),
    ];
    for secret in secrets.into_iter().flatten().map(Secret::expose) {
        if is_credential_like(secret) {
            assert!(
                !shown.contains(secret),
                "Record Debug shows a token: {shown}"
            );
        }
    }
}

fn check_http_date(value: &str, secs: u64) {
    assert!(secs <= LAST_HTTP_DATE_SECS, "date beyond 9999-12-31");
    // The `httpdate` crate reads fixed positions and does not check every
    // separator (RFC 850's space before the time may be any character):
    // a lenient read only sets the floor of a wait the retry budget bounds.
    // What it reads is ASCII, and its numbers are digits (no signs).
    assert!(value.is_ascii(), "accepted a date that is not ASCII");
    // RFC 850's free separator is the one place any byte may stand:
    // blank it before looking for signs.
    let mut fields = value.as_bytes().to_vec();
    if let Some(comma) = value.find(", ") {
        if comma > 3 && fields.len() == comma + 2 + 22 {
            fields[comma + 2 + 9] = b' ';
        }
    }
    assert!(
        !fields.contains(&b'+'),
        "accepted a signed number in a date"
    );
    let (year, month, day, hour, minute, second, weekday) = civil(secs);
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const LONG_DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (dn, mn) = (DAYS[weekday], MONTHS[month - 1]);
    let imf = format!("{dn}, {day:02} {mn} {year} {hour:02}:{minute:02}:{second:02} GMT");
    let asctime = format!("{dn} {mn} {day:>2} {hour:02}:{minute:02}:{second:02} {year}");
    assert_eq!(
        parse_http_date(&imf),
        Some(secs),
        "{imf} does not read back"
    );
    assert_eq!(
        parse_http_date(&asctime),
        Some(secs),
        "{asctime} does not read back"
    );
    if year < 2070 {
        let rfc850 = format!(
            "{}, {day:02}-{mn}-{:02} {hour:02}:{minute:02}:{second:02} GMT",
            LONG_DAYS[weekday],
            year % 100
        );
        assert_eq!(
            parse_http_date(&rfc850),
            Some(secs),
            "{rfc850} does not read back"
        );
    }
}

/// Unix seconds → (year, month, day, hour, minute, second, weekday with
/// Sunday = 0), independently of the parser (Hinnant's `civil_from_days`).
fn civil(secs: u64) -> (u64, usize, u64, u64, u64, u64, usize) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let weekday = ((days + 4) % 7) as usize; // 1970-01-01 was a Thursday
    (
        year,
        month as usize,
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        weekday,
    )
}

// ---------------------------------------------------------------- helpers

fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

fn split_status(data: &[u8]) -> (u16, &[u8]) {
    if let Some(nl) = data.iter().position(|&b| b == b'\n') {
        let line = &data[..nl];
        if !line.is_empty() && line.len() <= 5 && line.iter().all(u8::is_ascii_digit) {
            if let Some(status) = std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()) {
                return (status, &data[nl + 1..]);
            }
        }
    }
    (400, data)
}

/// A document's top-level members named in `names` (`null` is `None`; the
/// last of a repeated member), when it is a JSON object: what the checks
/// compare the parsed results with. Other members are skipped unread, as
/// the library skips them (however deep, whatever their escapes).
type Members = BTreeMap<String, Option<Scalar>>;

/// The members a token-endpoint body is read for.
const BODY_MEMBERS: &[&str] = &[
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "scope",
    "id_token",
    "error",
    "error_description",
    "error_uri",
];
/// The members a stored record is read for.
const RECORD_MEMBERS: &[&str] = &[
    "schema",
    "access_token",
    "issued_at",
    "expires_at",
    "scope",
    "id_token",
    "refresh_token",
    "refresh_expires_at",
    "reauth",
    "in_doubt",
    "updated_at",
];

/// [`members`] of a response body, decoded as `fetch` decodes one (bytes
/// that are not UTF-8 become U+FFFD).
fn body_members(data: &[u8], names: &'static [&'static str]) -> Option<Members> {
    members(String::from_utf8_lossy(data).as_bytes(), names)
}

fn members(data: &[u8], names: &'static [&'static str]) -> Option<Members> {
    struct Named(&'static [&'static str]);
    impl<'de> serde::de::Visitor<'de> for Named {
        type Value = Members;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
            let mut members = Members::new();
            // Names as bytes: one with a lone surrogate's escape is only a
            // name none of `names` matches (JSON.parse reads it too).
            while let Some(MemberName(key)) = map.next_key()? {
                match self.0.iter().find(|n| n.as_bytes() == key.as_slice()) {
                    Some(name) => {
                        members.insert((*name).to_owned(), map.next_value()?);
                    }
                    None => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
            }
            Ok(members)
        }
    }
    // A leading byte order mark is skipped (RFC 8259 §8.1).
    let data = data.strip_prefix("\u{FEFF}".as_bytes()).unwrap_or(data);
    // Valid JSON first (names read as bytes skip serde_json's checks).
    serde_json::from_slice::<serde::de::IgnoredAny>(data).ok()?;
    let mut de = serde_json::Deserializer::from_slice(data);
    let members = serde::Deserializer::deserialize_map(&mut de, Named(names)).ok()?;
    de.end().ok()?;
    Some(members)
}

/// The string member `name` of the body when it is a JSON object.
fn string_member<'a>(body: Option<&'a Members>, name: &str) -> Option<&'a str> {
    match body?.get(name)?.as_ref()? {
        Scalar::Str(s) => Some(s),
        _ => None,
    }
}

fn is_printable_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// RFC 6749 A.17: a refresh token may also hold a space.
fn is_refresh_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// A string that looks like a credential: at least 12 characters, no
/// whitespace, some letter and some digit. The library's own messages and
/// `Debug` skeletons never contain such a word, so finding one of the
/// input's in them means the input leaked.
fn is_credential_like(s: &str) -> bool {
    s.chars().count() >= 12
        && !s.chars().any(char::is_whitespace)
        && s.chars().any(|c| c.is_ascii_alphabetic())
        && s.chars().any(|c| c.is_ascii_digit())
}

/// The credential-like words of the input, split at whitespace and JSON
/// punctuation, plus the credential-like JSON string values (which may hold
/// escapes).
fn credential_words(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let mut words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || "\"{}[],:\\".contains(c))
        .filter(|w| is_credential_like(w))
        .map(str::to_owned)
        .collect();
    // serde_json builds the whole value up to its recursion limit (128).
    if let Ok(json) = serde_json::from_slice::<Value>(data) {
        collect_strings(&json, &mut words);
    }
    words
}

fn collect_strings(json: &Value, out: &mut Vec<String>) {
    match json {
        Value::String(s) if is_credential_like(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(members) => members.iter().for_each(|(_, v)| collect_strings(v, out)),
        _ => {}
    }
}

fn assert_no_leak(what: &str, text: &str, words: &[String]) {
    for word in words {
        assert!(
            !text.contains(word.as_str()),
            "{what} repeats the input: {text}"
        );
    }
}
