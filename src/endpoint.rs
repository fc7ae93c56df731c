//! Endpoint URL checks: `https`, or plain `http` to a loopback host.
//!
//! Hand-written on purpose: the `url` crate pulls IDNA tables that cost tens
//! of kilobytes of wasm, and all the core needs is the scheme and the host.

use crate::error::Error;

/// Checks that `url` is an absolute `https` URL, or `http` to a loopback host
/// (`localhost`, `127.0.0.0/8`, `[::1]`), without credentials or a fragment.
pub fn validate(field: &str, url: &str) -> Result<(), Error> {
    let bad = |message: &str| Error::config(field, message);
    if url.trim() != url || url.is_empty() {
        return Err(bad("must be a non-empty URL without surrounding spaces"));
    }
    if url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad("must not contain spaces or control characters"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("must be an absolute URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(bad("must not carry credentials"));
    }
    if url.contains('#') {
        return Err(bad("must not have a fragment"));
    }
    let host = host_of(authority);
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(bad(
            "must use https (plain http is allowed only for loopback hosts)",
        )),
        _ => Err(bad("must use https")),
    }
}

/// True when `url`'s scheme is `https` (any case).
pub(crate) fn is_https(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("https"))
}

/// The host part of an authority (`host[:port]` or `[v6]:port`).
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

fn is_loopback(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if host == "localhost" || host == "::1" {
        return true;
    }
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_is_accepted() {
        assert!(validate("e", "https://secure.stitch.money/connect/token").is_ok());
        assert!(validate("e", "HTTPS://example.com:8443/token?x=1").is_ok());
    }

    #[test]
    fn http_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:8080/connect/token",
            "http://localhost/token",
            "http://[::1]:9000/token",
            "http://127.1.2.3/t",
        ] {
            assert!(validate("e", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/token",
            "http://127.0.0.1.evil.com/token",
            "http://10.0.0.1/token",
        ] {
            let err = validate("token_endpoint", bad).unwrap_err();
            assert!(err.to_string().contains("token_endpoint"), "{err}");
        }
    }

    #[test]
    fn malformed_urls_are_config_errors() {
        for bad in [
            "",
            "secure.stitch.money/connect/token",
            "ftp://example.com/x",
            "https://user:pw@example.com/token",
            "https:///token",
            "https://example.com/token#frag",
            " https://example.com/token",
            "https://exa mple.com/token",
        ] {
            assert_eq!(
                validate("token_endpoint", bad).unwrap_err().code().as_str(),
                "config",
                "{bad}"
            );
        }
    }
}
