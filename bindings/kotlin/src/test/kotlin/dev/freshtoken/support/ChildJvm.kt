package dev.freshtoken.support

import java.io.File

/** A child JVM running `mainClass` with `args`, on this test's classpath and native library; stderr inherited. */
fun childJvm(mainClass: String, vararg args: String): Process {
    val java = File(System.getProperty("java.home"), "bin/java").path
    return ProcessBuilder(
        java, "-Djna.library.path=${System.getProperty("jna.library.path")}",
        "-Djna.tmpdir=${System.getProperty("jna.tmpdir")}", "-cp", System.getProperty("java.class.path"),
        mainClass, *args,
    ).redirectError(ProcessBuilder.Redirect.INHERIT).start()
}
