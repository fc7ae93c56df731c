//! The host's side: storage, HTTP and (optionally) time as foreign async
//! traits, and their adapters onto the core's traits.

use super::error::HostError;
use super::host_exit::{enter, host_call, Exiting, HostCall, HostObject};
use super::types::{signed, CasResult, HttpHeader, HttpRequest, HttpResponse, VersionedRecord};
use crate::{CasOutcome, StoreError, Versioned};
use std::future::Future;
use std::sync::Arc;

/// Where the host keeps session records (a database, a Keychain item, a
/// file). Records are opaque strings. The lease and versioned members serve
/// fleets; a single-process store answers `supports_lease`/`supports_versions`
/// with false and never sees the others called (the Kotlin and Python base
/// classes provide those defaults).
#[uniffi::export(with_foreign)]
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    /// The record saved under `key`, or null.
    async fn load(&self, key: String) -> Result<Option<String>, HostError>;
    /// Saves `record` under `key`, durably, before returning.
    async fn save(&self, key: String, record: String) -> Result<(), HostError>;
    /// Whether `acquire`/`release` work.
    fn supports_lease(&self) -> Result<bool, HostError>;
    /// Takes the refresh lease on `key` for `owner`; false if held by another.
    async fn acquire(&self, key: String, owner: String, ttl_ms: i64) -> Result<bool, HostError>;
    /// Gives the lease back if `owner` still holds it.
    async fn release(&self, key: String, owner: String) -> Result<(), HostError>;
    /// Whether the versioned members do compare-and-swap.
    fn supports_versions(&self) -> Result<bool, HostError>;
    /// The record and its version.
    async fn load_versioned(&self, key: String) -> Result<Option<VersionedRecord>, HostError>;
    /// Saves only if the stored version is still `expected` (null: nothing stored).
    async fn save_versioned(
        &self,
        key: String,
        record: String,
        expected: Option<String>,
    ) -> Result<CasResult, HostError>;
}

/// Sends HTTP requests for freshtoken with the platform's own stack.
#[uniffi::export(with_foreign)]
#[async_trait::async_trait]
pub trait HttpClient: Send + Sync {
    /// Sends `request`; returns the answer whatever its status. Throw
    /// `HostError.NotSent` when the request surely never left, `Timeout`
    /// when no answer came in time, `Failed` otherwise.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HostError>;
}

/// Time, for tests with a fake clock (the default is the system clock).
/// Every member returns a result so that a host exception can never become
/// a Rust panic; on failure freshtoken falls back to the system clock.
/// Durations (the retry budget, a lease's age) are also measured on the
/// system's monotonic clock, and the longer counts: a host clock can
/// lengthen them, never shorten them.
#[uniffi::export(with_foreign)]
#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> Result<i64, HostError>;
    /// Waits `ms` milliseconds: between retries, between looks at another
    /// process's fleet lease, between background saves of a stranded
    /// record (one still running 1 s past its time is given up).
    async fn sleep(&self, ms: i64) -> Result<(), HostError>;
}

fn store_error(e: HostError) -> StoreError {
    StoreError(e.to_string())
}

/// What a store call made while the host exits fails with.
const STORE_EXITING: &str = "the app is exiting: its store was not called";

/// The answer of a store call made through [`host_call`].
async fn stored<T>(
    call: HostCall<impl Future<Output = Result<T, HostError>>>,
) -> Result<T, StoreError> {
    match call.await {
        Ok(answer) => answer.map_err(store_error),
        Err(Exiting { made: false }) => Err(StoreError(STORE_EXITING.into())),
        Err(Exiting { made: true }) => Err(StoreError(
            "the app is exiting: its store's answer was not awaited".into(),
        )),
    }
}

/// The host's store as the core's. Its two synchronous members are asked
/// once, when the adapter is made: on the caller's thread for `session()`
/// and an encrypted store over it; for a code exchange at its future's
/// first poll, on the thread the host polls it from (Kotlin: the caller's
/// dispatcher; the Python package asks them on the caller's thread first,
/// since its loop thread serves every client). The core would otherwise
/// ask them on its own threads, where a synchronous callback has no
/// deadline and one that blocks would stall every client's flights.
pub(crate) struct StoreAdapter {
    store: HostObject<dyn TokenStore>,
    lease: bool,
    versions: bool,
    /// The core's store behind `store` when it is an encrypted store of
    /// this library: asked for the stored version without opening the record.
    encrypted: Option<Arc<crate::EncryptedStore>>,
}

impl StoreAdapter {
    /// Adapts `store`, asking its capabilities now.
    ///
    /// A member that fails is a `storage` error, and nothing is done: read
    /// as false, a fleet store whose `supports_lease` failed once would
    /// refresh without its lease, beside another process refreshing the
    /// same single-use token, and one of them would lose the rotation (a
    /// re-link for the user). The next call asks again.
    pub(crate) fn new(store: Arc<dyn TokenStore>) -> Result<Self, crate::Error> {
        let ask = |member: &str, ask: &dyn Fn() -> Result<bool, HostError>| {
            let crossing = enter().ok_or_else(|| crate::Error::storage(STORE_EXITING))?;
            let answer = ask();
            drop(crossing);
            answer.map_err(|e| crate::Error::storage(format!("the store's {member}() failed: {e}")))
        };
        let lease = ask("supports_lease", &|| store.supports_lease())?;
        let versions = ask("supports_versions", &|| store.supports_versions())?;
        Ok(StoreAdapter {
            encrypted: super::encrypted_store::core_of(&store),
            store: HostObject::new(store),
            lease,
            versions,
        })
    }
}

#[async_trait::async_trait]
impl crate::TokenStore for StoreAdapter {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        stored(host_call(self.store.load(key.to_owned()))).await
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        stored(host_call(
            self.store.save(key.to_owned(), record.to_owned()),
        ))
        .await
    }

    fn supports_lease(&self) -> bool {
        self.lease
    }

    async fn acquire(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        stored(host_call(self.store.acquire(
            key.to_owned(),
            owner.to_owned(),
            signed(ttl_ms),
        )))
        .await
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        stored(host_call(
            self.store.release(key.to_owned(), owner.to_owned()),
        ))
        .await
    }

    fn supports_versions(&self) -> bool {
        self.versions
    }

    async fn load_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let found = stored(host_call(self.store.load_versioned(key.to_owned()))).await?;
        Ok(found.map(|v| Versioned {
            record: v.record,
            version: v.version,
        }))
    }

    async fn load_version(&self, key: &str) -> Result<Option<String>, StoreError> {
        match &self.encrypted {
            Some(encrypted) => encrypted.load_version(key).await,
            None => Ok(self.load_versioned(key).await?.map(|v| v.version)),
        }
    }

    async fn save_versioned(
        &self,
        key: &str,
        record: &str,
        expected: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        let result = stored(host_call(self.store.save_versioned(
            key.to_owned(),
            record.to_owned(),
            expected.map(str::to_owned),
        )))
        .await?;
        Ok(match result {
            CasResult::Saved { version } => CasOutcome::Saved { version },
            CasResult::Conflict => CasOutcome::Conflict,
        })
    }
}

/// The host's HTTP client as the core's.
pub(crate) struct HttpAdapter(HostObject<dyn HttpClient>);

impl HttpAdapter {
    /// Adapts `http`.
    pub(crate) fn new(http: Arc<dyn HttpClient>) -> Self {
        HttpAdapter(HostObject::new(http))
    }
}

#[async_trait::async_trait]
impl crate::HttpClient for HttpAdapter {
    async fn send(
        &self,
        request: crate::HttpRequest,
    ) -> Result<crate::HttpResponse, crate::HttpError> {
        let max = request.max_response_bytes;
        let request = HttpRequest {
            method: request.method,
            url: request.url,
            headers: request
                .headers
                .into_iter()
                .map(|(name, value)| HttpHeader { name, value })
                .collect(),
            body: request.body,
            timeout_ms: signed(request.timeout_ms),
            max_response_bytes: signed(max as u64),
        };
        // An oversize body passes through: the core judges it by the status.
        let answer = match host_call(self.0.send(request)).await {
            Ok(answer) => answer,
            Err(Exiting { made: false }) => {
                return Err(crate::HttpError::NotSent(
                    "the app is exiting: the request was not sent".into(),
                ))
            }
            Err(Exiting { made: true }) => {
                return Err(crate::HttpError::Interrupted(
                    "the app is exiting: the request's answer was not awaited".into(),
                ))
            }
        };
        match answer {
            // Not an HTTP status (HttpURLConnection's -1 for an answer that
            // was not HTTP): the request was sent and its answer is unknown.
            Ok(response) if !crate::response::is_http_status(response.status) => {
                Err(crate::HttpError::Interrupted(format!(
                    "the HTTP client answered with status {}, which is not an HTTP status",
                    response.status
                )))
            }
            Ok(response) => Ok(crate::HttpResponse {
                status: u16::try_from(response.status).unwrap_or(0),
                headers: response
                    .headers
                    .into_iter()
                    .map(|h| (h.name, h.value))
                    .collect(),
                body: response.body,
            }),
            Err(HostError::NotSent { detail }) => Err(crate::HttpError::NotSent(detail)),
            Err(HostError::Timeout) => Err(crate::HttpError::Timeout),
            // Anything else may have reached the server.
            Err(HostError::Failed { detail }) => Err(crate::HttpError::Interrupted(detail)),
        }
    }
}

/// The host's clock as the core's.
pub(crate) struct ClockAdapter(HostObject<dyn Clock>);

impl ClockAdapter {
    /// Adapts `clock`.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        ClockAdapter(HostObject::new(clock))
    }
}

/// The host clock gives wall time only; durations are also measured on the
/// platform's monotonic clock (the trait's default `monotonic_ms`).
#[async_trait::async_trait]
impl crate::Clock for ClockAdapter {
    fn now_ms(&self) -> u64 {
        // A failing, negative or implausibly late host clock falls back to
        // the system clock, and so does an exiting host.
        let reading = enter().map(|_crossing| self.0.now_ms());
        match reading
            .unwrap_or(Err(HostError::Timeout))
            .map(u64::try_from)
        {
            Ok(Ok(ms)) if ms <= crate::clock::LATEST_PLAUSIBLE_MS => ms,
            _ => crate::Clock::now_ms(&crate::SystemClock),
        }
    }

    async fn sleep(&self, ms: u64) {
        // A host sleep that fails or never returns falls back to real time.
        let host = crate::deadline::within(
            &crate::SystemClock,
            ms.saturating_add(HOST_SLEEP_GRACE_MS),
            host_call(self.0.sleep(signed(ms))),
        );
        if let Ok(Err(_) | Ok(Err(_))) = host.await {
            crate::Clock::sleep(&crate::SystemClock, ms).await;
        }
    }

    /// Deadlines of host callbacks run in real time, whatever the host's
    /// clock does (a test clock's sleep may return at once).
    async fn timer(&self, ms: u64) {
        crate::Clock::sleep(&crate::SystemClock, ms).await;
    }
}

/// How long past its length a host clock's sleep may run.
const HOST_SLEEP_GRACE_MS: u64 = 1_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// A host clock that reads `0` (or fails).
    struct Reads(Result<i64, ()>);

    #[async_trait::async_trait]
    impl Clock for Reads {
        fn now_ms(&self) -> Result<i64, HostError> {
            self.0.map_err(|()| HostError::Failed {
                detail: "broken".into(),
            })
        }
        async fn sleep(&self, _ms: i64) -> Result<(), HostError> {
            Ok(())
        }
    }

    fn read(reading: Result<i64, ()>) -> u64 {
        crate::Clock::now_ms(&ClockAdapter::new(Arc::new(Reads(reading))))
    }

    #[test]
    fn a_plausible_host_reading_is_the_time() {
        assert_eq!(read(Ok(1_796_138_933_282)), 1_796_138_933_282);
        assert_eq!(
            read(Ok(crate::clock::LATEST_PLAUSIBLE_MS as i64)),
            crate::clock::LATEST_PLAUSIBLE_MS
        );
    }

    #[test]
    fn a_failing_negative_or_implausibly_late_reading_is_the_system_clock() {
        let system = crate::Clock::now_ms(&crate::SystemClock);
        let nanoseconds = i64::try_from(system).unwrap() * 1_000_000;
        for reading in [Err(()), Ok(-1), Ok(i64::MAX), Ok(nanoseconds)] {
            let now = read(reading);
            assert!(
                now >= system && now < system + 60_000,
                "{reading:?} read as {now}"
            );
        }
    }
}
