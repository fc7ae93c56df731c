//! Records encrypted at rest: [`EncryptedStore`] wraps any [`TokenStore`]
//! and encrypts each record with AES-256-GCM before the inner store sees it.
//!
//! A refresh token is a standing key to a user's bank data for up to a
//! year; with this wrapper a leaked database, Redis dump or token file holds
//! no usable token without the host's key.
//!
//! - **Envelope.** What the inner store keeps is a JSON object (so stores
//!   that expect JSON keep working), versioned and naming its key:
//!   `{"schema":"freshtoken.encrypted/1","kid":"2026-11","nonce":"…","ciphertext":"…"}`
//!   (nonce and ciphertext in unpadded base64url; the 16-byte tag ends the
//!   ciphertext). Every save draws a fresh random 96-bit nonce.
//! - **Binding.** The associated data is the envelope version, the key id
//!   and the session key, so a record copied under another session key, or
//!   relabelled with another key id, fails to decrypt.
//! - **Keys.** One current key encrypts; old keys (by id) only decrypt.
//!   A record read under an old key is written under the current one by its
//!   next save. An unknown key id or a failed authentication is a `storage`
//!   error naming the key id and the session key, never a fallback.
//! - **Plain records** written before encryption was switched on are read as
//!   they are and encrypted by their next save, unless
//!   [`EncryptionKeys::refuse_plaintext`] is set (then reading one is a
//!   `storage` error). A text larger than any envelope, or an envelope cut
//!   short, is a `storage` error either way, never read as a plain record.
//! - **Fleets.** The lease and compare-and-swap members pass through to the
//!   inner store unchanged (versions are the inner store's), so a Redis or
//!   PostgreSQL fleet works encrypted as it works plain.

use crate::cipher::{CipherError, RecordCipher, KEY_BYTES, NONCE_BYTES};
use crate::error::Error;
use crate::json_text;
use crate::store::{CasOutcome, StoreError, TokenStore, Versioned, MAX_RECORD_BYTES};
use async_trait::async_trait;
use base64::Engine;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The envelope's schema tag (its version).
pub const ENCRYPTED_SCHEMA_V1: &str = "freshtoken.encrypted/1";
/// What every envelope version's schema tag starts with.
const ENCRYPTED_SCHEMA_PREFIX: &str = "freshtoken.encrypted/";
/// The schema tag's start as it appears in an envelope's text.
const ENVELOPE_MARK: &str = "\"freshtoken.encrypted/";
/// How an envelope's text begins as freshtoken writes it, up to its mark.
const ENVELOPE_OPENING: &str = "{\"schema\":\"freshtoken.encrypted/";
/// How much of [`ENVELOPE_OPENING`] a plain record's text begins with too.
const PLAIN_OPENING_CHARS: usize = "{\"schema\":\"freshtoken.".len();
/// Longest key id accepted (characters).
const MAX_KEY_ID_CHARS: usize = 64;
/// Largest stored text read as an envelope: a record of
/// [`MAX_RECORD_BYTES`] and its tag in base64, with room for the members.
pub(crate) const MAX_ENVELOPE_BYTES: usize = (MAX_RECORD_BYTES + 16) / 3 * 4 + 4 + 512;
/// How much of a session key or key id an error message quotes.
const QUOTED_CHARS: usize = 80;

/// An AES-256 key and the id it is known by. `Debug` shows the id only;
/// the key material (natively each clone's expanded key, in wasm the raw
/// bytes shared by clones) is wiped from memory when dropped.
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    cipher: RecordCipher,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

impl EncryptionKey {
    /// A key from its 32 bytes. `id` names it in every envelope it writes:
    /// 1 to 64 printable ASCII characters, no spaces (e.g. `2026-11`).
    /// Anything else is a `config` error naming `encryption_key.id` or
    /// `encryption_key.key`.
    pub fn new(id: impl Into<String>, key: &[u8]) -> Result<Self, Error> {
        Self::checked("encryption_key.", id.into(), key)
    }

    /// A key from its 32 bytes in base64 (standard or URL-safe alphabet,
    /// padding optional), as `openssl rand -base64 32` prints them.
    pub fn from_base64(id: impl Into<String>, key: &str) -> Result<Self, Error> {
        Self::checked_base64("encryption_key.", id.into(), key)
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// [`EncryptionKey::new`] with errors naming `{field}id` / `{field}key`.
    pub(crate) fn checked(field: &str, id: String, key: &[u8]) -> Result<Self, Error> {
        check_id(field, &id)?;
        let key: &[u8; KEY_BYTES] = key.try_into().map_err(|_| {
            Error::config(
                format!("{field}key"),
                format!(
                    "must be exactly {KEY_BYTES} bytes (AES-256), not {}",
                    key.len()
                ),
            )
        })?;
        Ok(EncryptionKey {
            id,
            cipher: RecordCipher::new(key),
        })
    }

    /// [`EncryptionKey::from_base64`] with errors naming `{field}id` / `{field}key`.
    pub(crate) fn checked_base64(field: &str, id: String, key: &str) -> Result<Self, Error> {
        check_id(field, &id)?;
        // Sized up front and filled by a loop (fewer wasm bytes than
        // map/collect, and no reallocation leaves a copy of the key behind).
        let url_safe = key.trim().trim_end_matches('=');
        let mut standard = Zeroizing::new(String::with_capacity(url_safe.len()));
        for c in url_safe.chars() {
            standard.push(match c {
                '-' => '+',
                '_' => '/',
                c => c,
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(standard.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| Error::config(format!("{field}key"), "is not base64"))?;
        Self::checked(field, id, &bytes)
    }
}

/// A key id: 1 to 64 printable ASCII characters without spaces.
fn check_id(field: &str, id: &str) -> Result<(), Error> {
    let fine = !id.is_empty()
        && id.chars().count() <= MAX_KEY_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_graphic());
    if fine {
        Ok(())
    } else {
        Err(Error::config(
            format!("{field}id"),
            format!("must be 1 to {MAX_KEY_ID_CHARS} printable ASCII characters without spaces"),
        ))
    }
}

/// The keys of an [`EncryptedStore`]: the current one (encrypts every
/// save), old ones by id (only decrypt, until their records are saved
/// again), and whether plain records are refused.
#[derive(Clone, Debug)]
pub struct EncryptionKeys {
    current: EncryptionKey,
    old: Vec<EncryptionKey>,
    refuse_plaintext: bool,
}

impl EncryptionKeys {
    /// Just `current`; plain records are read (and encrypted by their next save).
    pub fn new(current: EncryptionKey) -> Self {
        EncryptionKeys {
            current,
            old: Vec::new(),
            refuse_plaintext: false,
        }
    }

    /// Adds old keys, which decrypt records written under them. Two keys
    /// with one id are a `config` error naming `encryption_keys.old`.
    pub fn with_old(mut self, old: impl IntoIterator<Item = EncryptionKey>) -> Result<Self, Error> {
        for key in old {
            if self.find(&key.id).is_some() {
                return Err(Error::config(
                    "encryption_keys.old",
                    format!("key id {} is given twice", quoted(&key.id)),
                ));
            }
            self.old.push(key);
        }
        Ok(self)
    }

    /// When `refuse` is true, a stored record that is not encrypted is a
    /// `storage` error instead of being read (once every record has been
    /// rewritten, this stops anyone who can write to the store from
    /// planting a record of their own).
    pub fn refuse_plaintext(mut self, refuse: bool) -> Self {
        self.refuse_plaintext = refuse;
        self
    }

    /// The key every save encrypts with.
    pub fn current(&self) -> &EncryptionKey {
        &self.current
    }

    /// The old keys, which only decrypt.
    pub fn old(&self) -> &[EncryptionKey] {
        &self.old
    }

    /// Whether plain records are refused.
    pub fn refuses_plaintext(&self) -> bool {
        self.refuse_plaintext
    }

    /// `record` as the envelope saved under the session key `key`,
    /// encrypted with the current key and a fresh random nonce.
    /// A record over [`MAX_RECORD_BYTES`] is refused: its envelope could
    /// not be read back.
    pub async fn seal(&self, key: &str, record: &str) -> Result<String, StoreError> {
        let current = &self.current;
        if record.len() > MAX_RECORD_BYTES {
            let what = format!("is larger than {MAX_RECORD_BYTES} bytes; it was not saved");
            return Err(failure(key, Some(&current.id), &what));
        }
        let mut nonce = [0u8; NONCE_BYTES];
        let aad = associated_data(&current.id, key);
        let sealed = match crate::random::fill(&mut nonce) {
            Ok(()) => current.cipher.seal(&nonce, &aad, record.as_bytes()).await,
            Err(_) => Err(CipherError::Unavailable),
        };
        let sealed = sealed.map_err(|_| {
            failure(
                key,
                Some(&current.id),
                "could not be encrypted (no secure random source, or no AES-GCM on this platform)",
            )
        })?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let envelope = Envelope {
            schema: ENCRYPTED_SCHEMA_V1,
            kid: &current.id,
            nonce: &b64.encode(nonce),
            ciphertext: &b64.encode(sealed),
        };
        // Strings only: writing cannot fail.
        json_text::to_string(&envelope)
            .map_err(|_| failure(key, Some(&current.id), "could not be written"))
    }

    /// The record in `stored` (what the inner store holds under the session
    /// key `key`): an envelope decrypted, or a plain record as it is (unless
    /// plain records are refused). Errors name the key id and the session
    /// key, never the contents.
    pub async fn open(&self, key: &str, stored: &str) -> Result<String, StoreError> {
        if stored.len() > MAX_ENVELOPE_BYTES {
            // Bigger than any envelope or record freshtoken writes.
            return Err(too_large(key));
        }
        let members = match json_text::string_members(
            stored.as_bytes(),
            MAX_ENVELOPE_BYTES,
            &["schema", "kid", "nonce", "ciphertext"],
        ) {
            Ok(members) => Some(members),
            // Not a whole JSON object, yet it names the envelope's schema,
            // or ends within an envelope's opening past what a plain record
            // shares: an envelope cut short (a column too narrow), not a
            // plain record.
            Err(_)
                if stored.contains(ENVELOPE_MARK)
                    || (stored.len() > PLAIN_OPENING_CHARS
                        && ENVELOPE_OPENING.starts_with(stored)) =>
            {
                return Err(failure(
                    key,
                    None,
                    "is a damaged encrypted envelope (not a whole JSON object: cut short?)",
                ))
            }
            Err(_) => None,
        }
        .filter(|m| {
            m[0].as_deref()
                .is_some_and(|schema| schema.starts_with(ENCRYPTED_SCHEMA_PREFIX))
        });
        let Some([schema, kid, nonce, ciphertext]) =
            members.and_then(|m| <[_; 4]>::try_from(m).ok())
        else {
            if self.refuse_plaintext {
                return Err(failure(
                    key,
                    None,
                    "is not encrypted, and plain records are refused (refuse_plaintext)",
                ));
            }
            // Read as it is; the next save encrypts it.
            return Ok(stored.to_owned());
        };
        if schema.as_deref() != Some(ENCRYPTED_SCHEMA_V1) {
            return Err(failure(
                key,
                None,
                "is in an encrypted envelope of a later version than freshtoken.encrypted/1; upgrade freshtoken to read it",
            ));
        }
        let Some(kid) = kid else {
            return Err(failure(key, None, "is encrypted but names no key id"));
        };
        let Some(found) = self.find(&kid) else {
            return Err(failure(
                key,
                Some(&kid),
                "is encrypted with a key that is not among the keys given",
            ));
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let nonce: Option<[u8; NONCE_BYTES]> = nonce
            .and_then(|n| b64.decode(n).ok())
            .and_then(|n| n.try_into().ok());
        let ciphertext = ciphertext.and_then(|c| b64.decode(c).ok());
        let (Some(nonce), Some(ciphertext)) = (nonce, ciphertext) else {
            return Err(failure(
                key,
                Some(&kid),
                "is damaged: its nonce is not 12 bytes in base64url, or its ciphertext not \
                 base64url",
            ));
        };
        let aad = associated_data(&kid, key);
        let plain = found.cipher.open(&nonce, &aad, &ciphertext).await;
        let plain = plain.map_err(|e| {
            failure(
                key,
                Some(&kid),
                match e {
                    CipherError::Rejected => {
                        "failed to decrypt: it was altered, or it belongs to another session key"
                    }
                    CipherError::Unavailable => {
                        "could not be decrypted: no AES-GCM on this platform (WebCrypto)"
                    }
                },
            )
        })?;
        String::from_utf8(plain).map_err(|e| {
            drop(Zeroizing::new(e.into_bytes()));
            failure(key, Some(&kid), "decrypted to text that is not UTF-8")
        })
    }

    fn find(&self, id: &str) -> Option<&EncryptionKey> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
    }
}

/// An envelope as written.
#[derive(Serialize)]
struct Envelope<'a> {
    schema: &'a str,
    kid: &'a str,
    nonce: &'a str,
    ciphertext: &'a str,
}

/// `text` in quotes for an error message: at most [`QUOTED_CHARS`]
/// characters, `"` and `\` escaped with `\`, control characters shown as
/// `?`. (Not `{:?}`: its escaping links Unicode tables into the wasm.)
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4 * QUOTED_CHARS) + 5);
    out.push('"');
    let mut chars = text.chars();
    for c in chars.by_ref().take(QUOTED_CHARS) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if crate::response::is_unprintable(c) => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// The associated data: the envelope version, the key id and the session
/// key. The id never holds a NUL (it is printable ASCII), so the encoding
/// is unambiguous.
fn associated_data(kid: &str, key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(ENCRYPTED_SCHEMA_V1.len() + kid.len() + key.len() + 2);
    aad.extend_from_slice(ENCRYPTED_SCHEMA_V1.as_bytes());
    aad.push(0);
    aad.extend_from_slice(kid.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key.as_bytes());
    aad
}

/// A [`TokenStore`] that keeps every record encrypted in `inner` (see the
/// module documentation for the envelope, the keys and plain records).
pub struct EncryptedStore {
    inner: Arc<dyn TokenStore>,
    keys: EncryptionKeys,
}

impl fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl EncryptedStore {
    /// Wraps `inner`: every record it keeps is encrypted with `keys`.
    pub fn new(inner: Arc<dyn TokenStore>, keys: EncryptionKeys) -> Self {
        EncryptedStore { inner, keys }
    }

    /// The store underneath (it holds envelopes).
    pub fn inner(&self) -> &Arc<dyn TokenStore> {
        &self.inner
    }

    /// The keys.
    pub fn keys(&self) -> &EncryptionKeys {
        &self.keys
    }

    /// `record` as the envelope saved under the session key `key`
    /// (see [`EncryptionKeys::seal`]).
    pub async fn seal(&self, key: &str, record: &str) -> Result<String, StoreError> {
        self.keys.seal(key, record).await
    }

    /// The record in `stored`, what the inner store holds under the session
    /// key `key` (see [`EncryptionKeys::open`]).
    pub async fn open(&self, key: &str, stored: &str) -> Result<String, StoreError> {
        self.keys.open(key, stored).await
    }
}

/// The error for a stored text over [`MAX_ENVELOPE_BYTES`] under the session key `key`.
pub(crate) fn too_large(key: &str) -> StoreError {
    failure(
        key,
        None,
        &format!("is larger than {MAX_ENVELOPE_BYTES} bytes; it was not read"),
    )
}

/// A store error about the record of session key `key` (encrypted with key
/// id `kid`, when known).
pub(crate) fn failure(key: &str, kid: Option<&str>, what: &str) -> StoreError {
    let kid = kid.map(|kid| format!(" (key id {})", quoted(kid)));
    StoreError(format!(
        "the record of session key {}{} {what}",
        quoted(key),
        kid.unwrap_or_default()
    ))
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl TokenStore for EncryptedStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self.inner.load(key).await? {
            Some(stored) => self.open(key, &stored).await.map(Some),
            None => Ok(None),
        }
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        let sealed = self.seal(key, record).await?;
        self.inner.save(key, &sealed).await
    }

    fn supports_lease(&self) -> bool {
        self.inner.supports_lease()
    }

    async fn acquire(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        self.inner.acquire(key, owner, ttl_ms).await
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.release(key, owner).await
    }

    fn supports_versions(&self) -> bool {
        self.inner.supports_versions()
    }

    async fn load_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        match self.inner.load_versioned(key).await? {
            Some(Versioned { record, version }) => Ok(Some(Versioned {
                record: self.open(key, &record).await?,
                version,
            })),
            None => Ok(None),
        }
    }

    /// The inner store's version, the envelope unopened: a re-link replaces
    /// a record that no key given opens (a key removed too early, an altered
    /// envelope, a plain record under `refuse_plaintext`).
    async fn load_version(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.load_version(key).await
    }

    async fn save_versioned(
        &self,
        key: &str,
        record: &str,
        expected: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        let sealed = self.seal(key, record).await?;
        self.inner.save_versioned(key, &sealed, expected).await
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::{ManualClock, MemoryStore};

    const RECORD: &str =
        r#"{"schema":"freshtoken.record/1","refresh_token":"rt-SENTINEL-secret","updated_at":1}"#;
    const KEY_A: [u8; 32] = [0xA1; 32];
    const KEY_B: [u8; 32] = [0xB2; 32];

    fn key(id: &str, bytes: &[u8; 32]) -> EncryptionKey {
        EncryptionKey::new(id, bytes).unwrap()
    }

    /// A store on `inner` with `current` and `old` keys.
    fn store(
        inner: &Arc<MemoryStore>,
        current: EncryptionKey,
        old: Vec<EncryptionKey>,
    ) -> EncryptedStore {
        let keys = EncryptionKeys::new(current).with_old(old).unwrap();
        EncryptedStore::new(inner.clone(), keys)
    }

    fn b64() -> base64::engine::GeneralPurpose {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
    }

    /// The envelope's members as strings.
    fn members(text: &str) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(text).unwrap()
    }

    fn member(text: &str, name: &str) -> String {
        members(text)[name].as_str().unwrap().to_owned()
    }

    fn with_member(text: &str, name: &str, value: &str) -> String {
        let mut m = members(text);
        m.insert(name.into(), value.into());
        serde_json::to_string(&m).unwrap()
    }

    fn storage_error(result: Result<Option<String>, StoreError>) -> String {
        match result {
            Err(StoreError(message)) => {
                assert!(!message.contains("SENTINEL"), "{message}");
                message
            }
            Ok(found) => panic!("read {found:?}"),
        }
    }

    #[tokio::test]
    async fn a_record_round_trips_and_the_inner_store_holds_only_the_envelope() {
        let inner = Arc::new(MemoryStore::new());
        let s = store(&inner, key("2026-11", &KEY_A), vec![]);
        s.save("user-1", RECORD).await.unwrap();
        let raw = inner.get("user-1").unwrap();
        assert!(
            !raw.contains("SENTINEL") && !raw.contains("refresh_token"),
            "{raw}"
        );
        let m = members(&raw);
        assert_eq!(
            m.keys().cloned().collect::<Vec<_>>(),
            ["ciphertext", "kid", "nonce", "schema"]
        );
        assert!(raw.starts_with(r#"{"schema":"freshtoken.encrypted/1","kid":"2026-11","nonce":""#));
        assert_eq!(b64().decode(member(&raw, "nonce")).unwrap().len(), 12);
        assert_eq!(
            b64().decode(member(&raw, "ciphertext")).unwrap().len(),
            RECORD.len() + 16,
            "ciphertext and a 16-byte tag"
        );
        assert_eq!(s.load("user-1").await.unwrap().as_deref(), Some(RECORD));
        assert_eq!(s.load("nobody").await.unwrap(), None);
    }

    /// An envelope as version 1 wrote it (key: 32 bytes of 0x42, session key
    /// `user-42`); Node's WebCrypto decrypts it too, by the documented
    /// format. Later versions must keep reading it.
    const FROZEN_V1: &str = r#"{"schema":"freshtoken.encrypted/1","kid":"2026-11","nonce":"2-uqFOs9KQa__xFw","ciphertext":"h_EdT1HjmXKYom8z0O-qz76aoPcHB59Ei_xAeNVCCP7SYJdAeVceCmgJJbIYN0ePFl8H0gBMObYXbsc6fwNFtbROy5we8g5XPOJk_0FwBHIokaUXhq2r-_8FIQ"}"#;

    #[tokio::test]
    async fn a_frozen_version_1_envelope_still_decrypts() {
        let inner = Arc::new(MemoryStore::new());
        inner.save("user-42", FROZEN_V1).await.unwrap();
        let s = store(&inner, key("2026-11", &[0x42; 32]), vec![]);
        assert_eq!(
            s.load("user-42").await.unwrap().as_deref(),
            Some(r#"{"schema":"freshtoken.record/1","refresh_token":"rt-frozen","updated_at":1}"#)
        );
    }

    #[tokio::test]
    async fn every_save_draws_a_fresh_nonce() {
        let inner = Arc::new(MemoryStore::new());
        let s = store(&inner, key("k", &KEY_A), vec![]);
        let mut nonces = std::collections::HashSet::new();
        for _ in 0..50 {
            s.save("u", RECORD).await.unwrap();
            assert!(nonces.insert(member(&inner.get("u").unwrap(), "nonce")));
        }
    }

    #[tokio::test]
    async fn any_altered_byte_of_nonce_or_ciphertext_fails_naming_the_key_id() {
        let inner = Arc::new(MemoryStore::new());
        let s = store(&inner, key("2026-11", &KEY_A), vec![]);
        s.save("user-1", RECORD).await.unwrap();
        let raw = inner.get("user-1").unwrap();
        for name in ["nonce", "ciphertext"] {
            let bytes = b64().decode(member(&raw, name)).unwrap();
            for i in 0..bytes.len() {
                let mut altered = bytes.clone();
                altered[i] ^= 0x01;
                inner
                    .save("user-1", &with_member(&raw, name, &b64().encode(&altered)))
                    .await
                    .unwrap();
                let message = storage_error(s.load("user-1").await);
                assert!(
                    message.contains(r#"key id "2026-11""#)
                        && message.contains(r#"session key "user-1""#)
                        && message.contains("failed to decrypt"),
                    "{name}[{i}]: {message}"
                );
            }
        }
        // A byte cut off, or base64 that is not base64.
        let cut = &member(&raw, "ciphertext")[1..];
        inner
            .save("user-1", &with_member(&raw, "ciphertext", cut))
            .await
            .unwrap();
        let message = storage_error(s.load("user-1").await);
        assert!(message.contains(r#"key id "2026-11""#), "{message}");
        inner
            .save("user-1", &with_member(&raw, "nonce", "not base64!"))
            .await
            .unwrap();
        let message = storage_error(s.load("user-1").await);
        assert!(
            message.contains("damaged") && message.contains(r#""2026-11""#),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_record_moved_to_another_session_key_fails() {
        let inner = Arc::new(MemoryStore::new());
        let s = store(&inner, key("k1", &KEY_A), vec![]);
        s.save("alice", RECORD).await.unwrap();
        inner
            .save("mallory", &inner.get("alice").unwrap())
            .await
            .unwrap();
        let message = storage_error(s.load("mallory").await);
        assert!(
            message.contains(r#"session key "mallory""#) && message.contains(r#"key id "k1""#),
            "{message}"
        );
        assert_eq!(s.load("alice").await.unwrap().as_deref(), Some(RECORD));
    }

    #[tokio::test]
    async fn a_relabelled_key_id_fails_even_with_the_same_key_bytes() {
        let inner = Arc::new(MemoryStore::new());
        // Two ids, one key: only the associated data tells them apart.
        let s = store(&inner, key("new", &KEY_A), vec![key("old", &KEY_A)]);
        s.save("u", RECORD).await.unwrap();
        let raw = inner.get("u").unwrap();
        inner
            .save("u", &with_member(&raw, "kid", "old"))
            .await
            .unwrap();
        let message = storage_error(s.load("u").await);
        assert!(message.contains(r#"key id "old""#), "{message}");
    }

    #[tokio::test]
    async fn an_unknown_key_id_is_an_error_naming_it_never_a_fallback() {
        let inner = Arc::new(MemoryStore::new());
        store(&inner, key("2025-01", &KEY_A), vec![])
            .save("u", RECORD)
            .await
            .unwrap();
        // Same key bytes under another id: still refused (no guessing).
        let s = store(&inner, key("2026-11", &KEY_A), vec![]);
        let message = storage_error(s.load("u").await);
        assert!(
            message.contains(r#"key id "2025-01""#) && message.contains("not among the keys"),
            "{message}"
        );
        assert!(
            storage_error(s.load_versioned("u").await.map(|v| v.map(|v| v.record)))
                .contains("2025-01")
        );
        // A key id altered in the store is unknown too.
        let raw = inner.get("u").unwrap();
        inner
            .save("u", &with_member(&raw, "kid", "2025-0I"))
            .await
            .unwrap();
        let s = store(&inner, key("2025-01", &KEY_A), vec![]);
        assert!(storage_error(s.load("u").await).contains(r#""2025-0I""#));
    }

    #[tokio::test]
    async fn rotation_reads_under_the_old_key_and_the_next_save_uses_the_current_one() {
        let inner = Arc::new(MemoryStore::new());
        store(&inner, key("2025", &KEY_A), vec![])
            .save("u", RECORD)
            .await
            .unwrap();
        let rotated = store(&inner, key("2026", &KEY_B), vec![key("2025", &KEY_A)]);
        let read = rotated.load("u").await.unwrap().unwrap();
        assert_eq!(read, RECORD);
        assert_eq!(
            member(&inner.get("u").unwrap(), "kid"),
            "2025",
            "reading writes nothing"
        );
        rotated.save("u", &read).await.unwrap();
        assert_eq!(member(&inner.get("u").unwrap(), "kid"), "2026");
        // The old key can go now.
        let only_new = store(&inner, key("2026", &KEY_B), vec![]);
        assert_eq!(only_new.load("u").await.unwrap().as_deref(), Some(RECORD));
        let only_old = store(&inner, key("2025", &KEY_A), vec![]);
        assert!(storage_error(only_old.load("u").await).contains(r#""2026""#));
    }

    #[tokio::test]
    async fn plain_records_are_read_then_encrypted_unless_refused() {
        let inner = Arc::new(MemoryStore::new());
        inner.save("u", RECORD).await.unwrap();
        let s = store(&inner, key("k", &KEY_A), vec![]);
        assert_eq!(s.load("u").await.unwrap().as_deref(), Some(RECORD));
        assert_eq!(
            inner.get("u").as_deref(),
            Some(RECORD),
            "reading writes nothing"
        );
        s.save("u", RECORD).await.unwrap();
        assert_eq!(member(&inner.get("u").unwrap(), "kid"), "k");

        inner.save("p", RECORD).await.unwrap();
        let strict = EncryptedStore::new(
            inner.clone(),
            EncryptionKeys::new(key("k", &KEY_A)).refuse_plaintext(true),
        );
        let message = storage_error(strict.load("p").await);
        assert!(
            message.contains("not encrypted") && message.contains(r#""p""#),
            "{message}"
        );
        assert_eq!(strict.load("u").await.unwrap().as_deref(), Some(RECORD));
        // Whatever is not an envelope counts as plain: the core judges it.
        for text in ["", "not json", "[1]", r#"{"schema":7}"#] {
            inner.save("x", text).await.unwrap();
            assert_eq!(s.load("x").await.unwrap().as_deref(), Some(text));
            assert!(strict.load("x").await.is_err());
        }
    }

    #[tokio::test]
    async fn a_record_too_large_to_read_back_is_not_saved() {
        let inner = Arc::new(MemoryStore::new());
        let s = store(&inner, key("k", &KEY_A), vec![]);
        let padded = |n: usize| format!("{RECORD}{}", " ".repeat(n - RECORD.len()));
        let largest = padded(MAX_RECORD_BYTES);
        s.save("u", &largest).await.unwrap();
        assert_eq!(
            s.load("u").await.unwrap(),
            Some(largest),
            "the largest is read back"
        );
        let over = padded(MAX_RECORD_BYTES + 1);
        let message = storage_error(s.save("u", &over).await.map(|()| None));
        assert!(
            message.contains("larger than") && message.contains("not saved"),
            "{message}"
        );
        assert_eq!(
            s.load("u").await.unwrap().map(|r| r.len()),
            Some(MAX_RECORD_BYTES)
        );
    }

    #[tokio::test]
    async fn an_oversized_or_cut_off_envelope_is_a_storage_error_that_says_so() {
        let inner = Arc::new(MemoryStore::new());
        let s = store(&inner, key("k", &KEY_A), vec![]);
        let strict = EncryptedStore::new(
            inner.clone(),
            EncryptionKeys::new(key("k", &KEY_A)).refuse_plaintext(true),
        );
        // More than any envelope freshtoken writes: refused unread, and not
        // handed on as a plain record (nor called one when those are refused).
        let huge = format!(
            r#"{{"schema":"freshtoken.encrypted/1","kid":"k","pad":"{}"}}"#,
            "x".repeat(MAX_ENVELOPE_BYTES)
        );
        inner.save("u", &huge).await.unwrap();
        for s in [&s, &strict] {
            let message = storage_error(s.load("u").await);
            assert!(
                message.contains(&format!("larger than {MAX_ENVELOPE_BYTES} bytes"))
                    && message.contains(r#"session key "u""#),
                "{message}"
            );
        }
        // An envelope cut short (a column too narrow for it): damaged, not
        // a plain record.
        s.save("u", RECORD).await.unwrap();
        let raw = inner.get("u").unwrap();
        inner.save("u", &raw[..raw.len() - 10]).await.unwrap();
        for s in [&s, &strict] {
            let message = storage_error(s.load("u").await);
            assert!(
                message.contains("damaged") && !message.contains("not encrypted"),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn an_envelope_cut_within_its_opening_is_damaged_not_plain() {
        // Cut before its schema tag was whole, an envelope was read as a
        // plain record ("not encrypted" when those are refused).
        let inner = Arc::new(MemoryStore::new());
        let s = store(&inner, key("k", &KEY_A), vec![]);
        let strict = EncryptedStore::new(
            inner.clone(),
            EncryptionKeys::new(key("k", &KEY_A)).refuse_plaintext(true),
        );
        s.save("u", RECORD).await.unwrap();
        let raw = inner.get("u").unwrap();
        assert!(raw.starts_with(ENVELOPE_OPENING));
        for cut in PLAIN_OPENING_CHARS + 1..ENVELOPE_OPENING.len() + 8 {
            inner.save("u", &raw[..cut]).await.unwrap();
            for s in [&s, &strict] {
                let message = storage_error(s.load("u").await);
                assert!(
                    message.contains("damaged") && message.contains("cut short"),
                    "{cut}: {message}"
                );
            }
        }
        // A plain record shares the opening up to here: read as it is (the
        // record parser judges it), refused as plain when those are.
        for text in [RECORD, &RECORD[..PLAIN_OPENING_CHARS], &RECORD[..30]] {
            inner.save("p", text).await.unwrap();
            assert_eq!(s.load("p").await.unwrap().as_deref(), Some(text));
            assert!(storage_error(strict.load("p").await).contains("not encrypted"));
        }
    }

    #[test]
    fn quoted_escapes_quotes_and_backslashes() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("a\nb"), r#""a?b""#);
        let long = quoted(&"\"".repeat(QUOTED_CHARS + 1));
        assert_eq!(long, format!("\"{}\"…", "\\\"".repeat(QUOTED_CHARS)));
    }

    #[tokio::test]
    async fn a_key_id_with_a_quote_is_escaped_in_messages() {
        let inner = Arc::new(MemoryStore::new());
        store(&inner, key(r#"a"b\c"#, &KEY_A), vec![])
            .save(r#"u"1"#, RECORD)
            .await
            .unwrap();
        let other = store(&inner, key("zz", &KEY_A), vec![]);
        let message = storage_error(other.load(r#"u"1"#).await);
        assert!(
            message.contains(r#"session key "u\"1" (key id "a\"b\\c")"#),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_unknown_envelope_version_or_missing_key_id_is_refused() {
        let inner = Arc::new(MemoryStore::new());
        let s = store(&inner, key("k", &KEY_A), vec![]);
        s.save("u", RECORD).await.unwrap();
        let raw = inner.get("u").unwrap();
        inner
            .save("u", &with_member(&raw, "schema", "freshtoken.encrypted/2"))
            .await
            .unwrap();
        assert!(storage_error(s.load("u").await).contains("later version"));
        let mut m = members(&raw);
        m.remove("kid");
        inner
            .save("u", &serde_json::to_string(&m).unwrap())
            .await
            .unwrap();
        assert!(storage_error(s.load("u").await).contains("names no key id"));
    }

    #[tokio::test]
    async fn leases_and_versions_pass_through() {
        let clock = Arc::new(ManualClock::new(1_000));
        let inner = Arc::new(MemoryStore::with_leases(clock));
        let s = store(&inner, key("k", &KEY_A), vec![]);
        assert!(s.supports_lease() && s.supports_versions());
        assert!(s.acquire("u", "a", 5_000).await.unwrap());
        assert!(!s.acquire("u", "b", 5_000).await.unwrap(), "held by a");
        s.release("u", "a").await.unwrap();
        assert!(
            inner.acquire("u", "b", 5_000).await.unwrap(),
            "released in the inner store"
        );

        let saved = s.save_versioned("u", RECORD, None).await.unwrap();
        assert_eq!(
            saved,
            CasOutcome::Saved {
                version: "1".into()
            }
        );
        assert_eq!(
            s.save_versioned("u", RECORD, None).await.unwrap(),
            CasOutcome::Conflict
        );
        let read = s.load_versioned("u").await.unwrap().unwrap();
        assert_eq!(read.record, RECORD);
        assert_eq!(read.version, "1");
        assert!(!inner.get("u").unwrap().contains("SENTINEL"));
        assert_eq!(
            s.save_versioned("u", RECORD, Some("1")).await.unwrap(),
            CasOutcome::Saved {
                version: "2".into()
            }
        );
        let plain = EncryptedStore::new(
            Arc::new(MemoryStore::new()),
            EncryptionKeys::new(key("k", &KEY_A)),
        );
        assert!(!plain.supports_lease());
    }

    #[test]
    fn keys_are_checked_and_named_in_errors() {
        let field = |r: Result<EncryptionKey, Error>| match r {
            Err(Error::Config { field, message }) => format!("{field}: {message}"),
            other => panic!("{other:?}"),
        };
        assert!(field(EncryptionKey::new("k", &[0; 16]))
            .starts_with("encryption_key.key: must be exactly 32 bytes"));
        assert!(field(EncryptionKey::new("k", &[0; 33])).contains("not 33"));
        for id in ["", "has space", "tab\t", "é", &"x".repeat(65)] {
            assert!(
                field(EncryptionKey::new(id, &KEY_A)).starts_with("encryption_key.id:"),
                "{id:?}"
            );
        }
        assert!(field(EncryptionKey::from_base64("k", "c2hvcnQ=")).contains("not 5"));
        assert!(field(EncryptionKey::from_base64("k", "***")).contains("not base64"));
        let dup =
            EncryptionKeys::new(key("a", &KEY_A)).with_old([key("b", &KEY_B), key("a", &KEY_B)]);
        match dup {
            Err(Error::Config { field, message }) => {
                assert_eq!(field, "encryption_keys.old");
                assert!(message.contains(r#""a""#), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn base64_keys_take_either_alphabet_with_or_without_padding() {
        // Bytes whose base64 uses both '+'/'-' and '/'/'_'.
        let bytes: [u8; 32] = std::array::from_fn(|i| if i % 2 == 0 { 0xFB } else { 0xFF });
        let standard = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(standard.contains('+') && standard.contains('/') && standard.ends_with('='));
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let inner = Arc::new(MemoryStore::new());
        store(&inner, key("k", &bytes), vec![])
            .save("u", RECORD)
            .await
            .unwrap();
        for text in [standard.clone(), format!(" {standard}\n"), url] {
            let k = EncryptionKey::from_base64("k", &text).unwrap();
            let s = EncryptedStore::new(inner.clone(), EncryptionKeys::new(k));
            assert_eq!(
                s.load("u").await.unwrap().as_deref(),
                Some(RECORD),
                "{text}"
            );
        }
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let k = key("2026-11", &[0x5A; 32]);
        let keys = EncryptionKeys::new(k.clone())
            .with_old([key("old", &KEY_B)])
            .unwrap();
        let shown = format!(
            "{:?} {:?}",
            keys,
            EncryptedStore::new(Arc::new(MemoryStore::new()), keys.clone())
        );
        assert!(
            shown.contains("2026-11") && shown.contains("old"),
            "{shown}"
        );
        for leak in ["90", "5a", "5A", "178", "B2", "b2"] {
            assert!(!shown.contains(leak), "{leak} in {shown}");
        }
    }
}
