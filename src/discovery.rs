//! Provider discovery (OpenID Connect Discovery 1.0 §4, RFC 8414): read
//! `{issuer}/.well-known/openid-configuration` once, check it, and take the
//! endpoints from it instead of guessing them.

use crate::clock::Clock;
use crate::config::MAX_RESPONSE_BYTES;
use crate::deadline::within;
use crate::endpoint;
use crate::error::Error;
use crate::http::{HttpClient, HttpError, HttpRequest};
use crate::json_text::{self, JsonError, Scalar};
use serde::Deserialize;

/// The path every OpenID provider publishes its metadata at.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// What freshtoken reads from a provider's discovery document, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderMetadata {
    /// The issuer, equal to the one asked for.
    pub issuer: String,
    /// The token endpoint (https, or http on a loopback host).
    pub token_endpoint: String,
    /// The authorization endpoint, when published.
    pub authorization_endpoint: Option<String>,
    /// The revocation endpoint (RFC 7009), when published.
    pub revocation_endpoint: Option<String>,
    /// `token_endpoint_auth_methods_supported` (empty when not published,
    /// which means `client_secret_basic` only).
    pub token_endpoint_auth_methods: Vec<String>,
    /// `revocation_endpoint_auth_methods_supported`, when published.
    pub revocation_endpoint_auth_methods: Vec<String>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207): the
    /// provider names itself (`iss`) in every authorization response, so
    /// a response without `iss` must be refused (false when not published).
    pub authorization_response_iss_parameter_supported: bool,
}

/// The members read, as sent.
#[derive(Deserialize)]
struct Document {
    issuer: Option<Scalar>,
    token_endpoint: Option<Scalar>,
    authorization_endpoint: Option<Scalar>,
    revocation_endpoint: Option<Scalar>,
    // `Option` items: a `null` among the names is skipped, as a number is.
    token_endpoint_auth_methods_supported: Option<Vec<Option<Scalar>>>,
    revocation_endpoint_auth_methods_supported: Option<Vec<Option<Scalar>>>,
    authorization_response_iss_parameter_supported: Option<Scalar>,
}

/// The discovery document's URL for `issuer` (a trailing `/` is dropped).
pub fn discovery_url(issuer: &str) -> Result<String, Error> {
    endpoint::validate("issuer", issuer)?;
    if issuer.contains('?') {
        return Err(Error::config("issuer", "must not have a query"));
    }
    Ok(format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/')))
}

/// Fetches and checks `issuer`'s discovery document through `http`, one
/// request bounded by `timeout_ms`. A missing or bad document is
/// `invalid_response`; an unreachable provider is `network` or `timeout`.
pub async fn discover(
    http: &dyn HttpClient,
    clock: &dyn Clock,
    issuer: &str,
    timeout_ms: u64,
) -> Result<ProviderMetadata, Error> {
    let url = discovery_url(issuer)?;
    let request = HttpRequest {
        method: "GET".to_owned(),
        url,
        headers: vec![("Accept".to_owned(), "application/json".to_owned())],
        body: String::new(),
        timeout_ms,
        max_response_bytes: MAX_RESPONSE_BYTES,
    };
    let sent = within(clock, timeout_ms.saturating_add(1_000), http.send(request)).await;
    let sent = sent.unwrap_or_else(|abandoned| Err(crate::exchange::abandoned_request(abandoned)));
    let response = match sent {
        Ok(response) => response,
        Err(HttpError::Timeout) => return Err(Error::Timeout),
        Err(HttpError::NotSent(message)) => {
            return Err(Error::Network {
                message,
                maybe_sent: false,
            })
        }
        Err(HttpError::Interrupted(message)) => {
            return Err(Error::Network {
                message,
                maybe_sent: true,
            })
        }
        Err(HttpError::TooLarge) => return Err(bad(None, "the document is too large")),
    };
    let status = response.status;
    match status {
        200 => read(&response.body, issuer).map_err(|m| bad(Some(status), &m)),
        429 | 500..=599 => Err(Error::Transient {
            status,
            attempts: 1,
            retry_after_ms: response
                .header("retry-after")
                .and_then(|v| crate::retry::parse_retry_after(v, clock.now_ms())),
        }),
        _ => Err(bad(Some(status), "no discovery document")),
    }
}

fn bad(status: Option<u16>, message: &str) -> Error {
    Error::invalid_response(status, format!("discovery: {message}"))
}

/// Reads and checks the document's members. A repeated member keeps its
/// last value, as `JSON.parse` reads it in the wasm build.
fn read(body: &[u8], issuer: &str) -> Result<ProviderMetadata, String> {
    if body.len() > MAX_RESPONSE_BYTES {
        return Err("the document is too large".to_owned());
    }
    let not_json = || "the document is not a JSON object".to_owned();
    let body = std::str::from_utf8(body).map_err(|_| not_json())?;
    let doc: Document = json_text::from_answer(body).map_err(|e| match e {
        JsonError::Shape => "a member has the wrong type".to_owned(),
        JsonError::TooLarge => "the document is too large".to_owned(),
        _ => not_json(),
    })?;
    let found = text(doc.issuer, "issuer")?.ok_or("issuer is missing")?;
    if !same_issuer(&found, issuer) {
        return Err("issuer does not match the issuer asked for".to_owned());
    }
    // Plain http is for loopback tests: an https issuer's document must
    // not send the client's secrets and tokens over it (to a local port).
    let secure = endpoint::is_https(issuer);
    let url = |value: Option<Scalar>, field: &str| -> Result<Option<String>, String> {
        let value = text(value, field)?;
        if let Some(url) = &value {
            endpoint::validate(field, url).map_err(|e| e.to_string())?;
            if secure && !endpoint::is_https(url) {
                return Err(format!("{field} must use https, as the issuer does"));
            }
        }
        Ok(value)
    };
    Ok(ProviderMetadata {
        issuer: found,
        token_endpoint: url(doc.token_endpoint, "token_endpoint")?
            .ok_or("token_endpoint is missing")?,
        authorization_endpoint: url(doc.authorization_endpoint, "authorization_endpoint")?,
        revocation_endpoint: url(doc.revocation_endpoint, "revocation_endpoint")?,
        token_endpoint_auth_methods: names(doc.token_endpoint_auth_methods_supported),
        revocation_endpoint_auth_methods: names(doc.revocation_endpoint_auth_methods_supported),
        // A flag that weakens the client's checks when misread: anything
        // but a boolean is a bad document, not "false".
        authorization_response_iss_parameter_supported: match doc
            .authorization_response_iss_parameter_supported
        {
            None => false,
            Some(Scalar::Bool(supported)) => supported,
            Some(_) => {
                return Err(
                    "authorization_response_iss_parameter_supported is not a boolean".to_owned(),
                )
            }
        },
    })
}

fn text(value: Option<Scalar>, field: &str) -> Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(Scalar::Str(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(format!("{field} is not a non-empty string")),
    }
}

fn names(values: Option<Vec<Option<Scalar>>>) -> Vec<String> {
    // A loop, not `filter_map(..).collect()`: fewer wasm bytes.
    let mut names = Vec::new();
    for value in values.unwrap_or_default() {
        if let Some(Scalar::Str(name)) = value {
            names.push(name);
        }
    }
    names
}

/// Whether the document's issuer `found` is the one asked for: identical
/// (RFC 8414 §3.3, OpenID Connect Discovery §4.3), or differing by the one
/// trailing `/` the discovery URL drops (asked `https://tenant.example`,
/// published `https://tenant.example/`, as some providers do).
fn same_issuer(found: &str, asked: &str) -> bool {
    found == asked
        || found.strip_suffix('/') == Some(asked)
        || asked.strip_suffix('/') == Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://secure.stitch.money/connect";

    fn doc(extra: &str) -> Vec<u8> {
        format!(
            r#"{{"issuer":"{ISSUER}","token_endpoint":"{ISSUER}/token",
               "authorization_endpoint":"{ISSUER}/authorize",
               "revocation_endpoint":"{ISSUER}/revocation",
               "token_endpoint_auth_methods_supported":["client_secret_post","private_key_jwt"]{extra}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_good_document_gives_every_endpoint() {
        let m = read(&doc(""), ISSUER).unwrap();
        assert_eq!(m.token_endpoint, format!("{ISSUER}/token"));
        assert_eq!(
            m.revocation_endpoint.as_deref(),
            Some(&*format!("{ISSUER}/revocation"))
        );
        assert_eq!(
            m.token_endpoint_auth_methods,
            ["client_secret_post", "private_key_jwt"]
        );
        assert!(read(&doc(""), &format!("{ISSUER}/")).is_ok());
    }

    #[test]
    fn the_iss_flag_is_read_strictly() {
        let flag = |extra: &str| {
            read(&doc(extra), ISSUER).map(|m| m.authorization_response_iss_parameter_supported)
        };
        assert_eq!(flag(""), Ok(false));
        let on = r#","authorization_response_iss_parameter_supported":true"#;
        assert_eq!(flag(on), Ok(true));
        let off = r#","authorization_response_iss_parameter_supported":false"#;
        assert_eq!(flag(off), Ok(false));
        for wrong in ["\"true\"", "1", "[true]"] {
            let extra = format!(r#","authorization_response_iss_parameter_supported":{wrong}"#);
            let error = flag(&extra).unwrap_err();
            assert!(error.contains("not a boolean"), "{wrong}: {error}");
        }
    }

    #[test]
    fn bad_documents_name_what_is_wrong() {
        let wrong_issuer = read(&doc(""), "https://evil.example").unwrap_err();
        assert!(wrong_issuer.contains("issuer"), "{wrong_issuer}");
        let plain = br#"{"issuer":"https://secure.stitch.money/connect","token_endpoint":"http://secure.stitch.money/connect/token"}"#;
        assert!(read(plain, ISSUER).unwrap_err().contains("https"));
        let missing = br#"{"issuer":"https://secure.stitch.money/connect"}"#;
        assert!(read(missing, ISSUER)
            .unwrap_err()
            .contains("token_endpoint"));
        assert!(read(b"<html>", ISSUER).unwrap_err().contains("JSON"));
        let typed = read(&doc(r#","revocation_endpoint":7"#), ISSUER);
        assert!(typed.is_err());
    }

    #[test]
    fn the_issuer_must_be_the_one_asked_for_but_for_one_trailing_slash() {
        for (published, asked, same) in [
            (ISSUER, ISSUER, true),
            ("https://secure.stitch.money/connect/", ISSUER, true),
            (ISSUER, "https://secure.stitch.money/connect/", true),
            ("https://secure.stitch.money/connect//", ISSUER, false),
            ("https://secure.stitch.money/connect///", ISSUER, false),
            ("https://secure.stitch.money/Connect", ISSUER, false),
        ] {
            let body = format!(r#"{{"issuer":"{published}","token_endpoint":"{ISSUER}/token"}}"#);
            let read = read(body.as_bytes(), asked);
            assert_eq!(read.is_ok(), same, "{published} asked {asked}");
        }
    }

    #[test]
    fn a_null_among_the_auth_methods_is_skipped_as_a_number_is() {
        let m = read(
            &doc(r#","revocation_endpoint_auth_methods_supported":[null,1,{},"private_key_jwt"]"#),
            ISSUER,
        )
        .unwrap();
        assert_eq!(m.revocation_endpoint_auth_methods, ["private_key_jwt"]);
    }

    #[test]
    fn a_repeated_member_keeps_its_last_value_as_json_parse_does() {
        let body = format!(
            r#"{{"issuer":"https://evil.example","issuer":"{ISSUER}","token_endpoint":"{ISSUER}/t"}}"#
        );
        assert_eq!(read(body.as_bytes(), ISSUER).unwrap().issuer, ISSUER);
    }

    #[test]
    fn an_https_issuer_names_no_plain_http_endpoint_even_on_loopback() {
        for field in [
            "token_endpoint",
            "authorization_endpoint",
            "revocation_endpoint",
        ] {
            let good = format!("{ISSUER}/token");
            let mut members = vec![("issuer", ISSUER), ("token_endpoint", good.as_str())];
            members.retain(|(name, _)| *name != field);
            members.push((field, "http://127.0.0.1:6379/token"));
            let text: Vec<String> = members
                .iter()
                .map(|(name, value)| format!(r#""{name}":"{value}""#))
                .collect();
            let err = read(format!("{{{}}}", text.join(",")).as_bytes(), ISSUER).unwrap_err();
            assert!(err.contains(field) && err.contains("https"), "{err}");
        }
        // A loopback issuer (tests) may use plain http throughout.
        let local =
            br#"{"issuer":"http://127.0.0.1:8080","token_endpoint":"http://127.0.0.1:8080/token"}"#;
        assert!(read(local, "http://127.0.0.1:8080").is_ok());
    }

    #[test]
    fn the_url_is_the_issuer_plus_the_well_known_path() {
        assert_eq!(
            discovery_url("https://example.com/").unwrap(),
            "https://example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("http://example.com")
                .unwrap_err()
                .code()
                .as_str(),
            "config"
        );
    }
}
