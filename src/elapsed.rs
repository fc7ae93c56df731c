//! Durations that a step of the wall clock cannot shorten: measured on a
//! clock's wall and monotonic readings both, the larger counts. A wall
//! clock set back would otherwise let retries run past their budget and a
//! request outlive its fleet lease; a wall clock set forward only ends
//! retries early or renews a lease sooner (both safe).

use crate::clock::Clock;

/// When something started, on both of a clock's readings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Started {
    wall_ms: u64,
    monotonic_ms: u64,
}

impl Started {
    /// Now, on `clock`.
    pub(crate) fn now(clock: &dyn Clock) -> Self {
        Started {
            wall_ms: clock.now_ms(),
            monotonic_ms: clock.monotonic_ms(),
        }
    }

    /// Milliseconds since then on `clock`: the larger of the wall and the
    /// monotonic differences (a reading that went back counts as none).
    pub(crate) fn elapsed_ms(&self, clock: &dyn Clock) -> u64 {
        self.elapsed_until(&Started::now(clock))
    }

    /// [`Started::elapsed_ms`] up to `later`, read before (outside a lock
    /// that a host clock calling back in would wait on).
    pub(crate) fn elapsed_until(&self, later: &Started) -> u64 {
        let wall = later.wall_ms.saturating_sub(self.wall_ms);
        let monotonic = later.monotonic_ms.saturating_sub(self.monotonic_ms);
        wall.max(monotonic)
    }

    /// The earlier of two starts, on each reading.
    pub(crate) fn earlier(self, other: Started) -> Started {
        Started {
            wall_ms: self.wall_ms.min(other.wall_ms),
            monotonic_ms: self.monotonic_ms.min(other.monotonic_ms),
        }
    }

    /// Milliseconds from then to `later`, for a wait that must not end
    /// early (giving up on a save that may still land): the wall
    /// difference, as fake clocks drive it, unless the wall clock reads
    /// earlier than then (set back), when the monotonic one counts.
    pub(crate) fn waited_until(&self, later: &Started) -> u64 {
        match later.wall_ms.checked_sub(self.wall_ms) {
            Some(wall) => wall,
            None => later.monotonic_ms.saturating_sub(self.monotonic_ms),
        }
    }

    /// A start at these readings (tests).
    #[cfg(test)]
    pub(crate) fn at(wall_ms: u64, monotonic_ms: u64) -> Self {
        Started {
            wall_ms,
            monotonic_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn a_backward_step_does_not_shorten_the_elapsed_time() {
        let clock = ManualClock::new(10_000_000);
        let started = Started::now(&clock);
        clock.advance(10_000);
        clock.set(clock.now_ms() - 3_600_000);
        assert_eq!(started.elapsed_ms(&clock), 10_000);
        clock.advance(5_000);
        assert_eq!(started.elapsed_ms(&clock), 15_000);
    }

    #[test]
    fn a_forward_step_counts() {
        let clock = ManualClock::new(10_000_000);
        let started = Started::now(&clock);
        clock.advance(1_000);
        clock.set(clock.now_ms() + 3_600_000);
        assert_eq!(started.elapsed_ms(&clock), 3_601_000);
    }
}
