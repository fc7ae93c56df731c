//! Deadlines for host callbacks (DESIGN point 15). A store call or an HTTP
//! request that has not answered in time is abandoned: its future is
//! dropped, so a late answer reaches nothing and cannot change the state.

use crate::clock::Clock;
use futures_util::future::{select, Either};
use std::future::Future;

/// Why a bounded wait gave up on its callback.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Abandoned {
    /// The deadline passed first.
    Expired,
    /// No timer could be set (the host's reason), so the wait could not be
    /// bounded: the callback was abandoned at once (fail closed).
    NoTimer(String),
}

/// `fut`'s output, or why it was abandoned: `ms` milliseconds of `clock`'s
/// timer passed first, or no timer could be set. `fut` is polled first, so
/// a callback that answers at once never races its timer.
pub(crate) async fn within<F: Future>(
    clock: &dyn Clock,
    ms: u64,
    fut: F,
) -> Result<F::Output, Abandoned> {
    let fut = std::pin::pin!(fut);
    match select(fut, clock.deadline(ms)).await {
        Either::Left((output, _)) => Ok(output),
        Either::Right((Ok(()), _)) => Err(Abandoned::Expired),
        Either::Right((Err(why), _)) => Err(Abandoned::NoTimer(why)),
    }
}

/// What a message says of a callback abandoned because no timer could be set.
pub(crate) fn no_timer_text(why: &str) -> String {
    format!("no deadline could be set for it ({why})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    /// A clock whose timers can never be set.
    struct NoTimers;

    #[async_trait]
    impl Clock for NoTimers {
        fn now_ms(&self) -> u64 {
            0
        }
        async fn sleep(&self, _ms: u64) {}
        async fn deadline(&self, _ms: u64) -> Result<(), String> {
            Err("setTimeout threw: blocked".into())
        }
    }

    #[tokio::test]
    async fn a_callback_that_answers_at_once_never_needs_its_timer() {
        assert_eq!(within(&NoTimers, 5, async { 7 }).await, Ok(7));
    }

    #[tokio::test]
    async fn a_pending_callback_without_a_timer_is_abandoned_with_the_reason() {
        let abandoned = within(&NoTimers, 5, std::future::pending::<()>()).await;
        assert_eq!(
            abandoned,
            Err(Abandoned::NoTimer("setTimeout threw: blocked".into()))
        );
    }

    #[test]
    fn a_deadline_that_passes_is_expired() {
        let clock = crate::clock::ManualClock::new(0);
        let waiting = within(&clock, 5, std::future::pending::<()>());
        let mut waiting = Box::pin(waiting);
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        clock.advance(5);
        assert_eq!(
            waiting.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Err(Abandoned::Expired))
        );
    }
}
