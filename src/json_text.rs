//! JSON text to and from the wire and record types (DESIGN point 17).
//!
//! The types are plain `serde` types; only the text differs by target:
//! natively `serde_json` reads and writes it, and in the wasm build the
//! host's `JSON.parse` / `JSON.stringify` do while `serde-wasm-bindgen` maps
//! the values ([`crate::wasm::json_text`]). Call sites see one API.
//!
//! Limits: every text is refused unread past its size cap; the core reads
//! only JSON objects; no Rust code recurses into nested values (members the
//! types do not name, and arrays or objects where a [`Scalar`] is read, are
//! skipped by `serde::de::IgnoredAny`, which `serde_json` walks with a loop
//! and `serde-wasm-bindgen` does not walk at all), so no nesting can exhaust
//! the stack; natively `serde_json`'s recursion limit (128) stands as well.
//! Natively a repeated member that a type names is an error (serde's
//! derive): a credentials file that names two token endpoints must not have
//! one picked quietly. `JSON.parse` keeps the last one, as every JavaScript
//! program does; [`from_answer`] reads a server's answer that way natively
//! too. A leading byte order mark is skipped (RFC 8259 §8.1 lets a reader
//! ignore it; `fetch`'s `Response.json()` does).

use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Why a text was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Longer than the caller's cap; it was not parsed.
    TooLarge,
    /// It ends before the value does (natively; the host's parser does not
    /// tell this apart from [`JsonError::Syntax`]).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    Truncated,
    /// Not a JSON object (not JSON at all, or another kind of value).
    Syntax,
    /// A JSON object, but a member has the wrong type or is repeated.
    Shape,
}

/// Reads one JSON object of at most `max_bytes` bytes as a `T`.
pub(crate) fn from_slice<T: DeserializeOwned>(
    bytes: &[u8],
    max_bytes: usize,
) -> Result<T, JsonError> {
    if bytes.len() > max_bytes {
        return Err(JsonError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::Syntax)?;
    from_text(text)
}

/// Reads one JSON object from `text` as a `T`, with no size cap: for a
/// caller that capped the bytes it decoded `text` from.
pub(crate) fn from_text<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    let text = without_bom(text);
    // serde's derived structs also accept arrays (fields by position): the
    // core's documents are objects, so anything else is refused first.
    if !text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(JsonError::Syntax);
    }
    text_to_value(text)
}

/// [`from_text`] for a server's answer: a repeated member keeps its last
/// value, as `JSON.parse` (the wasm build's reader, and every JavaScript
/// client's) reads it. Refused, a repeated `refresh_token` would lose the
/// answer after the server rotated.
pub(crate) fn from_answer<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    let read = from_text(text);
    #[cfg(not(target_arch = "wasm32"))]
    if read.as_ref().is_err_and(|e| *e == JsonError::Shape) {
        return last_member_wins(without_bom(text)).ok_or(JsonError::Shape);
    }
    read
}

/// `text` without a leading byte order mark.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{FEFF}').unwrap_or(text)
}

/// The string members `names` of one JSON object of at most `max_bytes`
/// bytes, each `None` when absent or not a string; other members are not
/// looked at. (No type of its own to deserialize: in the wasm build this is
/// `JSON.parse` and a property read per name, no serde code.)
pub(crate) fn string_members(
    bytes: &[u8],
    max_bytes: usize,
    names: &[&str],
) -> Result<Vec<Option<String>>, JsonError> {
    if bytes.len() > max_bytes {
        return Err(JsonError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::Syntax)?;
    string_members_of_text(text, names)
}

/// [`string_members`] of `text`, with no size cap (the caller capped the
/// bytes it decoded `text` from).
pub(crate) fn string_members_of_text(
    text: &str,
    names: &[&str],
) -> Result<Vec<Option<String>>, JsonError> {
    let text = without_bom(text);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let bytes = text.as_bytes();
        // Member names are read as bytes below, which serde_json does not
        // check for raw control characters: so the text is checked as JSON
        // first, skipping every value (lone surrogates' escapes pass, as in
        // JSON.parse).
        serde_json::from_slice::<IgnoredAny>(bytes).map_err(|_| JsonError::Syntax)?;
        let seed = NamedStrings(names);
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let members = serde::de::DeserializeSeed::deserialize(seed, &mut de)
            .and_then(|members| de.end().map(|()| members))
            .map_err(|_| JsonError::Syntax)?;
        Ok(members)
    }
    #[cfg(target_arch = "wasm32")]
    crate::wasm::json_text::string_members(text, names)
}

/// Reads the string members `names` of one JSON object natively, as the
/// host's `JSON.parse` and a property read per name do in the wasm build:
/// member names are read as bytes, so a name with a lone surrogate's escape
/// (which a Rust string cannot hold) is only a name that matches none of
/// `names`; other members' values are skipped unread; a repeated name keeps
/// its last value; a named member that is not a string is `None`. (A named
/// member's string with a lone surrogate fails the whole object: unlike the
/// host's reading, which gives `None`, `serde_json` cannot go on past it.)
#[cfg(not(target_arch = "wasm32"))]
struct NamedStrings<'a>(&'a [&'a str]);

#[cfg(not(target_arch = "wasm32"))]
impl<'de> de::DeserializeSeed<'de> for NamedStrings<'_> {
    type Value = Vec<Option<String>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl<'de> Visitor<'de> for NamedStrings<'_> {
    type Value = Vec<Option<String>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = vec![None; self.0.len()];
        while let Some(MemberName(name)) = map.next_key()? {
            match self.0.iter().position(|n| n.as_bytes() == name.as_slice()) {
                Some(i) => {
                    found[i] = match map.next_value::<Option<Scalar>>()? {
                        Some(Scalar::Str(s)) => Some(s),
                        _ => None,
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// A member name as the bytes `serde_json` decodes it to: a lone
/// surrogate's escape becomes its WTF-8 bytes instead of an error.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) struct MemberName(pub(crate) Vec<u8>);

#[cfg(not(target_arch = "wasm32"))]
impl<'de> Deserialize<'de> for MemberName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = MemberName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<MemberName, E> {
                Ok(MemberName(v.to_vec()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MemberName, E> {
                Ok(MemberName(v.as_bytes().to_vec()))
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

/// `value` as JSON text.
pub(crate) fn to_string<T: Serialize>(value: &T) -> Result<String, JsonError> {
    value_to_text(value)
}

#[cfg(not(target_arch = "wasm32"))]
fn text_to_value<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    use serde_json::error::Category;
    serde_json::from_str(text).map_err(|e| match e.classify() {
        Category::Eof => JsonError::Truncated,
        Category::Data => JsonError::Shape,
        Category::Syntax | Category::Io => JsonError::Syntax,
    })
}

/// After serde's derive refused `text` (a member repeated, or of the wrong
/// type): `text` read again as `JSON.parse` reads it, each repeated
/// member's last value kept (`serde_json::Map` replaces on insert); `None`
/// if that reading is refused too. Only this rare path builds a `Value`,
/// whose nesting limit (128) the first reading does not have.
#[cfg(not(target_arch = "wasm32"))]
fn last_member_wins<T: DeserializeOwned>(text: &str) -> Option<T> {
    let members: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
    T::deserialize(serde_json::Value::Object(members)).ok()
}

#[cfg(not(target_arch = "wasm32"))]
fn value_to_text<T: Serialize>(value: &T) -> Result<String, JsonError> {
    serde_json::to_string(value).map_err(|_| JsonError::Shape)
}

#[cfg(target_arch = "wasm32")]
use crate::wasm::json_text::{text_to_value, value_to_text};

/// One member's value, as far as the core looks at it: which kind it is,
/// so that an error can name the member and say what was wrong. Arrays and
/// objects are skipped, never read. (`null` is `None` of an `Option`.)
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    /// A string.
    Str(String),
    /// An integer that fits in `i64`.
    Int(i64),
    /// Any other number (a fraction, an exponent, out of `i64` range). In
    /// the wasm build a whole number up to 2^53 arrives as `Int` whatever
    /// its spelling (`900.0`, `9e2`): JavaScript numbers do not keep it.
    OtherNumber(f64),
    /// `true` or `false`.
    Bool(bool),
    /// An array or an object (its content skipped).
    Compound,
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(i64::try_from(v).map_or(Scalar::OtherNumber(v as f64), Scalar::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::OtherNumber(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Doc {
        a: Option<Scalar>,
    }

    fn read(text: &str) -> Result<Doc, JsonError> {
        from_slice(text.as_bytes(), 1 << 20)
    }

    #[test]
    fn scalars_keep_their_kind() {
        for (text, expected) in [
            (r#"{"a":"x"}"#, Some(Scalar::Str("x".into()))),
            (r#"{"a":900}"#, Some(Scalar::Int(900))),
            (r#"{"a":-1}"#, Some(Scalar::Int(-1))),
            (r#"{"a":1.5}"#, Some(Scalar::OtherNumber(1.5))),
            (r#"{"a":1e3}"#, Some(Scalar::OtherNumber(1e3))),
            (
                r#"{"a":99999999999999999999}"#,
                Some(Scalar::OtherNumber(1e20)),
            ),
            (r#"{"a":true}"#, Some(Scalar::Bool(true))),
            (r#"{"a":[1,{"k":[]}]}"#, Some(Scalar::Compound)),
            (r#"{"a":{"b":1}}"#, Some(Scalar::Compound)),
            (r#"{"a":null}"#, None),
            (r#" {"b":1} "#, None),
            (
                r#"{"a":"q\" \\ \u00e9 \ud83d\ude00"}"#,
                Some(Scalar::Str("q\" \\ é 😀".into())),
            ),
        ] {
            assert_eq!(read(text), Ok(Doc { a: expected }), "{text}");
        }
    }

    #[test]
    fn string_members_reads_strings_by_name_and_nothing_else() {
        let names = ["a", "b", "c", "d"];
        let read = |text: &str| string_members(text.as_bytes(), 1 << 10, &names);
        assert_eq!(
            read(r#"{"b":"x","a":"\u00e9","c":1,"d":{"e":"f"},"z":"y"}"#),
            Ok(vec![Some("é".into()), Some("x".into()), None, None])
        );
        assert_eq!(read("{}"), Ok(vec![None; 4]));
        for text in ["", "[\"a\"]", "\"a\"", "nope", "{"] {
            assert!(read(text).is_err(), "{text:?}");
        }
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(2000));
        assert_eq!(read(&big), Err(JsonError::TooLarge));
    }

    #[test]
    fn string_members_reads_past_lone_surrogates_in_other_members() {
        let names = ["a", "b"];
        let read = |text: &str| string_members(text.as_bytes(), 1 << 10, &names);
        assert_eq!(
            read(r#"{"\ud800":1,"x":"\udc00","a":"y","\ud800b":"z","b":"w"}"#),
            Ok(vec![Some("y".into()), Some("w".into())])
        );
        // A repeated name keeps its last value, as JSON.parse does.
        assert_eq!(
            read(r#"{"a":"1","a":"2","b":"3","b":4}"#),
            Ok(vec![Some("2".into()), None])
        );
        // Escaped names match.
        assert_eq!(read(r#"{"\u0061":"e"}"#), Ok(vec![Some("e".into()), None]));
        for text in [
            r#"{"a":"x"} 1"#,
            r#"{"a":"x""#,
            "[]",
            "{\"a\u{0}\":1,\"a\":\"x\"}",
            "{\"b\":\"\n\",\"a\":\"x\"}",
        ] {
            assert_eq!(read(text), Err(JsonError::Syntax), "{text:?}");
        }
    }

    #[test]
    fn what_is_not_an_object_is_refused() {
        for text in [
            "", "[1]", r#"["x"]"#, "null", "\"a\"", "1", "<html>", "nope",
        ] {
            assert_eq!(read(text), Err(JsonError::Syntax), "{text:?}");
        }
        for text in ["{", r#"{"a":"#, r#"{"a":"x"#] {
            assert_eq!(read(text), Err(JsonError::Truncated), "{text:?}");
        }
        for text in [r#"{"a":1,}"#, r#"{a:1}"#, r#"{"a":"\ud83d"}"#, r#"{} x"#] {
            assert_eq!(read(text), Err(JsonError::Syntax), "{text:?}");
        }
        assert_eq!(
            from_slice::<Doc>(&[b'{', b'"', 0xff, b'"', b'}'], 100),
            Err(JsonError::Syntax)
        );
    }

    #[test]
    fn a_repeated_member_is_refused_in_a_document_kept_last_in_an_answer() {
        assert_eq!(read(r#"{"a":1,"a":2}"#), Err(JsonError::Shape));
        let answer = |text: &str| from_answer::<Doc>(text);
        for (text, a) in [
            (r#"{"a":1,"a":2}"#, Some(Scalar::Int(2))),
            (r#"{"a":"x","b":1,"a":null}"#, None),
            (r#"{"a":null,"a":[1]}"#, Some(Scalar::Compound)),
            (r#"{"b":1,"b":2,"a":3}"#, Some(Scalar::Int(3))),
        ] {
            assert_eq!(answer(text), Ok(Doc { a }), "{text}");
        }
        assert_eq!(
            answer("\u{FEFF}{\"a\":1,\"a\":2}"),
            Ok(Doc {
                a: Some(Scalar::Int(2))
            })
        );
        // A member of the wrong type is still refused, repeated or not.
        #[derive(Debug, Deserialize)]
        struct Typed {
            #[allow(dead_code)]
            n: u64,
        }
        for text in [r#"{"n":"x"}"#, r#"{"n":1,"n":"x"}"#] {
            assert_eq!(
                from_answer::<Typed>(text).unwrap_err(),
                JsonError::Shape,
                "{text}"
            );
        }
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        assert_eq!(
            read("\u{FEFF}{\"a\":1}"),
            Ok(Doc {
                a: Some(Scalar::Int(1))
            })
        );
        let members = string_members("\u{FEFF}{\"a\":\"x\"}".as_bytes(), 100, &["a"]);
        assert_eq!(members, Ok(vec![Some("x".into())]));
        // Only at the start, and only one.
        assert_eq!(read("{\"a\":1}\u{FEFF}"), Err(JsonError::Syntax));
        assert_eq!(read("\u{FEFF}\u{FEFF}{}"), Err(JsonError::Syntax));
    }

    #[test]
    fn the_size_cap_holds_before_parsing() {
        assert_eq!(from_slice::<Doc>(b"{}", 1), Err(JsonError::TooLarge));
        assert_eq!(from_slice::<Doc>(b"{}", 2), Ok(Doc { a: None }));
    }

    #[test]
    fn deep_nesting_never_exhausts_the_stack() {
        // Skipped members are walked with a loop, however deep.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!(r#"{{"b":{deep},"a":{deep}}}"#);
        assert_eq!(
            read(&text),
            Ok(Doc {
                a: Some(Scalar::Compound)
            })
        );
        // Unclosed, it is an error, not an overflow.
        let open = format!(r#"{{"a":{}"#, "[".repeat(100_000));
        assert!(read(&open).is_err());
    }
}
