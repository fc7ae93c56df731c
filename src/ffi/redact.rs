//! `Debug` and `Display` for the records that carry secrets. They are
//! exported through uniffi (`#[uniffi::export(Debug, Display)]`), so Kotlin's
//! `toString()`, Swift's `description`/`debugDescription` and Python's
//! `str()`/`repr()` print these too: tokens, secrets, PEM keys, PKCE
//! verifiers, form bodies and credential headers show at most a short prefix
//! and their length (DESIGN point 10).

use std::fmt;

use super::types::{
    AuthorizationRequest, CachedToken, ExchangeCodeOptions, HttpHeader, HttpRequest, HttpResponse,
    SeedOptions, TokenClientOptions, TokenInfo, VersionedRecord,
};
use crate::secret::Hidden;

fn hidden_opt(value: &Option<String>) -> Option<Hidden<'_>> {
    value.as_deref().map(Hidden)
}

/// A URL with its query replaced by its length: endpoints are checked to
/// carry no credentials or fragment, but a query may hold an API key
/// (`?code=…`), and requests and options are printed into logs.
struct QueryHidden<'a>(&'a str);

impl fmt::Debug for QueryHidden<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.split_once('?') {
            Some((base, query)) => write!(f, "\"{base}?<{} chars>\"", query.chars().count()),
            None => fmt::Debug::fmt(self.0, f),
        }
    }
}

fn url_opt(value: &Option<String>) -> Option<QueryHidden<'_>> {
    value.as_deref().map(QueryHidden)
}

/// Header names whose values are credentials (compared lowercase).
fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["auth", "cookie", "token", "secret", "key", "assertion"]
        .iter()
        .any(|word| name.contains(word))
}

impl fmt::Debug for TokenClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClientOptions")
            .field("token_endpoint", &QueryHidden(&self.token_endpoint))
            .field("client_id", &self.client_id)
            .field("client_secret", &hidden_opt(&self.client_secret))
            .field("client_auth", &self.client_auth)
            .field("private_key_pem", &hidden_opt(&self.private_key_pem))
            .field("key_id", &self.key_id)
            .field("assertion_audience", &self.assertion_audience)
            .field("audience", &self.audience)
            .field(
                "authorization_endpoint",
                &url_opt(&self.authorization_endpoint),
            )
            .field("revocation_endpoint", &url_opt(&self.revocation_endpoint))
            .field("leeway_seconds", &self.leeway_seconds)
            .field("timeout_ms", &self.timeout_ms)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SeedOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedOptions")
            .field("refresh_token", &Hidden(&self.refresh_token))
            .field("access_token", &hidden_opt(&self.access_token))
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("id_token", &hidden_opt(&self.id_token))
            .finish()
    }
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("url", &self.url)
            .field("code_verifier", &Hidden(&self.code_verifier))
            .field("state", &self.state)
            .field("nonce", &self.nonce)
            .finish()
    }
}

impl fmt::Debug for ExchangeCodeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeCodeOptions")
            .field("code", &Hidden(&self.code))
            .field("code_verifier", &Hidden(&self.code_verifier))
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

impl fmt::Debug for HttpHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("HttpHeader");
        s.field("name", &self.name);
        if is_credential_header(&self.name) {
            s.field("value", &Hidden(&self.value))
        } else {
            s.field("value", &self.value)
        }
        .finish()
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &QueryHidden(&self.url))
            .field("headers", &self.headers)
            .field("body", &Hidden(&self.body))
            .field("timeout_ms", &self.timeout_ms)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

impl fmt::Debug for TokenInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenInfo")
            .field("access_token", &Hidden(&self.access_token))
            .field("expires_at_ms", &self.expires_at_ms)
            .field("scope", &self.scope)
            .field("id_token", &self.id_token.as_deref().map(Hidden))
            .field("refresh_expires_at_ms", &self.refresh_expires_at_ms)
            .finish()
    }
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("token", &Hidden(&self.token))
            .field("fresh_until_ms", &self.fresh_until_ms)
            .finish()
    }
}

impl fmt::Debug for VersionedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionedRecord")
            .field("record", &Hidden(&self.record))
            .field("version", &self.version)
            .finish()
    }
}

/// `Display` is the same redacted text as `Debug` (Kotlin's `toString()`
/// prefers `Display`).
macro_rules! display_as_debug {
    ($($t:ty),* $(,)?) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    )*};
}

display_as_debug!(
    TokenInfo,
    CachedToken,
    TokenClientOptions,
    SeedOptions,
    AuthorizationRequest,
    ExchangeCodeOptions,
    HttpHeader,
    HttpRequest,
    HttpResponse,
    VersionedRecord,
);

#[cfg(test)]
mod tests {
    use super::*;

    const SENTINEL: &str = "SENTINEL-0123456789-secret";

    fn assert_hidden(shown: String) {
        assert!(!shown.contains(SENTINEL), "{shown}");
        assert!(!shown.contains("0123456789"), "{shown}");
    }

    #[test]
    fn records_hide_every_secret_in_debug_and_display() {
        let info = TokenInfo {
            access_token: SENTINEL.into(),
            expires_at_ms: 1,
            scope: Some("accounts".into()),
            id_token: Some(SENTINEL.into()),
            refresh_expires_at_ms: None,
        };
        let cached = CachedToken {
            token: SENTINEL.into(),
            fresh_until_ms: 1,
        };
        assert_hidden(format!("{cached:?} {cached}"));
        let shown = format!("{info:?} {info}");
        assert_hidden(shown.clone());
        assert!(
            shown.contains("accounts") && shown.contains("26 chars"),
            "{shown}"
        );

        let request = HttpRequest {
            method: "POST".into(),
            url: format!("https://x.example/token?code={SENTINEL}"),
            headers: vec![
                HttpHeader {
                    name: "Authorization".into(),
                    value: format!("Basic {SENTINEL}"),
                },
                HttpHeader {
                    name: "Content-Type".into(),
                    value: "application/x-www-form-urlencoded".into(),
                },
            ],
            body: format!("refresh_token={SENTINEL}"),
            timeout_ms: 1,
            max_response_bytes: 1,
        };
        let shown = format!("{request:?} {request}");
        assert_hidden(shown.clone());
        assert!(
            shown.contains("application/x-www-form-urlencoded")
                && shown.contains("\"https://x.example/token?<31 chars>\""),
            "{shown}"
        );

        for shown in [
            format!(
                "{}",
                SeedOptions {
                    refresh_token: SENTINEL.into(),
                    access_token: Some(SENTINEL.into()),
                    expires_in: None,
                    scope: None,
                    id_token: Some(SENTINEL.into()),
                }
            ),
            format!(
                "{:?}",
                HttpResponse {
                    status: 200,
                    headers: vec![],
                    body: SENTINEL.as_bytes().to_vec(),
                }
            ),
            format!(
                "{}",
                VersionedRecord {
                    record: SENTINEL.into(),
                    version: "7".into(),
                }
            ),
            format!(
                "{:?}",
                ExchangeCodeOptions {
                    code: SENTINEL.into(),
                    code_verifier: SENTINEL.into(),
                    redirect_uri: "app://cb".into(),
                }
            ),
            format!(
                "{}",
                AuthorizationRequest {
                    url: "https://x.example/authorize".into(),
                    code_verifier: SENTINEL.into(),
                    state: "s".into(),
                    nonce: "n".into(),
                }
            ),
        ] {
            assert_hidden(shown);
        }
    }

    #[test]
    fn options_hide_the_client_secret_and_key() {
        let options = TokenClientOptions {
            token_endpoint: "https://x.example/token".into(),
            client_id: "client".into(),
            client_secret: Some(SENTINEL.into()),
            client_auth: None,
            private_key_pem: Some(SENTINEL.into()),
            key_id: None,
            assertion_audience: None,
            audience: None,
            authorization_endpoint: None,
            revocation_endpoint: None,
            leeway_seconds: None,
            user_token_lifetime_seconds: None,
            client_token_lifetime_seconds: None,
            refresh_token_lifetime_seconds: None,
            timeout_ms: None,
            store_timeout_ms: None,
            max_sessions: None,
            lease_ttl_ms: None,
            lease_wait_ms: None,
            retry: None,
            on_event: None,
            event_keys: None,
        };
        let shown = format!("{options:?} {options}");
        assert_hidden(shown.clone());
        assert!(shown.contains("client"), "{shown}");
    }
}
