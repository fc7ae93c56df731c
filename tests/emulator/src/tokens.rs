//! Random token strings, PKCE's S256 transform and the fake `id_token`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A fresh 256-bit random string, base64url without padding (43 chars).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No OS randomness: still unique within the process, never a panic.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        bytes = Sha256::digest(format!("{nanos}/{n}/{}", std::process::id())).into();
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7636 S256: BASE64URL-NOPAD(SHA256(ASCII(verifier))).
pub(crate) fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// True for a 43–128 character string of RFC 3986 unreserved characters,
/// the form RFC 7636 requires of verifiers and S256 challenges.
pub(crate) fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The claims of a fake `id_token`.
pub(crate) struct IdClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub iat: u64,
    pub exp: u64,
    pub nonce: Option<&'a str>,
}

/// An unsigned JWT-shaped string: base64url(header).base64url(claims).base64url(sha256).
pub(crate) fn id_token(c: &IdClaims<'_>) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    let mut claims = json!({
        "iss": c.iss, "sub": c.sub, "aud": c.aud, "iat": c.iat, "exp": c.exp,
    });
    if let (Some(nonce), Value::Object(map)) = (c.nonce, &mut claims) {
        map.insert("nonce".into(), Value::from(nonce));
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = URL_SAFE_NO_PAD.encode(Sha256::digest(signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_differ_and_are_pkce_shaped() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert!(is_pkce_string(&a));
    }

    #[test]
    fn id_token_has_three_parts_and_the_nonce() {
        let t = id_token(&IdClaims {
            iss: "http://x",
            sub: "user/1",
            aud: "c",
            iat: 1,
            exp: 2,
            nonce: Some("n-1"),
        });
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["nonce"], "n-1");
        assert_eq!(claims["aud"], "c");
    }
}
