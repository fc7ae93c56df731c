//! AES-256-GCM, the cipher of [`crate::EncryptedStore`]: RustCrypto's
//! `aes-gcm` natively; in the wasm build the host's WebCrypto
//! ([`crate::wasm::record_cipher`]), so no AES is compiled into the wasm.
//! Both take a 32-byte key, a 96-bit nonce and associated data, and put the
//! 128-bit tag after the ciphertext.

/// Key length of AES-256 in bytes.
pub(crate) const KEY_BYTES: usize = 32;
/// Length of a GCM nonce in bytes (96 bits, the size GCM is made for).
pub(crate) const NONCE_BYTES: usize = 12;

/// A seal or open that failed. Carries nothing secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CipherError {
    /// The bytes did not authenticate: a wrong key, altered bytes or
    /// associated data (a record moved to another session key).
    Rejected,
    /// The platform could not run AES-GCM or draw a nonce (wasm: no
    /// WebCrypto, or it refused the key), so nothing was judged.
    Unavailable,
}

/// One AES-256-GCM key, ready to use (natively: its expanded key schedule,
/// wiped on drop).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone)]
pub(crate) struct RecordCipher(aes_gcm::Aes256Gcm);

#[cfg(not(target_arch = "wasm32"))]
impl RecordCipher {
    /// The cipher of `key`.
    pub(crate) fn new(key: &[u8; KEY_BYTES]) -> Self {
        use aes_gcm::KeyInit;
        RecordCipher(aes_gcm::Aes256Gcm::new(&(*key).into()))
    }

    /// `plaintext` encrypted, with the tag appended.
    pub(crate) async fn seal(
        &self,
        nonce: &[u8; NONCE_BYTES],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CipherError> {
        use aes_gcm::aead::{Aead, Payload};
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        self.0
            .encrypt(&(*nonce).into(), payload)
            .map_err(|_| CipherError::Rejected)
    }

    /// The plaintext of `ciphertext` (tag appended), if it authenticates.
    pub(crate) async fn open(
        &self,
        nonce: &[u8; NONCE_BYTES],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CipherError> {
        use aes_gcm::aead::{Aead, Payload};
        let payload = Payload {
            msg: ciphertext,
            aad,
        };
        self.0
            .decrypt(&(*nonce).into(), payload)
            .map_err(|_| CipherError::Rejected)
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) use crate::wasm::record_cipher::RecordCipher;
