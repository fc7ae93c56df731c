//! The client-credentials JSON a provider hands out (Stitch's download):
//! client id, a secret or a certificate, and the sliding refresh lifetime.

use crate::config::{Config, ConfigBuilder};
use crate::error::Error;
use crate::json::Json;

/// Stitch's token endpoint, used when the JSON names none.
pub const STITCH_TOKEN_ENDPOINT: &str = "https://secure.stitch.money/connect/token";

/// The accepted spellings of each member (camelCase as Stitch writes it,
/// then snake_case and short forms). Unknown members are ignored.
const CLIENT_ID: &[&str] = &["clientId", "client_id", "id"];
const SECRET: &[&str] = &["clientSecret", "client_secret", "secret"];
const CERTIFICATE: &[&str] = &[
    "certificate",
    "clientCertificate",
    "client_certificate",
    "privateKey",
    "private_key",
];
const LIFETIME: &[&str] = &[
    "slidingRefreshTokenLifetime",
    "sliding_refresh_token_lifetime",
];
const ENDPOINT: &[&str] = &["tokenEndpoint", "token_endpoint"];
const KEY_ID: &[&str] = &["keyId", "key_id", "kid"];

impl Config {
    /// A builder from the client-credentials JSON: `clientId`, and either
    /// `clientSecret` or `certificate` (a PEM with the RSA key, for
    /// `private_key_jwt`), `slidingRefreshTokenLifetime` (seconds), and
    /// optionally `tokenEndpoint` (default Stitch's) and `keyId`. A missing
    /// required member is a `config` error naming it.
    pub fn from_credentials_json(json: &str) -> Result<ConfigBuilder, Error> {
        let doc = Json::parse(json.as_bytes())
            .ok()
            .filter(|d| matches!(d, Json::Object(_)))
            .ok_or_else(|| Error::config("credentials", "is not a JSON object"))?;
        let text = |names: &[&str]| -> Result<Option<String>, Error> {
            for name in names {
                match doc.get(name) {
                    None | Some(Json::Null) => continue,
                    Some(Json::Str(s)) if !s.is_empty() => return Ok(Some(s.clone())),
                    Some(_) => return Err(Error::config(*name, "must be a non-empty string")),
                }
            }
            Ok(None)
        };
        let client_id = text(CLIENT_ID)?.ok_or_else(|| Error::config("clientId", "is missing"))?;
        let endpoint = text(ENDPOINT)?.unwrap_or_else(|| STITCH_TOKEN_ENDPOINT.to_owned());
        let mut builder = Config::builder(endpoint, client_id);
        match (text(SECRET)?, text(CERTIFICATE)?) {
            (Some(secret), None) => builder = builder.client_secret(secret),
            (None, Some(pem)) => builder = builder.private_key_pem(pem),
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "clientSecret",
                    "give a secret or a certificate, not both",
                ))
            }
            (None, None) => {
                return Err(Error::config("clientSecret", "is missing (or certificate)"))
            }
        }
        if let Some(kid) = text(KEY_ID)? {
            builder = builder.key_id(kid);
        }
        let mut lifetime = None;
        for name in LIFETIME {
            match doc.get(name) {
                None | Some(Json::Null) => {}
                Some(Json::Int(n)) => {
                    lifetime = Some(*n);
                    break;
                }
                Some(Json::Str(s)) => match s.trim().parse::<i64>() {
                    Ok(n) => {
                        lifetime = Some(n);
                        break;
                    }
                    Err(_) => {
                        return Err(Error::config(*name, "must be a whole number of seconds"))
                    }
                },
                Some(_) => return Err(Error::config(*name, "must be a whole number of seconds")),
            }
        }
        let lifetime =
            lifetime.ok_or_else(|| Error::config("slidingRefreshTokenLifetime", "is missing"))?;
        Ok(builder.refresh_token_lifetime_secs(lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(json: &str) -> String {
        match Config::from_credentials_json(json).and_then(ConfigBuilder::build) {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn a_secret_client_with_its_lifetime() {
        let c = Config::from_credentials_json(
            r#"{"clientId":"cid","clientSecret":"s","slidingRefreshTokenLifetime":86400,"redirectUris":["x"]}"#,
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(c.client_id(), "cid");
        assert_eq!(c.token_endpoint(), STITCH_TOKEN_ENDPOINT);
        assert_eq!(c.refresh_token_lifetime_ms(), 86_400_000);
        assert_eq!(c.client_auth, crate::ClientAuthMethod::ClientSecretPost);
    }

    #[test]
    fn other_spellings_and_a_string_lifetime() {
        let c = Config::from_credentials_json(
            r#"{"id":"cid","secret":"s","sliding_refresh_token_lifetime":"3600","token_endpoint":"https://auth.example/token"}"#,
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            (c.client_id(), c.token_endpoint()),
            ("cid", "https://auth.example/token")
        );
        assert_eq!(c.refresh_token_lifetime_ms(), 3_600_000);
    }

    #[test]
    fn missing_members_are_named() {
        assert_eq!(
            field_of(r#"{"clientSecret":"s","slidingRefreshTokenLifetime":1}"#),
            "clientId"
        );
        assert_eq!(
            field_of(r#"{"clientId":"c","slidingRefreshTokenLifetime":1}"#),
            "clientSecret"
        );
        assert_eq!(
            field_of(r#"{"clientId":"c","clientSecret":"s"}"#),
            "slidingRefreshTokenLifetime"
        );
        assert_eq!(
            field_of(r#"{"clientId":"c","clientSecret":"s","slidingRefreshTokenLifetime":"x"}"#),
            "slidingRefreshTokenLifetime"
        );
        assert_eq!(
            field_of(r#"{"clientId":5,"clientSecret":"s","slidingRefreshTokenLifetime":1}"#),
            "clientId"
        );
        assert_eq!(field_of("[]"), "credentials");
        assert_eq!(field_of("{"), "credentials");
    }

    #[cfg(feature = "private-key-jwt")]
    #[test]
    fn a_certificate_client_uses_private_key_jwt() {
        let pem = include_str!("../tests/fixtures/client-cert-and-key.pem");
        let json = format!(
            r#"{{"clientId":"cid","certificate":{},"slidingRefreshTokenLifetime":31536000}}"#,
            crate::json::string_literal(pem)
        );
        let c = Config::from_credentials_json(&json)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(c.client_auth, crate::ClientAuthMethod::PrivateKeyJwt);
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));
        let broken = r#"{"clientId":"cid","certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----","slidingRefreshTokenLifetime":1}"#;
        assert_eq!(field_of(broken), "private_key");
    }
}
