"""freshtoken: OAuth 2.0 access tokens kept fresh, single-use refresh tokens
rotated without losing one. A Rust core, exported through uniffi.

Quick start (asyncio)::

    import freshtoken

    client = freshtoken.Client("https://auth.example/connect/token", "my-client",
                               client_secret="…")
    store = freshtoken.FileTokenStore("/var/lib/myapp/tokens")
    session = client.session("user-42", store)
    await session.seed(refresh_token=refresh_token_from_the_code_flow)
    token = await session.access_token()   # cached: one sync FFI call

Calls run on freshtoken's own event loop (a daemon thread), awaited from
yours: ``asyncio.run(...)`` per request and cancelled callers are fine, and
store, HTTP and clock callbacks run on that loop, never on yours.

Errors are ``FreshTokenError.<Variant>`` exceptions; ``error.code`` (or
``freshtoken.error_code(error)``) is the stable code string shared with Rust
and JavaScript.
"""

try:
    from ._ffi import freshtoken as _generated  # noqa: F401  (uniffi-generated, built with the library)
except ImportError as _error:  # pragma: no cover - a source checkout without the build
    raise ImportError(
        "freshtoken's native part (freshtoken/_ffi) is missing: install the wheel, "
        "or run scripts/test-python.sh, which assembles the package in "
        "bindings/python/build/dev/"
    ) from _error

from ._ffi.freshtoken import (  # noqa: E402  the generated surface
    AuthorizationRequest,
    AuthorizationUrlOptions,
    CasResult,
    Clock,
    ExchangeCodeOptions,
    FreshTokenError,
    HostError,
    HttpClient,
    HttpHeader,
    HttpRequest,
    HttpResponse,
    InternalError,
    ReauthorizationReason,
    RetryOptions,
    SeedOptions,
    SessionStatus,
    TokenClient,
    TokenClientOptions,
    TokenInfo,
    TokenStore,
    UserSession,
    VersionedRecord,
)
from ._api import ERROR_CODES, Client, Session, error_code, reason_code  # noqa: E402
from ._loop import event_loop  # noqa: E402
from ._http import UrllibHttpClient  # noqa: E402
from ._stores import FileTokenStore, MemoryTokenStore, TokenStoreBase  # noqa: E402

__all__ = [
    "Client",
    "Session",
    "error_code",
    "reason_code",
    "ERROR_CODES",
    "event_loop",
    "UrllibHttpClient",
    "TokenStoreBase",
    "MemoryTokenStore",
    "FileTokenStore",
    # generated
    "AuthorizationRequest",
    "AuthorizationUrlOptions",
    "CasResult",
    "Clock",
    "ExchangeCodeOptions",
    "FreshTokenError",
    "HostError",
    "HttpClient",
    "HttpHeader",
    "HttpRequest",
    "HttpResponse",
    "InternalError",
    "ReauthorizationReason",
    "RetryOptions",
    "SeedOptions",
    "SessionStatus",
    "TokenClient",
    "TokenClientOptions",
    "TokenInfo",
    "TokenStore",
    "UserSession",
    "VersionedRecord",
]
