package dev.freshtoken;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import dev.freshtoken.support.Emulator;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.AfterClass;
import org.junit.Before;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * The API as a Java caller sees it (compiled with javac against the jar):
 * options from the builder, blocking and CompletableFuture calls, the error
 * code and the Rust sentence as getters, Instants beside millis, an event
 * listener as a lambda.
 */
public class JavaApiTest {
    private static Emulator emu;

    @BeforeClass public static void start() { emu = Emulator.Companion.start(); }
    @AfterClass public static void stop() { emu.close(); }

    @Before public void reset() { emu.reset(); }

    private static TokenClient client() throws FreshTokenException {
        TokenClientOptions options = new TokenClientOptionsBuilder(emu.getTokenEndpoint(), "test-client")
            .clientSecret("test-secret")
            .storeTimeoutMs(5000)
            .build();
        return new TokenClient(options); // the default HttpUrlConnectionClient
    }

    private static String newRefreshToken() {
        return (String) emu.seed("openid offline_access accounts", "test-client").get("refresh_token");
    }

    @Test public void blockingAndFutureCallsShareOneRefresh() throws Exception {
        try (TokenClient client = client()) {
            MemoryTokenStore store = new MemoryTokenStore();
            UserSession session = client.session("java-user", store);
            session.seedBlocking(new SeedOptions(newRefreshToken(), null, null, null, null));

            String token = session.accessTokenBlocking();
            assertTrue("a token", token.length() > 10);
            CompletableFuture<String> future = client.session("java-user", store).accessTokenAsync();
            assertTrue("another handle of the key, served from the mirror", future.isDone());
            assertEquals(token, future.get(10, TimeUnit.SECONDS));
            assertEquals(1L, emu.refreshRequests());

            TokenInfo info = session.tokensAsync().get(10, TimeUnit.SECONDS);
            assertEquals(token, info.getAccessToken());
            assertEquals(Instant.ofEpochMilli(info.getExpiresAtMs()), info.getExpiresAt());
            SessionStatus status = session.statusBlocking();
            assertTrue(status.getHasRecord());
            assertEquals(info.getExpiresAt(), status.getAccessExpiresAt());

            TokenInfo renewed = session.tokenRejectedBlocking(token);
            assertFalse("a new token after tokenRejected", renewed.getAccessToken().equals(token));
            assertEquals(renewed.getAccessToken(), session.accessTokenBlocking());
        }
    }

    @Test public void errorsCarryCodeAndTheSentence() throws Exception {
        try (TokenClient client = client()) {
            UserSession session = client.session("java-dead", new MemoryTokenStore());
            session.seedBlocking(new SeedOptions("rt-the-server-never-issued", null, null, null, null));
            try {
                session.accessTokenBlocking();
                fail("expected ReauthorizationRequired");
            } catch (FreshTokenException.ReauthorizationRequired e) {
                assertEquals("reauthorization_required", e.getCode());
                assertEquals("invalid_grant", e.getReasonCode());
                assertEquals(ReauthorizationReason.INVALID_GRANT, e.getReason());
                assertEquals("the message is the core's sentence", e.getDetail(), e.getMessage());
                assertFalse("no field dump: " + e.getMessage(), e.getMessage().contains("detail="));
            }
            ExecutionException failed = assertThrows(ExecutionException.class,
                () -> session.accessTokenAsync().get(10, TimeUnit.SECONDS));
            FreshTokenException cause = (FreshTokenException) failed.getCause();
            assertEquals("reauthorization_required", cause.getCode());

            UserSession empty = client.session("", new MemoryTokenStore());
            FreshTokenException config = assertThrows(FreshTokenException.class, empty::accessTokenBlocking);
            assertEquals("config", config.getCode());
            assertEquals("key", ((FreshTokenException.Config) config).getField());
        }
    }

    @Test public void revocationAndDiscovery() throws Exception {
        TokenClientOptions discovery = new TokenClientOptionsBuilder("test-client").clientSecret("test-secret").build();
        try (TokenClient client = TokenClient.discoverBlocking(emu.getIssuer(), discovery)) {
            ProviderMetadata metadata = client.getProviderMetadata();
            assertEquals(emu.getTokenEndpoint(), metadata.getTokenEndpoint());
            assertEquals(emu.getRevocationEndpoint(), metadata.getRevocationEndpoint());
            UserSession session = client.session("java-revoked", new MemoryTokenStore());
            session.seedBlocking(new SeedOptions(newRefreshToken(), null, null, null, null));
            session.accessTokenBlocking();
            session.revokeBlocking();
            assertEquals(2L, emu.counter("revocation_requests"));
            FreshTokenException.ReauthorizationRequired dead =
                assertThrows(FreshTokenException.ReauthorizationRequired.class, session::accessTokenBlocking);
            assertEquals("revoked", dead.getReasonCode());
            assertEquals(ReauthorizationReason.REVOKED, dead.getReason());
            session.revokeAsync().get(10, TimeUnit.SECONDS); // nothing left to send
            client.clientTokenBlocking(List.of("accounts"));
            client.revokeClientTokensAsync().get(10, TimeUnit.SECONDS);
            assertEquals(3L, emu.counter("revocation_requests"));
        }
        try (TokenClient client = TokenClient.discoverAsync(emu.getIssuer(), discovery).get(10, TimeUnit.SECONDS)) {
            assertEquals(emu.getIssuer(), client.getProviderMetadata().getIssuer());
        }
        ExecutionException failed = assertThrows(ExecutionException.class,
            () -> TokenClient.discoverAsync("http://issuer.example", discovery).get(10, TimeUnit.SECONDS));
        assertEquals("config", ((FreshTokenException) failed.getCause()).getCode());

        // The revocation endpoint as a builder option: nothing listens there.
        String closed = "http://127.0.0.1:" + Emulator.Companion.closedPort() + "/connect/revocation";
        TokenClientOptions elsewhere = new TokenClientOptionsBuilder(emu.getTokenEndpoint(), "test-client")
            .clientSecret("test-secret").revocationEndpoint(closed).retry(new RetryOptions(1, null, null, null)).build();
        try (TokenClient client = new TokenClient(elsewhere)) {
            assertEquals(null, client.getProviderMetadata());
            UserSession session = client.session("java-elsewhere", new MemoryTokenStore());
            session.seedBlocking(new SeedOptions(newRefreshToken(), null, null, null, null));
            FreshTokenException e = assertThrows(FreshTokenException.class, session::revokeBlocking);
            assertEquals("network", e.getCode());
            assertTrue(e.getMessage(), e.getMessage().contains("may still hold"));
            assertEquals("revoked", ((FreshTokenException.ReauthorizationRequired)
                assertThrows(FreshTokenException.class, session::accessTokenBlocking)).getReasonCode());
        }
    }

    @Test public void eventsToALambdaFromTheBuilder() throws Exception {
        LinkedBlockingQueue<TokenEvent> events = new LinkedBlockingQueue<>();
        TokenClientOptions options = new TokenClientOptionsBuilder(emu.getTokenEndpoint(), "test-client")
            .clientSecret("test-secret")
            .onEvent(events::add)
            .eventKeys("hidden")
            .build();
        try (TokenClient client = new TokenClient(options)) {
            UserSession session = client.session("java-events", new MemoryTokenStore());
            session.seedBlocking(new SeedOptions(newRefreshToken(), null, null, null, null));
            session.accessTokenBlocking();
            List<String> kinds = new ArrayList<>();
            TokenEvent event;
            do {
                event = events.poll(20, TimeUnit.SECONDS);
                assertTrue("an event came after " + kinds, event != null);
                kinds.add(TokenEvents.getKindCode(event));
            } while (event.getKind() != EventKind.REFRESHED);
            assertEquals(List.of("saved", "saved", "refresh_started", "saved", "refreshed"), kinds);
            assertEquals(null, event.getKey());
            assertEquals(Integer.valueOf(1), event.getAttempts());
            assertEquals(Instant.ofEpochMilli(event.getAtMs()), TokenEvents.getAt(event));
            assertEquals(Duration.ofMillis(event.getDurationMs()), TokenEvents.getDuration(event));
            assertEquals(null, event.getErrorCode());
        }
        TokenClientOptions bad = new TokenClientOptionsBuilder(emu.getTokenEndpoint(), "test-client")
            .clientSecret("test-secret").eventKeys("hashed").build();
        FreshTokenException e = assertThrows(FreshTokenException.class, () -> new TokenClient(bad));
        assertEquals("event_keys", ((FreshTokenException.Config) e).getField());
    }
}
