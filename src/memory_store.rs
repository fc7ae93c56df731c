//! An in-memory [`TokenStore`] for tests, demos and single-process hosts
//! that do not need records to survive a restart. With a clock it also
//! offers leases, so several clients in one process can act as a fleet.

use crate::clock::Clock;
use crate::store::{CasOutcome, StoreError, TokenStore, Versioned};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Records and their versions by key.
type Records = HashMap<String, (String, u64)>;

/// Records in a map, with a version counter per key (compare-and-swap works).
#[derive(Default)]
pub struct MemoryStore {
    records: Mutex<Records>,
    /// Lease holder and expiry (Unix ms) by key, when leases are on.
    leases: Mutex<HashMap<String, (String, u64)>>,
    clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("leases", &self.clock.is_some())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store (records and compare-and-swap, no leases).
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// An empty store that also offers leases, timed by `clock`.
    pub fn with_leases(clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            clock: Some(clock),
            ..MemoryStore::default()
        }
    }

    /// The record under `key`, read synchronously (for tests and demos).
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().ok()?.get(key).map(|(r, _)| r.clone())
    }

    fn lock(&self) -> Result<MutexGuard<'_, Records>, StoreError> {
        self.records
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl TokenStore for MemoryStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock()?.get(key).map(|(r, _)| r.clone()))
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        let mut map = self.lock()?;
        let version = map.get(key).map_or(1, |(_, v)| v + 1);
        map.insert(key.to_owned(), (record.to_owned(), version));
        Ok(())
    }

    fn supports_lease(&self) -> bool {
        self.clock.is_some()
    }

    async fn acquire(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let Some(clock) = &self.clock else {
            return Ok(true);
        };
        let now = clock.now_ms();
        let mut leases = self
            .leases
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))?;
        match leases.get(key) {
            Some((holder, until)) if holder != owner && *until > now => Ok(false),
            _ => {
                leases.insert(
                    key.to_owned(),
                    (owner.to_owned(), now.saturating_add(ttl_ms)),
                );
                Ok(true)
            }
        }
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut leases = self
            .leases
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))?;
        if leases.get(key).is_some_and(|(holder, _)| holder == owner) {
            leases.remove(key);
        }
        Ok(())
    }

    fn supports_versions(&self) -> bool {
        true
    }

    async fn load_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.lock()?.get(key).map(|(record, v)| Versioned {
            record: record.clone(),
            version: v.to_string(),
        }))
    }

    async fn save_versioned(
        &self,
        key: &str,
        record: &str,
        expected: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        let mut map = self.lock()?;
        let current = map.get(key).map(|(_, v)| v.to_string());
        if current.as_deref() != expected {
            return Ok(CasOutcome::Conflict);
        }
        let version = map.get(key).map_or(1, |(_, v)| v + 1);
        map.insert(key.to_owned(), (record.to_owned(), version));
        Ok(CasOutcome::Saved {
            version: version.to_string(),
        })
    }
}
