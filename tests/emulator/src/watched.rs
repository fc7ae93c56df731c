//! [`Watched`]: a value behind a mutex that threads (through a condvar) and
//! tasks (through a tokio `watch`) can wait on, for the admin long-polls and
//! the blocking waits of [`Emulator`](crate::Emulator).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A value whose changes wake its waiters.
pub(crate) struct Watched<T> {
    value: Mutex<T>,
    changed: Condvar,
    /// Bumped on every change; tasks wait on it.
    version: watch::Sender<u64>,
}

impl<T: Default> Default for Watched<T> {
    fn default() -> Self {
        Watched::new(T::default())
    }
}

impl<T> Watched<T> {
    pub fn new(value: T) -> Self {
        Watched {
            value: Mutex::new(value),
            changed: Condvar::new(),
            version: watch::Sender::new(0),
        }
    }

    /// Locks the value (a poisoned lock is recovered, never a panic).
    fn lock(&self) -> MutexGuard<'_, T> {
        self.value.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the value.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.lock())
    }

    /// Changes the value without waking anyone (for changes no waiter
    /// looks at, like a byte count).
    pub fn update_quietly<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock())
    }

    /// Changes the value and wakes every waiter.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let result = f(&mut self.lock());
        self.changed.notify_all();
        self.version.send_modify(|v| *v = v.wrapping_add(1));
        result
    }

    /// Blocks the thread until `ready` answers `Ok`; past `limit`, gives
    /// its last `Err`.
    pub fn wait_blocking<R, E>(
        &self,
        limit: Duration,
        mut ready: impl FnMut(&T) -> Result<R, E>,
    ) -> Result<R, E> {
        let deadline = Instant::now() + limit;
        let mut guard = self.lock();
        loop {
            let outcome = ready(&guard);
            let left = deadline.saturating_duration_since(Instant::now());
            if outcome.is_ok() || left.is_zero() {
                return outcome;
            }
            guard = self
                .changed
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits (asynchronously, without a limit) until `ready` answers `Some`.
    pub async fn wait<R>(&self, mut ready: impl FnMut(&T) -> Option<R>) -> R {
        // Subscribed before the first look, so no change can slip between.
        let mut changes = self.version.subscribe();
        loop {
            if let Some(result) = self.read(&mut ready) {
                return result;
            }
            // Fails only once the sender is gone, which `&self` rules out.
            let _ = changes.changed().await;
        }
    }

    /// Like [`Watched::wait`], but past `limit` gives `ready`'s answer to
    /// `timed_out` instead.
    pub async fn wait_for<R, E>(
        &self,
        limit: Duration,
        mut ready: impl FnMut(&T) -> Result<R, E>,
    ) -> Result<R, E> {
        let waited = tokio::time::timeout(limit, self.wait(|v| ready(v).ok())).await;
        match waited {
            Ok(result) => Ok(result),
            Err(_) => self.read(ready),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_blocking_waiter_wakes_on_change_and_gives_up_at_its_limit() {
        let w = Arc::new(Watched::new(0u32));
        let setter = {
            let w = Arc::clone(&w);
            std::thread::spawn(move || w.update(|v| *v = 3))
        };
        let got = w.wait_blocking(Duration::from_secs(30), |v| {
            if *v == 3 {
                Ok(*v)
            } else {
                Err(*v)
            }
        });
        assert_eq!(got, Ok(3));
        setter.join().unwrap();
        let late = w.wait_blocking(Duration::from_millis(1), |v| {
            if *v == 4 {
                Ok(())
            } else {
                Err(*v)
            }
        });
        assert_eq!(late, Err(3));
    }

    #[tokio::test]
    async fn an_async_waiter_wakes_on_change_and_gives_up_at_its_limit() {
        let w = Arc::new(Watched::new(0u32));
        let waiter = {
            let w = Arc::clone(&w);
            tokio::spawn(async move { w.wait(|v| (*v == 2).then_some(*v)).await })
        };
        w.update(|v| *v = 1);
        w.update(|v| *v = 2);
        assert_eq!(waiter.await.unwrap(), 2);
        let late = w
            .wait_for(Duration::from_millis(1), |v| {
                if *v == 5 {
                    Ok(())
                } else {
                    Err(*v)
                }
            })
            .await;
        assert_eq!(late, Err(2));
    }
}
