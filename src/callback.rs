//! The authorization server's redirect back to the app (RFC 6749 §4.1.2),
//! checked before its code is redeemed: the `state` must be the request's
//! own (§10.12, it is what stops another site from sending the user back
//! with a code of its own), the issuer the one the client was discovered
//! from (RFC 9207, a mix-up between providers), and an error redirect is
//! that error. Every host would otherwise write this itself.

use crate::error::Error;
use crate::response::{is_oauth_error_code, printable_description};
use crate::secret::Secret;

/// The parameters of a redirect read here; each may appear once (a
/// repeated one is not the server's answer, RFC 6749 §3.1).
const SINGLE: [&str; 5] = ["code", "state", "error", "error_description", "iss"];

/// The longest redirect read (bytes): codes and states are short, and a
/// URL is capped near this size by browsers and servers alike.
const MAX_REDIRECT_BYTES: usize = 16 * 1024;

/// The status an error redirect's [`Error::OAuth`] carries: the redirect
/// is the authorization endpoint's 302 (RFC 6749 §4.1.2.1).
const REDIRECT_STATUS: u16 = 302;

/// What the provider says of its redirects, for [`code_from_redirect`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Issuer<'a> {
    /// The issuer the client was discovered from, if it was.
    pub(crate) issuer: Option<&'a str>,
    /// Whether the provider names itself (`iss`) in every redirect.
    pub(crate) announces_iss: bool,
}

/// The authorization code of `redirect` (the whole URL the app was sent
/// back to, or its query), once its `state` is `expected_state` and its
/// `iss` (when there is one, or must be) is the provider's. An error
/// redirect is its [`Error::OAuth`] (`access_denied` when the user said
/// no), once its state is checked too; anything else wrong is
/// `invalid_response`, naming what, never showing a value.
pub(crate) fn code_from_redirect(
    redirect: &str,
    expected_state: &str,
    provider: Issuer<'_>,
) -> Result<Secret, Error> {
    if expected_state.is_empty() {
        return Err(Error::config("expected_state", "must not be empty"));
    }
    if redirect.len() > MAX_REDIRECT_BYTES {
        return Err(bad("it is longer than 16 KiB"));
    }
    // The query: before the fragment, after the first `?` (the whole text
    // when it has none; RFC 3986 §3.4, §3.5).
    let (url, fragment) = redirect.split_once('#').unwrap_or((redirect, ""));
    let query = url.split_once('?').map_or(url, |(_, query)| query);
    let in_fragment =
        |name: &str| form_urlencoded::parse(fragment.as_bytes()).any(|(n, _)| n == name);
    let mut values: [Option<String>; SINGLE.len()] = Default::default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if let Some(i) = SINGLE.iter().position(|p| *p == name) {
            if values[i].replace(value.into_owned()).is_some() {
                return Err(bad(&format!("it repeats `{}`", SINGLE[i])));
            }
        }
    }
    let [code, state, error, description, iss] = values;
    // The state first, an error redirect's too (RFC 6749 §4.1.2.1): a
    // forged or stale redirect is never reported as the provider's answer.
    match state {
        None if in_fragment("state") => {
            return Err(bad(
                "its parameters are in the fragment (response_mode=fragment), which is not read",
            ))
        }
        None => return Err(bad("it carries no `state`")),
        Some(state) if state != expected_state => {
            return Err(bad(
                "its `state` is not this request's (a stale or forged redirect)",
            ))
        }
        Some(_) => {}
    }
    match (&iss, provider.issuer) {
        (Some(iss), Some(issuer)) if iss != issuer => {
            return Err(bad("its issuer (`iss`) is not the provider's (RFC 9207)"))
        }
        (None, _) if provider.announces_iss => return Err(bad(
            "it carries no issuer (`iss`), which this provider names in every redirect (RFC 9207)",
        )),
        _ => {}
    }
    if let Some(error) = error {
        if !is_oauth_error_code(&error) {
            return Err(bad("its `error` is not an RFC 6749 error code"));
        }
        return Err(Error::OAuth {
            status: REDIRECT_STATUS,
            error,
            description: description
                .filter(|d| !d.is_empty())
                .map(|d| printable_description(&d)),
            uri: None,
        });
    }
    match code {
        // RFC 6749 A.11: `1*VSCHAR`. Bytes that are not UTF-8 decode to
        // U+FFFD, which no server issues.
        Some(code) if !code.is_empty() && code.bytes().all(|b| (0x20..=0x7e).contains(&b)) => {
            Ok(Secret::new(code))
        }
        Some(code) if !code.is_empty() => {
            Err(bad("its `code` is not visible ASCII (RFC 6749 A.11)"))
        }
        _ => Err(bad("it carries no `code`")),
    }
}

fn bad(what: &str) -> Error {
    Error::invalid_response(None, format!("the authorization redirect: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CB: &str = "https://app.example/cb";

    fn code(redirect: &str) -> Result<String, Error> {
        code_from_redirect(redirect, "st-1", Issuer::default()).map(|c| c.expose().to_owned())
    }

    fn message(result: Result<String, Error>) -> String {
        let error = result.unwrap_err();
        assert_eq!(error.code().as_str(), "invalid_response", "{error}");
        error.to_string()
    }

    #[test]
    fn the_code_of_a_redirect_whose_state_is_the_requests() {
        assert_eq!(
            code(&format!("{CB}?code=a%2Bb&state=st-1#frag")).unwrap(),
            "a+b"
        );
        assert_eq!(code("state=st-1&code=c").unwrap(), "c", "the query alone");
        assert_eq!(code("?code=c&state=st-1&other=x&other=y").unwrap(), "c");
    }

    #[test]
    fn a_missing_or_other_state_is_refused_first() {
        assert!(message(code(&format!("{CB}?code=c"))).contains("no `state`"));
        let other = message(code(&format!("{CB}?code=c&state=st-2")));
        assert!(other.contains("not this request's"), "{other}");
        assert!(!other.contains("st-2"), "no value shown");
        // An error redirect with another state is not the provider's answer.
        let forged = message(code(&format!("{CB}?error=access_denied&state=x")));
        assert!(forged.contains("state"), "{forged}");
    }

    #[test]
    fn the_query_ends_at_the_fragment_and_a_fragment_response_is_named() {
        assert!(message(code(&format!("{CB}#?code=c&state=st-1"))).contains("fragment"));
        let fragment = message(code(&format!("{CB}#code=c&state=st-1")));
        assert!(fragment.contains("response_mode=fragment"), "{fragment}");
        assert_eq!(
            code(&format!("{CB}?code=c&state=st-1#state=x")).unwrap(),
            "c"
        );
        assert!(message(code("code=%FF%FE&state=st-1")).contains("visible ASCII"));
    }

    #[test]
    fn a_repeated_parameter_is_refused() {
        for query in ["code=a&code=b&state=st-1", "code=a&state=st-1&state=st-1"] {
            assert!(message(code(query)).contains("repeats"), "{query}");
        }
    }

    #[test]
    fn an_error_redirect_is_its_oauth_error() {
        let error = code(&format!(
            "{CB}?error=access_denied&error_description=The+user+said+no&state=st-1"
        ))
        .unwrap_err();
        match &error {
            Error::OAuth {
                error, description, ..
            } => {
                assert_eq!(error, "access_denied");
                assert_eq!(description.as_deref(), Some("The user said no"));
            }
            other => panic!("{other:?}"),
        }
        assert!(message(code("error=%0Abad&state=st-1")).contains("not an RFC 6749"));
    }

    #[test]
    fn the_issuer_is_checked_when_known_and_required_when_announced() {
        let provider = Issuer {
            issuer: Some("https://as.example"),
            announces_iss: false,
        };
        let with = |iss: &str| {
            let redirect = format!("{CB}?code=c&state=st-1&iss={iss}");
            code_from_redirect(&redirect, "st-1", provider)
        };
        assert!(with("https%3A%2F%2Fas.example").is_ok());
        let mixed = with("https%3A%2F%2Fevil.example").unwrap_err();
        assert!(mixed.to_string().contains("RFC 9207"), "{mixed}");
        let without = format!("{CB}?code=c&state=st-1");
        assert!(code_from_redirect(&without, "st-1", provider).is_ok());
        let announced = Issuer {
            announces_iss: true,
            ..provider
        };
        let missing = code_from_redirect(&without, "st-1", announced).unwrap_err();
        assert!(missing.to_string().contains("no issuer"), "{missing}");
    }

    #[test]
    fn no_code_an_empty_state_or_a_huge_redirect_is_refused() {
        assert!(message(code("state=st-1&code=")).contains("no `code`"));
        let empty = code_from_redirect("code=c&state=", "", Issuer::default()).unwrap_err();
        assert_eq!(empty.code().as_str(), "config");
        let huge = format!("code={}&state=st-1", "c".repeat(MAX_REDIRECT_BYTES));
        assert!(message(code(&huge)).contains("16 KiB"));
    }
}
