//! Randomness from the platform: the OS natively (`getrandom`), the host's
//! `crypto.getRandomValues` in wasm, asked through the package's catching
//! calls (a throwing `globalThis.crypto` accessor must not unwind through
//! wasm, as `getrandom`'s own binding would let it).

use crate::error::Error;
use base64::Engine;

/// Fills `bytes` with the platform's secure randomness.
pub(crate) fn fill(bytes: &mut [u8]) -> Result<(), ()> {
    #[cfg(target_arch = "wasm32")]
    return crate::wasm::crypto::random_bytes(bytes).map_err(|_| ());
    #[cfg(not(target_arch = "wasm32"))]
    getrandom::getrandom(bytes).map_err(|_| ())
}

/// `n` random bytes, base64url without padding (for PKCE, state, nonce).
pub(crate) fn random_url_safe(n: usize) -> Result<String, Error> {
    let mut bytes = vec![0u8; n];
    fill(&mut bytes)
        .map_err(|_| Error::config("randomness", "the platform offers no secure random source"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A random number for backoff jitter (0 if the platform has no randomness:
/// jitter is then only lost, never wrong).
pub(crate) fn jitter() -> u32 {
    let mut bytes = [0u8; 4];
    match fill(&mut bytes) {
        Ok(()) => u32::from_le_bytes(bytes),
        Err(_) => 0,
    }
}
