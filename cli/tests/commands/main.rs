//! End-to-end tests of the `freshtoken` binary: every subcommand against
//! the emulator (in process, over loopback), client tokens and refresh
//! against oidc-provider, and the npm wrapper.

mod support;

mod client_token;
mod closed_stderr;
mod emulator;
mod file_locks;
mod help;
mod inspect;
mod interrupted;
mod link;
mod npx;
mod oidc_provider;
mod revoke;
mod shared_store;
mod token;
