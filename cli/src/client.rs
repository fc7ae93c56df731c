//! The token client from the credentials file (or standard input), the
//! secret from `FRESHTOKEN_CLIENT_SECRET` when set, and the endpoint options.

use crate::args::ClientArgs;
use crate::failure::Failure;
use crate::file_store::read_capped;
use freshtoken::{Config, RetryPolicy, TokenClient};
use serde_json::{Map, Value};
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// The environment variable that supplies (or replaces) the client secret.
pub const SECRET_ENV: &str = "FRESHTOKEN_CLIENT_SECRET";

/// Largest credentials file read (the core's own cap).
const MAX_CREDENTIALS_BYTES: usize = 256 * 1024;

/// The credentials JSON's spellings of the secret, as the core reads them.
const SECRET_SPELLINGS: [&str; 3] = ["clientSecret", "client_secret", "secret"];

/// Reads the credentials file, `-` meaning standard input.
fn read_credentials(path: &Path) -> Result<Zeroizing<String>, Failure> {
    let unreadable = |e: std::io::Error| {
        Failure::config(
            "credentials",
            format!("cannot read {} ({})", path.display(), e.kind()),
        )
    };
    if path == Path::new("-") {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin()
            .take(MAX_CREDENTIALS_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .map_err(unreadable)?;
        return Ok(text);
    }
    match read_capped(path, MAX_CREDENTIALS_BYTES).map_err(unreadable)? {
        Some(text) => Ok(Zeroizing::new(text)),
        None => Err(Failure::config(
            "credentials",
            format!("{} does not exist", path.display()),
        )),
    }
}

/// The credentials JSON with the overrides applied: the secret from the
/// environment, the token endpoint from the options.
fn credentials_json(
    text: &str,
    secret: Option<&str>,
    token_endpoint: Option<&str>,
) -> Result<Zeroizing<String>, Failure> {
    if secret.is_none() && token_endpoint.is_none() {
        return Ok(Zeroizing::new(text.to_owned()));
    }
    let mut object: Map<String, Value> = serde_json::from_str(text)
        .map_err(|_| Failure::config("credentials", "is not a JSON object"))?;
    if let Some(secret) = secret {
        for name in SECRET_SPELLINGS {
            object.remove(name);
        }
        object.insert("clientSecret".into(), Value::String(secret.to_owned()));
    }
    if let Some(url) = token_endpoint {
        object.remove("token_endpoint");
        object.insert("tokenEndpoint".into(), Value::String(url.to_owned()));
    }
    let json = Value::Object(object).to_string();
    Ok(Zeroizing::new(json))
}

/// The client these options describe (discovering the endpoints when an
/// issuer is given). Call inside the tokio runtime.
pub async fn build(args: &ClientArgs) -> Result<TokenClient, Failure> {
    let text = read_credentials(&args.credentials)?;
    let secret = match std::env::var(SECRET_ENV) {
        Ok(secret) if !secret.is_empty() => Some(Zeroizing::new(secret)),
        Ok(_) | Err(std::env::VarError::NotPresent) => None,
        // Set but unusable: never fall back on the file's secret silently.
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(Failure::config(SECRET_ENV, "is set but not UTF-8"))
        }
    };
    let json = credentials_json(
        &text,
        secret.as_deref().map(String::as_str),
        args.token_endpoint.as_deref(),
    )?;
    let mut builder = Config::from_credentials_json(&json)?
        .timeout_ms(i64::from(args.timeout) * 1000)
        .retry(RetryPolicy {
            max_attempts: args.attempts,
            ..RetryPolicy::default()
        });
    if let Some(url) = &args.authorization_endpoint {
        builder = builder.authorization_endpoint(url.clone());
    }
    if let Some(url) = &args.revocation_endpoint {
        builder = builder.revocation_endpoint(url.clone());
    }
    let client = match &args.issuer {
        Some(issuer) => TokenClient::discover_native(issuer, builder).await?,
        None => TokenClient::native(builder.build()?)?,
    };
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &str) -> Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_environment_secret_replaces_every_spelling() {
        let json = credentials_json(
            r#"{"clientId":"c","client_secret":"old","slidingRefreshTokenLifetime":1}"#,
            Some("new"),
            None,
        )
        .unwrap();
        let v = parsed(&json);
        assert_eq!(v["clientSecret"], "new");
        assert!(v.get("client_secret").is_none());
        assert_eq!(v["clientId"], "c");
    }

    #[test]
    fn the_token_endpoint_option_wins() {
        let json = credentials_json(
            r#"{"clientId":"c","token_endpoint":"https://a/token"}"#,
            None,
            Some("https://b/token"),
        )
        .unwrap();
        let v = parsed(&json);
        assert_eq!(v["tokenEndpoint"], "https://b/token");
        assert!(v.get("token_endpoint").is_none());
    }

    #[test]
    fn without_overrides_the_text_is_untouched() {
        let text = r#"{"clientId":"c", "clientSecret":"s"}"#;
        assert_eq!(credentials_json(text, None, None).unwrap().as_str(), text);
        assert!(credentials_json("[1]", Some("s"), None).is_err());
    }
}
