//! What the emulator has seen, for tests to assert on, and the guard that
//! measures concurrent token requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::Shared;

/// Request and outcome counts since start (or the last reset). Serialized
/// with exactly these snake_case field names by `GET /admin/counters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Every `POST /connect/token`, faulted ones included.
    pub token_requests: u64,
    /// `POST /connect/token` by `grant_type`, faulted ones included.
    pub by_grant: BTreeMap<String, u64>,
    /// Successful `refresh_token` grants.
    pub refresh_success: u64,
    /// Refresh tokens rotated (consumed and replaced).
    pub rotations: u64,
    /// Consumed refresh tokens presented again while reuse detection was on.
    pub reuse_detected: u64,
    /// `invalid_grant` responses.
    pub invalid_grant: u64,
    /// `invalid_client` responses (token and revocation endpoints).
    pub invalid_client: u64,
    /// Tokens issued by the `client_credentials` grant.
    pub client_credentials_issued: u64,
    /// Authorization codes issued by `/connect/authorize`.
    pub codes_issued: u64,
    /// Successful `authorization_code` grants.
    pub code_exchanges: u64,
    /// Requests to `/graphql` and `/api/*`.
    pub api_requests: u64,
    /// Of those, the ones without a valid access token.
    pub api_unauthenticated: u64,
    /// Faults taken from the queue and applied.
    pub faults_applied: u64,
    /// The last `audience` sent with `client_credentials`, valid or not.
    pub last_audience: Option<String>,
    /// The most token requests being handled at the same moment.
    pub max_concurrent_token_requests: u64,
    /// Every `POST /connect/revocation`, faulted ones included.
    pub revocation_requests: u64,
    /// `POST /connect/revocation` by `token_type_hint` as sent (requests
    /// without one are not in it), faulted ones included.
    pub revocation_by_hint: BTreeMap<String, u64>,
    /// Revocation requests that found a live token of the calling client
    /// and revoked it (one each, however many tokens went with it).
    pub tokens_revoked: u64,
    /// `GET /.well-known/openid-configuration`, whatever it answered.
    pub discovery_requests: u64,
}

/// Counts one token request as in flight for as long as it lives.
pub(crate) struct InFlight<'a> {
    shared: &'a Shared,
}

impl<'a> InFlight<'a> {
    /// Marks a token request as started and updates the high-water mark.
    pub(crate) fn enter(shared: &'a Shared) -> Self {
        let mut st = shared.lock();
        st.in_flight += 1;
        let now = st.in_flight;
        let max = &mut st.counters.max_concurrent_token_requests;
        *max = (*max).max(now);
        InFlight { shared }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
    }
}
