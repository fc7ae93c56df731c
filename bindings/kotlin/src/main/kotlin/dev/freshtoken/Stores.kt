package dev.freshtoken

import java.io.File
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.CharBuffer
import java.nio.charset.CharacterCodingException
import java.nio.charset.CodingErrorAction
import java.nio.channels.FileChannel
import java.nio.channels.FileLock
import java.nio.channels.OverlappingFileLockException
import java.nio.file.AccessDeniedException
import java.nio.file.AtomicMoveNotSupportedException
import java.nio.file.FileSystemException
import java.nio.file.Files
import java.nio.file.LinkOption
import java.nio.file.NoSuchFileException
import java.nio.file.Path
import java.nio.file.StandardCopyOption
import java.nio.file.StandardOpenOption
import java.nio.file.attribute.BasicFileAttributes
import java.nio.file.attribute.FileTime
import java.nio.file.attribute.PosixFilePermissions
import java.security.MessageDigest
import java.util.Base64
import java.util.TreeMap
import java.util.concurrent.CompletableFuture
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.Executors
import java.util.concurrent.ScheduledFuture
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.withContext

/**
 * A [TokenStore] for one process: write [load] and [save], and the fleet
 * members (lease, compare-and-swap versions) get their single-process
 * defaults. freshtoken then never calls `acquire`/`release`/`*Versioned`.
 *
 * Throw [HostException.Failed] (or any exception) from [load]/[save] when
 * the storage fails; the session reports [FreshTokenException.Storage] and
 * keeps a renewed record in memory until a later save succeeds. Keep
 * records out of the message: they hold refresh tokens.
 */
abstract class TokenStoreBase : TokenStore {
    /** The record saved under `key`, or null. */
    abstract override suspend fun load(key: String): String?

    /** Saves `record` under `key`, durably, before returning. */
    abstract override suspend fun save(key: String, record: String)

    /**
     * False: no lease. A fleet store answers true. Like [supportsVersions] it
     * must answer at once (a constant): freshtoken reads both once, on the
     * thread that opens a session's native object (its first call that goes
     * to the core, or `exchangeCode`), and keeps the answers for that session.
     */
    override fun supportsLease(): Boolean = false

    override suspend fun acquire(key: String, owner: String, ttlMs: Long): Boolean = true

    override suspend fun release(key: String, owner: String) {}

    /** False: no compare-and-swap versions (read once per session, see [supportsLease]). */
    override fun supportsVersions(): Boolean = false

    override suspend fun loadVersioned(key: String): VersionedRecord? =
        load(key)?.let { VersionedRecord(it, "") }

    override suspend fun saveVersioned(key: String, record: String, expected: String?): CasResult {
        save(key, record)
        return CasResult.Saved("")
    }
}

/** Records in memory: tests, demos, processes that may forget users on exit. */
open class MemoryTokenStore : TokenStoreBase() {
    private val records = ConcurrentHashMap<String, String>()

    override suspend fun load(key: String): String? = records[key]

    override suspend fun save(key: String, record: String) {
        records[key] = record
    }

    /** The record under `key` without suspending (tests). */
    fun get(key: String): String? = records[key]

    /** Removes the record under `key` (sign-out). */
    fun remove(key: String) {
        records.remove(key)
    }

    /** The keys held. */
    fun keys(): Set<String> = records.keys.toSet()
}

/**
 * One file per session key under `dir` (created on first save, mode 0600
 * where the file system has POSIX permissions). A save writes the record's
 * temporary file `.<name>.json.tmp` (one fixed name per record file: every
 * save holds the record's write lock, so one writer at a time uses it),
 * forces it to disk, renames it over the old one atomically and forces the
 * directory, so a crash leaves either the old record or the new one. A
 * failed force fails the save (a directory's only where the platform can
 * force one at all): freshtoken keeps the record and saves it again.
 *
 * File names ([fileName]) use only lowercase letters, digits and dots, so
 * two keys never share a file on a case-insensitive file system (macOS,
 * Windows, Android's shared storage): `x.` + lowercase hex of the key's
 * UTF-8 + `.json`, or `h.` + lowercase hex of its SHA-256 + `.json` for keys
 * over 60 bytes. The Python and JavaScript file stores use the same names.
 * Records written by earlier versions under the old names (`k-`/`h-` +
 * base64url, see [legacyFileName]) are still read, but only under the name
 * the directory lists for exactly that key (those names could differ only
 * in case, and a case-insensitive file system opens one for the other); the
 * old file is removed once the record is saved under the new name.
 *
 * Several processes may share the directory (an Android app's `:sync`
 * process beside its main one, several JVMs on one host): the store offers
 * the refresh lease and compare-and-swap versions, so one process at a time
 * refreshes a session, the others wait and use what it saved, and a re-link
 * made by one process is never overwritten by another's refresh (that save
 * is a [FreshTokenException.Conflict]). The lease is an exclusive
 * [FileLock] on `<name>.lock` (a POSIX record lock, which the Python store
 * and the `freshtoken` command take too), given back when its process dies
 * and after its TTL; every write holds `<name>.write.lock` for its
 * compare-and-swap; a record's version is the SHA-256 of its file's bytes
 * (its text's UTF-8, as the Python store and the `freshtoken` command
 * compute it). The lock files are empty and stay. On a network file
 * system the lock may not exclude other machines: use a database there.
 *
 * A record file that is not UTF-8 (a damaged byte) is never read as text:
 * with replacement characters its refresh token would be sent altered once
 * (`invalid_grant`) and the dead marker saved over the bytes an operator
 * could repair. [load] throws [HostException.Failed] instead;
 * [loadVersioned] answers [NOT_UTF8_RECORD], which freshtoken refuses as
 * corrupt ([FreshTokenException.Storage], nothing sent), with the version
 * of the file's bytes, so that a new link (`seed`, `exchangeCode`) replaces
 * the file, as it does any corrupt record. The file is otherwise left as it is.
 *
 * A process killed between a save's sync and its rename leaves the new
 * record (its rotated refresh token) only in the temporary file: call
 * [recover] at startup, before the first session, to finish such saves. A
 * process already running finishes the one of a key it reads: every load
 * first looks for that key's temporary file (one stat) and, if there is
 * one, does what recover() does for that key under its write lock (waiting
 * for a live writer) before it reads.
 *
 * Needs `java.nio.file` (Android 8.0, API 26, and later). An example: on
 * Android, prefer storage encrypted with a Keystore key for refresh tokens.
 */
open class FileTokenStore(directory: Path) : TokenStoreBase() {
    constructor(directory: File) : this(directory.toPath())

    /** Where the record files live. */
    val dir: Path = directory

    /** This store's own threads for its blocking file calls. */
    private val io = blockingIo()

    /** The file that holds `key`'s record. */
    fun fileFor(key: String): Path = dir.resolve(fileName(key))

    /** `key`'s lock file (empty): `<name>.lock` for the refresh lease, or `<name>.write.lock` for its writes. */
    fun lockFileFor(key: String, write: Boolean = false): Path = dir.resolve(lockName(fileName(key), write))

    override suspend fun load(key: String): String? = withContext(io) {
        finishDeadSave(key)
        readRecordBytes(key)?.let { decode(it) ?: throw HostException.Failed(NOT_UTF8_MESSAGE) }
    }

    override suspend fun save(key: String, record: String): Unit = withContext(io) {
        writing(key) { writeRecord(key, record) }
    }

    /** True: the lease is a [FileLock] on [lockFileFor]. */
    override fun supportsLease(): Boolean = true

    override suspend fun acquire(key: String, owner: String, ttlMs: Long): Boolean = withContext(io) {
        FileLeases.take(realLockFile(key, write = false), owner, ttlMs) { openLockFile(it) }
    }

    override suspend fun release(key: String, owner: String): Unit = withContext(io) {
        FileLeases.end(realLockFile(key, write = false), owner)
    }

    /** True: a record's version is the SHA-256 of its file's bytes. */
    override fun supportsVersions(): Boolean = true

    /**
     * The record and the version of its file's bytes; [NOT_UTF8_RECORD] for a
     * file that is not UTF-8. Not an exception: the core asks a new link's
     * version through this member alone, and the file could never be replaced.
     */
    override suspend fun loadVersioned(key: String): VersionedRecord? = withContext(io) {
        finishDeadSave(key)
        readRecordBytes(key)?.let { VersionedRecord(decode(it) ?: NOT_UTF8_RECORD, version(it)) }
    }

    override suspend fun saveVersioned(key: String, record: String, expected: String?): CasResult =
        withContext(io) {
            val bytes = record.toByteArray(Charsets.UTF_8)
            writing(key) {
                // Holding the lock already (a second FileLock from this JVM would throw): a
                // dead writer's newer record, finished first, is a conflict, never
                // overwritten with its temporary file removed as superseded.
                finishDeadSave(key, locked = true)
                val current = readRecordBytes(key)
                if (current?.let { version(it) } != expected) {
                    // Exactly this record: an earlier save of it renamed it, and failed at
                    // forcing the directory (or timed out). freshtoken takes such a
                    // conflict as saved: make the rename durable first.
                    if (current != null && current.contentEquals(bytes)) forceSaved()
                    CasResult.Conflict
                } else {
                    writeRecord(key, record)
                    CasResult.Saved(version(bytes))
                }
            }
        }

    /**
     * Finishes or removes the saves that a killed process left half done.
     * Call it at startup, before the first session on this directory.
     *
     * A save writes `.<name>.json.tmp`, forces it to disk and renames it over
     * `<name>.json`; a process killed between the two leaves the new record,
     * and with it the rotated refresh token, only in that temporary file. The
     * next start would read the old record and send the spent refresh token:
     * the server sees it reused and the user must re-link.
     *
     * No time is compared. Every save holds the record's write lock and
     * first removes what is at its temporary file's name (a killed save's,
     * which it supersedes), so a temporary file that exists was written
     * after the record file's last successful save: any later save would have
     * replaced it and renamed it. For each record file with temporary files,
     * holding its write lock (`<name>.write.lock`, which every save of every
     * process takes, so none is writing one meanwhile; a save in progress is
     * waited for), a whole `.<name>.json.tmp` (one JSON object, as the core
     * reads it) is forced to disk (a save killed before its own force left it
     * in the page cache only) and renamed over the record file, and one that
     * is not whole (a write cut off) is removed; then the directory is forced.
     *
     * Earlier versions (and the Python store before the same change) wrote
     * `.<name>.json.<uuid>.tmp`. Those are still recovered, under the same
     * lock, when the record has no `.<name>.json.tmp`: the newest whole one
     * at least as new as the record file (modification time) is renamed
     * over it and the others are removed. That comparison cannot order two
     * saves within a file system's timestamp granularity (1–2 s on HFS+,
     * FAT, some NFS/SMB servers) or across a step back of the wall clock, so
     * this store narrows it to files written before the upgrade: its first
     * save of a record removes that record's `<uuid>` files (those the
     * directory listed when this store first read it), and any beside a
     * `.<name>.json.tmp` are removed (superseded by it). Call recover() once
     * after upgrading, before the first session, as at every start.
     *
     * Only this store's own temporary files are touched: those of the
     * JavaScript `FileStore` and the `freshtoken` command
     * (`<name>.json.<pid>.<hex>.tmp`) are left alone. The Python
     * `FileTokenStore` writes this store's names (and holds the same lock),
     * so each recovers the other's. A missing directory is nothing to do.
     *
     * @throws HostException.Failed when the directory cannot be listed, or a
     *   file cannot be locked, finished or removed (after every other record
     *   file was tried); the message names no file.
     */
    @Throws(HostException::class)
    suspend fun recover(): RecoverResult = withContext(io) { recoverSaves() }

    /** [recover], blocking the calling thread. */
    @Throws(HostException::class, InterruptedException::class)
    fun recoverBlocking(): RecoverResult = blocking { recover() }

    /** [recover] as a [CompletableFuture]. */
    fun recoverAsync(): CompletableFuture<RecoverResult> = future { recover() }

    /** [recover]'s work, on a thread that may block. */
    private fun recoverSaves(): RecoverResult {
        // Record file name -> names of its temporary files (sorted: a stable order of locks).
        val byTarget = TreeMap<String, MutableList<String>>()
        try {
            Files.newDirectoryStream(dir).use { entries ->
                for (entry in entries) {
                    val name = entry.fileName.toString()
                    val target = ANY_TEMP_NAME.matchEntire(name)?.groupValues?.get(1) ?: continue
                    byTarget.getOrPut(target) { mutableListOf() } += name
                }
            }
        } catch (_: NoSuchFileException) {
            return RecoverResult(0, 0)
        } catch (e: IOException) {
            throw HostException.Failed("cannot list the record directory (${e.javaClass.simpleName})")
        }
        if (byTarget.isEmpty()) return RecoverResult(0, 0)
        val real = try {
            dir.toRealPath()
        } catch (e: IOException) {
            throw HostException.Failed("cannot open the record directory (${e.javaClass.simpleName})")
        }
        val recovery = Recovery()
        for ((target, temps) in byTarget) {
            recovery.attempt("cannot finish an interrupted save") {
                holdingWriteLock(real.resolve(lockName(target, write = true))) { recovery.finish(target, temps) }
            }
        }
        if (recovery.completed > 0) recovery.attempt("cannot make the finished saves durable") { forceDirectory() }
        recovery.failure?.let { throw it }
        return RecoverResult(recovery.completed, recovery.removed)
    }

    /** One [recover] call's counts and its first failure. */
    private inner class Recovery {
        var completed = 0
        var removed = 0
        var failure: HostException? = null

        /** Runs `block`; keeps its failure (the first one) and goes on. */
        inline fun attempt(what: String, block: () -> Unit) {
            try {
                block()
            } catch (e: HostException) {
                if (failure == null) failure = e
            } catch (e: IOException) {
                if (failure == null) failure = HostException.Failed("$what (${e.javaClass.simpleName})")
            }
        }

        /**
         * Finishes `target`'s interrupted save and removes its other temporary
         * files (call holding its write lock: none of them is being written).
         * One that is gone was renamed by its writer after all; one that is
         * not a regular file is not a save's (the next save removes it).
         */
        fun finish(target: String, temps: List<String>) {
            val present = temps.mapNotNull { name ->
                val path = dir.resolve(name)
                val attributes = try {
                    Files.readAttributes(path, BasicFileAttributes::class.java, LinkOption.NOFOLLOW_LINKS)
                } catch (_: NoSuchFileException) {
                    null
                }
                attributes?.takeIf { it.isRegularFile }?.let { path to it.lastModifiedTime() }
            }.sortedByDescending { it.second }
            val targetPath = dir.resolve(target)
            val fixed = dir.resolve(tempName(target))
            val done = if (present.any { it.first == fixed }) {
                // Written after the record file's last save (see recover): no time to compare. An
                // earlier version's file beside it is an older save's, superseded.
                fixed.takeIf { isWholeRecord(it) }
            } else {
                // Only earlier versions' `<uuid>` files: ordered by modification time (see recover).
                val current: FileTime? = try {
                    Files.getLastModifiedTime(targetPath)
                } catch (_: NoSuchFileException) {
                    null
                }
                // Newest first: past the first one older than the record file, all are older.
                present.asSequence()
                    .takeWhile { (_, modified) -> current == null || modified >= current }
                    .firstOrNull { (path, _) -> isWholeRecord(path) }
                    ?.first
            }
            if (done != null) {
                attempt("cannot finish an interrupted save") {
                    // A save killed before its force leaves a whole record in the page cache
                    // only: renamed as it is, a power loss could leave the record file empty.
                    // Left in place when that fails.
                    if (forceFile(done)) {
                        replace(done, targetPath)
                        completed++
                    }
                }
            }
            for ((path, _) in present) {
                if (path == done) continue
                attempt("cannot remove an interrupted save's temporary file") {
                    if (Files.deleteIfExists(path)) removed++
                }
            }
        }
    }

    /**
     * Before a read of `key`'s record: finishes a save of it whose writer died
     * between forcing its temporary file and renaming it, as [recover] does.
     * A process that started before that death never runs recover() again:
     * reading the record file, it would send the spent refresh token of the
     * write-ahead marker there, and its next save would remove the rotated
     * record as superseded.
     *
     * One stat of `.<name>.json.tmp` when there is none (no listing, no
     * lock). When there is one, under `key`'s write lock (taken here unless
     * `locked`: the caller holds it), which every writer holds for as long
     * as its temporary file exists: a live writer is waited for, and what is
     * left then is a dead writer's, forced and renamed over the record file
     * when whole or removed when cut off (with any earlier version's beside
     * it), then the directory is forced.
     *
     * @throws HostException.Failed when that fails (the step, never a file):
     *   the record file may hold the spent refresh token, and is never read instead.
     */
    private fun finishDeadSave(key: String, locked: Boolean = false) {
        val target = fileName(key)
        val present = try {
            Files.readAttributes(dir.resolve(tempName(target)), BasicFileAttributes::class.java, LinkOption.NOFOLLOW_LINKS)
                .isRegularFile
        } catch (_: NoSuchFileException) {
            false
        } catch (e: IOException) {
            throw HostException.Failed("cannot look for an interrupted save (${e.javaClass.simpleName})")
        }
        if (!present) return // the common path
        val recovery = Recovery()
        recovery.attempt("cannot finish an interrupted save") {
            val finish = {
                // Listed under the lock: its writer may have renamed it since.
                val temps = Files.newDirectoryStream(dir).use { entries ->
                    entries.map { it.fileName.toString() }
                        .filter { ANY_TEMP_NAME.matchEntire(it)?.groupValues?.get(1) == target }
                }
                recovery.finish(target, temps)
                if (recovery.completed + recovery.removed > 0) {
                    recovery.attempt("cannot make the finished saves durable") { forceDirectory() }
                }
            }
            if (locked) finish() else writing(key, finish)
        }
        recovery.failure?.let { throw it }
    }

    /**
     * Whether `file` holds a whole record: one JSON object, as the core's
     * JSON reader finds it (a write cut off is not one; a whole one never
     * forced to disk reads back whole all the same, so [recover] forces it
     * before its rename). Not checked as UTF-8: a damaged byte does not make
     * a save incomplete ([load] refuses that file later).
     */
    private fun isWholeRecord(file: Path): Boolean {
        val bytes = read(file) ?: return false
        return bytes.size <= MAX_FILE_BYTES && isWholeRecordFile(bytes)
    }

    /**
     * Runs `block` holding `key`'s write lock, which every write of every
     * process takes: a compare-and-swap reads and writes with no other write
     * between.
     */
    private fun <T> writing(key: String, block: () -> T): T = holdingWriteLock(realLockFile(key, write = true), block)

    /**
     * Runs `block` holding the write lock file `file` (under the directory's
     * real path). In this JVM the writers of a file wait on a monitor first
     * (a second lock on the file from one JVM throws instead of waiting).
     */
    private fun <T> holdingWriteLock(file: Path, block: () -> T): T {
        synchronized(WRITE_MONITORS[Math.floorMod(file.toString().hashCode(), WRITE_MONITORS.size)]) {
            val channel = try {
                openLockFile(file)
            } catch (e: IOException) {
                throw HostException.Failed("cannot open the record's lock file (${e.javaClass.simpleName})")
            }
            channel.use {
                val lock = try {
                    it.lock()
                } catch (e: IOException) {
                    throw HostException.Failed("cannot lock the record file (${e.javaClass.simpleName})")
                }
                return lock.use { block() }
            }
        }
    }

    /**
     * `key`'s lock file under the directory's real path: one JVM must lock a
     * file through one name only, since closing any channel on a file may
     * drop every lock the JVM holds on it (see [FileLock]).
     */
    private fun realLockFile(key: String, write: Boolean): Path = try {
        createDirectory()
        dir.toRealPath().resolve(lockFileFor(key, write).fileName)
    } catch (e: IOException) {
        throw HostException.Failed("cannot open the record directory (${e.javaClass.simpleName})")
    }

    private fun openLockFile(file: Path): FileChannel = FileChannel.open(file, lockOptions, *ownerOnly())

    /** The bytes of `key`'s file (today's name, else the earlier one), or null. */
    private fun readRecordBytes(key: String): ByteArray? {
        val file = fileFor(key)
        // Today's name again when the earlier one gives nothing: a save (this process's or
        // another's) may have moved the record since the first read, and it writes today's
        // file before it removes the old one and its listed name.
        return read(file) ?: (legacyFile(key)?.let { read(it) } ?: read(file))
    }

    /**
     * Writes `key`'s record through its temporary file (call holding its
     * write lock): what is at that name (a killed save's, or anything else)
     * is removed first, never followed if a link, and the file is created new.
     */
    private fun writeRecord(key: String, record: String) {
        val target = fileFor(key)
        val name = target.fileName.toString()
        val temp = dir.resolve(tempName(name))
        val leftovers = try {
            leftovers()
        } catch (_: HostException) {
            null
        }
        try {
            createDirectory()
            // Killed saves of this record: this save supersedes them.
            Files.deleteIfExists(temp)
            leftovers?.let { removeLegacyTemps(it, name) }
            FileChannel.open(temp, createOptions, *ownerOnly()).use { channel ->
                val buffer = ByteBuffer.wrap(record.toByteArray(Charsets.UTF_8))
                while (buffer.hasRemaining()) channel.write(buffer)
                forceTo(channel, temp)
            }
            replace(temp, target)
        } catch (e: IOException) {
            runCatching { Files.deleteIfExists(temp) }
            throw HostException.Failed("cannot write the record file (${e.javaClass.simpleName})")
        }
        forceSaved()
        // The record is durable under its new name: the old file is stale.
        val names = leftovers?.records
        val old = legacyFileName(key)
        if (!names.isNullOrEmpty() && names.remove(old)) {
            try {
                Files.deleteIfExists(dir.resolve(old))
                forceDirectory()
            } catch (_: IOException) {
                // Harmless: the new file is read first.
            }
        }
    }

    /** Renames `temp` over `target`, atomically where the file system can. */
    private fun replace(temp: Path, target: Path) {
        try {
            Files.move(temp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING)
        } catch (e: AtomicMoveNotSupportedException) {
            Files.move(temp, target, StandardCopyOption.REPLACE_EXISTING)
        }
    }

    /** The file's bytes, read to at most [MAX_FILE_BYTES] + 1 (freshtoken refuses a bigger one). */
    private fun read(file: Path): ByteArray? = try {
        readAtMost(file, MAX_FILE_BYTES + 1)
    } catch (e: NoSuchFileException) {
        null
    } catch (e: IOException) {
        throw HostException.Failed("cannot read the record file (${e.javaClass.simpleName})")
    }

    /**
     * The file an earlier version wrote `key`'s record to, if the directory
     * lists exactly that name. (Opening the name directly would, on a
     * case-insensitive file system, open another key's file whose old name
     * differs only in case: `JoHn`'s for `Jobn`.)
     */
    private fun legacyFile(key: String): Path? {
        val names = leftovers().records
        if (names.isEmpty()) return null
        return legacyFileName(key).takeIf { it in names }?.let { dir.resolve(it) }
    }

    /**
     * What earlier versions left in [dir], exactly as listed: record files
     * under the old names, and save temporary files `.<name>.json.<uuid>.tmp`.
     */
    private class Leftovers(val records: MutableSet<String>, val temps: MutableSet<String>)

    private val legacyLock = Any()
    private var legacy: Leftovers? = null

    /** [Leftovers], listed once (nothing of this version creates them). */
    private fun leftovers(): Leftovers = synchronized(legacyLock) {
        legacy ?: listLegacy().also { legacy = it }
    }

    private fun listLegacy(): Leftovers {
        val leftovers = Leftovers(ConcurrentHashMap.newKeySet(), ConcurrentHashMap.newKeySet())
        try {
            Files.newDirectoryStream(dir).use { entries ->
                for (entry in entries) {
                    val name = entry.fileName.toString()
                    if (LEGACY_NAME.matches(name)) leftovers.records += name
                    if (LEGACY_TEMP_NAME.matches(name)) leftovers.temps += name
                }
            }
        } catch (_: NoSuchFileException) {
        } catch (e: IOException) {
            throw HostException.Failed("cannot list the record directory (${e.javaClass.simpleName})")
        }
        return leftovers
    }

    /**
     * Removes the record file `recordName`'s `<uuid>` temporary files that
     * `leftovers` lists (call holding its write lock, in a save, which they
     * predate). Best effort: [recover] removes any left beside a fixed one.
     */
    private fun removeLegacyTemps(leftovers: Leftovers, recordName: String) {
        if (leftovers.temps.isEmpty()) return
        for (name in leftovers.temps.filter { LEGACY_TEMP_NAME.matchEntire(it)?.groupValues?.get(1) == recordName }) {
            runCatching { Files.deleteIfExists(dir.resolve(name)) }
            leftovers.temps.remove(name)
        }
    }

    /**
     * Forces `channel`, open on `file` (a temporary file, [dir], or the
     * parent of a directory [createDirectory] made), to disk.
     * A test hook: tests watch it, or make it fail as a failing disk would.
     */
    internal var forceTo: (FileChannel, Path) -> Unit = { channel, _ -> channel.force(true) }

    /** Forces the regular file `file` to disk (never through a link); false if it is gone. */
    private fun forceFile(file: Path): Boolean {
        // Writable: Windows forces no file opened for reading only.
        val channel = try {
            FileChannel.open(file, StandardOpenOption.WRITE, LinkOption.NOFOLLOW_LINKS)
        } catch (_: NoSuchFileException) {
            return false
        }
        channel.use { forceTo(it, file) }
        return true
    }

    /**
     * Creates [dir] and its missing ancestors, one level at a time, then
     * forces the parent of each level this call created: forcing [dir] makes
     * the files in it durable, not its entry in its parent, so a power loss
     * could drop a new directory and the first record saved in it (a rotated
     * refresh token). A level that exists already (another process may have
     * just made it) is not this call's. If a force fails
     * ([HostException.Failed]), the levels this call created are removed
     * again (best effort), so that the retry creates and forces them anew;
     * no other process's is.
     */
    private fun createDirectory() {
        val missing = generateSequence(dir.toAbsolutePath().normalize()) { it.parent }.takeWhile { !Files.isDirectory(it) }.toList()
        val created = ArrayDeque<Path>() // deepest first
        for (level in missing.asReversed()) {
            creating(level)
            // Marked before it exists: another store of this JVM that finds it
            // from now on forces it too (see [forceUnforcedLevels]).
            unforcedLevels.add(level)
            try {
                Files.createDirectory(level)
                created.addFirst(level)
            } catch (e: java.nio.file.FileAlreadyExistsException) {
                if (!Files.isDirectory(level)) throw e
            } catch (e: IOException) {
                unforcedLevels.remove(level)
                throw e
            }
        }
        try {
            for (level in created) {
                level.parent?.let { forceDirectory(it) }
                unforcedLevels.remove(level)
            }
        } catch (e: IOException) {
            for (level in created) {
                if (runCatching { Files.delete(level) }.isFailure) break
                unforcedLevels.remove(level)
            }
            throw HostException.Failed("cannot make the record directory durable (${e.javaClass.simpleName})")
        }
    }

    /**
     * Forces the parent of each level of [dir] still in [unforcedLevels]:
     * another store of this JVM may have created it a moment ago and not
     * forced it yet, or failed to and could not remove it (a record of this
     * store is in it now), and this store's records would be lost with it.
     */
    private fun forceUnforcedLevels() {
        val absolute = dir.toAbsolutePath().normalize()
        val real by lazy { runCatching { dir.toRealPath() }.getOrDefault(absolute) } // a link may name it
        for (level in unforcedLevels.toList()) {
            if (!absolute.startsWith(level)) {
                val realLevel = runCatching { level.toRealPath() }.getOrNull()
                if (realLevel == null || !real.startsWith(realLevel)) continue
            }
            level.parent?.let { forceDirectory(it) }
            unforcedLevels.remove(level)
        }
    }

    /**
     * Called before [createDirectory] creates the level `path`, found missing.
     * A test hook: tests create it there, as another process could.
     */
    internal var creating: (Path) -> Unit = {}

    /**
     * Forces the directory `path` ([dir] by default), making the renames (and
     * removals) in it durable. Throws IOException when that fails, unless the
     * platform cannot do it at all (see [cannotForceDirectory]).
     */
    private fun forceDirectory(path: Path = dir) {
        try {
            FileChannel.open(path, StandardOpenOption.READ).use { forceTo(it, path) }
        } catch (_: UnsupportedOperationException) {
            // A file system without file channels: nothing to force.
        } catch (e: IOException) {
            if (!cannotForceDirectory(e)) throw e
        }
    }

    /**
     * [forceDirectory] after a save's rename: a failure fails the save, as
     * the rename may not outlive a crash, and the old record, whose refresh
     * token is spent, come back. freshtoken keeps the record and saves it again.
     */
    private fun forceSaved() {
        try {
            forceDirectory()
            if (unforcedLevels.isNotEmpty()) forceUnforcedLevels()
        } catch (e: IOException) {
            throw HostException.Failed("cannot make the record file durable (${e.javaClass.simpleName})")
        }
    }

    private fun ownerOnly(): Array<java.nio.file.attribute.FileAttribute<*>> =
        if (posix) arrayOf(PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")))
        else emptyArray()

    private val posix: Boolean by lazy {
        runCatching { "posix" in dir.fileSystem.supportedFileAttributeViews() }.getOrDefault(false)
    }

    companion object {
        /**
         * The directory levels this JVM's file stores created (absolute paths)
         * whose entry in their parent is not known durable yet: the creating
         * store's force is in flight, or failed and the level could not be
         * removed (another store's record is in it). Every save into one
         * forces its parent too before it returns. A level is marked before
         * its creation, and stays marked when it is found made (another store
         * of this JVM may be making it): a later save forces its parent once.
         */
        private val unforcedLevels: MutableSet<Path> = java.util.concurrent.ConcurrentHashMap.newKeySet()

        private val createOptions = setOf(
            StandardOpenOption.CREATE_NEW,
            StandardOpenOption.WRITE,
        )

        private val lockOptions = setOf(
            StandardOpenOption.CREATE,
            StandardOpenOption.WRITE,
        )

        /**
         * The errors of opening or forcing a directory that mean the platform
         * cannot do it at all, never that this write failed (the Python and
         * JavaScript stores judge them by errno): [AccessDeniedException]
         * (Windows opens no directory as a file, and POSIX none without read
         * permission, which can never be forced), and the C library's text
         * (all Java reports of the errno) of EISDIR, EINVAL, ENOTSUP and
         * EOPNOTSUPP, EPERM, EACCES, EBADF (file systems that refuse a
         * directory's fsync, or fsync only writable descriptors, which a
         * directory never is) and ENOTTY (macOS's F_FULLFSYNC where a file
         * system has none), as glibc, musl, bionic (Android) and macOS word
         * them. Anything else (EIO, ENOSPC, EROFS from a file system
         * remounted read-only after an error) means the rename may not be on
         * disk. A C library answering in another language makes these
         * failures too: a save then fails rather than pass unforced.
         */
        private fun cannotForceDirectory(e: IOException): Boolean =
            e is AccessDeniedException || (if (e is FileSystemException) e.reason else e.message) in NO_DIRECTORY_FORCE

        private val NO_DIRECTORY_FORCE = setOf(
            "Is a directory",
            "Invalid argument",
            "Operation not supported",
            "Operation not supported on socket",
            "Operation not supported on transport endpoint",
            "Not supported",
            "Operation not permitted",
            "Permission denied",
            "Bad file descriptor",
            "Inappropriate ioctl for device",
        )

        /** The monitors this JVM's writers wait on, by lock file (striped). */
        private val WRITE_MONITORS = Array(64) { Any() }

        /**
         * A record's version: the SHA-256 of its file's bytes (its text's
         * UTF-8), lowercase hex. A rewrite of the same text is the same
         * record; a file that is not UTF-8 has one too, so a new link can replace it.
         */
        private fun version(bytes: ByteArray): String = hex(MessageDigest.getInstance("SHA-256").digest(bytes))

        /**
         * The most of a record file read: well above the largest record
         * freshtoken writes (256 KiB) and an [EncryptedStore] envelope of one.
         */
        const val MAX_FILE_BYTES = 1024 * 1024

        /**
         * What [loadVersioned] answers for a record file that is not UTF-8:
         * not JSON, so freshtoken refuses it as corrupt; it says why to a direct caller.
         */
        const val NOT_UTF8_RECORD = "freshtoken: the record file is not UTF-8"

        /** [load]'s error for a record file that is not UTF-8 (nothing of the file in it). */
        private const val NOT_UTF8_MESSAGE =
            "cannot read the record: the file is not UTF-8 (left unchanged; a re-link replaces it)"

        /**
         * `bytes` as text, or null if they are not UTF-8 (strictly: no
         * replacement characters). A file cut at the cap may end inside a
         * character: that tail is left out (freshtoken refuses the text as
         * too large all the same).
         */
        private fun decode(bytes: ByteArray): String? {
            val decoder = Charsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT)
            val complete = bytes.size <= MAX_FILE_BYTES
            val text = CharBuffer.allocate(bytes.size) // UTF-8 never decodes to more chars than bytes
            if (decoder.decode(ByteBuffer.wrap(bytes), text, complete).isError) return null
            if (complete && decoder.flush(text).isError) return null
            return String(text.array(), 0, text.position()) // not flip(): its return type differs on older Android
        }

        /** The first `limit` bytes of `file` (InputStream.readNBytes needs Android 13). */
        private fun readAtMost(file: Path, limit: Int): ByteArray = Files.newInputStream(file).use { input ->
            val out = java.io.ByteArrayOutputStream()
            val chunk = ByteArray(8192)
            while (out.size() < limit) {
                val n = input.read(chunk, 0, minOf(chunk.size, limit - out.size()))
                if (n < 0) break
                out.write(chunk, 0, n)
            }
            out.toByteArray()
        }

        /** A record file name of today (group 1 in the temporary file names below). */
        private const val RECORD_NAME = "((?:x\\.(?:[0-9a-f]{2}){0,60}|h\\.[0-9a-f]{64})\\.json)"

        private const val UUID_PART = "\\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

        /** The temporary file a save of the record file `recordName` writes: `.<name>.json.tmp`. */
        private fun tempName(recordName: String): String = ".$recordName.tmp"

        /** An earlier version's temporary file, `.<record file name>.<UUID>.tmp`; group 1 is the record file's name. */
        private val LEGACY_TEMP_NAME = Regex("\\.$RECORD_NAME$UUID_PART\\.tmp")

        /** Either this version's temporary file ([tempName]) or an earlier one's; group 1 is the record file's name. */
        private val ANY_TEMP_NAME = Regex("\\.$RECORD_NAME(?:$UUID_PART)?\\.tmp")

        /** A lock file's name beside the record file `recordName`: `<name>.lock`, or `<name>.write.lock`. */
        private fun lockName(recordName: String, write: Boolean): String =
            recordName.removeSuffix(".json") + if (write) ".write.lock" else ".lock"

        /** The longest key (in UTF-8 bytes) whose hex is the name; longer keys are hashed. */
        private const val MAX_KEY_BYTES = 60

        /** The old names: `k-` or `h-` and base64url, no extension. Never one of today's names. */
        private val LEGACY_NAME = Regex("[kh]-[A-Za-z0-9_-]*")

        /**
         * `x.` + lowercase hex of the key's UTF-8 + `.json` (at most 127
         * characters); for keys over 60 bytes `h.` + lowercase hex of
         * SHA-256(UTF-8) + `.json`. Only `a-z`, `0-9` and dots: distinct
         * keys give names that differ under case folding too. The same names
         * as the Python and JavaScript file stores.
         *
         * @throws IllegalArgumentException if `key` holds a lone UTF-16
         *   surrogate (it has no UTF-8, and would share a name with another key).
         */
        fun fileName(key: String): String {
            val bytes = utf8(key)
            if (bytes.size <= MAX_KEY_BYTES) return "x." + hex(bytes) + ".json"
            return "h." + hex(MessageDigest.getInstance("SHA-256").digest(bytes)) + ".json"
        }

        /**
         * The name earlier versions used: `k-` + base64url(key), or `h-` +
         * base64url(SHA-256(key)) when that was longer than 120 characters.
         * Mixed case: on a case-insensitive file system two keys could share one.
         */
        fun legacyFileName(key: String): String {
            val encoder = Base64.getUrlEncoder().withoutPadding()
            val plain = "k-" + encoder.encodeToString(key.toByteArray(Charsets.UTF_8))
            if (plain.length <= 120) return plain
            val digest = MessageDigest.getInstance("SHA-256").digest(key.toByteArray(Charsets.UTF_8))
            return "h-" + encoder.encodeToString(digest)
        }

        private const val HEX = "0123456789abcdef"

        private fun utf8(key: String): ByteArray {
            val encoded = try {
                Charsets.UTF_8.newEncoder().encode(CharBuffer.wrap(key))
            } catch (_: CharacterCodingException) {
                throw IllegalArgumentException("a FileTokenStore key must not contain a lone UTF-16 surrogate")
            }
            return ByteArray(encoded.remaining()).also { encoded.get(it) }
        }

        private fun hex(bytes: ByteArray): String = buildString(bytes.size * 2) {
            for (b in bytes) {
                append(HEX[(b.toInt() shr 4) and 15])
                append(HEX[b.toInt() and 15])
            }
        }
    }
}

/** What [FileTokenStore.recover] did. */
data class RecoverResult(
    /** Interrupted saves finished: a temporary file renamed over its record file. */
    val completed: Int,
    /**
     * Temporary files removed: not a whole record, or an earlier version's
     * superseded one (beside a newer one, or older than its record file).
     */
    val removed: Int,
)

/**
 * The refresh leases this JVM holds on [FileTokenStore] lock files, by real
 * path: shared by every store on a directory, however it was spelt, as the
 * locks are. An exclusive [FileLock], taken without waiting; given back by
 * [end], by its TTL, or by the OS when the process dies.
 */
internal object FileLeases {
    private class Lease(val owner: String, val channel: FileChannel, val lock: FileLock) {
        var expiry: ScheduledFuture<*>? = null

        /** Counts the TTLs set: a timer ends the lease only if its TTL is the last one. */
        var generation = 0L
    }

    /**
     * Test hook: runs on the timer thread when a TTL ends, given the call that
     * ends it (a test holds a timer that fired while the lease is renewed).
     */
    @Volatile internal var onExpiry: ((end: () -> Unit) -> Unit)? = null

    private val held = HashMap<String, Lease>()

    private val timer = Executors.newSingleThreadScheduledExecutor { task ->
        Thread(task, "freshtoken-file-leases").apply { isDaemon = true }
    }

    /** Takes the lease on `file` for `owner` (renewed if it holds it); false if another holds it. */
    fun take(file: Path, owner: String, ttlMs: Long, open: (Path) -> FileChannel): Boolean {
        val path = file.toString()
        synchronized(held) { return takeLocked(path, file, owner, ttlMs, open) }
    }

    private fun takeLocked(path: String, file: Path, owner: String, ttlMs: Long, open: (Path) -> FileChannel): Boolean {
        held[path]?.let { lease ->
            if (lease.owner != owner) return false
            expireIn(path, lease, ttlMs)
            return true
        }
        val channel = try {
            open(file)
        } catch (e: IOException) {
            throw HostException.Failed("cannot open the lease file (${e.javaClass.simpleName})")
        }
        // No lock of this JVM is on the file (held has none): closing the channel releases nothing else.
        val lock = try {
            channel.tryLock()
        } catch (_: OverlappingFileLockException) {
            null
        } catch (e: IOException) {
            channel.close()
            throw HostException.Failed("cannot lock the lease file (${e.javaClass.simpleName})")
        }
        if (lock == null) {
            channel.close()
            return false
        }
        val lease = Lease(owner, channel, lock)
        held[path] = lease
        expireIn(path, lease, ttlMs)
        return true
    }

    /** Gives the lease on `file` back, if `owner` holds it. */
    fun end(file: Path, owner: String) {
        val path = file.toString()
        synchronized(held) { held[path]?.takeIf { it.owner == owner } }?.let { giveBack(path, it) }
    }

    /**
     * (Re)starts the TTL (call holding `held`'s lock). `cancel` cannot stop a
     * timer whose task already started (it may be waiting for that lock): the
     * new generation tells [giveBack] that its TTL was renewed, or the renewed
     * lease would be given back.
     */
    private fun expireIn(path: String, lease: Lease, ttlMs: Long) {
        lease.expiry?.cancel(false)
        val generation = ++lease.generation
        val end = { giveBack(path, lease, generation) }
        lease.expiry = timer.schedule({
            val hook = onExpiry
            if (hook == null) end() else hook(end)
        }, ttlMs.coerceAtLeast(0), TimeUnit.MILLISECONDS)
    }

    /**
     * Ends `lease` if it is still the one held on `path`: by its release (no
     * `generation`), or by its TTL (the `generation` it was set in), unless
     * the lease was renewed since.
     */
    private fun giveBack(path: String, lease: Lease, generation: Long? = null) {
        synchronized(held) {
            if (held[path] !== lease) return
            // A timer that fired as its owner renewed the lease: the new TTL stands.
            if (generation != null && generation != lease.generation) return
            held.remove(path)
            lease.expiry?.cancel(false)
            runCatching { lease.lock.release() }
            runCatching { lease.channel.close() }
        }
    }
}

/**
 * An example of a fleet store (DESIGN point 9), in memory: a [TokenStore]
 * with a refresh lease and compare-and-swap versions, shared by several
 * [TokenClient]s as if they were several processes. A real fleet store does
 * the same against shared storage (a database row with a version column and
 * a lease column, Redis `SET NX PX` plus a version, …):
 *
 * - [supportsLease] and [supportsVersions] answer true; freshtoken then
 *   takes the lease before every refresh, re-reads with [loadVersioned],
 *   saves with [saveVersioned] and releases.
 * - [acquire] succeeds when nobody else holds an unexpired lease on the key
 *   (the same owner may take it again, which extends it) and fails, without
 *   waiting, otherwise. A lease expires `ttlMs` after it was taken, by the
 *   store's clock (here the system clock): a holder that dies delays the
 *   others by at most that.
 * - [release] removes the lease only if `owner` still holds it.
 * - Every write gets a new version. [saveVersioned] writes only when the
 *   stored version is still `expected` (null: nothing stored), atomically
 *   with the check, and otherwise answers [CasResult.Conflict] and writes
 *   nothing. A plain [save] also bumps the version, so a compare-and-swap
 *   based on what was there before it conflicts.
 * - A store whose records can be deleted (a sign-out) must never hand out a
 *   version again: counted from 1 anew after a delete, a process still
 *   holding a version from before could compare-and-swap over the next
 *   link's record. Start each new record at a random number (the npm
 *   package's Redis and PostgreSQL stores start in [2^32, 2^32 + 2^52)).
 *   This example never deletes, so it counts from 1.
 *
 * Thread-safe: one lock guards records, versions and leases, and nothing
 * suspends while holding it. The records live only as long as this object.
 */
open class InMemoryFleetStore(
    /** The store's clock for lease expiry, in Unix ms. */
    private val nowMs: () -> Long = System::currentTimeMillis,
) : TokenStore {
    private class Entry(val record: String, val version: Long)
    private class Lease(val owner: String, val untilMs: Long)

    private val lock = Any()
    private val records = HashMap<String, Entry>()
    private val leases = HashMap<String, Lease>()

    override fun supportsLease(): Boolean = true

    override fun supportsVersions(): Boolean = true

    override suspend fun load(key: String): String? = synchronized(lock) { records[key]?.record }

    override suspend fun save(key: String, record: String) {
        synchronized(lock) { put(key, record) }
    }

    override suspend fun acquire(key: String, owner: String, ttlMs: Long): Boolean = synchronized(lock) {
        val now = nowMs()
        val held = leases[key]
        if (held != null && held.owner != owner && held.untilMs > now) return false
        val ttl = ttlMs
        val until = if (now > Long.MAX_VALUE - ttl) Long.MAX_VALUE else now + ttl
        leases[key] = Lease(owner, until)
        true
    }

    override suspend fun release(key: String, owner: String) {
        synchronized(lock) {
            if (leases[key]?.owner == owner) leases.remove(key)
        }
    }

    override suspend fun loadVersioned(key: String): VersionedRecord? = synchronized(lock) {
        records[key]?.let { VersionedRecord(it.record, it.version.toString()) }
    }

    override suspend fun saveVersioned(key: String, record: String, expected: String?): CasResult = synchronized(lock) {
        if (records[key]?.version?.toString() != expected) return CasResult.Conflict
        CasResult.Saved(put(key, record).toString())
    }

    /** Writes `record` with the next version (call with the lock held). */
    private fun put(key: String, record: String): Long {
        val version = (records[key]?.version ?: 0L) + 1
        records[key] = Entry(record, version)
        return version
    }

    /** The record under `key` without suspending (tests). */
    fun get(key: String): String? = synchronized(lock) { records[key]?.record }

    /** The version of the record under `key`, or null (tests). */
    fun version(key: String): String? = synchronized(lock) { records[key]?.version?.toString() }

    /** Who holds an unexpired lease on `key`, or null (tests). */
    fun leaseHolder(key: String): String? = synchronized(lock) {
        leases[key]?.takeIf { it.untilMs > nowMs() }?.owner
    }
}
