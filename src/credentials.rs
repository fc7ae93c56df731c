//! The client-credentials JSON a provider hands out (Stitch's download):
//! client id, a secret or a certificate, and the sliding refresh lifetime.

use crate::config::{Config, ConfigBuilder};
use crate::error::Error;
use crate::json_text::{self, JsonError, Scalar};
use serde::Deserialize;

/// Stitch's token endpoint, used when the JSON names none.
pub const STITCH_TOKEN_ENDPOINT: &str = "https://secure.stitch.money/connect/token";

/// The credentials JSON's members, every accepted spelling (camelCase as
/// Stitch writes it, then snake_case and short forms); the first one given
/// of each is used, unknown members are ignored.
#[derive(Deserialize)]
#[allow(non_snake_case)]
struct CredentialsJson {
    clientId: Option<Scalar>,
    client_id: Option<Scalar>,
    id: Option<Scalar>,
    clientSecret: Option<Scalar>,
    client_secret: Option<Scalar>,
    secret: Option<Scalar>,
    certificate: Option<Scalar>,
    clientCertificate: Option<Scalar>,
    client_certificate: Option<Scalar>,
    privateKey: Option<Scalar>,
    private_key: Option<Scalar>,
    slidingRefreshTokenLifetime: Option<Scalar>,
    sliding_refresh_token_lifetime: Option<Scalar>,
    tokenEndpoint: Option<Scalar>,
    token_endpoint: Option<Scalar>,
    keyId: Option<Scalar>,
    key_id: Option<Scalar>,
    kid: Option<Scalar>,
}

/// The largest credentials JSON read (bytes): a PEM with a certificate
/// chain and a 4096-bit key fits many times over.
pub(crate) const MAX_CREDENTIALS_BYTES: usize = 256 * 1024;

/// The first spelling given: a non-empty string, or a `config` error naming
/// that spelling.
/// (A slice, not an array by value: one copy of it in the wasm, not one per
/// number of spellings.)
fn text(spellings: &mut [(&str, Option<Scalar>)]) -> Result<Option<String>, Error> {
    Ok(named_text(spellings)?.map(|(_, text)| text))
}

/// [`text`] with the spelling that gave it.
fn named_text<'a>(
    spellings: &mut [(&'a str, Option<Scalar>)],
) -> Result<Option<(&'a str, String)>, Error> {
    for (name, member) in spellings.iter_mut() {
        match member.take() {
            None => continue,
            Some(Scalar::Str(s)) if !s.is_empty() => return Ok(Some((*name, s))),
            Some(_) => return Err(Error::config(*name, "must be a non-empty string")),
        }
    }
    Ok(None)
}

/// `error`, a `config` one, as about the member `name` of the JSON.
#[cfg(any(feature = "private-key-jwt", target_arch = "wasm32"))]
fn about_member(error: Error, name: &str) -> Error {
    match error {
        Error::Config { message, .. } => Error::config(name, message),
        other => other,
    }
}

impl Config {
    /// A builder from the client-credentials JSON: `clientId`, and either
    /// `clientSecret` or `certificate` (a PEM with the RSA key, for
    /// `private_key_jwt`), `slidingRefreshTokenLifetime` (seconds), and
    /// optionally `tokenEndpoint` (default Stitch's) and `keyId`. A missing
    /// required member is a `config` error naming it.
    pub fn from_credentials_json(json: &str) -> Result<ConfigBuilder, Error> {
        let d: CredentialsJson = json_text::from_slice(json.as_bytes(), MAX_CREDENTIALS_BYTES)
            .map_err(|e| match e {
                JsonError::Shape => Error::config("credentials", "repeats a member"),
                JsonError::TooLarge => Error::config(
                    "credentials",
                    format!("is larger than {MAX_CREDENTIALS_BYTES} bytes"),
                ),
                _ => Error::config("credentials", "is not a JSON object"),
            })?;
        let client_id = text(&mut [
            ("clientId", d.clientId),
            ("client_id", d.client_id),
            ("id", d.id),
        ])?
        .ok_or_else(|| Error::config("clientId", "is missing"))?;
        let endpoint = text(&mut [
            ("tokenEndpoint", d.tokenEndpoint),
            ("token_endpoint", d.token_endpoint),
        ])?;
        let mut builder = match endpoint {
            Some(endpoint) => Config::builder(endpoint, client_id),
            // Stitch's, unless a discovery document names another.
            None => Config::builder(STITCH_TOKEN_ENDPOINT, client_id).token_endpoint_defaulted(),
        };
        let secret = text(&mut [
            ("clientSecret", d.clientSecret),
            ("client_secret", d.client_secret),
            ("secret", d.secret),
        ])?;
        let certificate = named_text(&mut [
            ("certificate", d.certificate),
            ("clientCertificate", d.clientCertificate),
            ("client_certificate", d.client_certificate),
            ("privateKey", d.privateKey),
            ("private_key", d.private_key),
        ])?;
        match (secret, certificate) {
            (Some(secret), None) => builder = builder.client_secret(secret),
            (None, Some((name, pem))) => {
                let pem = crate::secret::Secret::new(pem);
                // Read now, so that an error names the member that gave it
                // (`build` reads it again, as it reads any key).
                #[cfg(any(feature = "private-key-jwt", target_arch = "wasm32"))]
                crate::jwt::AssertionKey::from_pem(pem.expose(), None)
                    .map_err(|e| about_member(e, name))?;
                #[cfg(not(any(feature = "private-key-jwt", target_arch = "wasm32")))]
                let _ = name;
                builder = builder.private_key_pem(pem)
            }
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
        if let Some(kid) = text(&mut [("keyId", d.keyId), ("key_id", d.key_id), ("kid", d.kid)])? {
            builder = builder.key_id(kid);
        }
        let mut lifetime = None;
        for (name, member) in [
            ("slidingRefreshTokenLifetime", d.slidingRefreshTokenLifetime),
            (
                "sliding_refresh_token_lifetime",
                d.sliding_refresh_token_lifetime,
            ),
        ] {
            let seconds = match member {
                None => continue,
                Some(Scalar::Int(n)) => Some(n),
                // `900.0`: JSON.parse reads it as 900, and so does the wasm build.
                Some(Scalar::OtherNumber(n)) if n.fract() == 0.0 && n.abs() < 2f64.powi(53) => {
                    Some(n as i64)
                }
                Some(Scalar::Str(s)) => s.trim().parse::<i64>().ok(),
                Some(_) => None,
            };
            let seconds =
                seconds.ok_or_else(|| Error::config(name, "must be a whole number of seconds"))?;
            lifetime = Some((name, seconds));
            break;
        }
        let lifetime =
            lifetime.ok_or_else(|| Error::config("slidingRefreshTokenLifetime", "is missing"))?;
        // Checked by `build`, naming the member, unless an option replaces it.
        let (name, seconds) = lifetime;
        Ok(builder.refresh_token_lifetime_from(name, seconds))
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

    #[test]
    fn a_lifetime_out_of_range_names_the_member_that_gave_it() {
        for (json, field) in [
            (
                r#"{"clientId":"c","clientSecret":"s","slidingRefreshTokenLifetime":-5}"#,
                "slidingRefreshTokenLifetime",
            ),
            (
                r#"{"clientId":"c","clientSecret":"s","sliding_refresh_token_lifetime":0}"#,
                "sliding_refresh_token_lifetime",
            ),
            (
                r#"{"clientId":"c","clientSecret":"s","slidingRefreshTokenLifetime":"999999999999"}"#,
                "slidingRefreshTokenLifetime",
            ),
        ] {
            assert_eq!(field_of(json), field, "{json}");
        }
    }

    #[test]
    fn an_option_replaces_a_lifetime_out_of_range() {
        let json = r#"{"clientId":"c","clientSecret":"s","slidingRefreshTokenLifetime":0}"#;
        let c = Config::from_credentials_json(json)
            .unwrap()
            .refresh_token_lifetime_secs(86_400)
            .build()
            .expect("the option replaced the JSON's lifetime");
        assert_eq!(c.refresh_token_lifetime_ms(), 86_400_000);
    }

    #[test]
    fn a_whole_lifetime_written_with_a_fraction_reads_as_json_parse_reads_it() {
        let c = Config::from_credentials_json(
            r#"{"clientId":"c","clientSecret":"s","slidingRefreshTokenLifetime":900.0}"#,
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(c.refresh_token_lifetime_ms(), 900_000);
        assert_eq!(
            field_of(r#"{"clientId":"c","clientSecret":"s","slidingRefreshTokenLifetime":900.5}"#),
            "slidingRefreshTokenLifetime"
        );
    }

    #[cfg(feature = "private-key-jwt")]
    #[test]
    fn a_bad_key_names_the_member_that_gave_it() {
        let broken = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let broken = serde_json::to_string(broken).unwrap();
        for member in ["certificate", "privateKey", "client_certificate"] {
            let json = format!(
                r#"{{"clientId":"c","{member}":{broken},"slidingRefreshTokenLifetime":1}}"#
            );
            assert_eq!(field_of(&json), member);
        }
    }

    #[cfg(feature = "private-key-jwt")]
    #[test]
    fn a_certificate_client_uses_private_key_jwt() {
        let pem = include_str!("../tests/fixtures/client-cert-and-key.pem");
        let json = format!(
            r#"{{"clientId":"cid","certificate":{},"slidingRefreshTokenLifetime":31536000}}"#,
            serde_json::to_string(pem).unwrap()
        );
        let c = Config::from_credentials_json(&json)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(c.client_auth, crate::ClientAuthMethod::PrivateKeyJwt);
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));
        let broken = r#"{"clientId":"cid","certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----","slidingRefreshTokenLifetime":1}"#;
        assert_eq!(
            field_of(broken),
            "certificate",
            "the member, not the builder's field"
        );
    }
}
