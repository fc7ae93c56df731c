//! The platform's WebCrypto (`crypto.subtle`, a global in Node ≥ 20 and
//! browsers) for the core in wasm: RS256 client assertions and PKCE's SHA-256. Natively the
//! core uses RustCrypto; here the host's native code signs, so no RSA is
//! compiled into the wasm (RSA was 56 KB of the gzipped `freshtoken/jwt`
//! entry).
//!
//! `SubtleCrypto`'s methods report failures as rejected Promises; the
//! catching imports below throw only when `crypto.subtle` is not a real
//! `SubtleCrypto`, which no supported host allows.

use crate::jwt::MIN_BITS;
use js_sys::{Array, ArrayBuffer, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Algorithm, CryptoKey, RsaHashedImportParams, SubtleCrypto};

/// RSASSA-PKCS1-v1_5, the `RS256` of JWS (RFC 7518 §3.3).
const RS256: &str = "RSASSA-PKCS1-v1_5";

#[wasm_bindgen]
extern "C" {
    /// `globalThis`, as far as its `crypto` goes.
    type CryptoGlobal;
    #[wasm_bindgen(method, getter)]
    fn crypto(this: &CryptoGlobal) -> Option<web_sys::Crypto>;

    /// An imported RSA key's `algorithm` (WebCrypto's `RsaHashedKeyAlgorithm`).
    type RsaKeyAlgorithm;
    #[wasm_bindgen(method, getter, js_name = modulusLength)]
    fn modulus_length(this: &RsaKeyAlgorithm) -> Option<u32>;
}

/// The host's `crypto.subtle`.
pub(crate) fn subtle() -> Result<SubtleCrypto, JsValue> {
    js_sys::global()
        .unchecked_into::<CryptoGlobal>()
        .crypto()
        .map(|crypto| crypto.subtle())
        .ok_or_else(|| JsValue::from_str("no WebCrypto (globalThis.crypto)"))
}

async fn bytes_of(promise: Result<js_sys::Promise, JsValue>) -> Result<Vec<u8>, JsValue> {
    let buffer = JsFuture::from(promise?).await?;
    let buffer = buffer
        .dyn_into::<ArrayBuffer>()
        .map_err(|_| JsValue::from_str("WebCrypto gave no ArrayBuffer"))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// A non-extractable RS256 signing key from a PKCS#8 `PrivateKeyInfo`.
async fn import_rs256_key(pkcs8_der: &[u8]) -> Result<CryptoKey, JsValue> {
    let params = RsaHashedImportParams::new_with_str("SHA-256");
    params.unchecked_ref::<Algorithm>().set_name(RS256);
    let der = Uint8Array::from(pkcs8_der);
    let usages = Array::of1(&JsValue::from_str("sign"));
    let imported = subtle()?.import_key_with_object("pkcs8", &der, &params, false, &usages)?;
    Ok(JsFuture::from(imported).await?.unchecked_into())
}

/// The SHA-256 of `data` (PKCE's S256 challenge).
pub(crate) async fn sha256(data: &[u8]) -> Result<Vec<u8>, JsValue> {
    let data = Uint8Array::from(data);
    bytes_of(subtle()?.digest_with_str_and_buffer_source("SHA-256", &data)).await
}

/// The RS256 signature of `data` with `key`.
async fn sign_rs256(key: &CryptoKey, data: &[u8]) -> Result<Vec<u8>, JsValue> {
    let data = Uint8Array::from(data);
    bytes_of(subtle()?.sign_with_str_and_buffer_source(RS256, key, &data)).await
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
                let bits = key
                    .algorithm()
                    .ok()
                    .and_then(|a| a.unchecked_into::<RsaKeyAlgorithm>().modulus_length());
                if bits.is_none_or(|bits| (bits as usize) < MIN_BITS) {
                    return Err(true);
                }
                self.imported.get_or_init(|| key).clone()
            }
        };
        sign_rs256(&key, data).await.map_err(|_| false)
    }
}
