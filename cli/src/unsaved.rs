//! A renewed session the core holds but could not save (a full disk,
//! another process stopped mid-save): the only copy of a rotated refresh
//! token, or of a new link, which this process would take with it when it
//! exits. The command keeps trying the save for a while before giving up.

use crate::output::Output;
use freshtoken::{Error, ErrorCode, TokenInfo, UserSession};
use std::time::{Duration, Instant};

/// Pause between two tries at the save.
const SAVE_PAUSE: Duration = Duration::from_millis(500);

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
