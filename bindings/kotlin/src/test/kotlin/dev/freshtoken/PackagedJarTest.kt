package dev.freshtoken

import dev.freshtoken.support.Emulator
import java.io.File
import java.nio.file.Files
import java.util.jar.JarFile
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
 * from the jar and gets a token from the emulator. The jar also carries the
 * R8/ProGuard consumer rules that the Android Gradle plugin applies.
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

    @Test fun `the jar carries its R8 and ProGuard consumer rules at META-INF proguard`() {
        val rules = JarFile(File(property("freshtoken.packagedJar"))).use { jar ->
            val entry = jar.getJarEntry("META-INF/proguard/freshtoken.pro")
            assertTrue("META-INF/proguard/freshtoken.pro is in the jar", entry != null)
            jar.getInputStream(entry).use { String(it.readBytes(), Charsets.UTF_8) }
        }
        val lines = rules.lines().map { it.trim() }.filter { it.isNotEmpty() && !it.startsWith("#") }
        for (rule in listOf(
            "-dontwarn java.awt.**", // JNA refers to AWT, which Android lacks ("Missing class java.awt.Component")
            "-keep class com.sun.jna.** { *; }",
            "-keep class * extends com.sun.jna.** { *; }",
            "-keep class * implements com.sun.jna.Callback { *; }",
            "-keep class dev.freshtoken.** { *; }",
            "-keepattributes RuntimeVisibleAnnotations,Signature,InnerClasses,EnclosingMethod",
        )) {
            assertTrue("the rules hold `$rule`: $lines", rule in lines)
        }
        val source = File(property("freshtoken.repo"), "bindings/kotlin/src/main/resources/META-INF/proguard/freshtoken.pro")
        assertEquals("the jar's rules are the repository's file", source.readText(), rules)
    }
}
