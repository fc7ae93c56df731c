//! A directory store: one file per session key, in the npm package's
//! `FileStore` layout (`x.<hex of the key>.json`, or `h.<SHA-256 hex>.json`
//! for keys over 60 bytes; temporary files `<name>.<pid>.<12 hex>.tmp`), so
//! the command and a Node service can share a directory. Writes go to a
//! temporary file (0600), are fsynced, renamed over the record and the
//! directory is fsynced: a crash leaves the old record or the new one.
//!
//! Concurrent invocations on one key are serialised by the key's lock,
//! `<stem>.lock`, which the Python and Kotlin `FileTokenStore`s take as
//! their refresh lease (see `key_locks`): the command, a web server's
//! workers and an app's processes never both spend the same single-use
//! refresh token. Every write holds `<stem>.write.lock`, as theirs do, and
//! saves compare-and-swap on the SHA-256 of the record text, their version:
//! a re-link another process saves during a command's refresh is kept, and
//! the command's save ends in a conflict instead of overwriting it.
//!
//! A save killed between its temporary file's fsync and its rename leaves
//! the rotated record only in that file, and the record file with the
//! refresh token the refresh spent. Before a command loads a record it
//! finishes such a save of its key ([`FileStore::recover`]), as the other
//! stores' `recover()` does at their start.

use crate::key_locks::{lock_exclusive, private_options, HeldLock};
use freshtoken::{
    async_trait, CasOutcome, StoreError, TokenStore, Versioned, MAX_RECORD_BYTES, MAX_STORED_BYTES,
};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Longest wait for another process's write (which holds the write lock
/// for one read and one write): past it the writer is stalled, and the save
/// fails with `storage` before the core's own store deadline (5 s) passes.
/// Before a refresh that means nothing is sent.
pub const WRITE_LOCK_WAIT: Duration = Duration::from_secs(4);

/// Longest hex stem used as is (keys up to 60 UTF-8 bytes); longer keys are hashed.
const MAX_HEX: usize = 120;

/// How long the writer of a temporary file of the npm layout may still be
/// writing it: the npm `FileStore`'s `recover()` default. That store takes
/// no lock, and the pids in its names cannot be checked from here (its
/// tag is of Node's host and pid namespace), so a younger one is left
/// alone, as that store leaves one whose pid it cannot check.
const LIVE_WRITE_AGE: Duration = Duration::from_secs(60);

/// Records as files in one directory.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store in `dir` (created on the first save or lock).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStore { dir: dir.into() }
    }

    /// The file name stem of `key`: `x.<hex>` or `h.<sha256 hex>`.
    fn stem(key: &str) -> String {
        let hex = to_hex(key.as_bytes());
        if hex.len() <= MAX_HEX {
            format!("x.{hex}")
        } else {
            format!("h.{}", to_hex(&Sha256::digest(key.as_bytes())))
        }
    }

    /// The record file of `key`.
    pub fn path_for(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.json", Self::stem(key)))
    }

    /// The record stored under `key`, or `None`.
    pub fn read(&self, key: &str) -> io::Result<Option<String>> {
        read_capped_bytes(&self.path_for(key), MAX_RECORD_BYTES, Kind::RegularOnly)?
            .map(utf8)
            .transpose()
    }

    /// Saves `record` under `key` durably, holding the key's write lock
    /// (see the module docs).
    pub async fn write(&self, key: &str, record: &str) -> io::Result<()> {
        let _writing = self.write_lock(key).await?;
        self.write_record(key, record)
    }

    /// Writes `record` under `key` (the caller holds its write lock), first
    /// removing the Kotlin and Python stores' temporary file of the record,
    /// `.<name>.json.tmp`: one there is a killed save's, older than this
    /// save, and their `recover()` would rename it over this record. Before
    /// the rename, so that the rename's directory fsync makes the removal
    /// durable too; a file that cannot be removed fails the save (a
    /// directory there is no file their `recover()` renames).
    fn write_record(&self, key: &str, record: &str) -> io::Result<()> {
        let superseded = self.dir.join(format!(".{}.json.tmp", Self::stem(key)));
        if let Err(e) = fs::remove_file(&superseded) {
            let file = fs::symlink_metadata(&superseded).is_ok_and(|m| !m.is_dir());
            if e.kind() != io::ErrorKind::NotFound && file {
                return Err(e);
            }
        }
        write_private(&self.path_for(key), record.as_bytes())
    }

    /// The stored record and its version, or `None`. A file that is not
    /// UTF-8 is an `InvalidData` error, never read with replacement
    /// characters: an altered refresh token would be sent once and the dead
    /// marker saved over the bytes an operator could repair.
    pub fn read_versioned(&self, key: &str) -> io::Result<Option<(String, String)>> {
        read_capped_bytes(&self.path_for(key), MAX_RECORD_BYTES, Kind::RegularOnly)?
            .map(|bytes| {
                let version = version(&bytes);
                Ok((utf8(bytes)?, version))
            })
            .transpose()
    }

    /// The stored record's version (of its bytes, whatever they hold), or
    /// `None`: what a new link compares and swaps against, so it can
    /// replace a file [`FileStore::read_versioned`] refuses.
    pub fn read_version(&self, key: &str) -> io::Result<Option<String>> {
        Ok(
            read_capped_bytes(&self.path_for(key), MAX_RECORD_BYTES, Kind::RegularOnly)?
                .map(|bytes| version(&bytes)),
        )
    }

    /// Saves `record` only if the stored record's version is still
    /// `expected` (`None`: only if nothing is stored); `Ok(None)` when it
    /// is not. The read and the write hold the key's write lock.
    pub async fn write_if(
        &self,
        key: &str,
        record: &str,
        expected: Option<&str>,
    ) -> io::Result<Option<String>> {
        let _writing = self.write_lock(key).await?;
        let current = self.read_version(key)?;
        if current.as_deref() != expected {
            return Ok(None);
        }
        self.write_record(key, record)?;
        Ok(Some(version(record.as_bytes())))
    }

    /// Takes the key's lock (the refresh lease of the other file stores),
    /// waiting at most `wait` for another process that holds it (then
    /// `TimedOut`).
    pub async fn lock(&self, key: &str, wait: Duration) -> io::Result<HeldLock> {
        create_private_dir(&self.dir)?;
        lock_exclusive(&self.dir.join(format!("{}.lock", Self::stem(key))), wait).await
    }

    /// Takes the key's write lock, waiting at most [`WRITE_LOCK_WAIT`] for
    /// a write in another process.
    async fn write_lock(&self, key: &str) -> io::Result<HeldLock> {
        create_private_dir(&self.dir)?;
        let path = self.dir.join(format!("{}.write.lock", Self::stem(key)));
        lock_exclusive(&path, WRITE_LOCK_WAIT).await
    }

    /// Finishes the save of `key` a killed process left half done, so that
    /// the record loaded next holds the newest refresh token, not the one
    /// that save's refresh spent (sent again, the server revokes the
    /// grant). Call it holding the key's lock, before the first load; an
    /// error means nothing may be sent.
    ///
    /// With temporary files of the key present it holds the key's write
    /// lock, which every save of the command and of the Python and Kotlin
    /// stores holds while its temporary file exists: those found then are
    /// killed saves' (see [`FileStore::recover_locked`]). With none, it
    /// takes no lock, so a stalled writer does not hold up a fresh token.
    pub async fn recover(&self, key: &str) -> io::Result<()> {
        if self.temps(key)?.is_empty() {
            return Ok(());
        }
        let _writing = self.write_lock(key).await?;
        self.recover_locked(key, SystemTime::now())
    }

    /// [`FileStore::recover`]'s work, holding the key's write lock, at
    /// `now`: what each store's `recover()` does with its own temporary
    /// files, the Python and Kotlin stores' first, then the npm store's
    /// (whose save removes theirs first, so a file of its is newer than one
    /// of theirs it lies beside).
    ///
    /// Theirs (their `recover()`): a `.<name>.json.tmp` was written after
    /// the record's last save, as every save removes it first, so no time
    /// is compared: whole (one JSON object), it is fsynced and renamed over
    /// the record; cut off, removed. Their earlier versions'
    /// `.<name>.json.<UUID>.tmp` are older still then, and removed; alone,
    /// the newest whole one at least as new as the record file
    /// (modification time) is finished and the others removed.
    ///
    /// The npm store's and this command's `<name>.json.<pid>.<12 hex>.tmp`
    /// (the npm store's `recover()`): the newest whole one at least as new
    /// as the record file is fsynced and renamed over it, whoever wrote it
    /// (a save of this command's holds the write lock; a live npm writer
    /// would rename that very file); the others are removed unless their
    /// writer may still be writing them ([`LIVE_WRITE_AGE`]). Like that
    /// store's, this rule trusts modification times: where they are coarse
    /// (1-2 s) or the clock stepped back, a killed save can look as new as
    /// a later one.
    ///
    /// A record file that is not a regular file (a symbolic link, which a
    /// rename would replace) is left as it is, and everything beside it:
    /// its load refuses it. So is a temporary name that is not a regular
    /// file (no save's). Then the directory is fsynced.
    fn recover_locked(&self, key: &str, now: SystemTime) -> io::Result<()> {
        let record = self.path_for(key);
        match fs::symlink_metadata(&record) {
            Ok(found) if !found.is_file() => return Ok(()),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // Listed again under the lock: a save may have ended meanwhile.
        let (theirs, npm): (Vec<Temp>, Vec<Temp>) = self
            .temps(key)?
            .into_iter()
            .partition(|t| t.kind != TempKind::Npm);
        let mut changed = false;

        let (fixed, earlier): (Vec<Temp>, Vec<Temp>) =
            theirs.into_iter().partition(|t| t.kind == TempKind::Fixed);
        let (finish, leftovers) = match fixed.into_iter().next() {
            Some(fixed) if is_whole_record(&fixed.path)? => (Some(fixed), earlier),
            Some(fixed) => (None, std::iter::once(fixed).chain(earlier).collect()),
            None => newest_whole(earlier, modified(&record)?)?,
        };
        if let Some(temp) = finish {
            changed |= finish_save(&temp.path, &record)?;
        }
        for temp in leftovers {
            changed |= remove(&temp.path)?;
        }

        let (finish, leftovers) = newest_whole(npm, modified(&record)?)?;
        if let Some(temp) = finish {
            changed |= finish_save(&temp.path, &record)?;
        }
        let live_since = now
            .checked_sub(LIVE_WRITE_AGE)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for temp in leftovers.into_iter().filter(|t| t.modified <= live_since) {
            changed |= remove(&temp.path)?;
        }

        if changed {
            sync_directory(&self.dir)?;
        }
        Ok(())
    }

    /// The temporary files of `key`'s record file that are regular files,
    /// of every store's names (none if the directory does not exist).
    fn temps(&self, key: &str) -> io::Result<Vec<Temp>> {
        let dir = if self.dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            self.dir.as_path()
        };
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let record_name = format!("{}.json", Self::stem(key));
        let mut temps = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let Some(kind) = name.to_str().and_then(|n| temp_kind(n, &record_name)) else {
                continue;
            };
            let path = self.dir.join(&name);
            let found = match fs::symlink_metadata(&path) {
                Ok(found) => found,
                // Renamed by its writer, or finished, since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if found.is_file() {
                temps.push(Temp {
                    path,
                    kind,
                    modified: found.modified()?,
                });
            }
        }
        Ok(temps)
    }
}

/// Whose temporary file a name is, by the store that writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TempKind {
    /// `.<name>.json.tmp`: the Python and Kotlin stores' (one name per
    /// record file; written holding the key's write lock).
    Fixed,
    /// `.<name>.json.<UUID>.tmp`: their earlier versions'.
    Earlier,
    /// `<name>.json.<pid>.<12 hex>.tmp`: the npm store's and this command's.
    Npm,
}

/// A temporary file beside a record file.
#[derive(Debug)]
struct Temp {
    path: PathBuf,
    kind: TempKind,
    modified: SystemTime,
}

/// Which temporary file of the record file `record_name` the directory
/// entry `name` is, if one (lowercase hex only, as every store writes).
fn temp_kind(name: &str, record_name: &str) -> Option<TempKind> {
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if let Some(rest) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_prefix(record_name))
    {
        if rest == ".tmp" {
            return Some(TempKind::Fixed);
        }
        let uuid: Vec<&str> = rest
            .strip_prefix('.')?
            .strip_suffix(".tmp")?
            .split('-')
            .collect();
        let uuid_shape =
            uuid.len() == 5 && uuid.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| hex(p, n));
        return uuid_shape.then_some(TempKind::Earlier);
    }
    let rest = name
        .strip_prefix(record_name)?
        .strip_prefix('.')?
        .strip_suffix(".tmp")?;
    let (pid, random) = rest.split_once('.')?;
    let pid_shape = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    (pid_shape && hex(random, 12)).then_some(TempKind::Npm)
}

/// The newest whole file of `temps` at least as new as the record file
/// (modified at `current`; `None`: there is none), and the others.
fn newest_whole(
    mut temps: Vec<Temp>,
    current: Option<SystemTime>,
) -> io::Result<(Option<Temp>, Vec<Temp>)> {
    temps.sort_by_key(|t| std::cmp::Reverse(t.modified));
    let mut finish = None;
    for (i, temp) in temps.iter().enumerate() {
        // Newest first: past the first one older than the record, all are.
        if current.is_some_and(|current| temp.modified < current) {
            break;
        }
        if is_whole_record(&temp.path)? {
            finish = Some(i);
            break;
        }
    }
    Ok(match finish {
        Some(i) => {
            let temp = temps.remove(i);
            (Some(temp), temps)
        }
        None => (None, temps),
    })
}

/// When the file at `path` was last modified (through a link, as the
/// other stores read the record's), `None` if there is none.
fn modified(path: &Path) -> io::Result<Option<SystemTime>> {
    match fs::metadata(path) {
        Ok(found) => found.modified().map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the temporary file at `path` holds a whole record: one JSON
/// object, as the core's check that the other stores' `recover()` asks
/// (read leniently: a damaged byte does not make a write cut off; its load
/// refuses it later). A file that is gone holds none.
fn is_whole_record(path: &Path) -> io::Result<bool> {
    let Some(bytes) = read_capped_bytes(path, MAX_STORED_BYTES, Kind::RegularOnly)? else {
        return Ok(false);
    };
    Ok(freshtoken::is_whole_json_object(&bytes))
}

/// Finishes the save whose temporary file is `temp`: fsynced (its writer
/// may have been killed before its own fsync; renamed as it is, a power
/// loss could leave the record file empty), then renamed over `record`.
/// `false` if it is gone (its writer renamed it after all).
fn finish_save(temp: &Path, record: &Path) -> io::Result<bool> {
    let mut options = fs::OpenOptions::new();
    // Writable: some platforms fsync only what is open for writing.
    options.read(true).write(true);
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags((OFlags::NONBLOCK | OFlags::NOFOLLOW).bits() as i32);
    }
    let file = match options.open(temp) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Ok(false);
    }
    file.sync_all()?;
    drop(file);
    match fs::rename(temp, record) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the file at `path`; `false` if it was gone.
fn remove(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// fsyncs the directory `dir`, making the renames and removals in it
/// durable. Where the platform cannot (Windows opens no directory; some
/// file systems refuse a directory's fsync, or fsync only writable
/// descriptors) there is nothing more to do, as the other stores judge;
/// any other failure (EIO, ENOSPC) is an error: a rename may not outlive a
/// crash, and the spent refresh token come back.
fn sync_directory(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match File::open(dir).and_then(|file| sync_directory_file(&file, dir)) {
        Err(e) if !cannot_sync_directories(&e) => Err(e),
        _ => Ok(()),
    }
}

/// fsyncs `file`, open on the directory `dir`; in tests, after the thread's
/// [`tests::DIRECTORY_SYNCS`] hook (a failing disk cannot be made real).
fn sync_directory_file(file: &File, dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    tests::DIRECTORY_SYNCS
        .with_borrow_mut(|hook| hook.as_mut().map_or(Ok(()), |hook| hook(dir)))?;
    #[cfg(not(test))]
    let _ = dir;
    file.sync_all()
}

/// Whether `e`, from opening or fsyncing a directory, says the platform
/// cannot, never that this fsync failed (the Python and Kotlin stores'
/// list; ENOTTY is macOS's `F_FULLFSYNC` where a file system has none).
fn cannot_sync_directories(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        Errno::from_io_error(e).is_some_and(|errno| {
            [
                Errno::ACCESS,
                Errno::PERM,
                Errno::ISDIR,
                Errno::INVAL,
                Errno::BADF,
                Errno::NOTSUP,
                Errno::OPNOTSUPP,
                Errno::NOTTY,
            ]
            .contains(&errno)
        })
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        true
    }
}

/// A record's version, as every file store computes it: the lowercase hex
/// SHA-256 of its text's bytes (of the file's bytes, if they are not text).
fn version(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

fn read_error(e: io::Error) -> StoreError {
    StoreError(format!("cannot read the record ({})", describe(&e)))
}

/// What went wrong, for messages: the error's kind, or that a record path
/// is not a regular file.
pub fn describe(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) if inner.to_string() == NOT_REGULAR => NOT_REGULAR.to_owned(),
        Some(inner) if inner.to_string() == NOT_UTF8 => NOT_UTF8.to_owned(),
        Some(inner) if inner.to_string() == SYMLINK => SYMLINK.to_owned(),
        Some(inner) if inner.to_string() == crate::key_locks::LOCK_NOT_REGULAR => {
            crate::key_locks::LOCK_NOT_REGULAR.to_owned()
        }
        _ => e.kind().to_string(),
    }
}

fn write_error(e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::TimedOut {
        return StoreError(format!(
            "cannot write the record: another process has held its write lock for {} s",
            WRITE_LOCK_WAIT.as_secs()
        ));
    }
    StoreError(format!("cannot write the record ({})", describe(&e)))
}

#[async_trait]
impl TokenStore for FileStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(key).map_err(read_error)
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        self.write(key, record).await.map_err(write_error)
    }

    fn supports_versions(&self) -> bool {
        true
    }

    async fn load_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self
            .read_versioned(key)
            .map_err(read_error)?
            .map(|(record, version)| Versioned { record, version }))
    }

    async fn load_version(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read_version(key).map_err(read_error)
    }

    async fn save_versioned(
        &self,
        key: &str,
        record: &str,
        expected: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        Ok(
            match self
                .write_if(key, record, expected)
                .await
                .map_err(write_error)?
            {
                Some(version) => CasOutcome::Saved { version },
                None => CasOutcome::Conflict,
            },
        )
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `dir` (and its parents) if missing, one level at a time; a new
/// directory is 0700. Then fsyncs the parent of each level this call
/// created: the directory's own fsync makes the files in it durable, not
/// its entry in its parent, so a power loss could drop a new directory and
/// the first record saved in it (a rotated refresh token). A level that
/// exists already (another process may have just made it) is not this
/// call's. If a sync fails, the levels this call created are removed again
/// (best effort), so that the retry creates and syncs them anew; no other
/// process's is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    // Deepest first.
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|level| !level.as_os_str().is_empty() && !level.is_dir())
        .collect();
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    let mut created = Vec::new();
    for level in missing.into_iter().rev() {
        #[cfg(test)]
        tests::CREATING.with_borrow_mut(|hook| hook.as_mut().map(|hook| hook(level)));
        match builder.create(level) {
            Ok(()) => created.insert(0, level),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && level.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    let synced = created
        .iter()
        .try_for_each(|level| sync_directory(level.parent().unwrap_or(Path::new(""))));
    if synced.is_err() {
        for level in &created {
            if fs::remove_dir(level).is_err() {
                break;
            }
        }
    }
    synced
}

/// The file's text, `None` if it does not exist; a file over `cap` bytes
/// is read only to `cap + 1` bytes (the caller refuses it). Pipes are read
/// too (`--credentials <(…)`).
pub fn read_capped(path: &Path, cap: usize) -> io::Result<Option<String>> {
    read_capped_bytes(path, cap, Kind::Any)?
        .map(utf8)
        .transpose()
}

fn utf8(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, NOT_UTF8))
}

/// The message of a file that is not UTF-8.
const NOT_UTF8: &str = "the file is not UTF-8 (left unchanged; a new link replaces it)";

/// The message of a record path that is not a regular file.
const NOT_REGULAR: &str = "not a regular file";

/// The message of a record path that is a symbolic link: read through it,
/// the record's first save would replace the link with a file and leave
/// the consumed refresh token in its target.
const SYMLINK: &str = "the record is a symbolic link, which freshtoken refuses (a save would replace the link, not its target): put the file itself in the store directory";

/// Which files a read accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Whatever opens (a credentials file may be a pipe).
    Any,
    /// Regular files only: a record path that is a FIFO, a device or a
    /// directory is refused, without the open that would wait for a FIFO's
    /// writer forever; a symbolic link is refused too, unfollowed.
    RegularOnly,
}

/// The file's bytes, as [`read_capped`] reads them.
fn read_capped_bytes(path: &Path, cap: usize, kind: Kind) -> io::Result<Option<Vec<u8>>> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    if kind == Kind::RegularOnly {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO without a writer returns at once, not never; a
        // symbolic link fails (ELOOP) instead of being followed.
        options.custom_flags((OFlags::NONBLOCK | OFlags::NOFOLLOW).bits() as i32);
    }
    #[cfg(not(unix))]
    if kind == Kind::RegularOnly && fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, SYMLINK));
    }
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(_)
            if kind == Kind::RegularOnly
                && fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) =>
        {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, SYMLINK));
        }
        Err(e) => return Err(e),
    };
    if kind == Kind::RegularOnly && !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, NOT_REGULAR));
    }
    let mut bytes = Vec::new();
    file.take(cap as u64 + 1).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Writes `contents` to `path` atomically and durably, readable by the
/// owner only: a temporary file beside it (0600), fsync, rename, fsync of
/// the directory.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut random = [0u8; 6];
    getrandom::getrandom(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.{}.tmp", std::process::id(), to_hex(&random)));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut file = private_options().write(true).create_new(true).open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Makes the rename durable. Where the platform cannot, nothing more is
    // to be done; any other failure (EIO, ENOSPC) fails the write, as the
    // rename may not outlive a crash (and the old record, whose refresh
    // token is spent, come back).
    sync_directory(path.parent().unwrap_or(Path::new("")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// What this thread's directory fsync hook answers for a directory.
    type SyncHook = Box<dyn FnMut(&Path) -> io::Result<()>>;

    /// This thread's hook before a level is created.
    type CreateHook = Box<dyn FnMut(&Path)>;

    /// The directories synced, each with the names it held then.
    #[cfg(unix)]
    type Synced = std::rc::Rc<RefCell<Vec<(PathBuf, Vec<String>)>>>;

    thread_local! {
        /// Called before each directory fsync of this thread; an error is the fsync's.
        pub static DIRECTORY_SYNCS: RefCell<Option<SyncHook>> = const { RefCell::new(None) };
        /// Called before [`create_private_dir`] creates a level on this thread,
        /// after it found the level missing: a test creates one there, as
        /// another process could.
        pub static CREATING: RefCell<Option<CreateHook>> = const { RefCell::new(None) };
    }

    /// Watches this thread's directory fsyncs: each directory synced and the
    /// names it held then; `failing` answers the errno a sync fails with.
    #[cfg(unix)]
    fn watch_directory_syncs(
        failing: impl Fn(&Path) -> Option<rustix::io::Errno> + 'static,
    ) -> Synced {
        let synced = Synced::default();
        let seen = synced.clone();
        DIRECTORY_SYNCS.set(Some(Box::new(move |dir: &Path| {
            if let Some(errno) = failing(dir) {
                return Err(io::Error::from_raw_os_error(errno.raw_os_error()));
            }
            let mut names: Vec<String> = fs::read_dir(dir)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<io::Result<_>>()?;
            names.sort();
            seen.borrow_mut().push((dir.to_owned(), names));
            Ok(())
        })));
        synced
    }

    #[cfg(unix)]
    #[test]
    fn a_new_directory_is_synced_into_the_parent_of_each_level_created() {
        // The directory's own fsync makes its files durable, not its entry: a
        // power loss could drop a directory just made, and the first record in it.
        let root = scratch("parents");
        create_private_dir(&root).unwrap();
        let tokens = root.join("a/b/tokens");
        let store = FileStore::new(&tokens);
        let synced = watch_directory_syncs(|_| None);
        let runtime = runtime();
        runtime.block_on(store.write("u", "{\"a\":1}")).unwrap();
        let mut parents: Vec<_> = synced
            .borrow()
            .iter()
            .filter(|(dir, _)| *dir != tokens)
            .cloned()
            .collect();
        parents.sort();
        let names = |name: &str| vec![name.to_owned()];
        assert_eq!(
            parents,
            vec![
                (root.clone(), names("a")),
                (root.join("a"), names("b")),
                (root.join("a/b"), names("tokens")),
            ]
        );
        // It exists now: only the store directory is synced.
        synced.borrow_mut().clear();
        runtime.block_on(store.write("u", "{\"a\":2}")).unwrap();
        runtime.block_on(store.lock("u", Duration::ZERO)).unwrap();
        let dirs: Vec<PathBuf> = synced.borrow().iter().map(|(dir, _)| dir.clone()).collect();
        assert_eq!(dirs, vec![tokens.clone()]);
        DIRECTORY_SYNCS.set(None);
        fs::remove_dir_all(root).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_parent_sync_that_fails_fails_and_undoes_the_creation_one_the_platform_cannot_do_does_not()
    {
        use rustix::io::Errno;
        let root = scratch("parent-fails");
        create_private_dir(&root).unwrap();
        let failing = std::rc::Rc::new(RefCell::new(Some(Errno::IO)));
        let answer = failing.clone();
        let parent = root.clone();
        let synced = watch_directory_syncs(move |dir| {
            if dir == parent {
                *answer.borrow()
            } else {
                None
            }
        });
        let tokens = root.join("a/tokens");
        let e = create_private_dir(&tokens).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::IO.raw_os_error()));
        assert!(
            !root.join("a").exists(),
            "removed, so that the retry creates and syncs it again"
        );
        *failing.borrow_mut() = None;
        create_private_dir(&tokens).unwrap();
        assert!(synced
            .borrow()
            .contains(&(root.clone(), vec!["a".to_owned()])));
        for errno in [Errno::INVAL, Errno::NOTSUP] {
            *failing.borrow_mut() = Some(errno);
            let other = root.join(format!("e{}", errno.raw_os_error()));
            create_private_dir(&other).unwrap();
            assert!(other.is_dir());
        }
        DIRECTORY_SYNCS.set(None);
        fs::remove_dir_all(root).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_parent_sync_that_fails_removes_only_the_levels_this_call_created() {
        // Another process that creates a level after this call found it
        // missing, before this call's mkdir, owns it (and may be using it).
        use rustix::io::Errno;
        let root = scratch("parent-race");
        create_private_dir(&root).unwrap();
        let theirs = root.join("a/b");
        let other = theirs.clone();
        CREATING.set(Some(Box::new(move |level: &Path| {
            if level.starts_with(&other) && !other.exists() {
                fs::create_dir_all(&other).unwrap();
            }
        })));
        let parent = root.clone();
        watch_directory_syncs(move |dir| (dir == parent).then_some(Errno::IO));
        let e = create_private_dir(&root.join("a/b/tokens")).unwrap_err();
        CREATING.set(None);
        DIRECTORY_SYNCS.set(None);
        assert_eq!(e.raw_os_error(), Some(Errno::IO.raw_os_error()));
        assert!(theirs.is_dir(), "the other process's level is left");
        assert!(!theirs.join("tokens").exists(), "this call's is removed");
        fs::remove_dir_all(root).unwrap();
    }

    /// A runtime for the store's async calls (its lock waits on tokio's timer).
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let mut random = [0u8; 6];
        getrandom::getrandom(&mut random).unwrap();
        std::env::temp_dir().join(format!("freshtoken-cli-{name}-{}", to_hex(&random)))
    }

    /// Key → file name: the table pinned by the JS (stores.file-names),
    /// Python and Kotlin file-store tests, so all four stores share names.
    fn pinned() -> Vec<(String, String)> {
        let fixed = [
            ("a", "x.61.json"),
            ("JoHn", "x.4a6f486e.json"),
            ("user@example", "x.75736572406578616d706c65.json"),
            ("x\u{e9}\u{65e5}", "x.78c3a9e697a5.json"),
            ("\u{1F511}", "x.f09f9491.json"),
        ];
        let mut table: Vec<(String, String)> = fixed
            .iter()
            .map(|(k, n)| (k.to_string(), n.to_string()))
            .collect();
        table.extend([
            ("k".repeat(60), format!("x.{}.json", "6b".repeat(60))),
            (
                "k".repeat(61),
                "h.3828098da5bc4c86c0488c22281c78f5e6c9d9699fa18cafa31a825452859529.json".into(),
            ),
            ("\u{e9}".repeat(30), format!("x.{}.json", "c3a9".repeat(30))),
            (
                "\u{e9}".repeat(31),
                "h.f299f682f8ab27d5a1e24784fb220657d1d4c52e07988895131dbc1eae0e2e55.json".into(),
            ),
        ]);
        table
    }

    #[test]
    fn names_are_those_pinned_for_every_file_store() {
        let store = FileStore::new("/d");
        for (key, name) in pinned() {
            assert_eq!(store.path_for(&key), Path::new("/d").join(&name), "{key:?}");
        }
    }

    #[test]
    fn names_match_the_npm_file_store() {
        let store = FileStore::new("/d");
        // The JS FileStore's pathFor: lowercase hex of the UTF-8 bytes.
        assert_eq!(
            store.path_for("user-42"),
            Path::new("/d/x.757365722d3432.json")
        );
        assert_eq!(store.path_for("Ä"), Path::new("/d/x.c384.json"));
        let long = "k".repeat(61);
        let expected = format!("/d/h.{}.json", to_hex(&Sha256::digest(long.as_bytes())));
        assert_eq!(store.path_for(&long), PathBuf::from(expected));
        assert!(store
            .path_for(&"k".repeat(60))
            .to_string_lossy()
            .contains("/x."));
        // Case never collides, no key escapes the directory.
        assert_ne!(store.path_for("JoHn"), store.path_for("john"));
        assert_eq!(store.path_for("../x").parent(), Some(Path::new("/d")));
    }

    #[test]
    fn a_record_that_is_not_utf8_is_refused_unchanged_and_a_new_link_replaces_it() {
        let dir = scratch("not-utf8");
        let store = FileStore::new(dir.clone());
        fs::create_dir_all(&dir).unwrap();
        let damaged = b"{\"refresh_token\":\"rt-\xff-1\"}".to_vec();
        fs::write(store.path_for("u"), &damaged).unwrap();
        let runtime = runtime();
        let refused = runtime.block_on(TokenStore::load_versioned(&store, "u"));
        let message = refused.expect_err("refused").0;
        assert!(message.contains("not UTF-8"), "{message}");
        assert!(!message.contains("rt-"), "{message}");
        assert_eq!(fs::read(store.path_for("u")).unwrap(), damaged);
        // A new link compares and swaps against the bytes' version.
        let version = runtime
            .block_on(TokenStore::load_version(&store, "u"))
            .unwrap();
        assert_eq!(version, Some(super::version(&damaged)));
        let saved = runtime.block_on(store.write_if("u", "{}", version.as_deref()));
        assert!(saved.unwrap().is_some());
        assert_eq!(store.read("u").unwrap().as_deref(), Some("{}"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writes_are_private_and_leave_no_temporary_file() {
        let dir = scratch("store");
        let store = FileStore::new(dir.join("nested"));
        assert_eq!(store.read("u").unwrap(), None);
        let runtime = runtime();
        runtime.block_on(store.write("u", "{\"a\":1}")).unwrap();
        runtime.block_on(store.write("u", "{\"a\":2}")).unwrap();
        assert_eq!(store.read("u").unwrap().as_deref(), Some("{\"a\":2}"));
        let mut names: Vec<String> = fs::read_dir(dir.join("nested"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["x.75.json", "x.75.write.lock"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&store.path_for("u")), 0o600);
            assert_eq!(mode(&dir.join("nested/x.75.write.lock")), 0o600);
            assert_eq!(mode(&dir.join("nested")), 0o700);
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_link_planted_under_a_lock_files_name_is_never_followed() {
        // In a directory others may write to, a link named as a lock file
        // would make the command create or open any file it can write.
        let dir = scratch("planted");
        fs::create_dir_all(&dir).unwrap();
        let store = FileStore::new(dir.clone());
        let target = dir.join("target-of-the-link");
        for lock in ["x.75.lock", "x.75.write.lock"] {
            std::os::unix::fs::symlink(&target, dir.join(lock)).unwrap();
        }
        let runtime = runtime();
        let wait = std::time::Duration::from_secs(5);
        // What the command says (`describe`) names the cause.
        let locked = runtime.block_on(store.lock("u", wait)).unwrap_err();
        assert!(describe(&locked).contains("not a regular file"), "{locked}");
        let written = runtime.block_on(store.save("u", "{}")).unwrap_err();
        assert!(written.0.contains("not a regular file"), "{}", written.0);
        assert!(!target.exists(), "nothing was created through the link");
        assert_eq!(store.read("u").unwrap(), None, "nothing was written");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_save_removes_the_temporary_file_a_killed_kotlin_or_python_save_left() {
        // Left, their recover() would rename it over this newer record.
        let dir = scratch("superseded");
        let store = FileStore::new(&dir);
        create_private_dir(&dir).unwrap();
        let leftover = dir.join(".x.75.json.tmp");
        let runtime = runtime();
        fs::write(&leftover, "{\"refresh_token\":\"spent\"}").unwrap();
        runtime.block_on(store.write("u", "{\"a\":1}")).unwrap();
        assert!(!leftover.exists(), "write()");
        fs::write(&leftover, "{\"refresh_token\":\"spent\"}").unwrap();
        let version = store.read_version("u").unwrap();
        let saved = runtime.block_on(store.write_if("u", "{\"a\":2}", version.as_deref()));
        assert!(saved.unwrap().is_some());
        assert!(!leftover.exists(), "write_if()");
        assert_eq!(store.read("u").unwrap().as_deref(), Some("{\"a\":2}"));
        // A directory at the name is no save's leftover: the save goes on.
        fs::create_dir(&leftover).unwrap();
        runtime.block_on(store.write("u", "{\"a\":3}")).unwrap();
        assert_eq!(store.read("u").unwrap().as_deref(), Some("{\"a\":3}"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn temporary_files_are_told_apart_by_the_store_that_writes_them() {
        let kind = |name| temp_kind(name, "x.75.json");
        assert_eq!(kind(".x.75.json.tmp"), Some(TempKind::Fixed));
        assert_eq!(
            kind(".x.75.json.0a1b2c3d-0000-4000-8000-00000000abcd.tmp"),
            Some(TempKind::Earlier)
        );
        assert_eq!(kind("x.75.json.4242.0123456789ab.tmp"), Some(TempKind::Npm));
        for other in [
            "x.75.json",
            "x.75.lock",
            "x.75.write.lock",
            ".x.7575.json.tmp",
            "x.7575.json.4242.0123456789ab.tmp",
            ".x.75.json.0A1B2C3D-0000-4000-8000-00000000ABCD.tmp",
            ".x.75.json.0a1b2c3d-0000-4000-8000.tmp",
            "x.75.json.4242.0123456789a.tmp",
            "x.75.json..0123456789ab.tmp",
            "x.75.json.42x.0123456789ab.tmp",
            ".x.75.json.4242.0123456789ab.tmp",
            ".lock-probe.4242.0123456789ab.tmp",
        ] {
            assert_eq!(kind(other), None, "{other}");
        }
    }

    #[test]
    fn their_whole_temporary_file_is_finished_whatever_its_time_says() {
        // Every save removes it first: one there is newer than the record.
        let dir = scratch("recover-fixed");
        let store = FileStore::new(&dir);
        create_private_dir(&dir).unwrap();
        let record = store.path_for("u");
        fs::write(&record, "{\"refresh_token\":\"spent\"}").unwrap();
        let fixed = dir.join(".x.75.json.tmp");
        fs::write(&fixed, "{\"refresh_token\":\"rotated\"}").unwrap();
        let earlier = dir.join(".x.75.json.0a1b2c3d-0000-4000-8000-00000000abcd.tmp");
        fs::write(&earlier, "{\"refresh_token\":\"older\"}").unwrap();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for path in [&fixed, &earlier] {
            let file = File::options().write(true).open(path).unwrap();
            file.set_modified(hour_ago).unwrap();
        }
        store.recover_locked("u", SystemTime::now()).unwrap();
        assert_eq!(
            store.read("u").unwrap().as_deref(),
            Some("{\"refresh_token\":\"rotated\"}")
        );
        assert!(!fixed.exists() && !earlier.exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn with_no_temporary_file_no_lock_is_taken() {
        // A stalled writer does not hold up a command that has nothing to finish.
        let dir = scratch("recover-none");
        let store = FileStore::new(&dir);
        create_private_dir(&dir).unwrap();
        let writer = private_options()
            .write(true)
            .open(dir.join("x.75.write.lock"))
            .unwrap();
        writer.lock().unwrap();
        let runtime = runtime();
        runtime.block_on(store.recover("u")).unwrap();
        // With one, the writer is waited for (then TimedOut).
        fs::write(dir.join(".x.75.json.tmp"), "{").unwrap();
        let e = runtime.block_on(store.recover("u")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(dir.join(".x.75.json.tmp").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_record_that_is_a_symbolic_link_is_left_with_its_temporary_files() {
        // A rename over it would replace the link, and its load refuses it.
        let dir = scratch("recover-symlink");
        let store = FileStore::new(&dir);
        create_private_dir(&dir).unwrap();
        let target = dir.join("elsewhere.json");
        fs::write(&target, "{\"refresh_token\":\"spent\"}").unwrap();
        std::os::unix::fs::symlink(&target, store.path_for("u")).unwrap();
        let fixed = dir.join(".x.75.json.tmp");
        fs::write(&fixed, "{\"refresh_token\":\"rotated\"}").unwrap();
        store.recover_locked("u", SystemTime::now()).unwrap();
        assert!(fs::symlink_metadata(store.path_for("u"))
            .unwrap()
            .is_symlink());
        assert!(fixed.exists());
        // A temporary name that is no file is no save's.
        fs::remove_file(store.path_for("u")).unwrap();
        fs::remove_file(&fixed).unwrap();
        fs::create_dir(&fixed).unwrap();
        store.recover_locked("u", SystemTime::now()).unwrap();
        assert!(fixed.is_dir());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_oversized_file_is_read_only_past_the_cap() {
        let dir = scratch("cap");
        create_private_dir(&dir).unwrap();
        let path = dir.join("big");
        fs::write(&path, vec![b'x'; 100]).unwrap();
        assert_eq!(read_capped(&path, 10).unwrap().unwrap().len(), 11);
        fs::remove_dir_all(dir).unwrap();
    }
}
