//! Deadlines for host callbacks (DESIGN point 15). A store call or an HTTP
//! request that has not answered in time is abandoned: its future is
//! dropped, so a late answer reaches nothing and cannot change the state.

use crate::clock::Clock;
use futures_util::future::{select, Either};
use std::future::Future;

/// `fut`'s output, or `None` once `ms` milliseconds of `clock`'s timer
/// passed first. `fut` is polled first, so a callback that answers at once
/// never races its timer.
pub(crate) async fn within<F: Future>(clock: &dyn Clock, ms: u64, fut: F) -> Option<F::Output> {
    let fut = std::pin::pin!(fut);
    match select(fut, clock.timer(ms)).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(((), _)) => None,
    }
}
