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
    fn past_the_last_generation_there_is_none() {
        let values = PerProcess::new();
        for pid in 0..GENERATIONS as u32 {
            assert_eq!(values.get_in(pid, || pid), Some(&pid));
        }
        assert_eq!(values.get_in(99, || 99), None);
    }
}
