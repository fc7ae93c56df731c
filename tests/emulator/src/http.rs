//! Minimal HTTP/1.1: reading one request (head plus a Content-Length body)
//! from a socket and writing one response, always with `Connection: close`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::endless::Endless;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest accepted request body (bigger gets 413).
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// Largest accepted request head (bigger gets 431).
const MAX_HEAD: usize = 64 * 1024;
/// A client silent for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One parsed request.
pub(crate) struct Request {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The raw query string (after `?`), possibly empty.
    pub query: String,
    /// Headers with lowercase names.
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The media type of the body, lowercase and without parameters.
    pub fn media_type(&self) -> Option<String> {
        let ct = self.header("content-type")?;
        Some(
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase(),
        )
    }
}

/// What to do with the connection after handling a request.
pub(crate) enum Outcome {
    /// Write this response, then close.
    Respond(Response),
    /// Close the socket without writing a byte.
    Close,
    /// Stream a body that never ends (the `endless` fault).
    Endless(Endless),
}

/// Why no request could be read.
pub(crate) enum ReadError {
    /// The peer went away or stayed silent: just close.
    Closed,
    /// Answer with this error, then close.
    Reject(Response),
}

/// One response to write.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A response with no body.
    pub fn empty(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A body with the given content type.
    pub fn with_body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response::empty(status)
            .header("Content-Type", content_type)
            .body(body)
    }

    /// A JSON body.
    pub fn json(status: u16, value: &Value) -> Self {
        Response::with_body(status, "application/json", value.to_string())
    }

    /// A JSON body that must not be cached (token endpoint responses).
    pub fn no_store_json(status: u16, value: &Value) -> Self {
        Response::json(status, value)
            .header("Cache-Control", "no-store")
            .header("Pragma", "no-cache")
    }

    /// An RFC 6749 §5.2-shaped error.
    pub fn error(status: u16, error: &str, description: &str) -> Self {
        Response::no_store_json(
            status,
            &json!({"error": error, "error_description": description}),
        )
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A 200 JSON object body with its member `name` (if present) set to
    /// `value`; any other response unchanged.
    pub fn with_member(self, name: &str, value: &Value) -> Self {
        if self.status != 200 {
            return self;
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(mut object)) if object.contains_key(name) => {
                object.insert(name.to_owned(), value.clone());
                let body = Value::Object(object).to_string();
                self.body(body)
            }
            _ => self,
        }
    }

    /// The serialized response, with CORS, length and `Connection: close`.
    fn to_bytes(&self) -> Vec<u8> {
        let length = format!("Content-Length: {}", self.body.len());
        let mut bytes = head(self.status, &self.headers, Some(&length)).into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A response head: the status line, `headers`, CORS, the `framing` header
/// line if any (e.g. `Content-Length: 12`) and `Connection: close`.
pub(crate) fn head(
    status: u16,
    headers: &[(&'static str, String)],
    framing: Option<&str>,
) -> String {
    let status = status.clamp(100, 999);
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        // Header values come from fault definitions: keep them one line.
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Access-Control-Allow-Origin: *\r\n");
    head.push_str("Access-Control-Expose-Headers: retry-after, www-authenticate, location\r\n");
    if let Some(framing) = framing {
        head.push_str(framing);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    head
}

/// The standard reason phrase of a status code.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Reads one request, or tells why not; gives up after a silence.
pub(crate) async fn read_request(stream: &mut TcpStream) -> Result<Request, ReadError> {
    match tokio::time::timeout(READ_TIMEOUT, read_request_inner(stream)).await {
        Ok(result) => result,
        Err(_) => Err(ReadError::Closed),
    }
}

/// Reads what the peer sent next into `into`; a closed connection is an error.
async fn read_more(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    into: &mut Vec<u8>,
) -> Result<(), ReadError> {
    let n = stream.read(chunk).await.map_err(|_| ReadError::Closed)?;
    if n == 0 {
        return Err(ReadError::Closed);
    }
    into.extend_from_slice(&chunk[..n]);
    Ok(())
}

async fn read_request_inner(stream: &mut TcpStream) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let (mut req, head_len) = loop {
        read_more(stream, &mut chunk, &mut buf).await?;
        match parse_head(&buf)? {
            Some(parsed) => break parsed,
            None if buf.len() > MAX_HEAD => {
                return Err(reject(431, "request head too large"));
            }
            None => {}
        }
    };
    if req.header("transfer-encoding").is_some() {
        return Err(reject(411, "send a Content-Length body"));
    }
    let length = content_length(&req)?;
    if length > MAX_BODY {
        return Err(reject(413, "request body over 1 MiB"));
    }
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        && buf.len() == head_len
        && length > 0
    {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
    }
    let mut body = buf.split_off(head_len);
    while body.len() < length {
        read_more(stream, &mut chunk, &mut body).await?;
    }
    body.truncate(length);
    req.body = body;
    Ok(req)
}

/// Parses a complete request head; `None` while more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(reject(431, "too many headers")),
        Err(_) => return Err(reject(400, "malformed HTTP request")),
    };
    let target = parsed.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let req = Request {
        method: parsed.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
    };
    Ok(Some((req, head_len)))
}

/// The declared body length (0 when absent); conflicting values are an error.
fn content_length(req: &Request) -> Result<usize, ReadError> {
    let mut length: Option<usize> = None;
    for (name, value) in &req.headers {
        if name != "content-length" {
            continue;
        }
        let n = match value.parse::<u64>() {
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Err(_) => return Err(reject(400, "invalid Content-Length")),
        };
        if length.is_some_and(|l| l != n) {
            return Err(reject(400, "conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}

fn reject(status: u16, description: &str) -> ReadError {
    ReadError::Reject(Response::error(status, "invalid_request", description))
}

/// Writes the response (then [`finish`] ends it).
pub(crate) async fn write_response(stream: &mut TcpStream, response: &Response) {
    let _ = stream.write_all(&response.to_bytes()).await;
    let _ = stream.flush().await;
}

/// Shuts the write side down: the client sees the end of the answer.
pub(crate) async fn finish(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
}

/// Writes an error for a request whose body was not read, then drains what
/// the client still sends for a moment so that the close does not reset the
/// connection before the client has read the answer.
pub(crate) async fn write_rejection(stream: &mut TcpStream, response: &Response) {
    write_response(stream, response).await;
    finish(stream).await;
    let drain = async {
        let mut chunk = [0u8; 8192];
        let mut total = 0usize;
        while total < 4 * MAX_BODY {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a
/// space, `%XX` a byte); `None` if the result is not UTF-8. A `%` not
/// followed by two hex digits is kept as it is.
pub(crate) fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Name/value pairs of a form-encoded string (query or body).
pub(crate) fn form_pairs(s: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(s).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decode_handles_plus_percent_and_stray_percent() {
        assert_eq!(form_decode("s3cr%25t%2B%2F%3D").unwrap(), "s3cr%t+/=");
        assert_eq!(form_decode("a+b").unwrap(), "a b");
        assert_eq!(form_decode("100%").unwrap(), "100%");
        assert_eq!(form_decode("%zz%4").unwrap(), "%zz%4");
        assert!(form_decode("%ff").is_none());
    }

    #[test]
    fn responses_carry_cors_length_and_close() {
        let text =
            String::from_utf8(Response::error(400, "invalid_request", "x").to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(text.contains("Cache-Control: no-store\r\n"));
        assert!(text.contains("Connection: close\r\n"));
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let r = Response::empty(200).header("Retry-After", "1\r\nX-Evil: 1");
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(!text.contains("\r\nX-Evil"));
    }
}
