//! Building token requests: refresh, client credentials, and code + PKCE.

use crate::config::{ClientAuthMethod, Config, MAX_RESPONSE_BYTES};
use crate::error::Error;
use crate::http::HttpRequest;
use crate::secret::Secret;
use base64::Engine;

/// One token request's grant and its parameters.
pub(crate) enum Grant<'a> {
    /// `grant_type=refresh_token`.
    Refresh {
        refresh_token: &'a str,
        /// Every token the session knows (never sent): scrubbed from the
        /// server's text like the one sent (DESIGN point 16).
        known: &'a [Secret],
    },
    /// `grant_type=client_credentials` for a (sorted) scope set.
    ClientCredentials { scope: &'a str },
    /// `grant_type=authorization_code` with the PKCE verifier.
    AuthorizationCode {
        code: &'a str,
        code_verifier: &'a str,
        redirect_uri: &'a str,
    },
    /// An RFC 7009 revocation of `token` (to the revocation endpoint).
    Revoke {
        token: &'a str,
        /// `refresh_token` or `access_token`.
        hint: &'a str,
        /// As [`Grant::Refresh`]'s: the session's other tokens.
        known: &'a [Secret],
    },
}

impl Grant<'_> {
    /// The `grant_type` value.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Grant::Refresh { .. } => "refresh_token",
            Grant::ClientCredentials { .. } => "client_credentials",
            Grant::AuthorizationCode { .. } => "authorization_code",
            Grant::Revoke { .. } => "revocation",
        }
    }

    /// The secret values this grant carries or its session knows, for
    /// scrubbing server text.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match self {
            Grant::Refresh {
                refresh_token: sent,
                known,
            }
            | Grant::Revoke {
                token: sent, known, ..
            } => {
                // Pushed, not chained and collected: fewer wasm bytes.
                let mut secrets = Vec::with_capacity(1 + known.len());
                secrets.push(*sent);
                for secret in known.iter() {
                    secrets.push(secret.expose());
                }
                secrets
            }
            Grant::ClientCredentials { .. } => vec![],
            Grant::AuthorizationCode {
                code,
                code_verifier,
                ..
            } => vec![code, code_verifier],
        }
    }
}

/// The form body and headers of `grant` for `config`'s client, at `now_ms`
/// (client assertions are dated; the host's WebCrypto signs them in wasm,
/// hence async), with the client assertion it carries, if any: made for
/// this request alone, it is a secret no scrubbing list knows otherwise.
pub(crate) async fn build_request(
    config: &Config,
    grant: &Grant<'_>,
    now_ms: u64,
) -> Result<(HttpRequest, Option<Secret>), Error> {
    // Signed first: the form serializer is not `Send` across an await.
    #[cfg(any(feature = "private-key-jwt", target_arch = "wasm32"))]
    let assertion = match (&config.client_auth, &config.assertion_key) {
        (ClientAuthMethod::PrivateKeyJwt, Some(key)) => Some(
            key.assertion(&config.client_id, &config.assertion_audience, now_ms)
                .await?,
        ),
        _ => None,
    };
    let mut form = form_urlencoded::Serializer::new(String::new());
    let mut headers = vec![
        (
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("Accept".to_owned(), "application/json".to_owned()),
    ];
    let url = match grant {
        Grant::Revoke { .. } => config.revocation_endpoint()?,
        _ => {
            form.append_pair("grant_type", grant.name());
            config.token_endpoint.clone()
        }
    };
    if config.client_auth != ClientAuthMethod::ClientSecretBasic {
        form.append_pair("client_id", &config.client_id);
    }
    match grant {
        Grant::Refresh { refresh_token, .. } => {
            form.append_pair("refresh_token", refresh_token);
        }
        Grant::ClientCredentials { scope } => {
            if !scope.is_empty() {
                form.append_pair("scope", scope);
            }
            form.append_pair("audience", &config.audience);
        }
        Grant::AuthorizationCode {
            code,
            code_verifier,
            redirect_uri,
        } => {
            form.append_pair("code", code);
            form.append_pair("redirect_uri", redirect_uri);
            form.append_pair("code_verifier", code_verifier);
        }
        Grant::Revoke { token, hint, .. } => {
            form.append_pair("token", token);
            form.append_pair("token_type_hint", hint);
        }
    }
    match (&config.client_auth, &config.client_secret) {
        (ClientAuthMethod::ClientSecretPost, Some(secret)) => {
            form.append_pair("client_secret", secret.expose());
        }
        (ClientAuthMethod::ClientSecretBasic, Some(secret)) => {
            headers.push((
                "Authorization".to_owned(),
                basic_authorization(&config.client_id, secret.expose()),
            ));
        }
        #[cfg(any(feature = "private-key-jwt", target_arch = "wasm32"))]
        (ClientAuthMethod::PrivateKeyJwt, _) => {
            let assertion = assertion
                .as_deref()
                .ok_or_else(|| Error::config("private_key", "is required for private_key_jwt"))?;
            form.append_pair("client_assertion_type", crate::jwt::ASSERTION_TYPE);
            form.append_pair("client_assertion", assertion);
        }
        _ => {}
    }
    #[cfg(any(feature = "private-key-jwt", target_arch = "wasm32"))]
    let signed = assertion.map(Secret::new);
    #[cfg(not(any(feature = "private-key-jwt", target_arch = "wasm32")))]
    let signed = None;
    let _ = now_ms;
    let request = HttpRequest {
        method: "POST".to_owned(),
        url,
        headers,
        body: form.finish(),
        timeout_ms: config.timeout_ms,
        max_response_bytes: MAX_RESPONSE_BYTES,
    };
    Ok((request, signed))
}

/// RFC 6749 §2.3.1: id and secret are form-encoded *before* base64.
pub(crate) fn basic_authorization(client_id: &str, secret: &str) -> String {
    format!("Basic {}", basic_credential(client_id, secret))
}

/// The base64 credential of `Authorization: Basic` (the copies of the
/// secret made on the way are wiped).
fn basic_credential(client_id: &str, secret: &str) -> String {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret = zeroize::Zeroizing::new(
        form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
    );
    let pair = zeroize::Zeroizing::new(format!("{id}:{}", secret.as_str()));
    base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
}

/// What a message must not show of the client's secret: the secret and,
/// under `client_secret_basic`, the Basic credential that carries it (a
/// host's HTTP error quoting the request's headers shows that one).
pub(crate) fn client_secret_spellings(config: &Config) -> Vec<Secret> {
    let Some(secret) = &config.client_secret else {
        return Vec::new();
    };
    let mut spellings = vec![secret.clone()];
    if config.client_auth == ClientAuthMethod::ClientSecretBasic {
        let credential = basic_credential(&config.client_id, secret.expose());
        spellings.push(Secret::new(credential));
    }
    spellings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use futures_util::FutureExt;

    const EP: &str = "https://secure.stitch.money/connect/token";

    fn pairs(body: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    }

    fn strs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn refresh_body_matches_stitch() {
        let c = Config::builder(EP, "cid")
            .client_secret("s3c&ret")
            .build()
            .unwrap();
        let r = build_request(
            &c,
            &Grant::Refresh {
                refresh_token: "rt+/=",
                known: &[],
            },
            0,
        )
        .now_or_never()
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(r.url, EP);
        assert_eq!(
            pairs(&r.body),
            strs(&[
                ("grant_type", "refresh_token"),
                ("client_id", "cid"),
                ("refresh_token", "rt+/="),
                ("client_secret", "s3c&ret"),
            ])
        );
        assert!(r.headers.iter().all(|(n, _)| n != "Authorization"));
    }

    #[test]
    fn client_credentials_body_has_scope_and_audience() {
        let c = Config::builder(EP, "cid")
            .client_secret("s")
            .build()
            .unwrap();
        let r = build_request(
            &c,
            &Grant::ClientCredentials {
                scope: "accounts balances",
            },
            0,
        )
        .now_or_never()
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(
            pairs(&r.body),
            strs(&[
                ("grant_type", "client_credentials"),
                ("client_id", "cid"),
                ("scope", "accounts balances"),
                ("audience", EP),
                ("client_secret", "s"),
            ])
        );
    }

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        // RFC 6749 §2.3.1: "a b" → "a+b", "p:w%" → "p%3Aw%25".
        let header = basic_authorization("a b", "p:w%");
        let b64 = header.strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "a+b:p%3Aw%25");
    }

    #[test]
    fn basic_auth_keeps_secrets_out_of_the_body() {
        let c = Config::builder(EP, "cid")
            .client_secret("s")
            .client_auth(ClientAuthMethod::ClientSecretBasic)
            .build()
            .unwrap();
        let r = build_request(
            &c,
            &Grant::Refresh {
                refresh_token: "rt",
                known: &[],
            },
            0,
        )
        .now_or_never()
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(
            pairs(&r.body),
            strs(&[("grant_type", "refresh_token"), ("refresh_token", "rt")])
        );
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| n == "Authorization" && v.starts_with("Basic ")));
    }

    #[test]
    fn public_clients_send_only_their_id() {
        let c = Config::builder(EP, "pub").build().unwrap();
        let r = build_request(
            &c,
            &Grant::AuthorizationCode {
                code: "c",
                code_verifier: "v",
                redirect_uri: "app://cb",
            },
            0,
        )
        .now_or_never()
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(
            pairs(&r.body),
            strs(&[
                ("grant_type", "authorization_code"),
                ("client_id", "pub"),
                ("code", "c"),
                ("redirect_uri", "app://cb"),
                ("code_verifier", "v"),
            ])
        );
    }
}
