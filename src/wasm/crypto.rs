//! The platform's WebCrypto (`crypto.subtle`, a global in Node ≥ 20 and
//! browsers) for the core in wasm: RS256 client assertions and PKCE's SHA-256. Natively the
//! core uses RustCrypto; here the host's native code signs, so no RSA is
//! compiled into the wasm (RSA was 56 KB of the gzipped `freshtoken/jwt`
//! entry).
//!
//! Every step that reaches the host goes through the package's catching
//! calls ([`host`]): `globalThis.crypto` and `crypto.subtle` may be
//! accessors that throw (a sandbox, a test, a polyfill), and a polyfill's
//! method may throw, return no promise, or answer with something that is
//! not an `ArrayBuffer`. An exception unwinding through wasm would leave
//! the instance's stack and borrows behind, for every client in the process.

use super::host;
use crate::jwt::MIN_BITS;
use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Algorithm, CryptoKey, RsaHashedImportParams};

/// RSASSA-PKCS1-v1_5, the `RS256` of JWS (RFC 7518 §3.3).
const RS256: &str = "RSASSA-PKCS1-v1_5";

/// The most bytes read from a digest or a signature (RSA-16384 signs 2 KiB).
const MAX_DIGEST_BYTES: usize = 4096;

/// The host's `globalThis.crypto`.
fn crypto() -> Result<JsValue, JsValue> {
    let crypto = host::get(&js_sys::global(), "crypto")?;
    if crypto.is_object() {
        Ok(crypto)
    } else {
        Err(JsValue::from_str("no WebCrypto (globalThis.crypto)"))
    }
}

/// `crypto.subtle[method](...args)`, called through the package's catching
/// call (web-sys's catching imports would keep a slot of wasm-bindgen's
/// table for every throw); its answer, not yet awaited.
pub(crate) fn subtle(method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let subtle = host::get(&crypto()?, "subtle")?;
    if !subtle.is_object() {
        return Err(JsValue::from_str("no WebCrypto (crypto.subtle)"));
    }
    let f = host::method(&subtle, method)?
        .ok_or_else(|| JsValue::from_str("crypto.subtle lacks a method"))?;
    host::call(&f, &subtle, args)
}

/// Fills `buf` from the host's `crypto.getRandomValues` (a CSPRNG in Node
/// and every browser).
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), JsValue> {
    let crypto = crypto()?;
    let fill = host::method(&crypto, "getRandomValues")?
        .ok_or_else(|| JsValue::from_str("no crypto.getRandomValues"))?;
    let array = Uint8Array::new_with_length(buf.len() as u32);
    host::call(&fill, &crypto, &[array.clone().into()])?;
    // Read through the package's copy: the host may have taken the buffer.
    let bytes = zeroize::Zeroizing::new(host::bytes(&array, buf.len(), false)?.unwrap_or_default());
    if bytes.len() != buf.len() {
        return Err(JsValue::from_str("the host took the random bytes' buffer"));
    }
    // A stand-in that returns the array untouched would make every
    // verifier, state and assertion id the same zeros, and every AES-GCM
    // nonce (12 bytes) of an EncryptedStore the same: two records under
    // one nonce give away their text. 12 or more zero bytes from a CSPRNG
    // happen with probability 2^-96.
    if buf.len() >= 12 && bytes.iter().all(|&b| b == 0) {
        return Err(JsValue::from_str(
            "the host's getRandomValues filled nothing",
        ));
    }
    buf.copy_from_slice(&bytes);
    wipe(&array);
    Ok(())
}

/// Zeroes `array`, the caller's own copy of secret bytes in the JS heap,
/// unless the host it was handed to took its buffer (a detached array is
/// empty, and filling it would throw through wasm).
pub(crate) fn wipe(array: &Uint8Array) {
    let len = array.length();
    if len > 0 {
        array.fill(0, 0, len);
    }
}

/// What a WebCrypto call answered, awaited like `await` does: a rejection,
/// a throw or a non-promise of a polyfill all end here, never in wasm.
async fn answer(call: Result<JsValue, JsValue>) -> Result<JsValue, JsValue> {
    host::settle(&call?).await
}

/// The bytes of the `ArrayBuffer` a WebCrypto call answered with; an error
/// for more than `limit` of them (never a cut copy).
pub(crate) async fn answer_bytes(
    call: Result<JsValue, JsValue>,
    limit: usize,
) -> Result<Vec<u8>, JsValue> {
    let buffer = answer(call).await?;
    match host::bytes(&buffer, limit + 1, true)? {
        Some(bytes) if bytes.len() <= limit => Ok(bytes),
        Some(_) => Err(JsValue::from_str("WebCrypto answered too many bytes")),
        None => Err(JsValue::from_str("WebCrypto gave no ArrayBuffer")),
    }
}

/// `crypto.subtle.importKey(format, key, algorithm, false, usages)`: a
/// non-extractable key from `key`'s bytes, whose copy in the JS heap is
/// wiped once WebCrypto has copied it (synchronously, as `importKey` does).
pub(crate) async fn import_key(
    format: &str,
    key: &[u8],
    algorithm: JsValue,
    usages: &[&str],
) -> Result<CryptoKey, JsValue> {
    let bytes = Uint8Array::from(key);
    let usages: Array = usages.iter().map(|u| JsValue::from_str(u)).collect();
    let args = [
        format.into(),
        bytes.clone().into(),
        algorithm,
        false.into(),
        usages.into(),
    ];
    let imported = subtle("importKey", &args);
    wipe(&bytes);
    Ok(answer(imported).await?.unchecked_into())
}

/// A non-extractable RS256 signing key from a PKCS#8 `PrivateKeyInfo`.
async fn import_rs256_key(pkcs8_der: &[u8]) -> Result<CryptoKey, JsValue> {
    let params = RsaHashedImportParams::new_with_str("SHA-256");
    params.unchecked_ref::<Algorithm>().set_name(RS256);
    import_key("pkcs8", pkcs8_der, params.into(), &["sign"]).await
}

/// The SHA-256 of `data` (PKCE's S256 challenge).
pub(crate) async fn sha256(data: &[u8]) -> Result<Vec<u8>, JsValue> {
    let data = Uint8Array::from(data);
    let call = subtle("digest", &["SHA-256".into(), data.into()]);
    answer_bytes(call, MAX_DIGEST_BYTES).await
}

/// The RS256 signature of `data` with `key`.
async fn sign_rs256(key: &CryptoKey, data: &[u8]) -> Result<Vec<u8>, JsValue> {
    let data = Uint8Array::from(data);
    let call = subtle("sign", &[RS256.into(), key.into(), data.into()]);
    answer_bytes(call, MAX_DIGEST_BYTES).await
}

/// An RS256 key for the core's client assertions: the PKCS#8 DER, imported
/// into WebCrypto on first use and kept (as a non-extractable `CryptoKey`).
#[derive(Clone)]
pub(crate) struct Rs256Key {
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
    imported: std::rc::Rc<std::cell::OnceCell<CryptoKey>>,
}

impl Rs256Key {
    pub(crate) fn new(pkcs8: Vec<u8>) -> Self {
        Rs256Key {
            pkcs8: zeroize::Zeroizing::new(pkcs8),
            imported: Default::default(),
        }
    }

    /// The RS256 signature of `data`; `Err(true)` for a key under
    /// [`MIN_BITS`], `Err(false)` for one WebCrypto refuses.
    pub(crate) async fn sign(&self, data: &[u8]) -> Result<Vec<u8>, bool> {
        let key = match self.imported.get() {
            Some(key) => key.clone(),
            None => {
                let key = import_rs256_key(&self.pkcs8).await.map_err(|_| false)?;
                let bits = host::get(&key, "algorithm")
                    .and_then(|a| host::get(&a, "modulusLength"))
                    .ok()
                    .and_then(|n| n.as_f64());
                if bits.is_none_or(|bits| bits < MIN_BITS as f64) {
                    return Err(true);
                }
                self.imported.get_or_init(|| key).clone()
            }
        };
        sign_rs256(&key, data).await.map_err(|_| false)
    }
}
