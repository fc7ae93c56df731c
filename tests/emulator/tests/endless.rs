//! The `endless` fault: a body that never ends, the bytes the emulator got
//! onto the wire before the client closed, and no leftover work after.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use freshtoken_emulator::{
    EndlessStream, FaultKind, Framing, StreamEnd, DECLARED_LENGTH, DEFAULT_ENDLESS_MAX_BYTES,
};
use serde_json::json;

/// The response cap the clients under test enforce (64 KiB).
const CAP: usize = 64 * 1024;

/// Sends a refresh request and reads the response head; returns the open
/// connection, the head, and the body bytes read along with it.
fn start_refresh(port: u16, refresh_token: &str) -> (TcpStream, String, Vec<u8>) {
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("client_id", "test-client"),
        ("client_secret", "test-secret"),
        ("refresh_token", refresh_token),
    ]);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /connect/token HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the end of the head");
        raw.extend_from_slice(&chunk[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(raw[..end].to_vec()).unwrap();
            return (stream, head, raw[end + 4..].to_vec());
        }
    }
}

/// Reads until at least `at_least` body bytes arrived (or the server
/// closed); returns them.
fn read_body(stream: &mut TcpStream, mut body: Vec<u8>, at_least: usize) -> Vec<u8> {
    let mut chunk = [0u8; 8192];
    while body.len() < at_least {
        let n = stream.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body
}

fn has_header(head: &str, line: &str) -> bool {
    head.split("\r\n").any(|l| l.eq_ignore_ascii_case(line))
}

/// Waits until no connection but the asking one is open: the endless
/// writer's task has finished.
fn wait_no_open_connections(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = admin(port, "GET", "connections", None).json()["open"].clone();
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} connection(s) still open");
    }
}

#[test]
fn a_client_that_stops_at_the_cap_made_the_emulator_write_little() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::endless());
    let (mut stream, head, body) = start_refresh(em.port(), &seeded.refresh_token);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(has_header(&head, "transfer-encoding: chunked"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    assert!(
        has_header(&head, "content-type: application/json"),
        "{head}"
    );
    let body = read_body(&mut stream, body, CAP + 1);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(r#"{"access_token":"x","#), "{}", &text[..80]);
    assert!(
        em.endless_streams()[0].end.is_none(),
        "still streaming while the client is connected"
    );
    drop(stream);

    let streams = em.wait_endless_ended(1);
    assert_eq!(streams.len(), 1);
    let s = &streams[0];
    assert_eq!((s.status, s.framing), (200, Framing::Chunked));
    assert_eq!(s.end, Some(StreamEnd::ClientClosed));
    assert!(
        s.bytes_written as usize > CAP && s.bytes_written < 1024 * 1024,
        "wrote {} bytes for a client that read {}",
        s.bytes_written,
        body.len()
    );
    assert_eq!(
        em.refresh_token_state(&seeded.refresh_token),
        TokenState::Active,
        "not processed"
    );
    assert_eq!(em.counters().faults_applied, 1);
    wait_no_open_connections(em.port());
}

#[test]
fn close_framing_sends_no_length_and_length_framing_declares_a_huge_one() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    for framing in [Framing::Close, Framing::Length] {
        em.push_fault(Fault::new(FaultKind::Endless {
            status: 503,
            framing,
            max_bytes: DEFAULT_ENDLESS_MAX_BYTES,
        }));
        let (mut stream, head, body) = start_refresh(em.port(), &seeded.refresh_token);
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(!head.to_ascii_lowercase().contains("transfer-encoding"));
        let length = format!("content-length: {DECLARED_LENGTH}");
        assert_eq!(has_header(&head, &length), framing == Framing::Length);
        let body = read_body(&mut stream, body, 100);
        assert!(body.starts_with(br#"{"access_token":"x","#));
    }
    let streams = em.wait_endless_ended(2);
    assert_eq!(
        streams.iter().map(|s| s.framing).collect::<Vec<_>>(),
        [Framing::Close, Framing::Length]
    );
    assert!(streams
        .iter()
        .all(|s| s.end == Some(StreamEnd::ClientClosed) && s.status == 503));
}

#[test]
fn max_bytes_stops_a_client_that_reads_on() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::new(FaultKind::Endless {
        status: 200,
        framing: Framing::Close,
        max_bytes: 300_000,
    }));
    let (mut stream, _, body) = start_refresh(em.port(), &seeded.refresh_token);
    let body = read_body(&mut stream, body, usize::MAX);
    assert_eq!(body.len(), 300_000, "the whole body up to max_bytes");
    let streams = em.wait_endless_ended(1);
    assert_eq!(
        streams,
        [EndlessStream {
            status: 200,
            framing: Framing::Close,
            bytes_written: 300_000,
            end: Some(StreamEnd::MaxBytes),
        }]
    );
    wait_no_open_connections(em.port());
}

#[test]
fn streams_are_listed_and_awaited_over_http_and_forgotten_by_reset() {
    let em = start();
    let port = em.port();
    let seeded = em.seed("test-client", "openid offline_access");
    let added = admin(port, "POST", "faults", Some(json!({"kind": "endless"})));
    assert_eq!(added.status, 200, "{}", added.text());
    assert_eq!(
        admin(port, "GET", "faults", None).json(),
        json!([{"kind": "endless", "status": 200, "framing": "chunked",
                "max_bytes": DEFAULT_ENDLESS_MAX_BYTES, "count": 1}])
    );
    let (mut stream, _, body) = start_refresh(port, &seeded.refresh_token);
    read_body(&mut stream, body, 1000);

    let pending = admin(
        port,
        "POST",
        "streams/wait",
        Some(json!({"timeout_ms": 20})),
    );
    assert_eq!(pending.status, 504);
    assert_eq!(pending.json()["streams"][0]["end"], json!(null));

    drop(stream);
    let ended = admin(port, "POST", "streams/wait", Some(json!({"count": 1})));
    assert_eq!(ended.status, 200, "{}", ended.text());
    let listed = ended.json();
    assert_eq!(listed[0]["end"], "client_closed");
    assert!(listed[0]["bytes_written"].as_u64().unwrap() >= 1000);
    assert_eq!(admin(port, "GET", "streams", None).json(), listed);

    admin(port, "POST", "reset", None);
    assert_eq!(admin(port, "GET", "streams", None).json(), json!([]));
    assert_eq!(admin(port, "DELETE", "streams", None).status, 405);
}

#[test]
fn a_held_request_can_end_in_an_endless_answer() {
    let em = start();
    let seeded = em.seed("test-client", "openid offline_access");
    em.push_fault(Fault::hold());
    em.push_fault(Fault::endless());
    let port = em.port();
    let rt = seeded.refresh_token.clone();
    let client = std::thread::spawn(move || {
        let (mut stream, head, body) = start_refresh(port, &rt);
        read_body(&mut stream, body, 10);
        head
    });
    em.wait_held(1);
    assert!(em.endless_streams().is_empty());
    em.release_held();
    assert!(client.join().unwrap().starts_with("HTTP/1.1 200 OK"));
    assert_eq!(
        em.wait_endless_ended(1)[0].end,
        Some(StreamEnd::ClientClosed)
    );
}
