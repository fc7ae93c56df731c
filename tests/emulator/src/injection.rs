//! Applying the queued faults to one token or revocation request: take the
//! fault, hold if told, then answer, delay, drop, stream or process.

use std::time::Duration;

use crate::endless::Endless;
use crate::faults::{self, FaultKind, Target};
use crate::http::{Outcome, Response};
use crate::state::{Shared, State};

/// Takes the next fault for `target` (after a hold, the next that is not
/// one), counting its application. The caller takes the first one under
/// the same lock that counts the request.
pub(crate) fn take_fault(st: &mut State, target: Target<'_>, released: bool) -> Option<FaultKind> {
    let fault = if released {
        st.faults.take_after_hold(target)
    } else {
        st.faults.take(target)
    };
    if fault.is_some() {
        st.counters.faults_applied += 1;
    }
    fault
}

/// What the request becomes under `fault` (taken by [`take_fault`]); `run`
/// processes it for real and is called at most once.
pub(crate) async fn apply(
    shared: &Shared,
    target: Target<'_>,
    mut fault: Option<FaultKind>,
    run: impl FnOnce() -> Response,
) -> Outcome {
    // A held request waits for its release, then meets the next fault that
    // is not a hold (none when a reset released it).
    if fault == Some(FaultKind::Hold) {
        let by_reset = shared.holds.hold().await;
        fault = if by_reset {
            None
        } else {
            take_fault(&mut shared.lock(), target, true)
        };
    }
    match fault {
        None => Outcome::Respond(run()),
        Some(FaultKind::Delay { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Outcome::Respond(run())
        }
        Some(FaultKind::ExpiresInAs { value }) => {
            Outcome::Respond(run().with_member("expires_in", &value))
        }
        Some(FaultKind::DropBefore) => Outcome::Close,
        Some(FaultKind::DropAfterCommit) => {
            let _ = run();
            Outcome::Close
        }
        Some(FaultKind::Endless {
            status,
            framing,
            max_bytes,
        }) => Outcome::Endless(Endless {
            status,
            framing,
            max_bytes,
        }),
        Some(other) => match faults::response(&other) {
            Some(response) => Outcome::Respond(response),
            None => Outcome::Respond(run()),
        },
    }
}
