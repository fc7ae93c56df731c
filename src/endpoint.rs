//! Endpoint URL checks: `https`, or plain `http` to a loopback host.
//!
//! The URL is read by the parser that will send it: natively the `url`
//! crate (reqwest's), in wasm the host's `URL` (fetch's). A check that read
//! the text its own way could pass a host the sender reads differently
//! (`http://0x7f.1/` is loopback to both parsers; `https://host:SECRET/`
//! is no URL to either).

use crate::error::Error;

/// The parts of a URL the checks need, as the platform's parser reads them.
struct Parts {
    /// The scheme, lowercased, without its `:`.
    scheme: String,
    /// The host is `localhost`, `127.0.0.0/8` or `::1` (`None`: no host).
    loopback: Option<bool>,
}

/// Checks that `url` is an absolute `https` URL, or `http` to a loopback host
/// (`localhost`, `127.0.0.0/8`, `[::1]`), without credentials or a fragment.
pub fn validate(field: &str, url: &str) -> Result<(), Error> {
    let bad = |message: &str| Error::config(field, message);
    if url.trim() != url || url.is_empty() {
        return Err(bad("must be a non-empty URL without surrounding spaces"));
    }
    // The URL parsers drop tabs and newlines silently; a URL with them was
    // not meant as written.
    if url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad("must not contain spaces or control characters"));
    }
    // Only what every parser reads alike. Through uniffi the host's HTTP
    // client parses the URL by RFC 3986, where a backslash is no delimiter:
    // `http://localhost\@evil/` is loopback to WHATWG (fetch, reqwest) and
    // `evil` to RFC 3986. And `https:/token`, `https:///token` are the host
    // `token` to WHATWG alone: a typo, not a host.
    if url.contains('\\') {
        return Err(bad("must not contain a backslash"));
    }
    let absolute = "must be an absolute URL (scheme://host/path) with a valid host and port";
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad(absolute))?;
    let is_scheme = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.');
    if scheme.is_empty() || !scheme.bytes().all(is_scheme) {
        return Err(bad(absolute));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("has no host"));
    }
    // Even an empty user name (`https://@host/`): RFC 3986 parsers differ.
    if authority.contains('@') {
        return Err(bad("must not carry credentials"));
    }
    let parts = parse(url).ok_or_else(|| bad(absolute))?;
    // A `#` in a URL the parser accepted can only start its fragment.
    if url.contains('#') {
        return Err(bad("must not have a fragment"));
    }
    let loopback = parts.loopback.ok_or_else(|| bad("has no host"))?;
    match parts.scheme.as_str() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(bad(
            "must use https (plain http is allowed only for loopback hosts)",
        )),
        _ => Err(bad("must use https")),
    }
}

/// True when `url` parses with the scheme `https`.
pub(crate) fn is_https(url: &str) -> bool {
    parse(url).is_some_and(|parts| parts.scheme == "https")
}

/// `url` read by the `url` crate, the parser reqwest sends with.
#[cfg(not(target_arch = "wasm32"))]
fn parse(url: &str) -> Option<Parts> {
    let url = url::Url::parse(url).ok()?;
    let loopback = url.host().map(|host| match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    });
    Some(Parts {
        scheme: url.scheme().to_owned(),
        loopback,
    })
}

/// `url` read by the host's `URL`, the parser `fetch` sends with.
#[cfg(target_arch = "wasm32")]
fn parse(url: &str) -> Option<Parts> {
    let url = web_sys::Url::new(url).ok()?;
    let host = url.hostname();
    // `hostname` is canonical: IPv6 compressed in brackets (loopback is
    // exactly `[::1]`; no IPv6 parser linked for it), IPv4 dotted decimal.
    let loopback = (!host.is_empty()).then(|| {
        host == "[::1]"
            || host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    let protocol = url.protocol();
    Some(Parts {
        scheme: protocol.strip_suffix(':').unwrap_or(&protocol).to_owned(),
        loopback,
    })
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
            "http://LOCALHOST:1/t",
            "http://0x7f.1/t",
            "http://[0:0:0:0:0:0:0:1]:9/t",
        ] {
            assert!(validate("e", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/token",
            "http://127.0.0.1.evil.com/token",
            "http://10.0.0.1/token",
            "http://[::ffff:127.0.0.1]/token",
            "http://localhost.evil.com/token",
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
            "https://example.com:SECRET/token",
            "https://[SECRET]/token",
            "https://example.com:99999/token",
            "https://exa\tmple.com/token",
            "mailto:someone@example.com",
            "http://localhost\\@evil.example/token",
            "http://127.0.0.1\\evil.example/token",
            "https://@example.com/token",
            "https://:@example.com/token",
            "https:/token",
            "https:token",
            "https:\\\\token",
            "://example.com/token",
            "ht tp://example.com/token",
        ] {
            assert_eq!(
                validate("token_endpoint", bad).unwrap_err().code().as_str(),
                "config",
                "{bad}"
            );
        }
    }

    #[test]
    fn messages_never_echo_the_url() {
        for bad in [
            "https://example.com:SECRET/token",
            "https://[SECRET]/token",
            "https://user:SECRET@example.com/token",
            "http://SECRET.example.com/token",
        ] {
            let message = validate("token_endpoint", bad).unwrap_err().to_string();
            assert!(!message.contains("SECRET"), "{message}");
        }
    }

    /// Cargo.lock pins idna_adapter to 1.0.0 (no IDNA tables in the
    /// native libraries, see Cargo.toml): a non-ASCII host name is refused
    /// when configured, with its punycode form accepted. Fails if the pin
    /// is lost, as a reminder of what it saves.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn non_ascii_hosts_need_punycode_natively() {
        let err = validate("token_endpoint", "https://bücher.example/token").unwrap_err();
        assert_eq!(err.code().as_str(), "config", "{err}");
        assert!(validate("token_endpoint", "https://xn--bcher-kva.example/token").is_ok());
    }

    #[test]
    fn is_https_reads_the_parsed_scheme() {
        assert!(is_https("HTTPS://example.com/t"));
        assert!(!is_https("http://127.0.0.1/t"));
        assert!(!is_https("https//example.com/t"));
    }
}
