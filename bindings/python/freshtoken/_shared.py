"""What the synchronous and the asyncio clients share: building the core's
``TokenClient``, the token mirror, the per-key session handles, argument
checks and the guards around host objects.

Everything here converts and calls; the logic (freshness, single flight,
rotation, persistence order, retries) is in the Rust core.
"""

from __future__ import annotations

import concurrent.futures
import logging
import operator
import os
import re
import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterable, List, NoReturn, Optional, Tuple, Type, Union

from ._ffi.freshtoken import (
    Clock,
    HostError,
    HttpClient,
    ProviderMetadata,
    RetryOptions,
    SeedOptions,
    TokenClient,
    TokenClientOptions,
    TokenStore,
    TokenStoreImpl,
    UserSession,
)
from . import _check, _loop
from ._errors import config_error, native
from ._events import listener
from ._host import AnsweredStore, GuardedClock, GuardedHttp, GuardedStore
from ._http import UrllibHttpClient
from ._mirror import STALE, Entry, Mirror

__all__ = ["ClientCore", "SessionCore", "scopes_list", "seed_options", "guarded_store", "guarded_http",
           "answered_store"]

_log = logging.getLogger("freshtoken")

# The core's default for max_sessions; the mirror and the handle cache use
# the same bound.
DEFAULT_MAX_SESSIONS = 100_000

# The end of year 9999 in Unix ms: a later host clock reading is no time
# (src/clock.rs LATEST_PLAUSIBLE_MS).
LATEST_PLAUSIBLE_MS = 253_402_300_799_999

# HostError's str() is its message (uniffi's default is a field dump); an
# app's own ``HostError("…")`` keeps its text.
HostError.__str__ = lambda self: (getattr(self, "detail", None) or Exception.__str__(self)
                                  or "timed out")


class NativeOwner:
    """An object holding freshtoken's native state: a copy (``copy``,
    ``deepcopy``, a container copied deeply) is the object itself, since a
    second object holding the same native handle would free it twice;
    pickling raises ``TypeError`` (native state does not travel)."""

    __slots__ = ()

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Dict[int, Any]) -> Any:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object: "
                        "it holds freshtoken's native state")


class SessionCore(NativeOwner):
    """State shared by ``Session`` and ``AsyncSession``: the key, the store,
    the key's mirror entry, and the native handle (made on first need)."""

    __slots__ = ("_entry", "_now", "_store", "_key", "_client", "_guarded", "_native", "__weakref__")

    def __init__(self, client: "ClientCore", key: str, store: TokenStore,
                 handle: Optional[UserSession] = None) -> None:
        self._client = client
        self._key = key
        self._store = store
        self._guarded: Optional[TokenStore] = None
        self._native = handle
        self._entry: Entry = client._mirror.entry(key)
        self._now = client._mirror.now

    @property
    def key(self) -> str:
        """The session key."""
        return self._key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self._key!r})"

    def cached_access_token(self) -> Optional[str]:
        """The access token if it is fresh in memory, else None: no I/O, no waiting."""
        entry = self._entry
        try:
            if entry.since <= self._now() < entry.until:
                return entry.token
        except Exception:  # noqa: BLE001 - a failing host clock: ask the core
            pass
        token = self._refill()
        if token is None:
            # While a refresh, seed or code exchange runs, the core offers
            # nothing to mirror but still serves its token: read it unmirrored.
            token = self._handle().cached_access_token()
        return token

    def _handle(self) -> UserSession:
        """The native handle (one synchronous FFI call, the first time only);
        ``RuntimeError`` once the client is closed."""
        if self._client._closed:
            raise closed_error(self._client)
        handle = self._native
        if handle is None:
            if self._guarded is None:
                self._guarded = guarded_store(self._store)
            handle = self._native = native(self._client._native.session, self._key, self._guarded)
        return handle

    def _refill(self) -> Optional[str]:
        """Mirrors the core's fresh token (one synchronous FFI call); returns it, or None."""
        client = self._client
        self._entry, cached = client._mirror.refill(self._key, self._handle().cached_token)
        if client._closed:  # closed while it read: what it mirrored is dropped (see ClientCore._begin_close)
            client._mirror.drop(self._key)
        return None if cached is None else cached.token

    def _drop(self) -> UserSession:
        """Before a call that may replace the token: forget the mirrored one,
        and mirror nothing for the key until ``_dropped`` (always paired:
        begun before anything here can raise)."""
        self._client._mirror.begin(self._key)
        return self._handle()

    def _dropped(self) -> None:
        """After such a call, whatever its outcome: forget the mirrored token
        again. A read during the call got the core's token of that moment,
        which the call may have replaced (a rejected token, a session that
        died, the account a seed replaced); it was not mirrored."""
        self._client._mirror.end(self._key)


class ClientCore(NativeOwner):
    """One OAuth client: the native ``TokenClient``, the mirror, and the
    session handles by key (bounded, like the core's session map)."""

    #: (the session class for the system clock, the one for a host clock)
    _session_classes: Tuple[Type[SessionCore], Type[SessionCore]] = (SessionCore, SessionCore)

    def __init__(self, token_endpoint: str, client_id: str, *,
                 http: Optional[HttpClient] = None, clock: Optional[Clock] = None,
                 **options: Any) -> None:
        _loop.event_loop()  # registered with uniffi before the core can call back
        config = client_options(token_endpoint, client_id, options)
        _check.clock(clock)
        if clock is None:
            inner = native(TokenClient, config, guarded_http(http))
        else:
            inner = native(TokenClient.with_clock, config, guarded_http(http), GuardedClock(clock))
        self._setup(inner, clock, options)

    @classmethod
    def _discovery(cls, issuer: str, client_id: str, http: Optional[HttpClient],
                   clock: Optional[Clock], options: Dict[str, Any]) -> Tuple[Any, ...]:
        """The arguments of the core's ``discover_client`` (the token endpoint
        left empty: the discovery document names it)."""
        _loop.event_loop()
        issuer = _check.text(issuer, "issuer")
        # An endpoint given here wins over the document's; empty: the document's.
        config = client_options(options.pop("token_endpoint", ""), client_id, options)
        _check.clock(clock)
        return issuer, config, guarded_http(http), None if clock is None else GuardedClock(clock)

    @classmethod
    def _discovered(cls, inner: TokenClient, clock: Optional[Clock], options: Dict[str, Any]) -> Any:
        """A client around the ``TokenClient`` that discovery made."""
        client = cls.__new__(cls)
        client._setup(inner, clock, options)
        return client

    @classmethod
    def from_credentials_json(cls, json: str, *, http: Optional[HttpClient] = None,
                              clock: Optional[Clock] = None, **options: Any):
        """A client from the provider's client-credentials JSON: ``clientId``,
        ``clientSecret`` or ``certificate`` (a PEM with the RSA key, for
        ``private_key_jwt``), ``slidingRefreshTokenLifetime`` and optionally
        ``tokenEndpoint`` (default Stitch's) and ``keyId``. A missing member
        raises ``ConfigError`` naming it. Takes the constructor's keyword
        options beside it (``leeway_seconds``, ``timeout_ms``, ``retry``,
        ``max_sessions``, ``on_event``, …; ``refresh_token_lifetime_seconds``
        overrides the JSON's); an identity option (``token_endpoint``,
        ``client_id``, ``client_secret``, ``client_auth``, ``private_key_pem``,
        ``key_id``) raises ``ConfigError`` naming it, whether or not the JSON
        sets it."""
        _loop.event_loop()
        json = _check.text(json, "json")
        config = client_options(options.pop("token_endpoint", ""), options.pop("client_id", ""), options)
        _check.clock(clock)
        inner = native(TokenClient.from_credentials_json_with, json, config, guarded_http(http),
                       None if clock is None else GuardedClock(clock))
        client = cls.__new__(cls)
        client._setup(inner, clock, options)
        return client

    def _setup(self, inner: TokenClient, clock: Optional[Clock], options: Dict[str, Any]) -> None:
        """``options``: the keyword options as ``client_options`` left them."""
        max_sessions = options.get("max_sessions")
        bound = max_sessions if isinstance(max_sessions, int) and max_sessions > 0 else DEFAULT_MAX_SESSIONS
        self._native = inner
        # The client owns its on_event callable: the listener the core holds
        # (in uniffi's handle map, out of the collector's sight) holds it
        # only weakly, so a callable that refers back to this client (a bound
        # method of the object holding it) is a cycle the collector frees.
        on_event = options.get("on_event")
        self._on_event = None if on_event is None else on_event.take_delivery()
        if clock is None:
            self._mirror = Mirror(time.time, 0.001, bound)
            self._session_class = self._session_classes[0]
        else:
            self._mirror = Mirror(core_time(clock), 1, bound)
            self._session_class = self._session_classes[1]
        self._handles: Dict[str, SessionCore] = {}
        self._bound = bound
        self._lock = threading.Lock()
        # The native client, kept until a close saved every record (``_native``
        # is it while open); whether it is closed; the process that made it.
        self._inner: Optional[TokenClient] = inner
        self._closed = False
        self._pid = os.getpid()
        self._hide_keys = options.get("event_keys") == "hidden"
        _clients.add(self)

    @property
    def is_closed(self) -> bool:
        """Whether ``close()`` (``aclose()``) was called: every later call raises ``RuntimeError``."""
        return self._closed

    def _begin_close(self) -> Optional[TokenClient]:
        """Closes the client to new calls (they raise ``RuntimeError``; calls
        running go on) and mirrors nothing more; returns the native client to
        save the unsaved records with, or None once a close saved them all."""
        with self._lock:
            inner = self._inner
            if not self._closed:
                self._closed = True
                self._native = _Closed(self)
        # Every mirrored token dropped, and every refill that began before
        # voided (its entry's epoch moved); one that ends later drops its
        # entry itself (``SessionCore._refill``).
        mirror = self._mirror
        with mirror._lock:
            for entry in mirror._entries.values():
                entry.until = STALE
                entry.epoch += 1
        return inner

    def _closed_saved(self, inner: TokenClient) -> None:
        """After a close saved every record: lets the native client go (freed
        once no call running uses it), and the session handles' natives."""
        with self._lock:
            if self._inner is inner:
                self._inner = None
            handles = list(self._handles.values())
            self._handles.clear()
        for handle in handles:
            handle._native = None

    def _log_unsaved(self, error: Optional[BaseException], when: str) -> None:
        """Says at ERROR, on the ``freshtoken`` logger, that records this
        client holds only in memory were not saved, when closing it
        (``when``: ``"close"`` or ``"aclose"``) or at ``"exit"``; ``error``
        is the save's failure, None when it did not end in time. It gives
        the count and, unless the client hides keys (``event_keys="hidden"``),
        the core's message (which names no token or secret, but may quote a
        store's message naming a key)."""
        name = type(self).__name__
        name = ("an " if name[:1] in "AEIOU" else "a ") + name
        count = _unsaved_count(error)
        records = f"{count} session record(s)" if count else "session record(s)"
        detail = "" if error is None or self._hide_keys else f" ({type(error).__name__}: {error})"
        if when == "exit":
            holds = "holds" if error is not None else "may still hold"
            late = "" if error is not None else " (its save did not end in time)"
            _log.error("freshtoken: the process is exiting while %s %s %s its store did not take%s; each is its "
                       "session's newest refresh token (the stored one is spent), now lost: those users must "
                       "link again%s", name, holds, records, late, detail)
        else:
            _log.error("freshtoken: %s was closed holding %s its store did not take; each is its session's newest "
                       "refresh token (the stored one is spent), lost with the client unless its store takes it "
                       "at a later %s() or at exit%s", name, records, when, detail)

    def session(self, key: str, store: TokenStore) -> Any:
        """A handle on the session ``key``, persisted through ``store``.

        Cheap enough to call per request: no native call is made until one is
        needed, the handle for (key, store) is reused, and every handle of a
        key shares the key's state, refresh and mirrored token."""
        # Only an exact str is looked up as it is: a subclass's own __hash__
        # and __eq__ could match another user's key (a case-insensitive key
        # type would hand "ALICE" alice's handle). Anything else is checked
        # and copied to a str first, by _new_session.
        if type(key) is str:
            try:
                handle = self._handles[key]
                if handle._store is store:
                    return handle
            except KeyError:
                pass
        return self._new_session(key, store)

    @property
    def provider_metadata(self) -> Optional[ProviderMetadata]:
        """What the provider's discovery document said (``issuer``,
        ``token_endpoint``, ``authorization_endpoint``, ``revocation_endpoint``,
        ``token_endpoint_auth_methods``, ``revocation_endpoint_auth_methods``,
        ``authorization_response_iss_parameter_supported``: when true, refuse
        an authorization response without ``iss``, RFC 9207); None for a
        client not made by ``discover``."""
        return native(self._native.provider_metadata)

    @property
    def session_count(self) -> int:
        """How many session states the core holds in memory."""
        return native(self._native.session_count)

    def invalidate_client_token(self, scopes: Iterable[str] = ()) -> None:
        """Forgets the cached client token for ``scopes``, whichever it is.
        After the API rejected a token, prefer ``client_token_rejected``."""
        native(self._native.client_tokens().invalidate, scopes_list(scopes))

    def client_token_rejected(self, scopes: Iterable[str], token: str) -> None:
        """The API rejected ``token``, a client token for ``scopes`` (a 401):
        forgets it if it is still the cached one, so the next call requests
        a new one. When another caller has already replaced it, nothing
        changes: many workers that saw one revoked token cause one request.
        A forgotten token that still lives is revoked by
        ``revoke_client_tokens()``."""
        native(self._native.client_tokens().token_rejected, scopes_list(scopes),
               _check.text(token, "token"))

    def authorization_url(self, redirect_uri: str, **options: Any):
        """The authorize URL (PKCE S256, state, nonce, ``offline_access``).

        Options: ``scopes``, ``state``, ``nonce``, ``prompt`` and
        ``extra_params``, a mapping of further query parameters (e.g.
        ``{"provider": "fnb"}``, ``login_hint``), str to str, sent in name
        order; one the URL sets itself (``state``, ``scope``, ...) is a
        ``ConfigError`` naming ``extra_params``."""
        from ._ffi.freshtoken import AuthorizationUrlOptions

        request = _check.record(AuthorizationUrlOptions, dict(options, redirect_uri=redirect_uri))
        return native(self._native.authorization_url, request)

    def code_from_redirect(self, redirect: str, expected_state: str) -> str:
        """The authorization code of ``redirect``, the URL the server sent
        the user back to (or its query string), for ``exchange_code``.

        Checked first, nothing sent: its ``state`` must be
        ``expected_state`` (the kept ``authorization_url()`` result's
        ``state``, RFC 6749 §10.12); for a client made by ``discover``, its
        ``iss`` must be the provider's issuer, and be there when the
        provider announces it (RFC 9207). An error redirect with the right
        state raises its ``OAuthError`` (``oauth_error == "access_denied"``
        when the user said no); any other mismatch, a repeated parameter or
        a missing code raises ``InvalidResponseError`` naming what (never a
        value)."""
        redirect = _check.text(redirect, "redirect")
        expected_state = _check.text(expected_state, "expected_state")
        return native(self._native.code_from_redirect, redirect, expected_state)

    def _exchanged(self, key: str, store: TokenStore, guarded: TokenStore, handle: UserSession) -> Any:
        """The session a code exchange made, its token mirrored."""
        session = self._new_session(key, store, handle)
        session._guarded = guarded
        session._refill()
        return session

    def _new_session(self, key: str, store: TokenStore, handle: Optional[UserSession] = None) -> Any:
        key = _check.key(key)
        _check.store(store)
        session = self._session_class(self, key, store, handle)
        with self._lock:
            self._handles[key] = session
            while len(self._handles) > self._bound:
                del self._handles[next(iter(self._handles))]
        return session


class _Closed:
    """A closed client's ``_native``: every use raises ``RuntimeError``."""

    __slots__ = ("_name",)

    def __init__(self, client: ClientCore) -> None:
        self._name = type(client).__name__

    def __getattr__(self, name: str) -> NoReturn:
        raise _closed_named(self._name)


def closed_error(client: ClientCore) -> RuntimeError:
    """The error of every call on a closed client (and its session handles)."""
    return _closed_named(type(client).__name__)


def _closed_named(name: str) -> RuntimeError:
    return RuntimeError(f"this freshtoken {name} is closed: make a new one")


def _unsaved_count(error: Optional[BaseException]) -> Optional[int]:
    """How many records the core's ``save_unsaved`` error says are unsaved (src/unsaved.rs)."""
    found = None if error is None else re.search(r"(\d+) session record\(s\) held only", str(error))
    return int(found.group(1)) if found else None


# Every client of this process: a forked child makes their handle-map locks
# anew (a parent's thread may have held one at the fork), as _mirror.py does
# for the mirrors' locks; and at exit each saves what it holds unsaved.
_clients: "weakref.WeakSet[ClientCore]" = weakref.WeakSet()


def _save_unsaved_at_exit(deadline: float) -> None:
    """freshtoken's exit hook, once the calls still running ended (see
    ``_loop._at_exit``): each live client of this process saves what it
    holds only in memory (``save_unsaved``), all at once, until
    ``deadline`` (``time.monotonic()``) but at least ``CORE_EXIT_WAIT_S``;
    one whose save failed, or did not end, says so at ERROR. Clients a
    forked child inherited are left to the parent, whose records they are
    (the child's copy of one may be older than what the parent saved since)."""
    pid = os.getpid()
    saving = []
    for client in list(_clients):
        inner = client._inner
        if inner is None or client._pid != pid:
            continue
        try:
            saving.append((client, _loop.start(inner.save_unsaved)))
        except Exception:  # noqa: BLE001 - best effort: the others still save
            continue
    if not saving:
        return
    wait = max(deadline - time.monotonic(), _loop.CORE_EXIT_WAIT_S)
    concurrent.futures.wait([future for _, future in saving], wait)
    for client, future in saving:
        if not future.done():
            future.cancel()
            client._log_unsaved(None, "exit")
            continue
        error = None if future.cancelled() else future.exception()
        if error is not None:
            client._log_unsaved(error, "exit")


_loop.at_exit(_save_unsaved_at_exit)


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def core_time(clock: Clock) -> Callable[[], float]:
    """The mirror's clock for a host ``clock``: its reading where the core
    takes it (an integer, not a bool, from 0 to the end of year 9999, in
    ms), else the system clock, which the core then reads instead (see
    ``GuardedClock`` and the core's clock adapter). The mirror must never
    judge freshness on a reading the core refused: it would serve a token
    the core judges stale (a negative or float reading), or none at all."""

    def now() -> float:
        try:
            value = clock.now_ms()
            if not isinstance(value, bool):
                ms = int.__index__(operator.index(value))  # its value: an int subclass compares as one
                if 0 <= ms <= LATEST_PLAUSIBLE_MS:
                    return ms
        except Exception:  # noqa: BLE001 - raised, or not an integer: the core reads the system clock
            pass
        return time.time() * 1000

    return now


def client_options(token_endpoint: str, client_id: str, options: Dict[str, Any]) -> TokenClientOptions:
    """The core's ``TokenClientOptions`` from the keyword options, each
    checked (``retry`` may be a dict or a ``RetryOptions``, ``on_event`` a
    callable taking a ``TokenEvent``: both are replaced in ``options`` by
    what the core takes). A bad or unknown one raises ``ConfigError``."""
    if options.get("retry") is not None:
        options["retry"] = _check.nested(RetryOptions, options["retry"], "retry")
    if options.get("on_event") is not None:
        options["on_event"] = listener(options["on_event"])
    values = dict(options, token_endpoint=token_endpoint, client_id=client_id)
    return _check.record(TokenClientOptions, values)


def seed_options(options: Optional[SeedOptions], fields: Dict[str, Any]) -> SeedOptions:
    """``seed()``'s argument: a ``SeedOptions`` or its fields as keywords
    (not both), checked field by field."""
    if options is None:
        return _check.record(SeedOptions, fields)
    if fields:
        raise config_error("options", "give seed() a SeedOptions or keyword fields, not both")
    if not isinstance(options, SeedOptions):
        raise config_error("options", f"options must be a SeedOptions, not {_check.type_name(options)} "
                                      "(or pass its fields as keywords: seed(refresh_token=...))")
    return _check.record(SeedOptions, _check.fields_of(options))


def scopes_list(scopes: Union[str, Iterable[str]]) -> List[str]:
    """A scope set as the core takes it: a list of strings (``ConfigError`` otherwise)."""
    return _check.text_list(scopes, "scopes")


def guarded_http(http: Optional[HttpClient]) -> HttpClient:
    """``http`` (checked) behind the guard; None: the default urllib client."""
    _check.http(http)
    if http is None:
        return UrllibHttpClient()
    guarded = isinstance(http, GuardedHttp) or (
        isinstance(http, UrllibHttpClient) and type(http).send is UrllibHttpClient.send)
    return http if guarded else GuardedHttp(http)


def guarded_store(store: TokenStore, field: str = "store") -> TokenStore:
    """``store`` (checked: ``ConfigError(field)``) behind the guard."""
    _check.store(store, field)
    # A store implemented in Rust (EncryptedStore) is passed as it is: it
    # raises nothing unexpected. Any other (a TokenStoreBase too: its members
    # stay as their author wrote them) is guarded whole.
    return store if isinstance(store, (GuardedStore, TokenStoreImpl)) else GuardedStore(store)


def answered_store(guarded: TokenStore) -> TokenStore:
    """A guarded store for a call whose future adopts it in the core
    (``exchange_code``): its synchronous members asked now, on the caller's
    thread, not on freshtoken's loop (see ``AnsweredStore``). A store
    implemented in Rust answers them itself, at once."""
    return guarded if isinstance(guarded, TokenStoreImpl) else AnsweredStore(guarded)
