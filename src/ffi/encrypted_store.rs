//! Records encrypted at rest for Kotlin, Swift and Python: the core's
//! [`crate::EncryptedStore`] behind the exported [`TokenStore`] trait, so an
//! encrypted store goes wherever a store goes (and a session calls it
//! without crossing back into the host).

use super::error::{FreshTokenError, HostError};
use super::host::{StoreAdapter, TokenStore};
use super::types::{CasResult, VersionedRecord};
use crate::{CasOutcome, Error, StoreError, TokenStore as _};
use std::sync::Arc;
use zeroize::Zeroizing;

/// An AES-256 key and its id. The key's bytes stay inside freshtoken (they
/// never come back to the host) and are wiped when the last reference goes.
#[derive(uniffi::Object)]
pub struct EncryptionKey(crate::EncryptionKey);

#[uniffi::export]
impl EncryptionKey {
    /// A key from its 32 bytes. `id` names it in every record it encrypts:
    /// 1 to 64 printable ASCII characters without spaces (e.g. `2026-11`).
    /// Anything else is a `Config` error naming `id` or `key`.
    #[uniffi::constructor]
    pub fn new(id: String, key: Vec<u8>) -> Result<Arc<Self>, FreshTokenError> {
        let key = Zeroizing::new(key);
        Ok(Arc::new(EncryptionKey(crate::EncryptionKey::checked(
            "", id, &key,
        )?)))
    }

    /// A key from its 32 bytes in base64 (standard or URL-safe alphabet,
    /// padding optional), as `openssl rand -base64 32` prints them.
    #[uniffi::constructor]
    pub fn from_base64(id: String, key: String) -> Result<Arc<Self>, FreshTokenError> {
        let key = Zeroizing::new(key);
        Ok(Arc::new(EncryptionKey(
            crate::EncryptionKey::checked_base64("", id, &key)?,
        )))
    }

    /// The key's id.
    pub fn id(&self) -> String {
        self.0.id().to_owned()
    }
}

/// The keys of an encrypted store.
#[derive(uniffi::Record)]
pub struct EncryptionKeys {
    /// Encrypts every save.
    pub current: Arc<EncryptionKey>,
    /// Only decrypt: records written under them are rewritten under
    /// `current` by their next save.
    #[uniffi(default = [])]
    pub old: Vec<Arc<EncryptionKey>>,
    /// A stored record that is not encrypted is a storage error instead of
    /// being read (and encrypted by its next save). Switch it on once every
    /// record has been rewritten.
    #[uniffi(default = false)]
    pub refuse_plaintext: bool,
}

/// `inner` with every record it keeps encrypted (AES-256-GCM, a random
/// 96-bit nonce per save, the session key and key id bound as associated
/// data). An unknown key id or a failed decryption is a storage error
/// naming the key id; the lease and compare-and-swap members pass through,
/// so fleet stores keep working. Two keys with one id are a `Config` error
/// naming `old`.
#[uniffi::export]
pub fn encrypted_store(
    inner: Arc<dyn TokenStore>,
    keys: EncryptionKeys,
) -> Result<Arc<dyn TokenStore>, FreshTokenError> {
    let core = crate::EncryptionKeys::new(keys.current.0.clone())
        .with_old(keys.old.iter().map(|k| k.0.clone()))
        .map_err(|e| match e {
            Error::Config { message, .. } => Error::config("old", message),
            other => other,
        })?
        .refuse_plaintext(keys.refuse_plaintext);
    let store = Arc::new(crate::EncryptedStore::new(
        Arc::new(StoreAdapter::new(inner)?),
        core,
    ));
    let exported: Arc<dyn TokenStore> = Arc::new(EncryptedHostStore(store.clone()));
    let mut made = made_here();
    made.retain(|(_, core)| core.strong_count() > 0);
    made.push((address(&exported), Arc::downgrade(&store)));
    Ok(exported)
}

/// The core's encrypted store as the exported trait.
struct EncryptedHostStore(Arc<crate::EncryptedStore>);

/// The encrypted stores [`encrypted_store`] made, by the address of the
/// exported object, while it lives. A store handed back by the host is the
/// same Rust object (uniffi returns a Rust-made trait object as itself), so
/// a session can reach the core's store behind it for what the exported
/// trait has no member for ([`crate::TokenStore::load_version`]). The weak
/// reference keeps the address from being reused while it is listed.
type Made = Vec<(usize, std::sync::Weak<crate::EncryptedStore>)>;

fn made_here() -> std::sync::MutexGuard<'static, Made> {
    static MADE: std::sync::Mutex<Made> = std::sync::Mutex::new(Vec::new());
    MADE.lock().unwrap_or_else(|e| e.into_inner())
}

fn address(store: &Arc<dyn TokenStore>) -> usize {
    Arc::as_ptr(store).cast::<()>() as usize
}

/// The core's encrypted store behind `store`, if [`encrypted_store`] made it.
pub(crate) fn core_of(store: &Arc<dyn TokenStore>) -> Option<Arc<crate::EncryptedStore>> {
    let at = address(store);
    made_here()
        .iter()
        .find(|(address, _)| *address == at)
        .and_then(|(_, core)| core.upgrade())
}

fn failed(e: StoreError) -> HostError {
    HostError::Failed { detail: e.0 }
}

#[async_trait::async_trait]
impl TokenStore for EncryptedHostStore {
    async fn load(&self, key: String) -> Result<Option<String>, HostError> {
        self.0.load(&key).await.map_err(failed)
    }

    async fn save(&self, key: String, record: String) -> Result<(), HostError> {
        self.0.save(&key, &record).await.map_err(failed)
    }

    fn supports_lease(&self) -> Result<bool, HostError> {
        Ok(self.0.supports_lease())
    }

    async fn acquire(&self, key: String, owner: String, ttl_ms: i64) -> Result<bool, HostError> {
        let ttl = u64::try_from(ttl_ms).map_err(|_| HostError::Failed {
            detail: "acquire: ttl_ms must not be negative".into(),
        })?;
        self.0.acquire(&key, &owner, ttl).await.map_err(failed)
    }

    async fn release(&self, key: String, owner: String) -> Result<(), HostError> {
        self.0.release(&key, &owner).await.map_err(failed)
    }

    fn supports_versions(&self) -> Result<bool, HostError> {
        Ok(self.0.supports_versions())
    }

    async fn load_versioned(&self, key: String) -> Result<Option<VersionedRecord>, HostError> {
        let found = self.0.load_versioned(&key).await.map_err(failed)?;
        Ok(found.map(|v| VersionedRecord {
            record: v.record,
            version: v.version,
        }))
    }

    async fn save_versioned(
        &self,
        key: String,
        record: String,
        expected: Option<String>,
    ) -> Result<CasResult, HostError> {
        let saved = self
            .0
            .save_versioned(&key, &record, expected.as_deref())
            .await
            .map_err(failed)?;
        Ok(match saved {
            CasOutcome::Saved { version } => CasResult::Saved { version },
            CasOutcome::Conflict => CasResult::Conflict,
        })
    }
}
