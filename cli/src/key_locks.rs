//! The lock files of a key, taken the way every freshtoken file store takes
//! them, so that the command and the Python and Kotlin `FileTokenStore`s on
//! one directory exclude each other: `<stem>.lock` while one of them may
//! spend the key's refresh token, `<stem>.write.lock` around each write.
//!
//! Each lock is taken both ways Unix has, because on Linux they do not see
//! each other: `flock` (what the Python store also takes) and a POSIX
//! record lock on the whole file (a JVM's `FileLock`: the Kotlin store's).
//! Both are given back by the OS when the process dies. Lock files stay
//! (removing one races with a process about to lock it).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// A lock file held exclusively until dropped.
#[derive(Debug)]
pub struct HeldLock {
    _file: File,
}

/// Takes the lock file at `path` (created 0600 if missing) exclusively,
/// waiting for another process that holds it.
pub fn lock_exclusive(path: &Path) -> io::Result<HeldLock> {
    let file = private_options().read(true).write(true).open(path)?;
    // flock first: two threads of this process then never meet at the
    // record lock, which does not exclude within a process.
    file.lock()?;
    #[cfg(unix)]
    rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(HeldLock { _file: file })
}

/// Options that create a file readable by its owner only.
pub fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}
