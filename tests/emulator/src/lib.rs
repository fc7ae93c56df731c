//! An OAuth 2.0 token-endpoint emulator with Stitch's token rules, for
//! freshtoken's tests.
//!
//! It serves `POST /connect/token` (refresh tokens are single use and rotate,
//! reuse of a consumed one revokes its family, sliding refresh lifetime,
//! `client_credentials` without refresh tokens, `authorization_code` with
//! PKCE S256), `POST /connect/revocation` (RFC 7009), a non-interactive
//! `GET /connect/authorize`, a discovery document (which tests can break on
//! purpose), a GraphQL-shaped `POST /graphql` and a REST-shaped `/api/*`
//! that check access tokens, and an `/admin/*` API to seed tokens, read
//! counters, inject faults and move the clock. Rust tests run it in-process
//! through [`Emulator`]; other languages run the `freshtoken-emulator`
//! binary.
//!
//! ```no_run
//! use freshtoken_emulator::{Emulator, Options};
//!
//! let emulator = Emulator::start(Options::default()).unwrap();
//! let seeded = emulator.seed("test-client", "openid offline_access accounts");
//! println!("POST {}", emulator.token_endpoint());
//! # drop(seeded);
//! ```

#![warn(missing_docs)]

mod admin;
mod api;
mod authorize;
mod client_auth;
mod counters;
mod discovery;
mod emulator;
mod endless;
mod faults;
mod grants;
mod hold;
mod http;
mod injection;
mod oauth;
mod options;
mod revocation;
mod server;
mod shutdown;
mod state;
mod token_endpoint;
mod tokens;
mod watched;

pub use counters::Counters;
pub use discovery::{DiscoveryMode, INSECURE_TOKEN_ENDPOINT, WRONG_ISSUER};
pub use emulator::{Emulator, WAIT_LIMIT};
pub use endless::{EndlessStream, Framing, StreamEnd, DECLARED_LENGTH};
pub use faults::{Fault, FaultKind, DEFAULT_ENDLESS_MAX_BYTES, REVOCATION_SELECTOR};
pub use hold::HeldRequests;
pub use options::{
    ClientSpec, Options, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PUBLIC_CLIENT_ID,
};
pub use shutdown::ExitSignals;
pub use state::{Seeded, TokenState};
