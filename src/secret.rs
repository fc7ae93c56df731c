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
/// hosts that quote it as JSON escape them: those spellings are removed too.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let text = redact_members(text);
    let text = text.as_str();
    let spellings: Vec<String> = secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .flat_map(|secret| {
            let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            let percent = form.replace('+', "%20");
            // As a JSON string quotes it (`"` and `\` escaped), when that differs.
            let json = crate::json_text::to_string(secret)
                .ok()
                .and_then(|t| Some(t.strip_prefix('"')?.strip_suffix('"')?.to_owned()))
                .filter(|t| t != secret);
            [Some(secret.to_string()), Some(form), Some(percent), json]
        })
        .flatten()
        .collect();
    let mut out = text.to_owned();
    for spelling in &spellings {
        if out.contains(spelling.as_str()) {
            out = out.replace(spelling.as_str(), "[redacted]");
        }
    }
    // A replacement can join with its neighbours into a secret again (secret
    // `d]xy` in `d]xyxy` gives `[redacted]xy`): then nothing of it is shown.
    if spellings.iter().any(|s| out.contains(s.as_str())) {
        return "[redacted]".to_owned();
    }
    out
}

/// [`scrub`] for secrets held as [`Secret`]s.
pub(crate) fn scrub_secrets(text: &str, secrets: &[Secret]) -> String {
    let exposed: Vec<&str> = secrets.iter().map(Secret::expose).collect();
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
    let mut rest = text;
    while let Some((at, name)) = next_member(rest) {
        let after = at + name.len();
        let value = value_span(&rest[after..]);
        match value {
            Some((start, end)) if end > start => {
                out.push_str(&rest[..after + start]);
                out.push_str("[redacted]");
                rest = &rest[after + end..];
            }
            _ => {
                out.push_str(&rest[..after]);
                rest = &rest[after..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The first secret member name in `text`: its byte offset and the name.
fn next_member(text: &str) -> Option<(usize, &'static str)> {
    SECRET_MEMBERS
        .iter()
        .filter_map(|name| text.find(name).map(|at| (at, *name)))
        .min_by_key(|(at, _)| *at)
}

/// Where the value after a member name starts and ends in `after` (byte
/// offsets): `=value` (a form: up to `&`, a quote or whitespace), or a
/// closing quote, `:` and a quoted value (up to its closing quote or a
/// backslash). The quoted value may stand first in a list (`: ['…']`, a
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
    let opened = value.trim_start_matches(is_quote);
    if opened.len() == value.len() {
        return None; // not a quoted string (a number, null, an object)
    }
    let start = after.len() - opened.len();
    let len = opened.find(is_quote).unwrap_or(opened.len());
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
    fn scrub_removes_encoded_spellings() {
        let secret = "rt a+b/c=";
        let echoed = "bad body: refresh_token=rt+a%2Bb%2Fc%3D&x=rt%20a%2Bb%2Fc%3D";
        assert_eq!(
            scrub(echoed, &[secret]),
            "bad body: refresh_token=[redacted]&x=[redacted]"
        );
    }
}
