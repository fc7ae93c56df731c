//! Token lifetimes and freshness: pure functions of a clock reading.

use crate::secret::{Hidden, Secret};
use std::fmt;

/// The public view of a user session's tokens. Printing it shows the
/// tokens redacted (a short prefix and the length).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The fresh access token.
    pub access_token: String,
    /// When it expires, in Unix milliseconds (computed from the time the
    /// request was sent, so it errs early).
    pub expires_at_ms: u64,
    /// The granted scope, if the server said.
    pub scope: Option<String>,
    /// The OpenID Connect ID token, if any.
    pub id_token: Option<String>,
    /// When the refresh token's sliding lifetime ends, in Unix milliseconds.
    pub refresh_expires_at_ms: Option<u64>,
}

impl fmt::Debug for TokenInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenInfo")
            .field("access_token", &Hidden(&self.access_token))
            .field("expires_at_ms", &self.expires_at_ms)
            .field("scope", &self.scope)
            .field("id_token", &self.id_token.as_deref().map(Hidden))
            .field("refresh_expires_at_ms", &self.refresh_expires_at_ms)
            .finish()
    }
}

/// The same redacted text as `Debug` (what Kotlin's `toString()` shows).
impl fmt::Display for TokenInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An access token with the times needed to judge its freshness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessToken {
    /// The token.
    pub value: Secret,
    /// When the request that obtained it was sent (Unix ms).
    pub issued_at_ms: u64,
    /// `issued_at_ms + expires_in` (Unix ms).
    pub expires_at_ms: u64,
}

impl AccessToken {
    /// A token obtained by a request sent at `sent_at_ms` whose answer said
    /// `expires_in` seconds (or `default_secs` if it said nothing).
    pub fn new(value: Secret, sent_at_ms: u64, expires_in: Option<u64>, default_secs: u64) -> Self {
        AccessToken {
            value,
            issued_at_ms: sent_at_ms,
            expires_at_ms: expires_at(sent_at_ms, expires_in, default_secs),
        }
    }

    /// Whether the token may still be used at `now_ms`, given `leeway_ms`:
    /// before its expiry less the leeway, and with the clock no further
    /// back from its issue time than the larger of five minutes and the
    /// leeway (a clock that read ahead when it was issued).
    pub fn is_fresh(&self, now_ms: u64, leeway_ms: u64) -> bool {
        is_fresh(now_ms, self.issued_at_ms, self.expires_at_ms, leeway_ms)
    }

    /// The instant (ms since the epoch) from which the token is no longer
    /// fresh: `expires_at - leeway`.
    pub fn fresh_until_ms(&self, leeway_ms: u64) -> u64 {
        let leeway = effective_leeway(self.issued_at_ms, self.expires_at_ms, leeway_ms);
        self.expires_at_ms.saturating_sub(leeway)
    }
}

/// `sent_at + expires_in` in milliseconds; the default lifetime when the
/// server gave none. Saturates instead of overflowing.
pub fn expires_at(sent_at_ms: u64, expires_in_secs: Option<u64>, default_secs: u64) -> u64 {
    let secs = expires_in_secs.unwrap_or(default_secs);
    sent_at_ms.saturating_add(secs.saturating_mul(1000))
}

/// The leeway actually applied to one token: the configured leeway, but never
/// more than half the token's lifetime, so that short-lived tokens are not
/// refreshed on every call.
pub fn effective_leeway(issued_at_ms: u64, expires_at_ms: u64, leeway_ms: u64) -> u64 {
    let lifetime = expires_at_ms.saturating_sub(issued_at_ms);
    leeway_ms.min(lifetime / 2)
}

/// The least clock skew tolerated before a token's issue time (ms): five
/// minutes, the clock skew that Kerberos and the common JWT validators
/// allow by default, and more than NTP-kept clocks of one fleet drift
/// apart. See [`issue_tolerance_ms`].
pub const MIN_ISSUE_TOLERANCE_MS: u64 = 5 * 60 * 1000;

/// How far before a token's issue time (`issued_at`, read when its request
/// was sent) a clock may read and still find it fresh: the larger of
/// [`MIN_ISSUE_TOLERANCE_MS`] and the leeway. A clock further back than
/// that is not ordinary skew between the fleet's processes (each refresh
/// it causes costs the user a banking session, so skew must never cause
/// one) but a clock that read ahead when the token was issued and has been
/// corrected since: `expires_at`, counted on that reading, is then too
/// late, and the token may already be expired at the server. The leeway
/// counts as well because it is the margin the host chose against clocks
/// and latency: a token issued by a clock ahead by no more than the
/// tolerance is served at most `tolerance - leeway` past its expiry, and
/// the API's refusal of it (`UserSession::token_rejected`) refreshes it.
pub fn issue_tolerance_ms(leeway_ms: u64) -> u64 {
    leeway_ms.max(MIN_ISSUE_TOLERANCE_MS)
}

/// A token is fresh while `now < expires_at - leeway`, and as long as
/// `now` is no more than [`issue_tolerance_ms`] before `issued_at` (a clock
/// that went back past the token's issue).
pub fn is_fresh(now_ms: u64, issued_at_ms: u64, expires_at_ms: u64, leeway_ms: u64) -> bool {
    let leeway = effective_leeway(issued_at_ms, expires_at_ms, leeway_ms);
    let issued_since = now_ms.saturating_add(issue_tolerance_ms(leeway_ms)) >= issued_at_ms;
    issued_since && now_ms < expires_at_ms.saturating_sub(leeway)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn expiry_counts_from_the_send_time() {
        assert_eq!(expires_at(T0, Some(900), 3600), T0 + 900_000);
    }

    #[test]
    fn missing_expires_in_uses_the_grant_default() {
        assert_eq!(expires_at(T0, None, 900), T0 + 900_000);
        assert_eq!(expires_at(T0, None, 3600), T0 + 3_600_000);
    }

    #[test]
    fn fresh_until_leeway_before_expiry() {
        let token = AccessToken::new(Secret::new("a"), T0, Some(900), 900);
        let leeway = 60_000;
        assert!(token.is_fresh(T0, leeway));
        assert!(token.is_fresh(T0 + 839_999, leeway));
        assert!(!token.is_fresh(T0 + 840_000, leeway));
        assert!(!token.is_fresh(T0 + 900_000, leeway));
    }

    #[test]
    fn zero_leeway_means_fresh_until_expiry() {
        assert!(is_fresh(T0 + 899_999, T0, T0 + 900_000, 0));
        assert!(!is_fresh(T0 + 900_000, T0, T0 + 900_000, 0));
    }

    #[test]
    fn leeway_never_exceeds_half_the_lifetime() {
        // A 2 s token with the default 60 s leeway stays usable for 1 s.
        assert_eq!(effective_leeway(T0, T0 + 2_000, 60_000), 1_000);
        assert!(is_fresh(T0 + 999, T0, T0 + 2_000, 60_000));
        assert!(!is_fresh(T0 + 1_000, T0, T0 + 2_000, 60_000));
    }

    #[test]
    fn zero_lifetime_is_never_fresh() {
        assert!(!is_fresh(T0, T0, T0, 60_000));
    }

    #[test]
    fn a_clock_behind_the_issue_time_by_ordinary_skew_keeps_it_fresh() {
        let token = AccessToken::new(Secret::new("a"), T0, Some(900), 900);
        // Another process whose clock is 4 min 59 s behind the issuer's.
        assert!(token.is_fresh(T0 - 299_999, 60_000));
        assert!(token.is_fresh(T0 - 300_000, 60_000));
        // Further back: the issuing clock read ahead; the token may be
        // expired at the server.
        assert!(!token.is_fresh(T0 - 300_001, 60_000));
        assert!(!token.is_fresh(T0 - 3_600_000, 60_000));
    }

    #[test]
    fn a_leeway_longer_than_five_minutes_is_the_tolerance() {
        let token = AccessToken::new(Secret::new("a"), T0, Some(3600), 3600);
        assert_eq!(issue_tolerance_ms(600_000), 600_000);
        assert_eq!(issue_tolerance_ms(0), MIN_ISSUE_TOLERANCE_MS);
        assert!(token.is_fresh(T0 - 600_000, 600_000));
        assert!(!token.is_fresh(T0 - 600_001, 600_000));
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(expires_at(u64::MAX - 5, Some(u64::MAX), 900), u64::MAX);
        assert!(is_fresh(0, 0, u64::MAX, u64::MAX));
    }
}
