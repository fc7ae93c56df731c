package dev.freshtoken.support

import dev.freshtoken.CasResult
import dev.freshtoken.FileTokenStore
import dev.freshtoken.SeedOptions
import dev.freshtoken.TokenClient
import dev.freshtoken.TokenClientOptions
import java.nio.ByteBuffer
import java.nio.channels.FileChannel
import java.nio.file.Path
import java.nio.file.Paths
import java.nio.file.StandardOpenOption
import java.nio.file.Files
import java.nio.file.attribute.FileTime
import java.util.UUID
import kotlinx.coroutines.awaitCancellation

/** The temporary file a [FileTokenStore] save of `key` writes: `.<name>.json.tmp`, one fixed name per record file. */
fun tempFile(dir: Path, key: String): Path = dir.resolve(".${FileTokenStore.fileName(key)}.tmp")

/** What a [FileTokenStore] save of `record` under `key` killed before its rename leaves in `dir` (its temporary file). */
fun killedSave(dir: Path, key: String, record: String, modifiedMs: Long? = null): Path =
    writeForced(tempFile(dir, key), record.toByteArray(), modifiedMs)

/** The same, as earlier versions (and the Python store before the fixed name) left it: `.<name>.json.<uuid>.tmp`. */
fun legacyKilledSave(dir: Path, key: String, record: String, modifiedMs: Long? = null): Path =
    writeForced(dir.resolve(".${FileTokenStore.fileName(key)}.${UUID.randomUUID()}.tmp"), record.toByteArray(), modifiedMs)

/** Writes `bytes` to a new file, forced to disk, modified at `modifiedMs` if given. */
fun writeForced(file: Path, bytes: ByteArray, modifiedMs: Long? = null): Path {
    FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE).use { channel ->
        val buffer = ByteBuffer.wrap(bytes)
        while (buffer.hasRemaining()) channel.write(buffer)
        channel.force(true)
    }
    modifiedMs?.let { Files.setLastModifiedTime(file, FileTime.fromMillis(it)) }
    return file
}

/**
 * The process FileTokenStoreRecoverTest kills, run in a child JVM: links
 * `u1` in a FileTokenStore directory and refreshes it; its save of the
 * rotated record (a refresh token other than the seeded one) writes and
 * forces the temporary file as the store's save does, prints `killed`, and
 * never renames it: the test kills the process there. Arguments: token
 * endpoint, directory, seeded refresh token.
 */
fun main(args: Array<String>) {
    val (endpoint, directory, seeded) = args
    val store = object : FileTokenStore(Paths.get(directory)) {
        private fun rotates(record: String) = Json.obj(record)["refresh_token"] != seeded

        private suspend fun stopBeforeRename(key: String, record: String): Nothing {
            killedSave(dir, key, record)
            println("killed")
            System.out.flush()
            awaitCancellation()
        }

        override suspend fun save(key: String, record: String) =
            if (rotates(record)) stopBeforeRename(key, record) else super.save(key, record)

        override suspend fun saveVersioned(key: String, record: String, expected: String?): CasResult =
            if (rotates(record)) stopBeforeRename(key, record) else super.saveVersioned(key, record, expected)
    }
    val client = TokenClient(TokenClientOptions(tokenEndpoint = endpoint, clientId = "test-client", clientSecret = "test-secret"))
    client.session("u1", store).seedBlocking(SeedOptions(refreshToken = seeded))
    client.session("u1", store).refreshAsync()
    readLine() // killed before a line comes
}
