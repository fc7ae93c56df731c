//! The `hold` fault: token requests parked, unanswered, until the test
//! releases them; and [`HeldRequests`], the handle tests wait and release
//! with.

use std::sync::Arc;
use std::time::Duration;

use crate::emulator::WAIT_LIMIT;
use crate::state::Shared;
use crate::watched::Watched;

/// The requests held now, how many releases there were, and which was
/// the last one made by a reset.
#[derive(Default)]
pub(crate) struct HoldState {
    held: usize,
    releases: u64,
    reset_release: u64,
}

/// The held requests of one emulator.
#[derive(Default)]
pub(crate) struct Holds(Watched<HoldState>);

impl Holds {
    /// Parks the calling request until the next release; whether a reset
    /// released it.
    pub async fn hold(&self) -> bool {
        let epoch = self.0.update(|h| {
            h.held += 1;
            h.releases
        });
        // Uncounts the request if it is dropped (emulator stopped) before a
        // release did.
        struct Leave<'a>(&'a Holds, u64);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                let epoch = self.1;
                self.0 .0.update(|h| {
                    if h.releases == epoch {
                        h.held = h.held.saturating_sub(1);
                    }
                });
            }
        }
        let _leave = Leave(self, epoch);
        self.0
            .wait(|h| (h.releases != epoch).then_some(h.reset_release > epoch))
            .await
    }

    /// How many requests are held now.
    pub fn count(&self) -> usize {
        self.0.read(|h| h.held)
    }

    /// Lets every held request go on; returns how many there were.
    pub fn release(&self) -> usize {
        self.0.update(|h| {
            h.releases += 1;
            std::mem::take(&mut h.held)
        })
    }

    /// Lets every held request go on for a reset: they meet no fault, not
    /// even one the next test queues right after the reset.
    pub fn release_for_reset(&self) -> usize {
        self.0.update(|h| {
            h.releases += 1;
            h.reset_release = h.releases;
            std::mem::take(&mut h.held)
        })
    }

    /// Blocks until at least `count` requests are held: `Ok(held)`, or
    /// `Err(held)` past `limit`.
    pub fn wait_blocking(&self, count: usize, limit: Duration) -> Result<usize, usize> {
        self.0.wait_blocking(limit, |h| reached(h, count))
    }

    /// Waits until at least `count` requests are held: `Ok(held)`, or
    /// `Err(held)` past `limit`.
    pub async fn wait(&self, count: usize, limit: Duration) -> Result<usize, usize> {
        self.0.wait_for(limit, |h| reached(h, count)).await
    }
}

fn reached(h: &HoldState, count: usize) -> Result<usize, usize> {
    if h.held >= count {
        Ok(h.held)
    } else {
        Err(h.held)
    }
}

/// A handle on an emulator's held requests (see the `hold` fault), which
/// can move to another thread: `Clone + Send + 'static`.
#[derive(Clone)]
pub struct HeldRequests(pub(crate) Arc<Shared>);

impl HeldRequests {
    /// How many token requests are held now.
    pub fn count(&self) -> usize {
        self.0.holds.count()
    }

    /// Blocks until at least `count` token requests are held; returns how
    /// many are. Panics after [`WAIT_LIMIT`] rather than hang a test.
    pub fn wait(&self, count: usize) -> usize {
        self.wait_timeout(count, WAIT_LIMIT).unwrap_or_else(|held| {
            panic!(
                "freshtoken-emulator: waited {} s for {count} held token request(s), but {held} \
                 are held: did the request reach the emulator, with a hold fault queued for it?",
                WAIT_LIMIT.as_secs()
            )
        })
    }

    /// Blocks until at least `count` token requests are held: `Ok(held)`,
    /// or `Err(held)` once `limit` has passed.
    pub fn wait_timeout(&self, count: usize, limit: Duration) -> Result<usize, usize> {
        self.0.holds.wait_blocking(count, limit)
    }

    /// Lets every held request go on (to the next queued fault, or to
    /// normal processing); returns how many there were.
    pub fn release(&self) -> usize {
        self.0.holds.release()
    }
}

impl std::fmt::Debug for HeldRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldRequests")
            .field("held", &self.count())
            .finish()
    }
}
