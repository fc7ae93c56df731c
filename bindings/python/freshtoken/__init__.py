"""freshtoken: OAuth 2.0 access tokens kept fresh, single-use refresh tokens
rotated without losing one. A Rust core, exported through uniffi.

Synchronous code (Flask, Django, scripts, threads)::

    import freshtoken

    client = freshtoken.Client("https://auth.example/connect/token", "my-client",
                               client_secret="…")
    store = freshtoken.FileTokenStore("/var/lib/myapp/tokens")
    client.session("user-42", store).seed(refresh_token=refresh_token_from_the_code_flow)
    token = client.session("user-42", store).access_token()  # per request: a dict read when cached

asyncio::

    client = freshtoken.AsyncClient("https://auth.example/connect/token", "my-client",
                                    client_secret="…")
    token = await client.session("user-42", store).access_token()

Close a client at shutdown (``with Client(...) as client:``, ``async with
AsyncClient(...)``, or ``close()`` / ``await aclose()``): it first saves any
rotated record its store refused, which holds the session's newest refresh
token; at exit freshtoken tries once more for every live client, and logs
an ERROR on the ``freshtoken`` logger for one that still holds such a record.

From the provider's discovery document, and revoking when a user unlinks::

    client = freshtoken.Client.discover("https://auth.example", "my-client", client_secret="…")
    client.session("user-42", store).revoke()   # later calls: ReauthorizationRequired, reason "revoked"

Events for metrics (every refresh, failure, re-link, save, lease wait,
client token and revocation), handed to a callable on freshtoken's events
thread; never a token or a secret::

    client = freshtoken.Client(endpoint, "my-client", client_secret="…",
                               on_event=lambda e: print(e.kind, e.duration_ms, e.error_code),
                               event_keys="hidden")

Both keep one core state per session key, one refresh shared by every
caller, and a mirror of the fresh token that cached reads serve without
calling into the core. Work runs on freshtoken's own event loop (a daemon
thread); store, HTTP and clock callbacks run there, never on yours.

Errors are subclasses of ``freshtoken.FreshTokenError`` (``ReauthorizationRequired``,
``StorageError``, …) with ``code`` and ``reason`` strings shared with Rust,
JavaScript, Kotlin and Swift; ``str(error)`` is the core's message.
"""

try:
    from ._ffi import freshtoken as _generated  # noqa: F401  (uniffi-generated, built with the library)
except ImportError as _error:  # pragma: no cover - a source checkout without the build
    raise ImportError(
        "freshtoken's native part (freshtoken/_ffi) is missing: install the wheel, "
        "or run scripts/test-python.sh, which assembles the package in "
        "bindings/python/build/dev/"
    ) from _error

from . import _strings  # noqa: E402,F401  (every str crossing into Rust is encoded by str.encode itself)
from . import _records  # noqa: E402,F401  (generated records compare only with their own type)
from ._ffi.freshtoken import (  # noqa: E402  the generated records, enums and host interfaces
    AuthorizationRequest,
    AuthorizationUrlOptions,
    CasResult,
    Clock,
    EventListener,
    ExchangeCodeOptions,
    HostError,
    HttpClient,
    HttpHeader,
    HttpRequest,
    HttpResponse,
    InternalError,
    ProviderMetadata,
    ReauthorizationReason,
    RetryOptions,
    SeedOptions,
    SessionStatus,
    TokenClientOptions,
    TokenInfo,
    TokenStore,
    VersionedRecord,
)
from ._errors import (  # noqa: E402
    ERROR_CODES,
    ConfigError,
    ConflictError,
    FreshTokenError,
    InvalidClientError,
    InvalidResponseError,
    NetworkError,
    OAuthError,
    ReauthorizationRequired,
    StorageError,
    TimeoutError,
    TransientError,
    error_code,
)
from . import _times  # noqa: E402,F401  (datetime properties on TokenInfo and SessionStatus)
from ._times import from_ms  # noqa: E402
from ._events import EVENT_KINDS, TokenEvent  # noqa: E402
from ._sync import Client, Session  # noqa: E402
from ._async import AsyncClient, AsyncSession  # noqa: E402
from ._loop import event_loop  # noqa: E402
from ._http import UrllibHttpClient  # noqa: E402
from ._stores import FileTokenStore, MemoryTokenStore, RecoverResult, TokenStoreBase  # noqa: E402
from ._encrypted import EncryptedStore, EncryptionKey  # noqa: E402


#: This package's version (``pyproject.toml``'s).
__version__ = "0.1.0"


def reason_code(reason):
    """``ReauthorizationReason.INVALID_GRANT`` → ``"invalid_grant"`` (the strings of ``error.reason``)."""
    return None if reason is None else reason.name.lower()


# `TimeoutError` is left out of __all__ so that `from freshtoken import *`
# does not shadow the built-in (freshtoken.TimeoutError subclasses it).
__all__ = [
    "Client",
    "Session",
    "AsyncClient",
    "AsyncSession",
    "FreshTokenError",
    "ReauthorizationRequired",
    "InvalidClientError",
    "OAuthError",
    "TransientError",
    "NetworkError",
    "InvalidResponseError",
    "StorageError",
    "ConflictError",
    "ConfigError",
    "ERROR_CODES",
    "error_code",
    "reason_code",
    "from_ms",
    "TokenEvent",
    "EVENT_KINDS",
    "event_loop",
    "UrllibHttpClient",
    "TokenStoreBase",
    "MemoryTokenStore",
    "FileTokenStore",
    "RecoverResult",
    "EncryptedStore",
    "EncryptionKey",
    # generated records, enums and host interfaces
    "AuthorizationRequest",
    "AuthorizationUrlOptions",
    "CasResult",
    "Clock",
    "EventListener",
    "ExchangeCodeOptions",
    "HostError",
    "HttpClient",
    "HttpHeader",
    "HttpRequest",
    "HttpResponse",
    "InternalError",
    "ProviderMetadata",
    "ReauthorizationReason",
    "RetryOptions",
    "SeedOptions",
    "SessionStatus",
    "TokenClientOptions",
    "TokenInfo",
    "TokenStore",
    "VersionedRecord",
]
