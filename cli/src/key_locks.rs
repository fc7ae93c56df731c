//! The lock files of a key, taken the way every freshtoken file store takes
//! them, so that the command and the Python and Kotlin `FileTokenStore`s on
//! one directory exclude each other: `<stem>.lock` while one of them may
//! spend the key's refresh token, `<stem>.write.lock` around each write.
//!
//! Each lock is a `flock` (what the Python store takes) and, where the file
//! system keeps them apart (Linux's local file systems), also a POSIX record
//! lock on the whole file (a JVM's `FileLock`: the Kotlin store's). Where
//! the two are one mechanism (macOS and the BSDs; NFS and SMB mounts on
//! Linux) the `flock` already excludes a `FileLock`, and taking both would
//! conflict with itself. Both are given back by the OS when the process
//! dies. Lock files stay (removing one races with a process about to lock it).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;
use std::time::Duration;
#[cfg(unix)]
use std::{collections::HashMap, fs, path::PathBuf, sync::Mutex};

/// A lock file held exclusively until dropped.
#[derive(Debug)]
pub struct HeldLock {
    _file: File,
}

/// Takes the lock file at `path` (created 0600 if missing) exclusively,
/// waiting at most `wait` for another process that holds it (then
/// `TimedOut`). A free lock is taken at once; a held one is waited for by
/// a thread of its own, blocked in the kernel as every file store's waiter
/// is (the lock table shows it waiting), while the command waits only
/// until the deadline. A thread still waiting when its caller has gone
/// (the deadline passed, or the core's store deadline dropped the future)
/// gives the lock back as soon as it gets it: nothing is written late.
pub async fn lock_exclusive(path: &Path, wait: Duration) -> io::Result<HeldLock> {
    #[cfg(unix)]
    let separate = match path.parent() {
        Some(dir) => record_locks_are_separate(dir)?,
        None => true,
    };
    #[cfg(not(unix))]
    let separate = false;
    let file = open_lock_file(path)?;
    if try_lock(&file, separate)? {
        return Ok(HeldLock { _file: file });
    }
    let (taken, waiting) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("freshtoken-lock".into())
        .spawn(move || {
            // A send to a caller that has gone drops the file: unlocked.
            let _ = taken.send(lock_blocking(&file, separate).map(|()| file));
        })?;
    match tokio::time::timeout(wait, waiting).await {
        Ok(Ok(locked)) => locked.map(|file| HeldLock { _file: file }),
        Ok(Err(_)) => Err(io::Error::other("the lock's waiting thread ended")),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "another process holds the lock",
        )),
    }
}

/// Why a lock file was refused (see [`open_lock_file`]).
pub const LOCK_NOT_REGULAR: &str = "a lock file of the session is not a regular file (a symbolic \
     link, a directory or a device): remove it, or use a store directory only you can write to";

/// Opens the lock file at `path` (created 0600 if missing), never through
/// a symbolic link and only if it is a regular file: in a directory others
/// can write to, a link planted under a lock file's name would otherwise
/// make the command create or open any file it may write (as root, any
/// file at all).
fn open_lock_file(path: &Path) -> io::Result<File> {
    let mut options = private_options();
    options.read(true).write(true);
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking: opening a FIFO planted there returns at once.
        options.custom_flags((OFlags::NONBLOCK | OFlags::NOFOLLOW).bits() as i32);
    }
    let refused = || io::Error::new(io::ErrorKind::InvalidInput, LOCK_NOT_REGULAR);
    // ELOOP: the last component is a symbolic link.
    #[cfg(unix)]
    let is_link = |e: &io::Error| e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error());
    #[cfg(not(unix))]
    let is_link = |_: &io::Error| false;
    let file = options
        .open(path)
        .map_err(|e| if is_link(&e) { refused() } else { e })?;
    if !file.metadata()?.is_file() {
        return Err(refused());
    }
    Ok(file)
}

/// Takes both locks if both are free now (`false`, holding none, if not).
/// `flock` first: two threads of this process then never meet at the
/// record lock, which does not exclude within a process.
fn try_lock(file: &File, separate: bool) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(false),
        Err(TryLockError::Error(e)) => return Err(e),
    }
    #[cfg(unix)]
    if separate {
        use rustix::fs::{fcntl_lock, FlockOperation};
        use rustix::io::Errno;
        match fcntl_lock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == Errno::AGAIN || e == Errno::ACCESS => {
                file.unlock()?;
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
    }
    #[cfg(not(unix))]
    let _ = separate;
    Ok(true)
}

/// Takes both locks, waiting in the kernel for each.
fn lock_blocking(file: &File, separate: bool) -> io::Result<()> {
    file.lock()?;
    #[cfg(unix)]
    if separate {
        rustix::fs::fcntl_lock(file, rustix::fs::FlockOperation::LockExclusive)?;
    }
    #[cfg(not(unix))]
    let _ = separate;
    Ok(())
}

/// What [`record_locks_are_separate`] found, by the directory's real path.
#[cfg(unix)]
static PROBED: Mutex<Option<HashMap<PathBuf, bool>>> = Mutex::new(None);

/// Whether `dir`'s file system keeps POSIX record locks apart from `flock`,
/// probed once per directory: a `flock` on a new file no other process
/// knows, then a record lock on it, which only a file system where the two
/// are one mechanism refuses.
#[cfg(unix)]
pub fn record_locks_are_separate(dir: &Path) -> io::Result<bool> {
    let dir = fs::canonicalize(dir)?;
    let mut probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&separate) = probed.get_or_insert_with(HashMap::new).get(&dir) {
        return Ok(separate);
    }
    let mut random = [0u8; 6];
    getrandom::getrandom(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
    let probe = dir.join(format!(
        ".lock-probe.{}.{}.tmp",
        std::process::id(),
        crate::file_store::to_hex(&random)
    ));
    let file = private_options().write(true).create_new(true).open(&probe);
    let separate = file.and_then(|file| {
        file.lock()?;
        match rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(true),
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => Ok(false),
            Err(e) => Err(e.into()),
        }
    });
    let _ = fs::remove_file(&probe);
    let separate = separate?;
    probed
        .get_or_insert_with(HashMap::new)
        .insert(dir, separate);
    Ok(separate)
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(future)
    }

    /// The kinds of the locks this process holds on `path`, from the
    /// `lock:` lines of `/proc/self/fdinfo` of each file it has open there.
    /// Each is one snapshot taken under the file's lock list; `/proc/locks`
    /// is read a page at a time, and a line can slip between two pages
    /// while other tests take and give back locks (it did in CI).
    fn lock_kinds_on(path: &Path) -> Vec<String> {
        let path = fs::canonicalize(path).unwrap();
        let mut kinds = Vec::new();
        for fd in fs::read_dir("/proc/self/fd").unwrap().flatten() {
            // Another test's file may close meanwhile: then it is not ours.
            if fs::read_link(fd.path()).ok().as_deref() != Some(path.as_path()) {
                continue;
            }
            let info = fs::read_to_string(Path::new("/proc/self/fdinfo").join(fd.file_name()));
            for line in info.unwrap_or_default().lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.first() == Some(&"lock:") && words.get(2).is_some_and(|w| *w != "->") {
                    kinds.push(words[2].to_owned());
                }
            }
        }
        kinds.sort();
        kinds
    }

    #[test]
    fn on_a_local_linux_file_system_both_kinds_are_taken_and_the_probe_leaves_nothing() {
        let mut random = [0u8; 6];
        getrandom::getrandom(&mut random).unwrap();
        let hex = crate::file_store::to_hex(&random);
        let dir = std::env::temp_dir().join(format!("freshtoken-cli-locks-{hex}"));
        fs::create_dir_all(&dir).unwrap();
        assert!(record_locks_are_separate(&dir).unwrap());
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "the probe file is gone"
        );

        let path = dir.join("x.75.lock");
        let held = block_on(lock_exclusive(&path, Duration::ZERO)).unwrap();
        assert_eq!(lock_kinds_on(&path), ["FLOCK", "POSIX"]);
        drop(held);
        assert!(
            lock_kinds_on(&path).is_empty(),
            "closing the file gives both back"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_lock_held_elsewhere_is_waited_for_at_most_the_wait() {
        let dir = std::env::temp_dir().join(format!("freshtoken-cli-wait-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.75.lock");
        // Another open file's flock excludes this one, as another process's.
        let holder = private_options().write(true).open(&path).unwrap();
        holder.lock().unwrap();
        let e = block_on(lock_exclusive(&path, Duration::from_millis(20))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(holder);
        // The abandoned waiter may hold it for a moment: wait for it.
        block_on(lock_exclusive(&path, Duration::from_secs(30))).unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn where_the_two_are_one_mechanism_a_flock_alone_is_taken() {
        // macOS, the BSDs, NFS (simulated: this file system keeps them apart).
        let dir = std::env::temp_dir().join(format!("freshtoken-cli-one-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let real = fs::canonicalize(&dir).unwrap();
        PROBED
            .lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .insert(real, false);
        let path = dir.join("x.75.lock");
        let held = block_on(lock_exclusive(&path, Duration::ZERO)).unwrap();
        assert_eq!(lock_kinds_on(&path), ["FLOCK"]);
        drop(held);
        fs::remove_dir_all(dir).unwrap();
    }
}
