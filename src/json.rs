//! A small, strict JSON reader and writer for token responses, error bodies
//! and stored records.
//!
//! Hand-written on purpose: serde + serde_json (and the float formatting
//! their error messages pull in) made up about a third of the wasm binary.
//! The core only needs objects of strings, integers, booleans and nulls, so
//! numbers are read as integers when they are integers and otherwise kept
//! as "some other number"; no float code is linked. Input is bounded
//! (nesting depth, duplicate keys rejected) and never panics.

/// A parsed JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// Any other number (fraction, exponent, or out of `i64` range).
    OtherNumber,
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, in document order (keys are unique).
    Object(Vec<(String, Json)>),
}

use std::collections::HashSet;

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 32;

/// Objects up to this many members check duplicate keys by scanning.
const SMALL_OBJECT: usize = 16;

impl Json {
    /// Parses one JSON document (surrounding whitespace allowed).
    pub fn parse(input: &[u8]) -> Result<Json, JsonError> {
        let text = std::str::from_utf8(input).map_err(|_| JsonError::Syntax)?;
        let mut parser = Parser {
            bytes: text.as_bytes(),
            text,
            pos: 0,
        };
        let value = parser.value(0)?;
        parser.skip_ws();
        if parser.pos != parser.bytes.len() {
            return Err(JsonError::Syntax);
        }
        Ok(value)
    }

    /// The member `name` of an object (`None` for other values).
    pub fn get(&self, name: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Why a document is not JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonError {
    /// It ends before the value does.
    Truncated,
    /// It is not valid JSON.
    Syntax,
    /// It nests deeper than the core accepts.
    TooDeep,
    /// An object repeats a key.
    DuplicateKey,
}

struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Result<u8, JsonError> {
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or(JsonError::Truncated)
    }

    fn expect(&mut self, literal: &str, value: Json) -> Result<Json, JsonError> {
        let end = self.pos + literal.len();
        match self.bytes.get(self.pos..end) {
            Some(found) if found == literal.as_bytes() => {
                self.pos = end;
                Ok(value)
            }
            _ if end > self.bytes.len()
                && literal.as_bytes().starts_with(&self.bytes[self.pos..]) =>
            {
                Err(JsonError::Truncated)
            }
            _ => Err(JsonError::Syntax),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        self.skip_ws();
        match self.peek()? {
            b'n' => self.expect("null", Json::Null),
            b't' => self.expect("true", Json::Bool(true)),
            b'f' => self.expect("false", Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'[' => self.array(depth),
            b'{' => self.object(depth),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(JsonError::Syntax),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(JsonError::Syntax),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.pos += 1;
        let mut members: Vec<(String, Json)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek()? != b'"' {
                return Err(JsonError::Syntax);
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek()? != b':' {
                return Err(JsonError::Syntax);
            }
            self.pos += 1;
            let value = self.value(depth + 1)?;
            // A scan while the object is small; past that, a set, so that no
            // object of any size makes the check quadratic.
            let duplicate = if members.len() < SMALL_OBJECT {
                members.iter().any(|(k, _)| *k == key)
            } else {
                if seen.is_empty() {
                    seen.extend(members.iter().map(|(k, _)| k.clone()));
                }
                !seen.insert(key.clone())
            };
            if duplicate {
                return Err(JsonError::DuplicateKey);
            }
            members.push((key, value));
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(JsonError::Syntax),
            }
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        if self.peek()? == b'-' {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return Err(JsonError::Syntax),
        }
        let mut integral = true;
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.required_digits()?;
            integral = false;
        }
        if matches!(self.bytes.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.bytes.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.required_digits()?;
            integral = false;
        }
        let text = &self.text[start..self.pos];
        Ok(match integral.then(|| text.parse::<i64>().ok()).flatten() {
            Some(n) => Json::Int(n),
            None => Json::OtherNumber,
        })
    }

    fn digits(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), JsonError> {
        if !self.peek()?.is_ascii_digit() {
            return Err(JsonError::Syntax);
        }
        self.digits();
        Ok(())
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            let run = self.pos;
            while matches!(self.bytes.get(self.pos), Some(&b) if b != b'"' && b != b'\\' && b >= 0x20)
            {
                self.pos += 1;
            }
            out.push_str(&self.text[run..self.pos]);
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let escaped = self.peek()?;
                    self.pos += 1;
                    let c = match escaped {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(JsonError::Syntax),
                    };
                    out.push(c);
                }
                _ => return Err(JsonError::Syntax), // an unescaped control character
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or(JsonError::Truncated)?;
        let mut value = 0;
        for &d in digits {
            value = value * 16 + (d as char).to_digit(16).ok_or(JsonError::Syntax)?;
        }
        self.pos += 4;
        Ok(value)
    }

    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(JsonError::Syntax);
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(JsonError::Syntax);
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(JsonError::Syntax),
            _ => first,
        };
        char::from_u32(code).ok_or(JsonError::Syntax)
    }
}

/// Builds a JSON object text member by member.
pub struct ObjectWriter {
    out: String,
}

impl Default for ObjectWriter {
    fn default() -> Self {
        ObjectWriter {
            out: String::from("{"),
        }
    }
}

impl ObjectWriter {
    fn key(&mut self, name: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        write_string(&mut self.out, name);
        self.out.push(':');
    }

    /// Adds a string member.
    pub fn string(&mut self, name: &str, value: &str) -> &mut Self {
        self.key(name);
        write_string(&mut self.out, value);
        self
    }

    /// Adds an integer member.
    pub fn int(&mut self, name: &str, value: u64) -> &mut Self {
        self.key(name);
        self.out.push_str(&value.to_string());
        self
    }

    /// Adds a boolean member.
    pub fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.key(name);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// The finished object.
    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// `value` as a JSON string literal, quotes included.
pub fn string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    write_string(&mut out, value);
    out
}

/// Appends `value` as a JSON string (the escapes serde_json uses).
fn write_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Json, JsonError> {
        Json::parse(s.as_bytes())
    }

    #[test]
    fn reads_the_shapes_token_endpoints_send() {
        let v = parse(r#" {"a":"x","n":900,"neg":-1,"f":1.5,"e":1e3,"big":99999999999999999999,"t":true,"z":null,"arr":[1,{"k":[]}]} "#).unwrap();
        assert_eq!(v.get("a"), Some(&Json::Str("x".into())));
        assert_eq!(v.get("n"), Some(&Json::Int(900)));
        assert_eq!(v.get("neg"), Some(&Json::Int(-1)));
        assert_eq!(v.get("f"), Some(&Json::OtherNumber));
        assert_eq!(v.get("e"), Some(&Json::OtherNumber));
        assert_eq!(v.get("big"), Some(&Json::OtherNumber));
        assert_eq!(v.get("t"), Some(&Json::Bool(true)));
        assert_eq!(v.get("z"), Some(&Json::Null));
        assert!(matches!(v.get("arr"), Some(Json::Array(items)) if items.len() == 2));
        assert_eq!(v.get("missing"), None);
    }

    #[test]
    fn string_escapes_and_unicode() {
        let v = parse(r#""q\" b\\ s\/ \b\f\n\r\t \u00e9 \ud83d\ude00 é""#).unwrap();
        assert_eq!(v, Json::Str("q\" b\\ s/ \u{8}\u{c}\n\r\t é 😀 é".into()));
        for bad in [
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\x""#,
            r#""\u12g4""#,
            "\"a\u{1}b\"",
        ] {
            assert_eq!(parse(bad), Err(JsonError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn rejects_what_is_not_json() {
        for bad in [
            "", "{", "[1,", "{\"a\":", "\"abc", "nul", "tru", "1.", "-", "1e",
        ] {
            assert_eq!(parse(bad), Err(JsonError::Truncated), "{bad:?}");
        }
        for bad in [
            "{a:1}",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "+1",
            ".5",
            "1.x",
            "NaN",
            "{} x",
            "<html>",
            "'a'",
            "{\"a\" 1}",
        ] {
            assert_eq!(parse(bad), Err(JsonError::Syntax), "{bad:?}");
        }
        assert_eq!(Json::parse(&[b'"', 0xff, b'"']), Err(JsonError::Syntax));
        assert_eq!(parse(r#"{"a":1,"a":2}"#), Err(JsonError::DuplicateKey));
    }

    #[test]
    fn duplicate_keys_in_big_objects_are_found_in_linear_time() {
        let members: Vec<String> = (0..200_000).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{}}}", members.join(","));
        assert!(matches!(parse(&text), Ok(Json::Object(m)) if m.len() == 200_000));
        let with_dup = format!("{{{},\"k7\":0}}", members.join(","));
        assert_eq!(parse(&with_dup), Err(JsonError::DuplicateKey));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep), Err(JsonError::TooDeep));
        let ok = format!("{}{}", "[".repeat(32), "]".repeat(32));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn writer_escapes_like_serde_json_and_round_trips() {
        let mut w = ObjectWriter::default();
        w.string("s", "a\"b\\c\n\u{1}é")
            .int("n", 1_700_000_000_000)
            .bool("b", true);
        let text = w.finish();
        assert_eq!(
            text,
            "{\"s\":\"a\\\"b\\\\c\\n\\u0001é\",\"n\":1700000000000,\"b\":true}"
        );
        let v = parse(&text).unwrap();
        assert_eq!(v.get("s"), Some(&Json::Str("a\"b\\c\n\u{1}é".into())));
        assert_eq!(v.get("n"), Some(&Json::Int(1_700_000_000_000)));
    }
}
