//! A renewed session the core holds but could not save (a full disk,
//! another process stopped mid-save): the only copy of a rotated refresh
//! token, or of a new link, which this process would take with it when it
//! exits. The command keeps trying the save for a while before giving up.

use crate::args::ClientArgs;
use crate::output::Output;
use freshtoken::{Error, ErrorCode, TokenInfo, UserSession, DEFAULT_STORE_TIMEOUT_MS};
use std::time::{Duration, Instant};

/// Pause between two tries at the save.
const SAVE_PAUSE: Duration = Duration::from_millis(500);

/// How long [`save_held`] keeps trying: the lock wait `wait`, but never
/// less than `--timeout` plus the core's store deadline (5 s), however
/// short `--lock-wait` is.
///
/// Why its own budget: `--lock-wait` bounds the wait *before* anything is
/// sent, where giving up loses nothing; this one bounds how long the only
/// copy of a rotated refresh token (or of a new link) is kept before it is
/// dropped, which costs the user a re-link. A script that will not wait for
/// another process's refresh (`--lock-wait 0`) has not agreed to that.
/// Why this value: what keeps the save out is another process's write
/// holding the key's write lock. A healthy writer holds it for one read and
/// one write, which every freshtoken store bounds by its store deadline;
/// one that holds it longer has stalled (stopped, swapping, a hung disk).
/// The command waits out that deadline plus `--timeout`, the time the user
/// already grants one step of this command (one request): a stall no
/// longer than a request may take never loses a rotation, and the wait
/// stays bounded by the command's own settings. A longer lock wait (the
/// default: `--timeout` + 40 s) keeps trying as long as it would wait.
pub fn saving_budget(client: &ClientArgs, wait: Duration) -> Duration {
    let floor = Duration::from_secs(u64::from(client.timeout))
        + Duration::from_millis(DEFAULT_STORE_TIMEOUT_MS.unsigned_abs());
    wait.max(floor)
}

/// Whether the core holds a renewed record it could not save (asked
/// without saving it, as `status()` would first).
pub fn holds_unsaved(session: &UserSession) -> bool {
    session.holds_unsaved()
}

/// After `failure` (a `storage` error) left a renewed record unsaved, tries
/// the save again every 0.5 s for up to `saving` (the core saves a held
/// record before anything else), with a note on stderr. The session's
/// tokens once saved; past `saving`, a `storage` error saying the session
/// will need a new link.
pub async fn save_held(
    session: &UserSession,
    failure: Error,
    saving: Duration,
    out: Output,
) -> Result<TokenInfo, Error> {
    out.note(&format!(
        "freshtoken: the renewed session could not be saved yet ({failure}); trying again for up to {} s",
        saving.as_secs()
    ));
    let since = Instant::now();
    let mut last = failure;
    loop {
        if since.elapsed() >= saving {
            return Err(Error::storage(format!(
                "the renewed session could not be saved in {} s ({last}); the server has already issued its new refresh token, so this session will need a new link",
                saving.as_secs()
            )));
        }
        tokio::time::sleep(SAVE_PAUSE).await;
        match session.tokens().await {
            Err(e) if e.code() == ErrorCode::Storage && holds_unsaved(session) => last = e,
            other => return other,
        }
    }
}
