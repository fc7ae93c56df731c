package dev.freshtoken;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import dev.freshtoken.support.Emulator;
import dev.freshtoken.support.GatedSaveStore;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.AfterClass;
import org.junit.Before;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * A Java caller whose thread is interrupted inside a {@code …Blocking()}
 * call gets an {@link InterruptedException}, declared on every blocking
 * method, so javac accepts {@code catch (InterruptedException e)} (this
 * class does not compile otherwise). Only that caller's wait ends: the
 * shared refresh still completes and its rotated record is saved.
 */
public class JavaInterruptTest {
    private static final long BOUND_MS = 30_000;
    private static Emulator emu;

    @BeforeClass public static void start() { emu = Emulator.Companion.start(); }
    @AfterClass public static void stop() { emu.close(); }

    @Before public void reset() { emu.reset(); }

    private static TokenClient client() throws FreshTokenException {
        return new TokenClient(new TokenClientOptionsBuilder(emu.getTokenEndpoint(), "test-client")
            .clientSecret("test-secret").build());
    }

    private static String newRefreshToken() {
        return (String) emu.seed("openid offline_access accounts", "test-client").get("refresh_token");
    }

    /** How a servlet-style caller uses it: the interrupt is caught by type and the flag set again. */
    private static String bearer(UserSession session) {
        try {
            session.accessTokenBlocking();
            return "returned";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "interrupted";
        } catch (FreshTokenException e) {
            return "failed: " + e.getCode();
        }
    }

    @Test public void anInterruptedCallerGetsInterruptedExceptionAndTheRefreshIsStillSaved() throws Exception {
        try (TokenClient client = client()) {
            String rt = newRefreshToken();
            GatedSaveStore store = new GatedSaveStore(rt);
            client.session("java-user", store).seedBlocking(new SeedOptions(rt, null, null, null, null));

            AtomicReference<String> outcome = new AtomicReference<>();
            AtomicReference<Boolean> flagSetAgain = new AtomicReference<>();
            Thread request = new Thread(() -> {
                outcome.set(bearer(client.session("java-user", store)));
                flagSetAgain.set(Thread.currentThread().isInterrupted());
            });
            request.start();
            assertTrue("the rotated record reached the store", store.awaitHeld(BOUND_MS));
            request.interrupt();
            request.join(BOUND_MS);
            assertEquals("interrupted", outcome.get());
            assertEquals(Boolean.TRUE, flagSetAgain.get());

            // Nobody waits any more: the refresh must still finish and save.
            store.release();
            assertTrue("the rotated record was saved", store.awaitSaved(BOUND_MS));
            String token = client.session("java-user", store).accessTokenBlocking();
            assertEquals("the stored token is served", store.field("java-user", "access_token"), token);
            assertEquals(1L, emu.refreshRequests());
            assertEquals(1, store.getRotatedSaves().get());
            assertEquals("consumed", emu.refreshTokenState(rt));
            assertEquals("active", emu.refreshTokenState((String) store.field("java-user", "refresh_token")));
            assertEquals(0L, emu.counter("reuse_detected"));
        }
    }

    @Test public void everyBlockingCallThrowsInterruptedExceptionOnAnInterruptedThread() throws Exception {
        TokenClientOptions discovery = new TokenClientOptionsBuilder("test-client").clientSecret("test-secret").build();
        try (TokenClient client = client()) {
            MemoryTokenStore store = new MemoryTokenStore();
            UserSession session = client.session("java-interrupted", store);
            ClientTokens clientTokens = client.clientTokens();
            List<String> interrupted = new ArrayList<>();
            // Each call on a thread whose flag is set: runBlocking throws
            // before the call starts (and clears the flag).
            try { self(); session.accessTokenBlocking(); } catch (InterruptedException e) { interrupted.add("accessToken"); }
            try { self(); session.tokensBlocking(); } catch (InterruptedException e) { interrupted.add("tokens"); }
            try { self(); session.refreshBlocking(); } catch (InterruptedException e) { interrupted.add("refresh"); }
            try { self(); session.tokenRejectedBlocking("t"); } catch (InterruptedException e) { interrupted.add("tokenRejected"); }
            try { self(); session.seedBlocking(new SeedOptions("rt", null, null, null, null)); }
            catch (InterruptedException e) { interrupted.add("seed"); }
            try { self(); session.statusBlocking(); } catch (InterruptedException e) { interrupted.add("status"); }
            try { self(); session.revokeBlocking(); } catch (InterruptedException e) { interrupted.add("revoke"); }
            try { self(); client.clientTokenBlocking(List.of("accounts")); }
            catch (InterruptedException e) { interrupted.add("clientToken"); }
            try { self(); client.revokeClientTokensBlocking(); }
            catch (InterruptedException e) { interrupted.add("revokeClientTokens"); }
            try { self(); client.exchangeCodeBlocking(new ExchangeCodeOptions("code", "verifier", "http://127.0.0.1/cb"), "k", store); }
            catch (InterruptedException e) { interrupted.add("exchangeCode"); }
            try { self(); clientTokens.tokenBlocking(List.of("accounts")); }
            catch (InterruptedException e) { interrupted.add("ClientTokens.token"); }
            try { self(); TokenClient.discoverBlocking(emu.getIssuer(), discovery).close(); }
            catch (InterruptedException e) { interrupted.add("discover"); }
            finally { Thread.interrupted(); }
            assertEquals(List.of("accessToken", "tokens", "refresh", "tokenRejected", "seed", "status", "revoke",
                "clientToken", "revokeClientTokens", "exchangeCode", "ClientTokens.token", "discover"), interrupted);
            assertEquals("nothing was sent", 0L, emu.refreshRequests());
            assertEquals(0L, emu.counter("discovery_requests"));
        }
    }

    private static void self() {
        Thread.currentThread().interrupt();
    }
}
