//! The authorization-code flow's first half: PKCE (RFC 7636, S256) and the
//! authorize URL with state, nonce and `offline_access`.

use crate::config::Config;
use crate::error::Error;
use crate::random::random_url_safe;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;

/// What to ask the authorization server for.
#[derive(Clone, Debug, Default)]
pub struct AuthorizationParams {
    /// Where the server sends the user back (registered with the client):
    /// an absolute URI without a fragment (RFC 6749 §3.1.2), else a
    /// `config` error.
    pub redirect_uri: String,
    /// Scopes; `offline_access` is added when missing (no refresh token
    /// without it).
    pub scopes: Vec<String>,
    /// CSRF state; a random one when `None`.
    pub state: Option<String>,
    /// OpenID Connect nonce; a random one when `None`.
    pub nonce: Option<String>,
    /// The `prompt` parameter. `None` sends `consent`, which OpenID Connect
    /// (Core §11) requires for `offline_access`: without it servers such as
    /// oidc-provider drop `offline_access` and issue no refresh token.
    /// `Some("")` sends none.
    pub prompt: Option<String>,
    /// Further query parameters (e.g. Stitch's `provider`), each named once
    /// and none that the URL already carries (`response_type`, `client_id`,
    /// `redirect_uri`, `scope`, `state`, `nonce`, `code_challenge`,
    /// `code_challenge_method`, `prompt`: those have fields or are made
    /// here); a `config` error otherwise.
    pub extra: Vec<(String, String)>,
}

/// The query parameters the authorize URL sets itself: an
/// [`AuthorizationParams::extra`] naming one is a `config` error (a
/// parameter sent twice is refused, RFC 6749 §3.1).
const SET_PARAMETERS: [&str; 9] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
];

/// The URL to send the user to, and what to keep until they come back.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The authorize URL.
    pub url: String,
    /// The PKCE verifier: keep it (server-side or in session storage) for
    /// the code exchange. Secret.
    pub code_verifier: String,
    /// The state to compare with the one the server returns.
    pub state: String,
    /// The nonce to compare with the ID token's.
    pub nonce: String,
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("url", &self.url)
            .field("code_verifier", &crate::secret::Hidden(&self.code_verifier))
            .field("state", &self.state)
            .field("nonce", &self.nonce)
            .finish()
    }
}

/// `BASE64URL(SHA256(verifier))`, RFC 7636 §4.2.
pub fn code_challenge(verifier: &str) -> String {
    challenge_of(&Sha256::digest(verifier.as_bytes()))
}

/// The challenge of a verifier whose SHA-256 is `digest`.
fn challenge_of(digest: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// Builds the authorize URL for `config`'s client.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn authorization_url(
    config: &Config,
    params: AuthorizationParams,
) -> Result<AuthorizationRequest, Error> {
    let pending = Pending::new(config, params)?;
    let challenge = code_challenge(&pending.code_verifier);
    Ok(pending.finish(config, &challenge))
}

/// Builds the authorize URL for `config`'s client. In wasm the host's
/// WebCrypto hashes the verifier (asynchronously): RustCrypto's SHA-256 was
/// 8 KB of the wasm (3.2%), for one hash per sign-in. The hash has
/// `config`'s request timeout on `clock` (a host call, it may stall).
#[cfg(target_arch = "wasm32")]
pub(crate) async fn authorization_url(
    config: &Config,
    clock: &dyn crate::clock::Clock,
    params: AuthorizationParams,
) -> Result<AuthorizationRequest, Error> {
    let pending = Pending::new(config, params)?;
    let hashing = crate::wasm::crypto::sha256(pending.code_verifier.as_bytes());
    let digest = crate::deadline::within(clock, config.timeout_ms, hashing)
        .await
        .map_err(|_| Error::Timeout)?
        .map_err(|_| {
            Error::config(
                "globalThis.crypto",
                "WebCrypto could not hash the PKCE verifier",
            )
        })?;
    Ok(pending.finish(config, &challenge_of(&digest)))
}

/// A checked request whose verifier, state and nonce are drawn: all but
/// the code challenge.
struct Pending {
    endpoint: String,
    scopes: Vec<String>,
    params: AuthorizationParams,
    code_verifier: String,
    state: String,
    nonce: String,
}

/// Checks a redirection endpoint as RFC 6749 §3.1.2 requires it: an
/// absolute URI (a scheme, RFC 3986 §3.1) without a fragment, of URI
/// characters only (RFC 3986 §2). Checked
/// before the URL is made and before a code is sent: a server compares
/// the two strings, and a code refused for its redirect URI is spent.
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), Error> {
    if uri.is_empty() {
        return Err(Error::config("redirect_uri", "must not be empty"));
    }
    let scheme = uri.split_once(':').map_or("", |(scheme, _)| scheme);
    let is_scheme = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !is_scheme {
        return Err(Error::config(
            "redirect_uri",
            "must be an absolute URI with a scheme (RFC 6749 §3.1.2)",
        ));
    }
    if uri.contains('#') {
        return Err(Error::config(
            "redirect_uri",
            "must not include a fragment (RFC 6749 §3.1.2)",
        ));
    }
    // A space, a control character or a non-ASCII one cannot be in a URI:
    // sent as it is, the server's string comparison refuses the code.
    let uri_char = |b: u8| b.is_ascii_alphanumeric() || b"-._~:/?[]@!$&'()*+,;=%".contains(&b);
    if !uri.bytes().all(uri_char) {
        return Err(Error::config(
            "redirect_uri",
            "must contain only the characters of a URI (RFC 3986 §2: no spaces, \
             control characters or non-ASCII ones; percent-encode them)",
        ));
    }
    Ok(())
}

impl Pending {
    fn new(config: &Config, params: AuthorizationParams) -> Result<Self, Error> {
        check_redirect_uri(&params.redirect_uri)?;
        let endpoint = config.authorization_endpoint()?;
        let mut scopes: Vec<String> = Vec::new();
        for scope in params
            .scopes
            .iter()
            .chain(std::iter::once(&"offline_access".to_owned()))
        {
            crate::client_token::check_scope(scope)?;
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        for (i, (name, _)) in params.extra.iter().enumerate() {
            let repeated = params.extra[..i].iter().any(|(seen, _)| seen == name);
            if name.is_empty() || repeated || SET_PARAMETERS.contains(&name.as_str()) {
                return Err(Error::config(
                    "extra",
                    format!("`{name}` must be a parameter of its own, named once and not one the URL sets"),
                ));
            }
        }
        let code_verifier = random_url_safe(32)?;
        let state = match params.state.clone() {
            Some(s) if !s.is_empty() => s,
            _ => random_url_safe(16)?,
        };
        let nonce = match params.nonce.clone() {
            Some(n) if !n.is_empty() => n,
            _ => random_url_safe(16)?,
        };
        Ok(Pending {
            endpoint,
            scopes,
            params,
            code_verifier,
            state,
            nonce,
        })
    }

    /// The request, with `challenge` (the verifier's S256 challenge).
    fn finish(self, config: &Config, challenge: &str) -> AuthorizationRequest {
        let Pending {
            endpoint,
            scopes,
            params,
            code_verifier,
            state,
            nonce,
        } = self;
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &config.client_id)
            .append_pair("redirect_uri", &params.redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        match params.prompt.as_deref() {
            None => {
                query.append_pair("prompt", "consent");
            }
            Some("") => {}
            Some(prompt) => {
                query.append_pair("prompt", prompt);
            }
        }
        for (name, value) in &params.extra {
            query.append_pair(name, value);
        }
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        AuthorizationRequest {
            url: format!("{endpoint}{separator}{}", query.finish()),
            code_verifier,
            state,
            nonce,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::builder("https://secure.stitch.money/connect/token", "cid")
            .client_secret("s")
            .build()
            .unwrap()
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let q = url.split_once('?').unwrap().1;
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn url_carries_pkce_state_nonce_and_offline_access() {
        let req = authorization_url(
            &config(),
            AuthorizationParams {
                redirect_uri: "https://app.example/cb".into(),
                scopes: vec!["openid".into(), "accounts".into()],
                state: Some("st".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(req
            .url
            .starts_with("https://secure.stitch.money/connect/authorize?"));
        let q = query(&req.url);
        let get = |k: &str| {
            q.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("response_type"), "code");
        assert_eq!(get("client_id"), "cid");
        assert_eq!(get("redirect_uri"), "https://app.example/cb");
        assert_eq!(get("scope"), "openid accounts offline_access");
        assert_eq!(get("state"), "st");
        assert_eq!(get("nonce"), req.nonce);
        assert_eq!(get("code_challenge"), code_challenge(&req.code_verifier));
        assert_eq!(get("code_challenge_method"), "S256");
        assert_eq!(
            get("prompt"),
            "consent",
            "OIDC Core §11: offline_access needs consent"
        );
        assert_eq!(req.code_verifier.len(), 43);
        assert!(!format!("{req:?}").contains(&req.code_verifier));
    }

    #[test]
    fn every_request_gets_a_new_verifier_and_state() {
        let p = AuthorizationParams {
            redirect_uri: "app://cb".into(),
            scopes: vec!["offline_access".into()],
            ..Default::default()
        };
        let a = authorization_url(&config(), p.clone()).unwrap();
        let b = authorization_url(&config(), p).unwrap();
        assert_ne!(a.code_verifier, b.code_verifier);
        assert_ne!(a.state, b.state);
        assert_eq!(
            query(&a.url)
                .iter()
                .filter(|(_, v)| v == "offline_access")
                .count(),
            1
        );
    }

    #[test]
    fn prompt_can_be_changed_or_left_out() {
        let with = |prompt: Option<&str>| {
            let p = AuthorizationParams {
                redirect_uri: "app://cb".into(),
                prompt: prompt.map(str::to_owned),
                ..Default::default()
            };
            query(&authorization_url(&config(), p).unwrap().url)
                .into_iter()
                .filter(|(k, _)| k == "prompt")
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
        };
        assert_eq!(with(Some("login consent")), vec!["login consent"]);
        assert!(with(Some("")).is_empty());
    }

    #[test]
    fn a_scope_outside_rfc_6749_is_a_config_error() {
        // scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): no control
        // characters (a tab or newline a server may split on), no non-ASCII.
        for scope in [
            "open\tid",
            "openid\n",
            "accounts\u{e9}",
            "del\u{7f}",
            "nbsp\u{a0}",
        ] {
            let p = AuthorizationParams {
                redirect_uri: "app://cb".into(),
                scopes: vec![scope.into()],
                ..Default::default()
            };
            assert!(
                matches!(authorization_url(&config(), p), Err(Error::Config { field, .. }) if field == "scopes"),
                "{scope:?}"
            );
        }
        let p = AuthorizationParams {
            redirect_uri: "app://cb".into(),
            scopes: vec!["a:b/c!#[]~".into()],
            ..Default::default()
        };
        authorization_url(&config(), p).expect("every printable ASCII but space, quote, backslash");
    }

    #[test]
    fn extra_never_repeats_a_parameter() {
        // RFC 6749 §3.1: a parameter sent twice is refused (oidc-provider:
        // "invalid_request: 'prompt' parameter must not be provided twice").
        let with = |extra: &[(&str, &str)]| {
            let p = AuthorizationParams {
                redirect_uri: "app://cb".into(),
                extra: extra
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            };
            authorization_url(&config(), p)
        };
        for extra in [
            &[("prompt", "login")][..],
            &[("state", "x")],
            &[("code_challenge_method", "plain")],
            &[("provider", "a"), ("provider", "b")],
        ] {
            let e = with(extra).unwrap_err();
            assert!(
                matches!(&e, Error::Config { field, .. } if field == "extra"),
                "{extra:?}: {e}"
            );
        }
        let url = with(&[("provider", "bank")]).unwrap().url;
        let q = query(&url);
        let names: Vec<&str> = q.iter().map(|(n, _)| n.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "{names:?}");
        assert!(q.contains(&("provider".to_owned(), "bank".to_owned())));
    }

    #[test]
    fn bad_arguments_are_config_errors() {
        let e = authorization_url(&config(), AuthorizationParams::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration `redirect_uri`: must not be empty"
        );
        let p = AuthorizationParams {
            redirect_uri: "app://cb".into(),
            scopes: vec!["two words".into()],
            ..Default::default()
        };
        assert!(
            matches!(authorization_url(&config(), p), Err(Error::Config { field, .. }) if field == "scopes")
        );
    }

    #[test]
    fn a_redirect_uri_must_be_absolute_and_without_a_fragment() {
        for (uri, says) in [
            ("https://app.example/cb#done", "fragment"),
            ("app://cb#", "fragment"),
            ("/cb", "absolute"),
            ("cb", "absolute"),
            ("://cb", "absolute"),
            ("1app://cb", "absolute"),
            ("a b://cb", "absolute"),
        ] {
            let p = AuthorizationParams {
                redirect_uri: uri.into(),
                ..Default::default()
            };
            let e = authorization_url(&config(), p).unwrap_err();
            assert!(
                matches!(&e, Error::Config { field, .. } if field == "redirect_uri"),
                "{uri}: {e}"
            );
            assert!(e.to_string().contains(says), "{uri}: {e}");
        }
        for uri in [
            "https://app.example/cb?x=1",
            "com.example.app:/oauth2redirect",
            "http://127.0.0.1:8080/cb",
            "app+x.y-z://cb",
        ] {
            let p = AuthorizationParams {
                redirect_uri: uri.into(),
                ..Default::default()
            };
            assert!(authorization_url(&config(), p).is_ok(), "{uri}");
        }
    }
}
