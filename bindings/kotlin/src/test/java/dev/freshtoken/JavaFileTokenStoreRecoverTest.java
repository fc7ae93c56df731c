package dev.freshtoken;

import static org.junit.Assert.assertEquals;

import dev.freshtoken.support.KilledSaveKt;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * {@code FileTokenStore.recoverBlocking()} and {@code recoverAsync()} from
 * Java: javac accepts {@code catch (HostException e)} and
 * {@code catch (InterruptedException e)} around the blocking call (this
 * class does not compile otherwise), and the counts read as getters.
 */
public class JavaFileTokenStoreRecoverTest {
    @Rule public TemporaryFolder tmp = new TemporaryFolder();

    @Test public void recoverFromJava() throws Exception {
        Path dir = Files.createDirectories(tmp.getRoot().toPath().resolve("tokens"));
        FileTokenStore store = new FileTokenStore(dir);
        KilledSaveKt.killedSave(dir, "u1", "{\"v\":2}", null);
        RecoverResult result;
        try {
            result = store.recoverBlocking();
        } catch (HostException e) {
            throw new AssertionError("recover failed", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
        assertEquals(1, result.getCompleted());
        assertEquals(0, result.getRemoved());
        assertEquals(new RecoverResult(0, 0), store.recoverAsync().get(30, TimeUnit.SECONDS));
        assertEquals("{\"v\":2}", new String(Files.readAllBytes(store.fileFor("u1")), "UTF-8"));
    }
}
