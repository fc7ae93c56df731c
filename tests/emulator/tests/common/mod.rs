//! A tiny blocking HTTP/1.1 client over `std::net`, and helpers for the
//! emulator's endpoints. Every call opens a connection, sends one request
//! and reads until the server closes.
#![allow(dead_code, unused_imports)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use freshtoken_emulator::{ClientSpec, Emulator, Fault, Options, TokenState};

/// A response as received.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A header by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends raw bytes and reads the whole answer (Err if the server closed
/// without answering).
pub fn send_raw(port: u16, bytes: &[u8]) -> io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(bytes)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> io::Result<Reply> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    if raw.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed without a response",
        ));
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = raw[split + 4..].to_vec();
    let reply = Reply {
        status,
        headers,
        body,
    };
    if let Some(len) = reply.header("content-length") {
        if len.parse::<usize>().ok() != Some(reply.body.len()) {
            return Err(bad("body length differs from Content-Length"));
        }
    }
    Ok(reply)
}

/// Sends one request.
pub fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Reply> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(port, &bytes)
}

/// `application/x-www-form-urlencoded` text.
pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Tries a form POST to the token endpoint with extra headers.
pub fn try_token_with(
    port: u16,
    headers: &[(&str, &str)],
    pairs: &[(&str, &str)],
) -> io::Result<Reply> {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    send(port, "POST", "/connect/token", &all, form(pairs).as_bytes())
}

/// A form POST to the token endpoint (panics if no response).
pub fn token(port: u16, pairs: &[(&str, &str)]) -> Reply {
    try_token_with(port, &[], pairs).expect("token endpoint answered")
}

/// The `Authorization: Basic` value of RFC 6749 §2.3.1.
pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// Tries a refresh as `test-client` with `client_secret_post`.
pub fn try_refresh(port: u16, refresh_token: &str) -> io::Result<Reply> {
    try_token_with(
        port,
        &[],
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "test-client"),
            ("client_secret", "test-secret"),
            ("refresh_token", refresh_token),
        ],
    )
}

/// A refresh as `test-client` with `client_secret_post`.
pub fn refresh(port: u16, refresh_token: &str) -> Reply {
    try_refresh(port, refresh_token).expect("token endpoint answered")
}

/// Tries a form POST to the revocation endpoint with extra headers.
pub fn try_revoke_with(
    port: u16,
    headers: &[(&str, &str)],
    pairs: &[(&str, &str)],
) -> io::Result<Reply> {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    send(
        port,
        "POST",
        "/connect/revocation",
        &all,
        form(pairs).as_bytes(),
    )
}

/// Tries to revoke `token` as `test-client` with `client_secret_post`,
/// with a `token_type_hint` if given.
pub fn try_revoke(port: u16, token: &str, hint: Option<&str>) -> io::Result<Reply> {
    let mut pairs = vec![
        ("client_id", "test-client"),
        ("client_secret", "test-secret"),
        ("token", token),
    ];
    pairs.extend(hint.map(|h| ("token_type_hint", h)));
    try_revoke_with(port, &[], &pairs)
}

/// Revokes `token` as `test-client` (panics if no response).
pub fn revoke(port: u16, token: &str, hint: Option<&str>) -> Reply {
    try_revoke(port, token, hint).expect("revocation endpoint answered")
}

/// A `client_credentials` request as `test-client`.
pub fn client_credentials(port: u16, extra: &[(&str, &str)]) -> Reply {
    let mut pairs = vec![
        ("grant_type", "client_credentials"),
        ("client_id", "test-client"),
        ("client_secret", "test-secret"),
    ];
    pairs.extend_from_slice(extra);
    token(port, &pairs)
}

/// `POST /graphql` with an optional bearer token; returns the JSON body.
pub fn graphql(port: u16, access_token: Option<&str>) -> Value {
    let auth = access_token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let reply = send(
        port,
        "POST",
        "/graphql",
        &headers,
        br#"{"query":"{ viewer { clientId } }"}"#,
    )
    .expect("graphql answered");
    assert_eq!(reply.status, 200);
    reply.json()
}

/// True when `/graphql` accepts the token.
pub fn api_accepts(port: u16, access_token: &str) -> bool {
    let body = graphql(port, Some(access_token));
    body.get("data").is_some() && body.get("errors").is_none()
}

/// `GET /.well-known/openid-configuration`.
pub fn discovery(port: u16) -> Reply {
    send(port, "GET", "/.well-known/openid-configuration", &[], b"").expect("discovery answered")
}

/// An admin call with an optional JSON body.
pub fn admin(port: u16, method: &str, route: &str, body: Option<Value>) -> Reply {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    send(
        port,
        method,
        &format!("/admin/{route}"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .expect("admin answered")
}

/// The claims of a JWT-shaped string.
pub fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// An unsigned JWT-shaped string with these claims.
pub fn fake_jwt(claims: &Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode("not-a-signature")
    )
}

/// The PKCE S256 challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A default emulator.
pub fn start() -> Emulator {
    Emulator::start(Options::default()).expect("emulator starts")
}
