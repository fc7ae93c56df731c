package dev.freshtoken.support

import java.nio.channels.FileChannel
import java.nio.file.Paths
import java.nio.file.StandardOpenOption

/**
 * Another process's save of FileTokenStoreRecoverTest, run in a child JVM:
 * holds an exclusive FileLock on the file `args[0]` (a key's write lock),
 * prints `locked`, and gives it back and exits on a line (or EOF) on stdin.
 */
fun main(args: Array<String>) {
    FileChannel.open(Paths.get(args[0]), StandardOpenOption.CREATE, StandardOpenOption.WRITE).use { channel ->
        channel.lock().use {
            println("locked")
            System.out.flush()
            readLine()
        }
    }
}
