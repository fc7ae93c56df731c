//! Randomness from the platform (`crypto.getRandomValues` on wasm).

use crate::error::Error;
use base64::Engine;

/// `n` random bytes, base64url without padding (for PKCE, state, nonce).
pub(crate) fn random_url_safe(n: usize) -> Result<String, Error> {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes)
        .map_err(|_| Error::config("randomness", "the platform offers no secure random source"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A random number for backoff jitter (0 if the platform has no randomness:
/// jitter is then only lost, never wrong).
pub(crate) fn jitter() -> u32 {
    let mut bytes = [0u8; 4];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u32::from_le_bytes(bytes),
        Err(_) => 0,
    }
}
