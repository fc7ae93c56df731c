//! Retry policy: capped exponential backoff with jitter, `Retry-After`, and a
//! total time budget.

use crate::error::Error;

/// When and how often a token request is retried (5xx, 429, and failures
/// before the request left). `invalid_grant`, `invalid_client` and other 4xx
/// answers are never retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests sent at most, the first included (1 = no retries).
    pub max_attempts: u32,
    /// Backoff before the first retry (ms); it doubles each time.
    pub initial_backoff_ms: u64,
    /// Largest backoff between two attempts (ms), unless `Retry-After` asks more.
    pub max_backoff_ms: u64,
    /// Total time from the first request after which no retry starts (ms).
    pub budget_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff_ms: 250,
            max_backoff_ms: 5_000,
            budget_ms: 20_000,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.max_attempts == 0 || self.max_attempts > 20 {
            return Err(Error::config(
                "retry.max_attempts",
                "must be between 1 and 20",
            ));
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            return Err(Error::config(
                "retry.max_backoff_ms",
                "must not be below retry.initial_backoff_ms",
            ));
        }
        if self.budget_ms > 600_000 {
            return Err(Error::config("retry.budget_ms", "must be at most 600000"));
        }
        Ok(())
    }

    /// The wait before retry number `retry` (1-based): exponential, capped,
    /// with "equal jitter" (half fixed, half random from `random`), and never
    /// shorter than the server's `Retry-After`.
    pub fn delay_ms(&self, retry: u32, random: u32, retry_after_ms: Option<u64>) -> u64 {
        let shift = retry.saturating_sub(1).min(32);
        let exp = self
            .initial_backoff_ms
            .saturating_mul(1u64 << shift)
            .min(self.max_backoff_ms);
        let half = exp / 2;
        let jittered = half + u64::from(random) % (exp - half + 1);
        jittered.max(retry_after_ms.unwrap_or(0))
    }

    /// Whether another attempt may start after `attempts` were sent,
    /// `elapsed_ms` into the budget, waiting `delay_ms` first.
    pub fn allows(&self, attempts: u32, elapsed_ms: u64, delay_ms: u64) -> bool {
        attempts < self.max_attempts && elapsed_ms.saturating_add(delay_ms) <= self.budget_ms
    }
}

/// Parses a `Retry-After` value (delta seconds or an HTTP date) into a wait
/// in milliseconds from `now_ms`. `None` when it is neither.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(secs.saturating_mul(1000));
    }
    Some(http_date_ms(value)?.saturating_sub(now_ms))
}

/// An HTTP-date (RFC 9110 §5.6.7, any of its three forms) in ms since the
/// Unix epoch, read by the `httpdate` crate (the wasm build asks the host's
/// `Date`: [`crate::wasm::http_date`]).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn http_date_ms(value: &str) -> Option<u64> {
    let when = httpdate::parse_http_date(value).ok()?;
    let since_epoch = when.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(since_epoch.as_secs().saturating_mul(1000))
}

#[cfg(target_arch = "wasm32")]
pub(crate) use crate::wasm::http_date::http_date_ms;

/// A server's `Retry-After`, kept past the call that got it: no token
/// request is sent before `until_ms` (the client's clock), and a call
/// meanwhile fails as that one did, with the wait left. Without it every
/// call sent again at once (a backend: one request per request it served),
/// which rate limiters answer with longer penalties, and a refresh that
/// gets through may open a banking session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NotBefore {
    until_ms: u64,
    status: u16,
}

/// The longest wait remembered: a longer one (a mistaken header, a
/// maintenance page's) would keep a session down longer than any host's
/// own retry would.
pub(crate) const MAX_REMEMBERED_WAIT_MS: u64 = 600_000;

impl NotBefore {
    /// The wait `error` asks for from `now_ms`, if it is a `transient` one
    /// with a `Retry-After`.
    pub(crate) fn after(error: &Error, now_ms: u64) -> Option<Self> {
        match error {
            Error::Transient {
                status,
                retry_after_ms: Some(ms),
                ..
            } if *ms > 0 => Some(NotBefore {
                until_ms: now_ms.saturating_add((*ms).min(MAX_REMEMBERED_WAIT_MS)),
                status: *status,
            }),
            _ => None,
        }
    }

    /// The error of a call at `now_ms`, while the wait lasts.
    pub(crate) fn refusal(&self, now_ms: u64) -> Option<Error> {
        (now_ms < self.until_ms).then(|| Error::Transient {
            status: self.status,
            attempts: 0,
            retry_after_ms: Some(self.until_ms - now_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        // random = 0 gives the lower half, u32::MAX-ish the upper bound.
        assert_eq!(p.delay_ms(1, 0, None), 125);
        assert_eq!(p.delay_ms(2, 0, None), 250);
        assert_eq!(p.delay_ms(3, 0, None), 500);
        assert_eq!(p.delay_ms(30, 0, None), 2_500);
        assert!(p.delay_ms(30, u32::MAX, None) <= 5_000);
        assert!(p.delay_ms(1, 125, None) <= 250);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_ms(1, 0, Some(2_000)), 2_000);
        assert_eq!(p.delay_ms(1, 0, Some(10)), 125);
    }

    #[test]
    fn budget_and_attempts_limit_retries() {
        let p = RetryPolicy::default();
        assert!(p.allows(1, 0, 1_000));
        assert!(!p.allows(4, 0, 0));
        assert!(!p.allows(1, 19_500, 1_000));
        assert!(!RetryPolicy::none().allows(1, 0, 0));
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        assert_eq!(parse_retry_after("2", 0), Some(2_000));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(0));
        assert_eq!(
            parse_retry_after("99999999999999999999999", 0),
            Some(u64::MAX)
        );
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777 s.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(parse_retry_after(date, 784_111_770_000), Some(7_000));
        assert_eq!(parse_retry_after(date, 784_111_790_000), Some(0));
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-3", 0), None);
        assert_eq!(parse_retry_after("", 0), None);
    }

    #[test]
    fn the_three_forms_of_rfc_9110() {
        let expected = Some(784_111_777_000);
        assert_eq!(http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(http_date_ms("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(http_date_ms("Sun Nov  6 08:49:37 1994"), expected);
        assert_eq!(http_date_ms("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date_ms("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(253_402_300_799_000)
        );
        for bad in [
            "",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Thu, 29 Feb 2001 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov +994 08:49:37 GMT",
        ] {
            assert_eq!(http_date_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn invalid_policies_are_config_errors() {
        let p = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.validate().unwrap_err().code().as_str(), "config");
        let p = RetryPolicy {
            max_backoff_ms: 1,
            ..RetryPolicy::default()
        };
        assert!(p.validate().is_err());
    }
}
