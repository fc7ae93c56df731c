package dev.freshtoken

import dev.freshtoken.support.Emulator
import java.io.File
import java.nio.file.Files
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.BeforeClass
import org.junit.Test

/**
 * The packed jar (scripts/test-kotlin.sh builds it with tools/pack-jar.sh and
 * names it in -Dfreshtoken.packagedJar): a child JVM with only that jar,
 * JNA, kotlin-stdlib and kotlinx-coroutines (plus the one-class check) on the
 * classpath, no jna.library.path and no LD_LIBRARY_PATH, loads the library
 * from the jar and gets a token from the emulator.
 */
class PackagedJarTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        private fun property(name: String) =
            System.getProperty(name) ?: throw AssertionError("-D$name is not set (run scripts/test-kotlin.sh)")
    }

    @Test fun `a JVM with only the packed jar and its dependencies loads the library from the jar`() {
        val jar = File(property("freshtoken.packagedJar"))
        val check = File(property("freshtoken.packagedCheck"))
        val runtime = property("freshtoken.runtime")
        assertTrue("the packed jar exists", jar.isFile)
        val tmp = Files.createTempDirectory("freshtoken-jna").toFile()
        try {
            val rt = emu.seed()["refresh_token"] as String
            val java = File(System.getProperty("java.home"), "bin/java").path
            val pb = ProcessBuilder(
                java, "-Djna.tmpdir=${tmp.path}", "-cp", "${jar.path}:${check.path}:$runtime",
                "dev.freshtoken.packaging.PackagedJarCheck", emu.tokenEndpoint, rt,
            ).redirectErrorStream(true)
            pb.environment().remove("LD_LIBRARY_PATH")
            val child = pb.start()
            val out = child.inputStream.bufferedReader().readText()
            assertEquals("child output: $out", 0, child.waitFor())
            assertTrue("a token: $out", Regex("token-length [1-9][0-9]*").containsMatchIn(out))
            val library = Regex("library (.+)").find(out)?.groupValues?.get(1)?.trim()
            assertTrue("loaded from JNA's extraction of the jar's resource, under ${tmp.path}: $library",
                library != null && File(library).canonicalPath.startsWith(tmp.canonicalPath))
            assertEquals(1L, emu.refreshRequests())
        } finally {
            tmp.deleteRecursively()
        }
    }
}
