//! Records a client holds only in memory (a rotation or a new link whose
//! save failed), saved again on request before the client goes away: once
//! it is dropped, the newest refresh token of such a session is lost, and
//! the stored one was already spent.

use crate::attached::Attached;
use crate::error::Error;
use crate::exchange::Context;
use crate::registry::Registry;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

/// Saves every record held only in memory, each through the store whose
/// save of it failed, all at once (each bounded by the store deadline); a
/// refresh, save, seed or code exchange running is waited for first (the
/// latter's record is not in memory until its server answered). A conflict counts as done:
/// another process stored a newer record (DESIGN point 9). The error, if
/// any is left unsaved, is a `storage` one saying how many, with the last
/// failure's message.
pub(crate) async fn save_all(sessions: &Registry, ctx: &Arc<Context>) -> Result<(), Error> {
    let saves = sessions.busy().into_iter().map(|(key, cell)| async move {
        poll_fn(|cx| cell.poll_replacing_ended(cx)).await;
        let flight = cell.lock().inflight.clone();
        if let Some(flight) = flight {
            let _ = flight.await;
        }
        let store = {
            let st = cell.lock();
            if !st.unpersisted {
                return Ok(());
            }
            st.unsaved_in.clone()
        };
        let Some(store) = store else {
            return Err(Error::storage("the store to save it in is not known"));
        };
        let session = Attached {
            key,
            cell: cell.clone(),
            store,
            ctx: ctx.clone(),
        };
        let saved = session.save_pending().await;
        match (cell.lock().unpersisted, saved) {
            (false, _) => Ok(()),
            (true, Err(e)) => Err(e),
            (true, Ok(())) => Err(Error::storage("a newer record is waiting to be saved")),
        }
    });
    let failures = errors_of(saves).await;
    let Some(last) = failures.last() else {
        return Ok(());
    };
    let cause = match last {
        Error::Storage { message } => message.clone(),
        other => other.to_string(),
    };
    Err(Error::storage(format!(
        "{} session record(s) held only in this process could not be saved; the last: {cause}",
        failures.len()
    )))
}

/// Runs `saves` at once and collects their errors, polling every unfinished
/// one at each wake (the records left unsaved are few). Not `join_all`:
/// its path for long lists (`FuturesOrdered`) adds 2.7 KB of gzipped wasm.
async fn errors_of<F: Future<Output = Result<(), Error>>>(
    saves: impl Iterator<Item = F>,
) -> Vec<Error> {
    let mut running: Vec<Pin<Box<F>>> = saves.map(Box::pin).collect();
    let mut failures = Vec::new();
    poll_fn(|cx| {
        running.retain_mut(|save| match save.as_mut().poll(cx) {
            Poll::Ready(Err(e)) => {
                failures.push(e);
                false
            }
            Poll::Ready(Ok(())) => false,
            Poll::Pending => true,
        });
        if running.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    failures
}
