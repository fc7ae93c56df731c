//! # freshtoken
//!
//! Keeps OAuth 2.0 access tokens fresh and rotates single-use refresh tokens
//! without ever losing one. One core, exported to JavaScript (wasm-bindgen)
//! and to Kotlin, Swift and Python (uniffi); the host supplies storage (and
//! optionally HTTP) through the [`TokenStore`] and [`HttpClient`] traits.
//!
//! The rules it keeps (see `DESIGN.md`): a fresh token is returned with no
//! I/O; concurrent callers share one refresh; the rotated record is saved
//! before anyone gets the new token; a failed save loses nothing; a lost
//! answer is remembered so a later `invalid_grant` reads `lost_rotation`;
//! 5xx/429 are retried with backoff; a dead session fails fast.
//!
//! ```no_run
//! # #[cfg(feature = "native-http")]
//! # async fn demo() -> Result<(), freshtoken::Error> {
//! use freshtoken::{Config, MemoryStore, Seed, TokenClient};
//! use std::sync::Arc;
//!
//! let config = Config::builder("https://secure.stitch.money/connect/token", "client-id")
//!     .client_secret("client-secret")
//!     .build()?;
//! let client = TokenClient::native(config)?;
//! let session = client.session("user-42", Arc::new(MemoryStore::new()))?;
//! session.seed(Seed { refresh_token: "existing-refresh-token".into(), ..Seed::default() }).await?;
//! let bearer = session.access_token().await?;
//! # let _ = bearer; Ok(()) }
//! ```

#![warn(missing_docs)]
// One core for both targets: on wasm the shared state is `Arc` of `!Send`
// values on purpose (one thread, JS promises); natively it is `Send + Sync`.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

mod abandoned_saves;
mod attached;
mod authorize;
mod callback;
mod cipher;
mod client;
mod client_token;
mod clock;
mod code_exchange;
mod config;
mod credentials;
mod deadline;
mod discovery;
mod elapsed;
mod encrypted_store;
mod endpoint;
mod error;
mod events;
mod exchange;
mod fleet;
mod flight;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod grant;
mod http;
mod json_text;
#[cfg(any(feature = "private-key-jwt", target_arch = "wasm32"))]
pub mod jwt;
mod maybe_send;
mod memory_store;
#[cfg(all(feature = "native-http", not(target_arch = "wasm32")))]
mod native_http;
#[cfg(not(target_arch = "wasm32"))]
mod per_process;
mod random;
mod refresh_claims;
mod registry;
pub mod response;
pub mod retry;
mod revoke;
mod secret;
mod session;
mod session_state;
mod session_store;
mod spawn;
mod started_by;
mod store;
#[cfg(not(target_arch = "wasm32"))]
mod timer_thread;
mod tokens;
mod unsaved;

#[cfg(all(feature = "ffi", not(target_arch = "wasm32")))]
pub mod ffi;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

#[cfg(all(feature = "ffi", not(target_arch = "wasm32")))]
uniffi::setup_scaffolding!();

pub use async_trait::async_trait;
pub use authorize::{code_challenge, AuthorizationParams, AuthorizationRequest};
pub use client::TokenClient;
pub use client_token::ClientTokens;
#[cfg(not(target_arch = "wasm32"))]
pub use clock::SystemClock;
pub use clock::{Clock, ManualClock};
pub use config::{
    ClientAuthMethod, Config, ConfigBuilder, DEFAULT_CLIENT_TOKEN_LIFETIME_SECS,
    DEFAULT_LEEWAY_SECS, DEFAULT_REFRESH_TOKEN_LIFETIME_SECS, DEFAULT_STORE_TIMEOUT_MS,
    DEFAULT_USER_TOKEN_LIFETIME_SECS, MAX_RESPONSE_BYTES,
};
pub use credentials::STITCH_TOKEN_ENDPOINT;
pub use discovery::{discover, discovery_url, ProviderMetadata, DISCOVERY_PATH};
pub use encrypted_store::{EncryptedStore, EncryptionKey, EncryptionKeys, ENCRYPTED_SCHEMA_V1};
pub use error::{Error, ErrorCode, ReauthReason};
pub use events::{Event, EventKeys, EventKind, EventSink};
pub use http::{HttpClient, HttpError, HttpRequest, HttpResponse};
pub use maybe_send::{BoxFuture, MaybeSendSync};
pub use memory_store::MemoryStore;
#[cfg(all(feature = "native-http", not(target_arch = "wasm32")))]
pub use native_http::{NativeHttp, TokioSpawner};
/// The reqwest that [`NativeHttp::configured`] takes a builder of: use this
/// one, and the versions match.
#[cfg(all(feature = "native-http", not(target_arch = "wasm32")))]
pub use reqwest;
pub use response::{is_oauth_error_code, printable_description};
pub use retry::RetryPolicy;
pub use secret::Secret;
pub use session::{CachedToken, Seed, SessionStatus, UserSession};
pub use spawn::Spawn;
pub use store::{
    is_whole_json_object, CasOutcome, Record, StoreError, TokenStore, Versioned, MAX_RECORD_BYTES,
    MAX_STORED_BYTES, RECORD_SCHEMA_V1,
};
pub use tokens::{AccessToken, TokenInfo};
