//! A string that never shows itself in `Debug` or `Display` and is wiped on drop.

use std::fmt;
use zeroize::Zeroizing;

/// A token or client secret. `Debug` shows at most a three-character prefix
/// (none for short values) and the length; the memory is zeroized on drop.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret itself. Call sites that expose it are easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", redacted(&self.0))
    }
}

/// How a secret is shown: a short prefix (only for long values) and the length.
pub(crate) fn redacted(value: &str) -> String {
    let len = value.chars().count();
    if len >= 16 {
        let prefix: String = value.chars().take(3).collect();
        format!("\"{prefix}…\" ({len} chars)")
    } else {
        format!("<redacted> ({len} chars)")
    }
}

/// A secret as `Debug` shows it inside a struct: `redacted`, unquoted.
pub(crate) struct Hidden<'a>(pub(crate) &'a str);

impl fmt::Debug for Hidden<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted(self.0))
    }
}

/// Replaces every occurrence of each non-trivial secret in `text` with
/// `[redacted]`, so server-provided text can be shown safely.
/// Servers that echo the request show secrets form- or percent-encoded, and
/// hosts that quote it as JSON escape them, each encoder its own way
/// (Python's `json.dumps` writes `é` as `\u00e9`, Gson `=` as `\u003d`,
/// .NET in upper-case hex, Swift `/` as `\/`): those spellings are removed too.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let text = redact_members(text);
    // The secrets of 4 bytes or more; each as it is, form-encoded and
    // percent-encoded, in that order (loops: iterator chains cost wasm bytes).
    let mut kept: Vec<&str> = Vec::with_capacity(secrets.len());
    let mut spellings: Vec<String> = Vec::with_capacity(secrets.len() * 3);
    for &secret in secrets {
        if secret.len() < 4 {
            continue;
        }
        kept.push(secret);
        let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let percent = form.replace("+", "%20");
        spellings.push(secret.to_string());
        spellings.push(form);
        spellings.push(percent);
    }
    let secrets = kept;
    let mut out = text;
    for spelling in &spellings {
        if out.contains(spelling.as_str()) {
            out = out.replace(spelling.as_str(), "[redacted]");
        }
    }
    for secret in &secrets {
        out = without_escaped(&out, secret);
    }
    // A replacement can join with its neighbours into a secret again (secret
    // `d]xy` in `d]xyxy` gives `[redacted]xy`): then nothing of it is shown.
    let left = |out: &str| {
        spellings.iter().any(|s| out.contains(s.as_str()))
            || secrets.iter().any(|s| escaped_at(out, s).is_some())
    };
    if left(&out) {
        return "[redacted]".to_owned();
    }
    out
}

/// `text` with every spelling of `secret` in which a JSON encoder escaped
/// some of its characters replaced by `[redacted]`.
fn without_escaped(text: &str, secret: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((start, end)) = escaped_at(rest, secret) {
        out.push_str(&rest[..start]);
        out.push_str("[redacted]");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The first span of `text` that spells `secret` with at least one of its
/// characters JSON-escaped: a short escape (`\"`, `\\`, `\/`, `\n`, ...)
/// or `\uXXXX` in either case of hex (a pair of them for a character past
/// U+FFFF). Others may stand as they are: encoders escape different sets.
fn escaped_at(text: &str, secret: &str) -> Option<(usize, usize)> {
    let first = secret.chars().next()?;
    text.char_indices()
        .filter(|(_, c)| *c == first || *c == '\\')
        .find_map(|(start, _)| {
            let mut at = start;
            let mut escaped = false;
            for wanted in secret.chars() {
                let rest = &text[at..];
                // The escape first: `\\` is one backslash, not two.
                match json_escape(rest) {
                    Some((c, len)) if c == wanted => {
                        at += len;
                        escaped = true;
                    }
                    _ if rest.starts_with(wanted) => at += wanted.len_utf8(),
                    _ => return None,
                }
            }
            escaped.then_some((start, at))
        })
}

/// The character a JSON escape at the start of `text` stands for, and its
/// length in bytes.
fn json_escape(text: &str) -> Option<(char, usize)> {
    let unit = |text: &str| -> Option<u32> {
        let hex = text.strip_prefix("\\u")?.get(..4)?;
        // Four hex digits, each read by `char::to_digit` (no sign, no
        // other form: `from_str_radix` would take a `+`).
        hex.chars()
            .try_fold(0, |unit, c| Some(unit * 16 + c.to_digit(16)?))
    };
    if let Some(high) = unit(text) {
        if let Some(c) = char::from_u32(high) {
            return Some((c, 6));
        }
        let low = unit(&text[6..])?;
        let c = char::decode_utf16([high as u16, low as u16]).next()?.ok()?;
        return Some((c, 12));
    }
    let c = match text.strip_prefix('\\')?.chars().next()? {
        c @ ('"' | '\\' | '/' | '\'') => c,
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        _ => return None,
    };
    Some((c, 2))
}

/// [`scrub`] for secrets held as [`Secret`]s.
pub(crate) fn scrub_secrets(text: &str, secrets: &[Secret]) -> String {
    let mut exposed = Vec::with_capacity(secrets.len());
    for secret in secrets {
        exposed.push(secret.expose());
    }
    scrub(text, &exposed)
}

/// Members whose values are secrets wherever a message quotes them.
const SECRET_MEMBERS: [&str; 6] = [
    "refresh_token",
    "access_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "code_verifier",
];

/// `text` with the value of every secret member it quotes replaced by
/// `[redacted]`: `"refresh_token": "…"` as JSON writes it (also escaped
/// inside a JSON string, or with single quotes as a Python dict prints
/// it) and `refresh_token=…` as a form does. It catches what a host's
/// message quotes of a record or an answer whose tokens the session does
/// not know yet (a load in a new process, the answer of a refresh). A
/// search for the names, not a parser: whatever follows a name that does
/// not look like a value is left as it is.
fn redact_members(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    // Where each name next occurs (at or after `done`): searched again only
    // once passed, so a text of many names costs one pass per name, not
    // one per occurrence.
    let mut next = SECRET_MEMBERS.map(|name| text.find(name));
    while let Some(i) = first_found(&next) {
        let name = SECRET_MEMBERS[i];
        let after = next[i].unwrap_or_default() + name.len();
        done = match value_span(&text[after..]) {
            Some((start, end)) if end > start => {
                out.push_str(&text[done..after + start]);
                out.push_str("[redacted]");
                after + end
            }
            _ => {
                out.push_str(&text[done..after]);
                after
            }
        };
        for (i, at) in next.iter_mut().enumerate() {
            if at.is_some_and(|at| at < done) {
                *at = text[done..]
                    .find(SECRET_MEMBERS[i])
                    .map(|found| done + found);
            }
        }
    }
    out.push_str(&text[done..]);
    out
}

/// Which of the names whose next occurrence is known occurs first (the
/// first of them on a tie), by a loop: `filter` and `min_by_key` over the
/// indices cost wasm bytes.
fn first_found(next: &[Option<usize>]) -> Option<usize> {
    let mut first: Option<(usize, usize)> = None;
    for (i, at) in next.iter().enumerate() {
        if let Some(at) = *at {
            if first.is_none_or(|(_, earliest)| at < earliest) {
                first = Some((i, at));
            }
        }
    }
    first.map(|(i, _)| i)
}

/// Where the value after a member name starts and ends in `after` (byte
/// offsets): `=value` (a form: up to `&`, a quote or whitespace), or a
/// closing quote, `:` and a quoted value (up to its closing quote; see
/// [`closing_quote`]). The quoted value may stand first in a list (`: ['…']`, a
/// form decoded by Python's `parse_qs`), a pair may be written with a comma
/// (`('name', '…')`, `parse_qsl`), and a Python bytes literal (`b'…'`) is
/// a quoted value too.
fn value_span(after: &str) -> Option<(usize, usize)> {
    let is_quote = |c: char| c == '"' || c == '\'' || c == '\\';
    if let Some(form) = after.strip_prefix('=') {
        let len = form
            .find(|c: char| c == '&' || c.is_whitespace() || is_quote(c))
            .unwrap_or(form.len());
        return Some((1, 1 + len));
    }
    let unquoted = after.trim_start_matches(is_quote);
    let separated = unquoted.trim_start();
    let (rest, comma) = match separated.strip_prefix(':') {
        Some(rest) => (rest, false),
        // A comma only after a quoted name: "refresh_token, then" is prose.
        None if unquoted.len() < after.len() => (separated.strip_prefix(',')?, true),
        None => return None,
    };
    let value = rest.trim_start();
    let value = value.strip_prefix('[').map_or(value, str::trim_start);
    let value = match value.strip_prefix('b') {
        Some(bytes) if bytes.starts_with(is_quote) => bytes,
        _ => value,
    };
    // The opening quote (after the backslashes of an escaped one, `\"`);
    // backslashes after it begin the value (`"\u00e9…"`, `"\/…"`).
    let quotes = value.len() - value.trim_start_matches(is_quote).len();
    let Some(at) = value[..quotes].rfind(['"', '\'']) else {
        return None; // not a quoted string (a number, null, an object)
    };
    let (opener, opened) = value.split_at(at + 1);
    let start = after.len() - opened.len();
    let quote = if opener.ends_with('"') { '"' } else { '\'' };
    let escapes = &opener[..at];
    let depth = escapes.len() - escapes.trim_end_matches('\\').len();
    let len = closing_quote(opened, quote, depth);
    // After a comma, a secret member's name followed by `:` is the next
    // member, and the name before it a value
    // (`"grant_type":"refresh_token","refresh_token":"…"`): that member's own
    // value is redacted next. Any other string there is redacted as the value.
    let closed = opened[len..].trim_start_matches(is_quote).trim_start();
    if comma && closed.starts_with(':') && SECRET_MEMBERS.contains(&&opened[..len]) {
        return None;
    }
    Some((start, start + len))
}

/// Where a quoted value that opened with `quote` after `depth` backslashes
/// (`"` 0, `\"` inside a JSON string 1) ends in `opened`: at the first
/// `quote` after exactly `depth` backslashes. An escaped quote has more of
/// them, and an escape (`\u00e9`) none before a quote, so the value runs
/// past both; where that reads too far, more is hidden, never less. No
/// closing quote: the value runs to the end.
fn closing_quote(opened: &str, quote: char, depth: usize) -> usize {
    let mut run = 0;
    for (at, c) in opened.char_indices() {
        match c {
            '\\' => run += 1,
            c if c == quote && run == depth => return at - depth,
            _ => run = 0,
        }
    }
    opened.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_long_values_behind_a_prefix_and_length() {
        let s = Secret::new("rt-0123456789abcdef-SENTINEL");
        let shown = format!("{s:?}");
        assert!(!shown.contains("SENTINEL"), "{shown}");
        assert!(
            shown.contains("rt-") && shown.contains("28 chars"),
            "{shown}"
        );
    }

    #[test]
    fn debug_hides_short_values_entirely() {
        let shown = format!("{:?}", Secret::new("hunter2"));
        assert_eq!(shown, "<redacted> (7 chars)");
    }

    #[test]
    fn scrub_removes_secrets_from_text() {
        let out = scrub("token abcdef was reused", &["abcdef", "ab"]);
        assert_eq!(out, "token [redacted] was reused");
    }

    #[test]
    fn scrub_never_leaves_a_secret_its_marker_recreated() {
        assert_eq!(scrub("token d]xyxy", &["d]xy"]), "[redacted]");
        assert_eq!(
            scrub("ab d] cd", &["ted]"]),
            "ab d] cd",
            "no secret, no change"
        );
    }

    #[test]
    fn scrub_redacts_secret_members_it_does_not_know() {
        let quoted = [
            r#"row {"schema":"freshtoken.record/1","refresh_token":"rt-UNKNOWN-1","issued_at":1}"#,
            r#"{"error":"{\"access_token\": \"at-UNKNOWN-2\", \"expires_in\": 900}"}"#,
            "UnicodeEncodeError('{'id_token': 'id-UNKNOWN-3'}')",
            "sent grant_type=refresh_token&refresh_token=rt-UNKNOWN-4&client_secret=cs-UNKNOWN-5 x",
            // Forms decoded by Python's parse_qs / parse_qsl (str or bytes), and JSON pairs.
            "{'client_assertion': ['ey-UNKNOWN-6'], 'grant_type': ['refresh_token']}",
            "[('refresh_token', 'rt-UNKNOWN-7'), ('client_id', 'c')]",
            "{b'client_secret': [b'cs-UNKNOWN-8']}",
            r#"[["code_verifier", "v-UNKNOWN-9"]]"#,
        ];
        for text in quoted {
            let out = scrub(text, &[]);
            assert!(!out.contains("UNKNOWN"), "{out}");
            assert!(out.contains("[redacted]"), "{out}");
        }
        let kept =
            r#"{"refresh_token": null, "access_token": 12, "note": "refresh_token rotated"}"#;
        assert_eq!(scrub(kept, &[]), kept, "no quoted value, no change");
        let prose = "no refresh_token, 'so' it stops; access_token: [1]";
        assert_eq!(
            scrub(prose, &[]),
            prose,
            "an unquoted name and a comma are prose"
        );
        assert_eq!(
            scrub(r#"{"refresh_token":"rt-x","scope":"a b"}"#, &[]),
            r#"{"refresh_token":"[redacted]","scope":"a b"}"#
        );
    }

    #[test]
    fn scrub_reads_a_grant_type_value_as_a_value_not_a_member() {
        let text = r#"sent {"grant_type":"refresh_token","refresh_token":"rt-UNKNOWN-1"}"#;
        assert_eq!(
            scrub(text, &[]),
            r#"sent {"grant_type":"refresh_token","refresh_token":"[redacted]"}"#
        );
        let pairs = "[('grant_type', 'refresh_token'), ('refresh_token', 'rt-UNKNOWN-2')]";
        assert!(!scrub(pairs, &[]).contains("UNKNOWN"));
        // A token as an object's key after a secret member's name stays redacted.
        let keyed = r#"{"refresh_token", "rt-UNKNOWN-3": 1}"#;
        assert!(!scrub(keyed, &[]).contains("UNKNOWN"));
    }

    #[test]
    fn scrub_removes_a_secret_as_json_escapes_it() {
        // JSON writes the secret `rt"a\b` as `rt\"a\\b`.
        let secret = r#"rt"a\b"#;
        let quoted = r#"body {"token":"rt\"a\\b"} and rt"a\b"#;
        assert_eq!(
            scrub(quoted, &[secret]),
            r#"body {"token":"[redacted]"} and [redacted]"#
        );
    }

    #[test]
    fn scrub_removes_a_secret_as_any_json_encoder_escapes_it() {
        let secret = "Zx9-s3cr\u{e9}t=/TAIL\u{1f511}";
        let spellings = [
            // Python's json.dumps: non-ASCII as \u, lower-case hex, a pair past U+FFFF.
            r"Zx9-s3cr\u00e9t=/TAIL\ud83d\udd11",
            // .NET: upper-case hex, `=` too.
            r"Zx9-s3cr\u00E9t\u003D/TAIL\uD83D\uDD11",
            // Gson: `=` escaped, the rest as it is.
            "Zx9-s3cr\u{e9}t\\u003d/TAIL\u{1f511}",
            // Swift's JSONEncoder: `/` escaped.
            "Zx9-s3cr\u{e9}t=\\/TAIL\u{1f511}",
        ];
        for spelled in spellings {
            let text = format!(r#"could not send {{"note": "{spelled}", "x": 1}}"#);
            let out = scrub(&text, &[secret]);
            assert_eq!(
                out, r#"could not send {"note": "[redacted]", "x": 1}"#,
                "{spelled}"
            );
        }
        // An escape that stands for another character is not the secret.
        let other = r"Zx9-s3cr\u00e8t=/TAIL";
        assert_eq!(scrub(other, &["Zx9-s3cr\u{e9}t=/TAIL"]), other);
        assert_eq!(
            scrub(r"bad \u12 \ud83d", &["\u{1f511}abc"]),
            r"bad \u12 \ud83d"
        );
    }

    #[test]
    fn a_secret_members_value_is_redacted_past_its_escapes() {
        let quoted = [
            r#"{"client_secret": "Zx9-s3cr\u00e9t-UNKNOWN-TAIL", "x": 1}"#,
            r#"{'refresh_token': 'rt-\'q\'-UNKNOWN'}"#,
            r#"{"error":"{\"access_token\": \"at-\\u00e9-\\\"-UNKNOWN\"}"}"#,
        ];
        for text in quoted {
            let out = scrub(text, &[]);
            assert!(!out.contains("UNKNOWN"), "{out}");
        }
        // A value that begins with an escape (Swift's `\/`, a non-ASCII first character).
        for text in [
            r#"{"client_secret": "\u00e9Zx9-UNKNOWN-TAIL"}"#,
            r#"{"refresh_token":"\/AbC\/def-UNKNOWN-TAIL"}"#,
            r#"{"e":"{\"refresh_token\":\"\\u003dx-UNKNOWN-TAIL\"}"}"#,
        ] {
            let out = scrub(text, &[]);
            assert!(!out.contains("UNKNOWN"), "{out}");
        }
        assert_eq!(
            scrub(r#"{"client_secret": "a\u00e9b", "scope": "x"}"#, &[]),
            r#"{"client_secret": "[redacted]", "scope": "x"}"#
        );
        assert_eq!(
            scrub(
                r#"{"e":"{\"refresh_token\":\"rt\\u00e9\",\"scope\":\"x\"}"}"#,
                &[]
            ),
            r#"{"e":"{\"refresh_token\":\"[redacted]\",\"scope\":\"x\"}"}"#
        );
    }

    #[test]
    fn scrub_removes_encoded_spellings() {
        let secret = "rt a+b/c=";
        let echoed = "bad body: refresh_token=rt+a%2Bb%2Fc%3D&x=rt%20a%2Bb%2Fc%3D";
        assert_eq!(
            scrub(echoed, &[secret]),
            "bad body: refresh_token=[redacted]&x=[redacted]"
        );
    }
}
