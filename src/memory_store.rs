//! An in-memory [`TokenStore`] for tests, demos and single-process hosts
//! that do not need records to survive a restart. With a clock it also
//! offers leases, so several clients in one process can act as a fleet.
//!
//! A session on this store keeps no second copy of its record: the store
//! holds the session's own record object (shared, immutable) and writes
//! its text only when asked for it as text. With a copy of the text next to
//! the session's record, 100,000 sessions took twice the memory (the heap
//! row of `bench/run.mjs`; the JavaScript `MemoryStore` is this store).

#[cfg(not(target_arch = "wasm32"))]
use crate::clock::Clock;
use crate::error::Error;
use crate::store::{CasOutcome, Record, StoreError, TokenStore, Versioned};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Records and their versions by key.
type Records = HashMap<Arc<str>, (Stored, u64)>;

/// A record as saved: text through [`TokenStore::save`], or a session's
/// record object, shared with the session. Cloned (two `Arc`s) to be read
/// out of the lock: encoding a record calls the host in wasm (its JSON),
/// and host code that throws through the wasm frames, or calls back into
/// this store, would leave the lock held for good.
#[derive(Clone)]
enum Stored {
    Text(Arc<str>),
    Shared(Arc<Record>),
}

impl Stored {
    /// The record's text, as [`Record::encode`] writes it for a shared one.
    fn text(&self) -> String {
        match self {
            Stored::Text(text) => text.to_string(),
            Stored::Shared(record) => record.encode(),
        }
    }
}

/// Records in a map, with a version counter per key (compare-and-swap works).
#[derive(Default)]
pub struct MemoryStore {
    records: Mutex<Records>,
    /// Lease holder, when it took or renewed the lease, and its TTL (ms) by
    /// key, when leases are on: the lease lasts its TTL on the clock's wall
    /// and monotonic readings both, so a wall clock set back does not keep
    /// an abandoned lease for the length of the step. Not in the wasm
    /// build: the package's `MemoryStore` serves one process, and its lease
    /// code would be linked through the store's vtable (1.6 KB).
    #[cfg(not(target_arch = "wasm32"))]
    leases: Mutex<HashMap<String, (String, crate::elapsed::Started, u64)>>,
    #[cfg(not(target_arch = "wasm32"))]
    clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("leases", &self.supports_lease())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store (records and compare-and-swap, no leases).
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// An empty store that also offers leases, timed by `clock`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_leases(clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            clock: Some(clock),
            ..MemoryStore::default()
        }
    }

    /// The record under `key`, read synchronously (for tests and demos).
    pub fn get(&self, key: &str) -> Option<String> {
        Some(self.stored(key).ok()??.0.text())
    }

    /// The record under `key` and its version, taken out of the lock.
    fn stored(&self, key: &str) -> Result<Option<(Stored, u64)>, StoreError> {
        Ok(self.lock()?.get(key).cloned())
    }

    /// How many records the store holds.
    pub fn len(&self) -> usize {
        self.lock().map_or(0, |map| map.len())
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The record under `key` as an object (read from its text if it was
    /// saved as text) and its version: what a session on this store reads
    /// instead of [`TokenStore::load_versioned`].
    pub(crate) fn load_shared(&self, key: &str) -> Result<Option<(Arc<Record>, String)>, Error> {
        let Some((stored, version)) = self.stored(key)? else {
            return Ok(None);
        };
        let record = match stored {
            Stored::Shared(record) => record,
            Stored::Text(text) => Arc::new(Record::decode(&text)?),
        };
        Ok(Some((record, version.to_string())))
    }

    /// The version of the record under `key`, if any.
    pub(crate) fn version(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock()?.get(key).map(|(_, v)| v.to_string()))
    }

    /// Saves the session's `record` object under `key` if the stored version
    /// is still `expected`: [`TokenStore::save_versioned`] without the text.
    pub(crate) fn save_shared(
        &self,
        key: &Arc<str>,
        record: &Arc<Record>,
        expected: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        self.put(key, Stored::Shared(record.clone()), Some(expected))
    }

    /// [`TokenStore::save`], synchronously.
    pub(crate) fn save_text(&self, key: &str, record: &str) -> Result<(), StoreError> {
        self.put(&Arc::from(key), Stored::Text(record.into()), None)
            .map(drop)
    }

    /// Stores `stored` under `key` if the version is still `expected`
    /// (`None` for `expected`: whatever is stored is replaced).
    fn put(
        &self,
        key: &Arc<str>,
        stored: Stored,
        expected: Option<Option<&str>>,
    ) -> Result<CasOutcome, StoreError> {
        let mut map = self.lock()?;
        let current = map.get_key_value(&**key).map(|(k, (_, v))| (k.clone(), *v));
        if let Some(expected) = expected {
            if current.as_ref().map(|(_, v)| v.to_string()).as_deref() != expected {
                return Ok(CasOutcome::Conflict);
            }
        }
        let version = current.as_ref().map_or(1, |(_, v)| v + 1);
        // The map's key is kept: a session's key is the registry's, shared.
        let key = current.map_or_else(|| key.clone(), |(k, _)| k);
        map.insert(key, (stored, version));
        Ok(CasOutcome::Saved {
            version: version.to_string(),
        })
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
        Ok(self.stored(key)?.map(|(r, _)| r.text()))
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        self.save_text(key, record)
    }

    fn in_memory(&self) -> Option<&MemoryStore> {
        Some(self)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn supports_lease(&self) -> bool {
        self.clock.is_some()
    }

    #[cfg(not(target_arch = "wasm32"))]
    async fn acquire(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let Some(clock) = &self.clock else {
            return Ok(true);
        };
        // Read before the lock: a host clock may call back in.
        let now = crate::elapsed::Started::now(clock.as_ref());
        let mut leases = self
            .leases
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))?;
        match leases.get(key) {
            Some((holder, since, ttl)) if holder != owner && since.elapsed_until(&now) < *ttl => {
                Ok(false)
            }
            _ => {
                leases.insert(key.to_owned(), (owner.to_owned(), now, ttl_ms));
                Ok(true)
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut leases = self
            .leases
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))?;
        if leases.get(key).is_some_and(|(holder, ..)| holder == owner) {
            leases.remove(key);
        }
        Ok(())
    }

    fn supports_versions(&self) -> bool {
        true
    }

    async fn load_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.stored(key)?.map(|(record, v)| Versioned {
            record: record.text(),
            version: v.to_string(),
        }))
    }

    async fn save_versioned(
        &self,
        key: &str,
        record: &str,
        expected: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        self.put(&Arc::from(key), Stored::Text(record.into()), Some(expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Config, HttpClient, HttpError, HttpRequest, HttpResponse, ManualClock, Secret, Seed,
        TokenClient,
    };

    /// Never reached: these tests only seed and read.
    struct NoHttp;

    #[async_trait]
    impl HttpClient for NoHttp {
        async fn send(&self, _: HttpRequest) -> Result<HttpResponse, HttpError> {
            Err(HttpError::NotSent("no network in this test".into()))
        }
    }

    fn record(refresh: &str) -> Arc<Record> {
        Arc::new(Record {
            refresh_token: Some(Secret::new(refresh)),
            updated_at_ms: 1,
            ..Record::default()
        })
    }

    #[test]
    fn a_shared_record_is_kept_as_the_object_and_read_as_its_text() {
        let store = MemoryStore::new();
        let key: Arc<str> = Arc::from("u1");
        let saved = record("rt-1");
        let outcome = store.save_shared(&key, &saved, None).unwrap();
        assert_eq!(
            outcome,
            CasOutcome::Saved {
                version: "1".into()
            }
        );
        let (loaded, version) = store.load_shared("u1").unwrap().unwrap();
        assert!(Arc::ptr_eq(&loaded, &saved), "the same object, no copy");
        assert_eq!(version, "1");
        assert_eq!(store.get("u1"), Some(saved.encode()));
    }

    #[test]
    fn a_shared_save_against_a_stale_version_writes_nothing() {
        let store = MemoryStore::new();
        let key: Arc<str> = Arc::from("u1");
        store.save_shared(&key, &record("rt-1"), None).unwrap();
        store.save_shared(&key, &record("rt-2"), Some("1")).unwrap();
        let stale = store.save_shared(&key, &record("rt-3"), Some("1")).unwrap();
        assert_eq!(stale, CasOutcome::Conflict);
        let stored = store.load_shared("u1").unwrap().unwrap().0;
        assert_eq!(
            stored.refresh_token.as_ref().map(Secret::expose),
            Some("rt-2")
        );
        let absent = store.save_shared(&Arc::from("u2"), &record("rt-4"), Some("1"));
        assert_eq!(absent.unwrap(), CasOutcome::Conflict, "nothing stored yet");
    }

    #[test]
    fn a_record_saved_as_text_is_read_as_an_object_and_a_bad_one_is_an_error() {
        let store = MemoryStore::new();
        store.save_text("u1", &record("rt-1").encode()).unwrap();
        let (loaded, _) = store.load_shared("u1").unwrap().unwrap();
        assert_eq!(*loaded, *record("rt-1"));
        store.save_text("u2", r#"{"not":"a record"}"#).unwrap();
        let err = store.load_shared("u2").unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::Storage);
        assert_eq!(store.load_shared("u3").unwrap(), None);
    }

    #[tokio::test]
    async fn a_session_and_its_store_hold_one_record() {
        let config = Config::builder("http://127.0.0.1:9/token", "client")
            .build()
            .unwrap();
        let client = TokenClient::new(config, Arc::new(NoHttp), Arc::new(ManualClock::new(1_000)));
        let store = Arc::new(MemoryStore::new());
        let session = client.session("u1", store.clone()).unwrap();
        session
            .seed(Seed {
                refresh_token: Secret::new("rt-1"),
                access_token: Some(Secret::new("at-1")),
                expires_in: Some(900),
                ..Seed::default()
            })
            .await
            .unwrap();
        let attached = session.attach();
        let held = attached.cell.lock().record.clone().unwrap();
        let (stored, _) = store.load_shared("u1").unwrap().unwrap();
        assert!(Arc::ptr_eq(&held, &stored), "one record object, not a copy");
        let map_key = store.lock().unwrap().get_key_value("u1").unwrap().0.clone();
        assert!(Arc::ptr_eq(&map_key, &attached.key), "and one key");
        assert_eq!(session.cached_access_token().as_deref(), Some("at-1"));
    }

    #[tokio::test]
    async fn a_lease_lasts_its_ttl_even_if_the_wall_clock_is_set_back() {
        let clock = Arc::new(ManualClock::new(10_000_000));
        let store = MemoryStore::with_leases(clock.clone());
        assert!(store.acquire("u1", "a", 10_000).await.unwrap());
        clock.set(clock.now_ms() - 3_600_000); // an hour back
        clock.advance(9_999);
        assert!(
            !store.acquire("u1", "b", 10_000).await.unwrap(),
            "a holds it"
        );
        clock.advance(1);
        assert!(
            store.acquire("u1", "b", 10_000).await.unwrap(),
            "and no longer"
        );
    }
}
