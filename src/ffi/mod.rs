//! The uniffi export (Kotlin, Swift, Python): thin conversions onto the core.
//!
//! The host supplies HTTP ([`HttpClient`]) and storage ([`TokenStore`]) as
//! foreign async traits, so the native library carries no TLS stack and
//! follows the platform's proxy and certificate settings. Every object
//! method converts its arguments, calls the core, and converts back; errors
//! map one to one onto [`FreshTokenError`].

mod client;
mod encrypted_store;
mod error;
mod events;
mod executor;
mod host;
mod host_exit;
mod record_files;
mod redact;
mod session;
mod types;

pub use client::{ClientTokens, TokenClient};
pub use encrypted_store::{encrypted_store, EncryptionKey, EncryptionKeys};
pub use error::{FreshTokenError, HostError};
pub use events::{EventKind, EventListener, TokenEvent};
pub use host::{Clock, HttpClient, TokenStore};
pub use host_exit::shutdown_host_calls;
pub use record_files::is_whole_record_file;
pub use session::UserSession;
pub use types::{
    AuthorizationRequest, AuthorizationUrlOptions, CachedToken, CasResult, ExchangeCodeOptions,
    HttpHeader, HttpRequest, HttpResponse, ReauthorizationReason, RetryOptions, SeedOptions,
    SessionStatus, TokenClientOptions, TokenInfo, VersionedRecord,
};
