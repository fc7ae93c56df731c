//! One value per process, made again in a forked child.
//!
//! The core's native threads (the timer of every deadline and backoff, the
//! thread that finishes abandoned refreshes) are started once and kept in
//! statics. A forked child inherits the statics but not the threads: a
//! Python worker forked by a prefork server after its parent had used a
//! client would wait forever on a deadline, and an abandoned refresh
//! would stop with its last caller. [`PerProcess`] keeps one value per
//! process id, in the first free slot of a few `OnceLock`s (safe code, no
//! lock a fork could leave held), so each child makes its own.

use std::sync::OnceLock;

/// How many generations of forked processes get their own value; past
/// that, [`PerProcess::get`] gives none and the caller falls back.
const GENERATIONS: usize = 8;

/// A value per process: see the module docs.
pub(crate) struct PerProcess<T> {
    slots: [OnceLock<(u32, T)>; GENERATIONS],
}

impl<T> PerProcess<T> {
    /// No value yet, in any process.
    pub(crate) const fn new() -> Self {
        PerProcess {
            slots: [const { OnceLock::new() }; GENERATIONS],
        }
    }

    /// This process's value, made by `make` the first time this process
    /// asks; `None` once every slot belongs to an ancestor.
    pub(crate) fn get(&self, make: impl FnOnce() -> T) -> Option<&T> {
        self.get_in(std::process::id(), make)
    }

    fn get_in(&self, pid: u32, make: impl FnOnce() -> T) -> Option<&T> {
        let mut make = Some(make);
        for slot in &self.slots {
            if let Some((owner, value)) = slot.get() {
                if *owner == pid {
                    return Some(value);
                }
                continue;
            }
            let make = make.take()?;
            // Another thread of this process may fill the slot first: then
            // its value is this process's too.
            let (owner, value) = slot.get_or_init(|| (pid, make()));
            if *owner == pid {
                return Some(value);
            }
        }
        None
    }

    /// This process's value, if it made one. The values of other processes
    /// (ancestors whose threads are not in this one) are leaked, never
    /// dropped: dropping them could wait on a lock such a thread held when
    /// the process forked.
    #[cfg(feature = "ffi")]
    pub(crate) fn into_own(self) -> Option<T> {
        self.into_own_in(std::process::id())
    }

    #[cfg(any(feature = "ffi", test))]
    fn into_own_in(self, pid: u32) -> Option<T> {
        let mut own = None;
        for slot in self.slots {
            match slot.into_inner() {
                Some((owner, value)) if owner == pid => own = Some(value),
                Some(other) => std::mem::forget(other),
                None => {}
            }
        }
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_gets_its_own_value_and_keeps_it() {
        let values = PerProcess::new();
        assert_eq!(values.get_in(1, || "parent"), Some(&"parent"));
        assert_eq!(values.get_in(1, || "again"), Some(&"parent"), "made once");
        assert_eq!(
            values.get_in(2, || "child"),
            Some(&"child"),
            "a child makes its own"
        );
        assert_eq!(values.get_in(1, || "again"), Some(&"parent"));
        assert_eq!(values.get_in(2, || "again"), Some(&"child"));
    }

    #[test]
    fn a_process_takes_its_own_value_and_leaves_its_ancestors_alone() {
        struct Dropped<'a>(&'a std::cell::Cell<u32>);
        impl Drop for Dropped<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let drops = std::cell::Cell::new(0);
        let values = PerProcess::new();
        values.get_in(1, || Dropped(&drops));
        values.get_in(2, || Dropped(&drops));
        let own = values.into_own_in(2);
        assert!(own.is_some());
        assert_eq!(drops.get(), 0, "the parent's value is leaked, not dropped");
        drop(own);
        assert_eq!(drops.get(), 1);
        let none: PerProcess<u32> = PerProcess::new();
        assert_eq!(none.into_own_in(3), None);
    }

    #[test]
    fn past_the_last_generation_there_is_none() {
        let values = PerProcess::new();
        for pid in 0..GENERATIONS as u32 {
            assert_eq!(values.get_in(pid, || pid), Some(&pid));
        }
        assert_eq!(values.get_in(99, || 99), None);
    }
}
