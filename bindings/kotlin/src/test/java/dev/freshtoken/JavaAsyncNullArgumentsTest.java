package dev.freshtoken;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import dev.freshtoken.support.Emulator;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.AfterClass;
import org.junit.Before;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * A Java caller passes null where the Kotlin type says there is none, to an
 * {@code …Async()} method. Every {@code …Async()} method is documented never
 * to throw (its failures are the future's), so code written as
 * {@code session.tokenRejectedAsync(token).exceptionally(…)} handles every
 * failure there. Each of these threw Kotlin's NullPointerException
 * ("Parameter specified as non-null is null") synchronously instead, past
 * the future. Now each returns a future failed with
 * {@link FreshTokenException.Config} naming the parameter (DESIGN point 16,
 * as the JavaScript binding answers a null argument), nothing is sent, and
 * the client and session work on.
 */
public class JavaAsyncNullArgumentsTest {
    private static final long BOUND_S = 30;
    private static Emulator emu;

    @BeforeClass public static void start() { emu = Emulator.Companion.start(); }
    @AfterClass public static void stop() { emu.close(); }

    @Before public void reset() { emu.reset(); }

    interface AsyncCall { CompletableFuture<?> call(); }

    /** The parameter the future's Config error names, or what went wrong instead. */
    private static String fieldOf(AsyncCall call) throws Exception {
        CompletableFuture<?> future;
        try {
            future = call.call();
        } catch (Throwable e) {
            return "threw " + e.getClass().getSimpleName();
        }
        try {
            future.get(BOUND_S, TimeUnit.SECONDS);
            return "succeeded";
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof FreshTokenException.Config) return ((FreshTokenException.Config) cause).getField();
            return "failed with " + cause.getClass().getSimpleName();
        }
    }

    @Test public void everyAsyncMethodFailsItsFutureWithConfigNamingTheNullParameter() throws Exception {
        TokenClientOptions options = new TokenClientOptionsBuilder(emu.getTokenEndpoint(), "test-client")
            .clientSecret("test-secret").build();
        TokenClientOptions discovery = new TokenClientOptionsBuilder("test-client").clientSecret("test-secret").build();
        ExchangeCodeOptions code = new ExchangeCodeOptions("code", "verifier", "http://127.0.0.1/cb");
        try (TokenClient client = new TokenClient(options)) {
            MemoryTokenStore store = new MemoryTokenStore();
            UserSession session = client.session("java-nulls", store);
            String rt = (String) emu.seed("openid offline_access accounts", "test-client").get("refresh_token");
            session.seedBlocking(new SeedOptions(rt, null, null, null, null));
            ClientTokens clientTokens = client.clientTokens();

            Map<String, String> fields = new LinkedHashMap<>();
            fields.put("tokenRejectedAsync", fieldOf(() -> session.tokenRejectedAsync(null)));
            fields.put("seedAsync", fieldOf(() -> session.seedAsync(null)));
            fields.put("clientTokenAsync", fieldOf(() -> client.clientTokenAsync(null)));
            fields.put("ClientTokens.tokenAsync", fieldOf(() -> clientTokens.tokenAsync(null)));
            fields.put("exchangeCodeAsync options", fieldOf(() -> client.exchangeCodeAsync(null, "k", store)));
            fields.put("exchangeCodeAsync key", fieldOf(() -> client.exchangeCodeAsync(code, null, store)));
            fields.put("exchangeCodeAsync store", fieldOf(() -> client.exchangeCodeAsync(code, "k", null)));
            fields.put("discoverAsync issuer", fieldOf(() -> TokenClient.discoverAsync(null, discovery)));
            fields.put("discoverAsync options", fieldOf(() -> TokenClient.discoverAsync(emu.getIssuer(), null)));
            fields.put("discoverAsync http", fieldOf(() -> TokenClient.discoverAsync(emu.getIssuer(), discovery, null)));

            Map<String, String> expected = new LinkedHashMap<>();
            expected.put("tokenRejectedAsync", "token");
            expected.put("seedAsync", "seed");
            expected.put("clientTokenAsync", "scopes");
            expected.put("ClientTokens.tokenAsync", "scopes");
            expected.put("exchangeCodeAsync options", "options");
            expected.put("exchangeCodeAsync key", "key");
            expected.put("exchangeCodeAsync store", "store");
            expected.put("discoverAsync issuer", "issuer");
            expected.put("discoverAsync options", "options");
            expected.put("discoverAsync http", "http");
            assertEquals(expected, fields);

            assertEquals("nothing was sent", 0L, emu.counter("token_requests"));
            assertEquals(0L, emu.counter("discovery_requests"));
            // The session and the client work on, the seeded record untouched.
            assertEquals(rt, store.get("java-nulls") == null ? null
                : dev.freshtoken.support.Json.INSTANCE.obj(store.get("java-nulls")).get("refresh_token"));
            assertTrue(session.accessTokenAsync().get(BOUND_S, TimeUnit.SECONDS).length() > 10);
            assertTrue(client.clientTokenAsync(List.of("accounts")).get(BOUND_S, TimeUnit.SECONDS).length() > 10);
        }
    }
}
