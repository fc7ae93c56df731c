package dev.freshtoken.packaging;

import com.sun.jna.NativeLibrary;
import dev.freshtoken.MemoryTokenStore;
import dev.freshtoken.SeedOptions;
import dev.freshtoken.TokenClient;
import dev.freshtoken.TokenClientOptionsBuilder;
import dev.freshtoken.UserSession;

/**
 * Run by PackagedJarTest in a JVM whose classpath is the packed jar, JNA,
 * kotlin-stdlib and kotlinx-coroutines only, with no jna.library.path: gets
 * a token from the emulator and prints where JNA loaded the library from.
 *   java -cp … dev.freshtoken.packaging.PackagedJarCheck TOKEN_ENDPOINT REFRESH_TOKEN
 */
public final class PackagedJarCheck {
    public static void main(String[] args) throws Exception {
        if (System.getProperty("jna.library.path") != null) throw new IllegalStateException("jna.library.path is set");
        try (TokenClient client = new TokenClient(
                new TokenClientOptionsBuilder(args[0], "test-client").clientSecret("test-secret").build())) {
            UserSession session = client.session("packaged", new MemoryTokenStore());
            session.seedBlocking(new SeedOptions(args[1], null, null, null, null));
            System.out.println("token-length " + session.accessTokenBlocking().length());
            System.out.println("library " + NativeLibrary.getInstance("freshtoken").getFile().getAbsolutePath());
        }
    }
}
