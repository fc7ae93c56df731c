"""The idiomatic layer: ``Client``, ``Session``, error codes, safe ``str()``.

Everything here converts and calls; the logic (freshness, single flight,
rotation, persistence order, retries) is in the Rust core. Every call into
the core's async methods runs on freshtoken's own event loop (``_loop.py``),
awaited from the caller's loop; the cached path is one synchronous FFI call.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Union

from ._ffi.freshtoken import (
    AuthorizationRequest,
    AuthorizationUrlOptions,
    Clock,
    ExchangeCodeOptions,
    FreshTokenError,
    HostError,
    HttpClient,
    HttpHeader,
    HttpRequest,
    HttpResponse,
    ReauthorizationReason,
    RetryOptions,
    SeedOptions,
    SessionStatus,
    TokenClient,
    TokenClientOptions,
    TokenInfo,
    TokenStore,
    UserSession,
)
from . import _loop
from ._host import GuardedClock, GuardedHttp, GuardedStore
from ._http import UrllibHttpClient
from ._stores import TokenStoreBase

__all__ = ["Client", "Session", "error_code", "reason_code", "ERROR_CODES"]

# ---------------------------------------------------------------------------
# Error codes: the same strings as Rust's ErrorCode::as_str and JavaScript's
# FreshTokenError.code. (The generated classes carry no code: uniffi does not
# export the Rust method, so the variants are mapped here, one to one.)

ERROR_CODES = {
    FreshTokenError.ReauthorizationRequired: "reauthorization_required",
    FreshTokenError.InvalidClient: "invalid_client",
    FreshTokenError.OAuth: "oauth",
    FreshTokenError.Transient: "transient",
    FreshTokenError.Network: "network",
    FreshTokenError.Timeout: "timeout",
    FreshTokenError.InvalidResponse: "invalid_response",
    FreshTokenError.Storage: "storage",
    FreshTokenError.Conflict: "conflict",
    FreshTokenError.Config: "config",
}

for _variant, _code in ERROR_CODES.items():
    _variant.code = _code


def error_code(error: BaseException) -> Optional[str]:
    """The stable code of a freshtoken error (``"storage"``, …); None for others."""
    if isinstance(error, FreshTokenError):
        return ERROR_CODES.get(type(error))
    return None


def reason_code(reason: Optional[ReauthorizationReason]) -> Optional[str]:
    """``ReauthorizationReason.INVALID_GRANT`` → ``"invalid_grant"`` (the core's strings)."""
    return None if reason is None else reason.name.lower()


FreshTokenError.ReauthorizationRequired.reason_code = property(lambda self: reason_code(self.reason))

# str(error) is the core's message (as in Rust's Display and JavaScript's
# message) instead of uniffi's "field=value, …" dump; it never holds a token.
FreshTokenError.__str__ = lambda self: self.detail
HostError.__str__ = lambda self: getattr(self, "detail", None) or "timed out"

# ---------------------------------------------------------------------------
# The records that carry tokens or secrets (TokenInfo, SeedOptions,
# TokenClientOptions, HttpRequest, ...) print through the core's redacting
# Debug/Display impls: uniffi generates their __str__ and __repr__ from it.

# ---------------------------------------------------------------------------


class Session:
    """One user's tokens (a thin wrapper over the generated ``UserSession``).

    Handles with the same key in one :class:`Client` share one state and one
    refresh, so creating one per request is fine. Use it from any thread and
    any event loop (``asyncio.run`` per request included): the work runs on
    freshtoken's own loop, and a caller that is cancelled (a timeout) or
    whose loop closes stops only its own wait; a refresh it joined still
    finishes and saves for everyone else.
    """

    __slots__ = ("inner", "cached_access_token")

    def __init__(self, inner: UserSession) -> None:
        self.inner = inner
        #: The access token if it is fresh in memory, else None: one plain
        #: FFI call, no I/O, no coroutine.
        self.cached_access_token = inner.cached_access_token

    @property
    def key(self) -> str:
        return self.inner.key()

    async def access_token(self) -> str:
        """A fresh access token. The cached path is one synchronous FFI call
        (nothing is scheduled on the event loop); only when it has no fresh
        token does this await the core (one refresh shared by all callers)."""
        token = self.cached_access_token()
        if token is not None:
            return token
        return await _loop.run(self.inner.access_token)

    async def tokens(self) -> TokenInfo:
        """The fresh token with its expiry, scope, ID token and refresh expiry."""
        return await _loop.run(self.inner.tokens)

    async def refresh(self) -> TokenInfo:
        """A forced refresh, shared with concurrent callers."""
        return await _loop.run(self.inner.refresh)

    async def token_rejected(self, token: str) -> TokenInfo:
        """The API rejected ``token``: refresh, unless another caller already did."""
        return await _loop.run(self.inner.token_rejected, token)

    async def seed(self, options: Optional[SeedOptions] = None, **fields: Any) -> None:
        """Adopts an existing refresh token: ``seed(refresh_token=…, access_token=…, expires_in=…)``."""
        await _loop.run(self.inner.seed, options if options is not None else SeedOptions(**fields))

    async def status(self) -> SessionStatus:
        """What is known without sending anything."""
        return await _loop.run(self.inner.status)

    def __repr__(self) -> str:
        return f"Session(key={self.key!r})"


class Client:
    """One OAuth client: user sessions, client tokens, the code flow.

    ``Client(token_endpoint, client_id, client_secret=…, leeway_seconds=…,
    timeout_ms=…, retry={…}, …)`` takes the fields of ``TokenClientOptions``
    as keywords. ``http`` defaults to :class:`UrllibHttpClient`; ``clock``
    (for tests with fake time) to the system clock.
    """

    def __init__(self, token_endpoint: str, client_id: str, *,
                 http: Optional[HttpClient] = None, clock: Optional[Clock] = None,
                 **options: Any) -> None:
        _loop.event_loop()  # registered with uniffi before the core can call back
        retry = options.get("retry")
        if isinstance(retry, dict):
            options["retry"] = RetryOptions(**retry)
        config = TokenClientOptions(token_endpoint=token_endpoint, client_id=client_id, **options)
        if clock is None:
            self.inner = TokenClient(config, _guarded_http(http))
        else:
            self.inner = TokenClient.with_clock(config, _guarded_http(http), GuardedClock(clock))

    @classmethod
    def from_credentials_json(cls, json: str, *, http: Optional[HttpClient] = None) -> "Client":
        """A client from the provider's client-credentials JSON: ``clientId``,
        ``clientSecret`` or ``certificate`` (a PEM with the RSA key, for
        ``private_key_jwt``), ``slidingRefreshTokenLifetime`` and optionally
        ``tokenEndpoint`` (default Stitch's). A missing member raises
        ``FreshTokenError.Config`` naming it."""
        _loop.event_loop()
        client = cls.__new__(cls)
        client.inner = TokenClient.from_credentials_json(json, _guarded_http(http))
        return client

    def session(self, key: str, store: TokenStore) -> Session:
        """A handle on the session ``key``, persisted through ``store``."""
        return Session(self.inner.session(key, _guarded_store(store)))

    @property
    def session_count(self) -> int:
        """How many session states the client holds in memory."""
        return self.inner.session_count()

    async def client_token(self, scopes: Iterable[str] = ()) -> str:
        """A fresh client-credentials token for ``scopes`` (cached per scope set)."""
        return await _loop.run(self.inner.client_token, _scopes(scopes))

    def invalidate_client_token(self, scopes: Iterable[str] = ()) -> None:
        """Forgets the cached client token for ``scopes``."""
        self.inner.client_tokens().invalidate(_scopes(scopes))

    def authorization_url(self, redirect_uri: str, **options: Any) -> AuthorizationRequest:
        """The authorize URL (PKCE S256, state, nonce, ``offline_access``)."""
        if "scopes" in options:
            options["scopes"] = _scopes(options["scopes"])
        return self.inner.authorization_url(AuthorizationUrlOptions(redirect_uri=redirect_uri, **options))

    async def exchange_code(self, key: str, store: TokenStore, *, code: str,
                            code_verifier: str, redirect_uri: str) -> Session:
        """Exchanges an authorization code; stores the first record under ``key``."""
        options = ExchangeCodeOptions(code=code, code_verifier=code_verifier, redirect_uri=redirect_uri)
        return Session(await _loop.run(self.inner.exchange_code, options, key, _guarded_store(store)))


def _scopes(scopes: Union[str, Iterable[str]]) -> List[str]:
    if isinstance(scopes, str):
        # A bare string would be split into characters (JavaScript: ConfigError too).
        raise FreshTokenError.Config(field="scopes", detail="scopes must be a list of strings, not one string")
    return list(scopes)


def _guarded_http(http: Optional[HttpClient]) -> HttpClient:
    if http is None:
        return UrllibHttpClient()
    guarded = isinstance(http, GuardedHttp) or (
        isinstance(http, UrllibHttpClient) and type(http).send is UrllibHttpClient.send)
    return http if guarded else GuardedHttp(http)


def _guarded_store(store: TokenStore) -> TokenStore:
    return store if isinstance(store, (TokenStoreBase, GuardedStore)) else GuardedStore(store)
