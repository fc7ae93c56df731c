//! The token client from the credentials file (or standard input), the
//! secret from `FRESHTOKEN_CLIENT_SECRET` when set, and the endpoint options.

use crate::args::ClientArgs;
use crate::failure::Failure;
use crate::file_store::read_capped;
use freshtoken::{
    async_trait, Config, HttpClient, HttpError, HttpRequest, HttpResponse, NativeHttp, RetryPolicy,
    Spawn, SystemClock, TokenClient, TokioSpawner,
};
use serde_json::{Map, Value};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
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
    // Read through a map below, the last of two members of one name would
    // win where the core refuses the file: the file is read by the core
    // first. (Whatever else it says, a missing secret say, the overrides
    // may settle.)
    if let Err(error) = Config::from_credentials_json(text) {
        let repeated = matches!(&error, freshtoken::Error::Config { field, message }
            if field == "credentials" && message == "repeats a member");
        if repeated {
            return Err(error.into());
        }
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

/// The native transport, telling `interrupt` which requests may have
/// reached the server, and sending no token request (a grant: refresh,
/// code, client credentials) once a signal has arrived: the command then
/// finishes what is in flight but starts no new attempt, in the core's
/// retries or the command's. Revocation requests still go: the second of a
/// revocation (the access token's) belongs to the one in flight, and none
/// of them spends anything.
struct GuardedHttp(NativeHttp);

#[async_trait]
impl HttpClient for GuardedHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let grant = request
            .body
            .split('&')
            .any(|pair| pair.starts_with("grant_type="));
        if !crate::interrupt::may_send(grant) {
            return Err(HttpError::NotSent(crate::interrupt::REFUSAL.into()));
        }
        let answer = self.0.send(request).await;
        if matches!(answer, Err(HttpError::NotSent(_))) {
            crate::interrupt::never_left();
        }
        answer
    }
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
    // As TokenClient::native / discover_native, through GuardedHttp.
    let timeout_ms = u64::from(args.timeout) * 1000;
    let http: Arc<dyn HttpClient> = Arc::new(GuardedHttp(NativeHttp::for_timeout(timeout_ms)?));
    let spawn: Arc<dyn Spawn> = Arc::new(TokioSpawner::current()?);
    let clock = Arc::new(SystemClock);
    let client = match &args.issuer {
        Some(issuer) => TokenClient::discover(issuer, builder, http, clock, Some(spawn)).await?,
        None => TokenClient::with_spawner(builder.build()?, http, clock, spawn),
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
    fn a_repeated_member_is_refused_whatever_the_overrides() {
        let text = r#"{"clientId":"c","tokenEndpoint":"https://a/token","tokenEndpoint":"https://evil/token"}"#;
        for (secret, endpoint) in [(Some("s"), None), (None, Some("https://b/token"))] {
            let error = credentials_json(text, secret, endpoint).unwrap_err();
            assert!(
                format!("{error:?}").contains("repeats a member"),
                "{error:?}"
            );
        }
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
