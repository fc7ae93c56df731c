//! `private_key_jwt` client assertions (RFC 7523 §2.2, OpenID Connect Core
//! §9): a fresh RS256 JWT per token request, signed with the RSA key from
//! the PEM the provider handed out (Stitch's certificate: a certificate and
//! the key in one file).
//!
//! The PEM armour is read here (a few lines). Natively the RustCrypto `rsa`
//! crate decodes the DER and signs. In the wasm build the `pkcs1`/`pkcs8`
//! DER codecs only check the key (and wrap a PKCS#1 key as PKCS#8), and the
//! host's WebCrypto signs (`crate::wasm::crypto`): RSA costs no wasm bytes.

use crate::error::Error;
use crate::json_text;
use crate::random::random_url_safe;
use base64::Engine;
use serde::Serialize;
use std::fmt;
use zeroize::Zeroizing;

/// The config field that names the key in errors.
const FIELD: &str = "private_key";
/// How long an assertion is valid (seconds): short, it is used at once.
pub(crate) const ASSERTION_LIFETIME_SECS: u64 = 60;
/// The assertion type RFC 7523 defines.
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const NOT_PKCS1: &str = "the RSA PRIVATE KEY block is not a valid PKCS#1 key";
const CANNOT_SIGN: &str = "the key could not sign the client assertion";
/// The smallest RSA modulus accepted (RFC 7518 §3.3).
pub(crate) const MIN_BITS: usize = 2048;
pub(crate) const TOO_SMALL: &str = "the RSA key must have at least 2048 bits";

/// The signing key: RustCrypto natively.
#[cfg(not(target_arch = "wasm32"))]
type Signer = rsa::pkcs1v15::SigningKey<sha2::Sha256>;
/// The signing key: the PKCS#8 DER for the host's WebCrypto in wasm.
#[cfg(target_arch = "wasm32")]
type Signer = crate::wasm::crypto::Rs256Key;

/// An RSA signing key for client assertions, with an optional key id.
#[derive(Clone)]
pub struct AssertionKey {
    key: Signer,
    kid: Option<String>,
    /// The modulus size, when known before the first signature.
    bits: Option<usize>,
}

impl fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AssertionKey {{ RSA {:?} bits, kid: {:?} }}",
            self.bits, self.kid
        )
    }
}

/// The signer and modulus size of a PKCS#1 (`pkcs1`) or PKCS#8 DER key.
#[cfg(not(target_arch = "wasm32"))]
fn decode(der: &[u8], pkcs1: bool) -> Result<(Signer, Option<usize>), Error> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    const NOT_PKCS8: &str = "the PRIVATE KEY block is not a PKCS#8 RSA key";
    const NOT_PKCS8_RSA: &str =
        "the PRIVATE KEY block is not an rsaEncryption key (RS256 signs with PKCS#1 v1.5; an RSA-PSS key may not)";
    let key = if pkcs1 {
        rsa::PrivateKey::from_pkcs1_der(der).map_err(|_| Error::config(FIELD, NOT_PKCS1))?
    } else {
        // rsaEncryption only: `rsa` also reads an RSASSA-PSS key, which
        // RFC 4055 restricts to PSS signatures (RS256 is PKCS#1 v1.5), and
        // which WebCrypto refuses to import for RS256 in the wasm build.
        use rsa::pkcs8::der::Decode;
        let info = rsa::pkcs8::PrivateKeyInfoRef::from_der(der)
            .map_err(|_| Error::config(FIELD, NOT_PKCS8))?;
        if info.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
            return Err(Error::config(FIELD, NOT_PKCS8_RSA));
        }
        rsa::PrivateKey::from_pkcs8_der(der).map_err(|_| Error::config(FIELD, NOT_PKCS8))?
    };
    // Bits, not bytes: a 2047-bit modulus fills 256 bytes too.
    let bits = key.n().bit_width() as usize;
    Ok((Signer::new(key), Some(bits)))
}

/// The signer of a PKCS#1 (`pkcs1`) or PKCS#8 DER key, its size unknown:
/// WebCrypto checks the key when it first imports it. Only the PKCS#8
/// wrapper of a PKCS#1 key is encoded here (`pkcs8`'s DER encoder); DER
/// decoding in Rust (`pkcs1` + `pkcs8`) cost 19 KB of the gzipped package.
#[cfg(target_arch = "wasm32")]
fn decode(der: &[u8], pkcs1: bool) -> Result<(Signer, Option<usize>), Error> {
    use pkcs8::der::{asn1::AnyRef, asn1::OctetStringRef, Encode};
    /// rsaEncryption (RFC 8017 appendix C) with NULL parameters.
    const RSA: pkcs8::spki::AlgorithmIdentifierRef<'static> = pkcs8::spki::AlgorithmIdentifierRef {
        oid: pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1"),
        parameters: Some(AnyRef::NULL),
    };
    let pkcs8 = if pkcs1 {
        OctetStringRef::new(der)
            .ok()
            .and_then(|key| pkcs8::PrivateKeyInfoRef::new(RSA, key).to_der().ok())
            .ok_or_else(|| Error::config(FIELD, NOT_PKCS1))?
    } else {
        der.to_vec()
    };
    Ok((Signer::new(pkcs8), None))
}

impl AssertionKey {
    /// Reads the first RSA private key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8
    /// `PRIVATE KEY`) from `pem`, which may also hold certificates.
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<Self, Error> {
        let mut found_encrypted = false;
        for (label, body) in pem_blocks(pem) {
            let pkcs1 = match label {
                "RSA PRIVATE KEY" => true,
                "PRIVATE KEY" => false,
                "ENCRYPTED PRIVATE KEY" => {
                    found_encrypted = true;
                    continue;
                }
                _ => continue,
            };
            let der = match body {
                Body::Der(der) => der,
                Body::Encrypted => {
                    found_encrypted = true;
                    continue;
                }
                Body::Undecodable => {
                    return Err(Error::config(
                        FIELD,
                        format!("the {label} block is not valid base64"),
                    ))
                }
            };
            let (key, bits) = decode(&der, pkcs1)?;
            if bits.is_some_and(|bits| bits < MIN_BITS) {
                return Err(Error::config(FIELD, TOO_SMALL));
            }
            return Ok(AssertionKey {
                key,
                kid: kid.filter(|k| !k.is_empty()),
                bits,
            });
        }
        Err(Error::config(
            FIELD,
            if found_encrypted {
                "the private key is encrypted; decrypt it first (openssl pkcs8 -topk8 -nocrypt)"
            } else {
                "the PEM holds no RSA private key (RSA PRIVATE KEY or PRIVATE KEY block)"
            },
        ))
    }

    /// A fresh assertion: `iss` = `sub` = `client_id`, `aud`, a random
    /// `jti`, `iat` = `nbf` = now, `exp` = now + 60 s.
    pub async fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now_ms: u64,
    ) -> Result<String, Error> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = Header {
            alg: "RS256",
            typ: "JWT",
            kid: self.kid.as_deref(),
        };
        let now = now_ms / 1000;
        let claims = Claims {
            iss: client_id,
            sub: client_id,
            aud: audience,
            jti: &random_url_safe(16)?,
            iat: now,
            nbf: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        let unwritable = |_| Error::config(FIELD, "the client assertion could not be written");
        let signing_input = format!(
            "{}.{}",
            b64.encode(json_text::to_string(&header).map_err(unwritable)?),
            b64.encode(json_text::to_string(&claims).map_err(unwritable)?)
        );
        let mut jwt = signing_input;
        let signature = self.sign(jwt.as_bytes()).await?;
        jwt.push('.');
        b64.encode_string(signature, &mut jwt);
        Ok(jwt)
    }

    #[cfg(not(target_arch = "wasm32"))]
    async fn sign(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        use rsa::signature::{SignatureEncoding, Signer as _};
        let signature = self
            .key
            .try_sign(data)
            .map_err(|_| Error::config(FIELD, CANNOT_SIGN))?;
        Ok(signature.to_vec())
    }

    #[cfg(target_arch = "wasm32")]
    async fn sign(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        self.key.sign(data).await.map_err(|too_small| {
            Error::config(FIELD, if too_small { TOO_SMALL } else { CANNOT_SIGN })
        })
    }
}

/// A client assertion's JOSE header.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

/// A client assertion's claims (RFC 7523 §3).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// A PEM block's body.
enum Body {
    /// The decoded DER (a private key: wiped on drop).
    Der(Zeroizing<Vec<u8>>),
    /// Encrypted with OpenSSL's traditional scheme (a `Proc-Type:
    /// 4,ENCRYPTED` header, RFC 1421).
    Encrypted,
    /// Not base64.
    Undecodable,
}

/// The PEM blocks of `text`: label and body. RFC 1421 header lines
/// (`Name: value`) are left out of the base64.
fn pem_blocks(text: &str) -> Vec<(&str, Body)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(body_end) = body_start.find(&end_marker) else {
            break;
        };
        // Header lines and base64 lines (a loop: `partition` cost wasm bytes).
        let mut headers: Vec<&str> = Vec::new();
        let mut base64: Vec<&str> = Vec::new();
        for line in body_start[..body_end].lines() {
            if line.contains(':') {
                headers.push(line);
            } else {
                base64.push(line);
            }
        }
        let body = if headers
            .iter()
            .any(|h| h.trim_start().starts_with("Proc-Type:") && h.contains("ENCRYPTED"))
        {
            Body::Encrypted
        } else {
            // The key's text and bytes, each in one buffer sized up front
            // (no reallocation leaves a copy behind), wiped on drop.
            let mut size = 0;
            for line in &base64 {
                size += line.len();
            }
            let mut text = Zeroizing::new(String::with_capacity(size));
            for line in base64 {
                for c in line.chars() {
                    if !c.is_whitespace() {
                        text.push(c);
                    }
                }
            }
            let engine = base64::engine::general_purpose::STANDARD;
            let mut der = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 + 3));
            match engine.decode_vec(text.as_bytes(), &mut der) {
                Ok(()) => Body::Der(der),
                Err(_) => Body::Undecodable,
            }
        };
        blocks.push((label, body));
        rest = &body_start[body_end + end_marker.len()..];
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    const PKCS8: &str = include_str!("../tests/fixtures/client-key-pkcs8.pem");
    const PKCS1: &str = include_str!("../tests/fixtures/client-key-pkcs1.pem");
    const CERT_AND_KEY: &str = include_str!("../tests/fixtures/client-cert-and-key.pem");

    fn claims(jwt: &str) -> serde_json::Value {
        let part = jwt.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn reads_pkcs8_pkcs1_and_a_certificate_bundle() {
        for pem in [PKCS8, PKCS1, CERT_AND_KEY] {
            let key = AssertionKey::from_pem(pem, Some("k1".into())).unwrap();
            assert_eq!(key.bits, Some(2048));
            assert!(!format!("{key:?}").contains("BEGIN"));
        }
    }

    #[test]
    fn assertion_claims_follow_rfc_7523() {
        let key = AssertionKey::from_pem(PKCS8, Some("kid-1".into())).unwrap();
        let jwt = key
            .assertion(
                "cid",
                "https://secure.stitch.money/connect/token",
                1_700_000_000_123,
            )
            .now_or_never()
            .unwrap()
            .unwrap();
        let c = claims(&jwt);
        #[allow(non_snake_case)]
        let (Int, Str) = (
            <serde_json::Value as From<u64>>::from,
            <serde_json::Value as From<String>>::from,
        );
        assert_eq!(c.get("iss"), Some(&Str("cid".into())));
        assert_eq!(c.get("sub"), Some(&Str("cid".into())));
        assert_eq!(
            c.get("aud"),
            Some(&Str("https://secure.stitch.money/connect/token".into()))
        );
        assert_eq!(c.get("iat"), Some(&Int(1_700_000_000)));
        assert_eq!(c.get("nbf"), Some(&Int(1_700_000_000)));
        assert_eq!(c.get("exp"), Some(&Int(1_700_000_060)));
        let header = jwt.split('.').next().unwrap();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap();
        assert_eq!(header, br#"{"alg":"RS256","typ":"JWT","kid":"kid-1"}"#);
    }

    #[test]
    fn jti_never_repeats_over_ten_thousand_assertions() {
        let key = AssertionKey::from_pem(PKCS8, None).unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            // The jti is what changes; signing 10,000 times is slow in debug,
            // so only the claims part is built the same way here.
            assert!(seen.insert(random_url_safe(16).unwrap()));
        }
        let a = claims(&key.assertion("c", "a", 0).now_or_never().unwrap().unwrap());
        let b = claims(&key.assertion("c", "a", 0).now_or_never().unwrap().unwrap());
        assert_ne!(a.get("jti"), b.get("jti"));
    }

    #[test]
    fn an_encrypted_or_damaged_key_block_is_named_as_such() {
        // OpenSSL's traditional encryption (`openssl genrsa -aes128`, or
        // `-traditional`): an RSA PRIVATE KEY block with RFC 1421 headers.
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\n\
            DEK-Info: AES-128-CBC,F581A24AE7D4797E1163600F40BCA488\r\n\r\n\
            c2VjcmV0LWtleS1tYXRlcmlhbA==\r\n-----END RSA PRIVATE KEY-----\r\n";
        // A PKCS#8 block whose base64 was damaged (a stray character).
        let damaged = PKCS8.replacen("\n", "\n!", 2);
        for (pem, says) in [
            // The hint is a command that decrypts both kinds (`openssl
            // pkcs8 -nocrypt` alone expects an unencrypted key).
            (legacy, "decrypt it first (openssl pkcs8 -topk8 -nocrypt)"),
            (
                damaged.as_str(),
                "the PRIVATE KEY block is not valid base64",
            ),
        ] {
            let e = AssertionKey::from_pem(pem, None).unwrap_err();
            assert_eq!(e.code().as_str(), "config");
            assert!(e.to_string().contains(says), "{e}");
            assert!(!e.to_string().contains("c2VjcmV0"), "no key material");
        }
    }

    #[test]
    fn a_key_one_bit_short_of_2048_is_refused() {
        // 2047 bits fill 256 bytes like 2048 do: the size counts bits, as
        // WebCrypto's modulusLength does in the wasm build.
        let short = include_str!("../tests/fixtures/client-key-2047.pem");
        let e = AssertionKey::from_pem(short, None).unwrap_err();
        assert_eq!(e.code().as_str(), "config");
        assert!(e.to_string().contains(TOO_SMALL), "{e}");
    }

    #[test]
    fn an_rsa_pss_key_is_refused() {
        // RFC 4055 restricts it to PSS, and WebCrypto will not import it for
        // RS256: the wasm build fails at the first signature, natively it
        // would have signed.
        let pss = include_str!("../tests/fixtures/client-key-rsa-pss.pem");
        let e = AssertionKey::from_pem(pss, None).unwrap_err();
        assert_eq!(e.code().as_str(), "config");
        assert!(e.to_string().contains("rsaEncryption"), "{e}");
    }

    #[test]
    fn a_pem_without_a_usable_key_is_a_config_error() {
        let cert_only = CERT_AND_KEY
            .split("-----BEGIN PRIVATE KEY-----")
            .next()
            .unwrap();
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let broken = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        for (pem, says) in [
            ("", "no RSA private key"),
            ("not a pem at all", "no RSA private key"),
            (cert_only, "no RSA private key"),
            (encrypted, "encrypted"),
            (broken, "not a PKCS#8 RSA key"),
        ] {
            let e = AssertionKey::from_pem(pem, None).unwrap_err();
            assert_eq!(e.code().as_str(), "config");
            assert!(
                e.to_string().contains("`private_key`") && e.to_string().contains(says),
                "{e}"
            );
        }
    }
}
