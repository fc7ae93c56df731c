//! Transport rules (issue 6, DESIGN point 10): the token endpoint must be
//! `https` except on loopback hosts, and a redirect from the token endpoint
//! is never followed — the credentials in the form body and the Basic header
//! must not reach whatever the `Location` names.

use freshtoken::{Config, ErrorCode, ManualClock, MemoryStore, NativeHttp, Seed, TokenClient};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A loopback server answering every request with `status` and `headers`;
/// returns its base URL and a count of the requests it received.
async fn answer_all(status: &'static str, headers: String) -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 16 * 1024];
            let _ = socket.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    (url, hits)
}

#[test]
fn plain_http_is_a_config_error_except_on_loopback() {
    for endpoint in [
        "http://bank.example/connect/token",
        "http://10.0.0.1/connect/token",
        "ftp://bank.example/connect/token",
    ] {
        let err = Config::builder(endpoint, "c")
            .client_secret("s")
            .build()
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Config, "{endpoint}");
        assert!(err.to_string().contains("token_endpoint"), "{err}");
    }
    for endpoint in [
        "https://bank.example/connect/token",
        "http://127.0.0.1:9/connect/token",
        "http://[::1]:9/connect/token",
        "http://localhost:9/connect/token",
    ] {
        assert!(
            Config::builder(endpoint, "c")
                .client_secret("s")
                .build()
                .is_ok(),
            "{endpoint}"
        );
    }
}

#[tokio::test]
async fn redirects_from_the_token_endpoint_are_not_followed() {
    let (elsewhere, elsewhere_hits) = answer_all("200 OK", String::new()).await;
    for status in [
        "301 Moved Permanently",
        "302 Found",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        let location = format!("Location: {elsewhere}/connect/token\r\n");
        let (endpoint, hits) = answer_all(status, location).await;
        let config = Config::builder(format!("{endpoint}/connect/token"), "client")
            .client_secret("secret-SENTINEL-0123456789")
            .build()
            .unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let client = TokenClient::new(config, Arc::new(NativeHttp::new().unwrap()), clock);
        let session = client
            .session("user", Arc::new(MemoryStore::default()))
            .unwrap();
        session
            .seed(Seed {
                refresh_token: "rt-SENTINEL-0123456789".into(),
                ..Seed::default()
            })
            .await
            .unwrap();
        let err = session.refresh().await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidResponse, "{status}: {err}");
        assert!(!err.to_string().contains("SENTINEL"), "{status}: {err}");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "{status}: one request, no retry"
        );
        let err = client.client_token(&["accounts"]).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidResponse, "{status}: {err}");
    }
    assert_eq!(
        elsewhere_hits.load(Ordering::SeqCst),
        0,
        "no request reached the redirect target"
    );
}
