//! AES-256-GCM for [`crate::EncryptedStore`] in the wasm build: the host's
//! WebCrypto (`crypto.subtle`, Node ≥ 20 and browsers) encrypts, so no AES
//! is compiled into the wasm. The raw key is imported once, as a
//! non-extractable `CryptoKey`, on first use.

use super::crypto::{answer_bytes, import_key, subtle};
use super::host;
use crate::cipher::{CipherError, KEY_BYTES, NONCE_BYTES};
use js_sys::{Object, Uint8Array};
use std::cell::OnceCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use web_sys::{AesGcmParams, CryptoKey};

const AES_GCM: &str = "AES-GCM";
/// AES-GCM's tag: 128 bits, WebCrypto's default `tagLength`.
const TAG_BYTES: usize = 16;

/// One AES-256-GCM key: the raw bytes (wiped on drop) until WebCrypto has
/// imported them, and the imported `CryptoKey`, shared by clones.
#[derive(Clone)]
pub(crate) struct RecordCipher {
    raw: Rc<zeroize::Zeroizing<[u8; KEY_BYTES]>>,
    imported: Rc<OnceCell<CryptoKey>>,
}

impl RecordCipher {
    /// The cipher of `key`.
    pub(crate) fn new(key: &[u8; KEY_BYTES]) -> Self {
        RecordCipher {
            raw: Rc::new(zeroize::Zeroizing::new(*key)),
            imported: Rc::default(),
        }
    }

    /// The imported key (imported on first use).
    async fn key(&self) -> Result<CryptoKey, JsValue> {
        if let Some(key) = self.imported.get() {
            return Ok(key.clone());
        }
        let key = import_key(
            "raw",
            &self.raw[..],
            AES_GCM.into(),
            &["encrypt", "decrypt"],
        )
        .await?;
        Ok(self.imported.get_or_init(|| key).clone())
    }

    /// `data` encrypted (`seal`) or decrypted (`open`) by WebCrypto. Only
    /// WebCrypto's own verdict on the bytes (an `OperationError`) is
    /// [`CipherError::Rejected`]; anything else (no `crypto.subtle`, a key
    /// it will not import, a call that throws) is
    /// [`CipherError::Unavailable`], so that a platform without AES-GCM is
    /// never reported as an altered record.
    async fn run(
        &self,
        seal: bool,
        nonce: &[u8; NONCE_BYTES],
        aad: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, CipherError> {
        let unavailable = |_| CipherError::Unavailable;
        let key = self.key().await.map_err(unavailable)?;
        let params = AesGcmParams::new(AES_GCM, &Uint8Array::from(&nonce[..]));
        params.set_additional_data(&Uint8Array::from(aad));
        let data_len = data.len();
        let data: Object = Uint8Array::from(data).into();
        let method = if seal { "encrypt" } else { "decrypt" };
        let promise = subtle(method, &[params.into(), key.into(), data.into()]);
        // AES-GCM's output is the input with the tag added or taken away.
        answer_bytes(promise, data_len + TAG_BYTES)
            .await
            .map_err(|e| {
                let name = host::get(&e, "name").ok().and_then(|n| n.as_string());
                if name.as_deref() == Some("OperationError") {
                    CipherError::Rejected
                } else {
                    CipherError::Unavailable
                }
            })
    }

    /// `plaintext` encrypted, with the tag appended.
    pub(crate) async fn seal(
        &self,
        nonce: &[u8; NONCE_BYTES],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CipherError> {
        self.run(true, nonce, aad, plaintext).await
    }

    /// The plaintext of `ciphertext` (tag appended), if it authenticates.
    pub(crate) async fn open(
        &self,
        nonce: &[u8; NONCE_BYTES],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CipherError> {
        self.run(false, nonce, aad, ciphertext).await
    }
}
