//! Which process started a call in progress. A child forked while a call
//! ran (a refresh on the wire, a seed, a client-token request) inherits
//! its state but none of the threads that drive it, nor its deadlines'
//! timers: a caller in the child that joined it would wait for good. So
//! the child forgets such calls, and never sends a refresh token one of
//! them is spending (see [`crate::refresh_claims`]).

/// The process that started a call (nothing in wasm, where nothing forks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StartedBy(#[cfg(not(target_arch = "wasm32"))] u32);

impl StartedBy {
    /// This process.
    pub(crate) fn this() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        return StartedBy(std::process::id());
        #[cfg(target_arch = "wasm32")]
        return StartedBy();
    }

    /// A process other than this one (for tests).
    #[cfg(all(test, not(target_arch = "wasm32")))]
    pub(crate) fn other() -> Self {
        StartedBy(std::process::id().wrapping_add(1))
    }

    /// Whether another process (the parent, seen from a forked child) started it.
    pub(crate) fn elsewhere(self) -> bool {
        self != StartedBy::this()
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn only_another_process_is_elsewhere() {
        assert!(!StartedBy::this().elsewhere());
        assert!(StartedBy::other().elsewhere());
    }
}
