"""freshtoken's exceptions: one class per stable code, raised in place of
the generated ``FreshTokenError.<Variant>`` classes.

``FreshTokenError`` is the base; every subclass carries ``code`` (the same
strings as Rust's ``ErrorCode`` and JavaScript's ``error.code``) and
``reason`` (for ``ReauthorizationRequired``: ``"invalid_grant"``,
``"refresh_expired"``, ``"lost_rotation"``, ``"no_refresh_token"``,
``"revoked"``),
both plain strings. ``str(error)`` is the core's message (Rust's
``Display``): a sentence that never holds a token or a secret.
"""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import Any, Callable, Dict, Optional, Type, TypeVar

from ._ffi import freshtoken as _generated

__all__ = [
    "FreshTokenError",
    "ReauthorizationRequired",
    "InvalidClientError",
    "OAuthError",
    "TransientError",
    "NetworkError",
    "TimeoutError",
    "InvalidResponseError",
    "StorageError",
    "ConflictError",
    "ConfigError",
    "ERROR_CODES",
    "error_code",
    "translate",
    "native",
]

T = TypeVar("T")

_FIELDS = ("reason", "status", "description", "oauth_error", "retry_after_ms", "maybe_sent", "field",
           "server_may_hold_token")


#: The most milliseconds a ``timedelta`` holds.
_MAX_TIMEDELTA_MS = timedelta.max // timedelta(milliseconds=1)


class FreshTokenError(Exception):
    """Every freshtoken failure. ``code`` names it (one subclass per code);
    ``str(error)`` is the core's message, free of tokens and secrets.

    Attributes (None where they do not apply): ``reason`` (why the user must
    authorize again), ``status`` (the HTTP status of the authorization
    server's answer: token or revocation endpoint, discovery document),
    ``description`` (the server's ``error_description``), ``oauth_error``
    (the RFC 6749 ``error`` code of an ``OAuthError``),
    ``retry_after_ms`` / ``retry_after`` (the server's last ``Retry-After``),
    ``maybe_sent`` (whether a failed request may have reached the server),
    ``field`` (the option or argument a ``ConfigError`` is about).
    ``server_may_hold_token`` is True (else False) when ``revoke()`` failed
    for good or cannot be confirmed: the session is marked revoked, but the
    server may still hold a token (the error is the cause's class, or
    ``ReauthorizationRequired`` with reason ``lost_rotation``).
    """

    code: str = ""

    def __init__(self, message: str, *, reason: Optional[str] = None, status: Optional[int] = None,
                 description: Optional[str] = None, oauth_error: Optional[str] = None,
                 retry_after_ms: Optional[int] = None, maybe_sent: Optional[bool] = None,
                 field: Optional[str] = None, server_may_hold_token: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status = status
        self.description = description
        self.oauth_error = oauth_error
        self.retry_after_ms = retry_after_ms
        self.maybe_sent = maybe_sent
        self.field = field
        self.server_may_hold_token = server_may_hold_token

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        extra = "".join(f", {name}={getattr(self, name)!r}" for name in ("reason", "status", "field")
                        if getattr(self, name) is not None)
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}{extra})"

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.message, {name: getattr(self, name) for name in _FIELDS}))

    @property
    def retry_after(self) -> Optional[timedelta]:
        """``retry_after_ms`` as a ``timedelta`` (at most ``timedelta.max``: the
        server alone chooses the number)."""
        ms = self.retry_after_ms
        return None if ms is None else timedelta(milliseconds=max(0, min(ms, _MAX_TIMEDELTA_MS)))

    # Earlier names, kept working.
    @property
    def detail(self) -> str:
        """The message (the earlier name of ``str(error)``)."""
        return self.message

    @property
    def reason_code(self) -> Optional[str]:
        """The earlier name of ``reason``."""
        return self.reason


def _rebuild(cls: Type[FreshTokenError], message: str, fields: Dict[str, Any]) -> FreshTokenError:
    return cls(message, **fields)


class ReauthorizationRequired(FreshTokenError):
    """The user must authorize again (re-link); ``reason`` says why."""

    code = "reauthorization_required"


class InvalidClientError(FreshTokenError):
    """The server rejected the client credentials (``invalid_client``)."""

    code = "invalid_client"


class OAuthError(FreshTokenError):
    """Another RFC 6749 error; ``oauth_error`` is its code."""

    code = "oauth"

    @property
    def error(self) -> Optional[str]:
        """The earlier name of ``oauth_error``."""
        return self.oauth_error


class TransientError(FreshTokenError):
    """5xx or 429 after every retry."""

    code = "transient"


class NetworkError(FreshTokenError):
    """A transport failure; ``maybe_sent`` is False when the request surely never left."""

    code = "network"


class TimeoutError(FreshTokenError, builtins.TimeoutError):  # noqa: A001 - freshtoken.TimeoutError, like asyncio's
    """A request to the authorization server timed out (also a built-in ``TimeoutError``)."""

    code = "timeout"


class InvalidResponseError(FreshTokenError):
    """The authorization server's answer could not be understood (token endpoint, discovery document)."""

    code = "invalid_response"


class StorageError(FreshTokenError):
    """The store failed; anything renewed is kept and saved on the next call."""

    code = "storage"


class ConflictError(FreshTokenError):
    """A compare-and-swap save lost to a newer version."""

    code = "conflict"


class ConfigError(FreshTokenError, ValueError, TypeError):
    """Invalid configuration or argument; ``field`` names it.

    Also a ``ValueError`` and a ``TypeError``: an argument of the wrong type
    (``Client(None, …)``, ``timeout="1"``, an unknown keyword) is refused
    with this class too, so code written for the built-in exceptions Python
    raises for bad arguments keeps catching it."""

    code = "config"


_G = _generated.FreshTokenError

#: generated variant → (freshtoken class, the Rust variant's name)
_BY_VARIANT = {
    _G.ReauthorizationRequired: ReauthorizationRequired,
    _G.InvalidClient: InvalidClientError,
    _G.OAuth: OAuthError,
    _G.Transient: TransientError,
    _G.Network: NetworkError,
    _G.Timeout: TimeoutError,
    _G.InvalidResponse: InvalidResponseError,
    _G.Storage: StorageError,
    _G.Conflict: ConflictError,
    _G.Config: ConfigError,
}

#: Each class → its code string (the same as ``cls.code``).
ERROR_CODES = {cls: cls.code for cls in _BY_VARIANT.values()}

# The generated variants' names, kept working on the base class:
# ``except freshtoken.FreshTokenError.Storage`` catches a StorageError.
for _variant, _cls in _BY_VARIANT.items():
    setattr(FreshTokenError, _variant.__name__, _cls)


def error_code(error: BaseException) -> Optional[str]:
    """The stable code of a freshtoken error (``"storage"``, …); None for others."""
    if isinstance(error, FreshTokenError):
        return error.code
    if isinstance(error, _G):
        cls = _BY_VARIANT.get(type(error))
        return None if cls is None else cls.code
    return None


def translate(error: BaseException) -> BaseException:
    """A generated ``FreshTokenError.<Variant>`` as freshtoken's class; anything else as it is."""
    cls = _BY_VARIANT.get(type(error))
    if cls is None:
        return error
    get = error.__dict__.get
    reason = get("reason")
    message = get("detail")
    if not isinstance(message, str) or not message:
        message = cls.__doc__.splitlines()[0] if cls.__doc__ else cls.code
    return cls(
        message,
        reason=None if reason is None else reason.name.lower(),
        status=get("status"),
        description=get("description"),
        oauth_error=get("error"),
        retry_after_ms=get("retry_after_ms"),
        maybe_sent=get("maybe_sent"),
        field=get("field"),
        server_may_hold_token=get("server_may_hold_token") is True,
    )


def native(function: Callable[..., T], *args: Any) -> T:
    """A synchronous call into the core, its errors as freshtoken's classes."""
    try:
        return function(*args)
    except _G as error:
        raise translate(error) from None


def config_error(field: str, message: str) -> ConfigError:
    """A ``ConfigError`` raised by the Python layer itself (argument checks)."""
    return ConfigError(message, field=field)
