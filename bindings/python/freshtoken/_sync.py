"""The synchronous client, for apps without an event loop (Flask, Django,
scripts, worker threads): ``Client`` and its ``Session``.

Thread-safe: share one ``Client`` (and even one ``Session``) across threads.
A cached ``access_token()`` reads the client's mirror and clock and returns
without calling into the core. Every other call runs on freshtoken's own
event loop (a daemon thread) and blocks the calling thread until it answers;
``timeout=`` (seconds) bounds that wait with the built-in ``TimeoutError``,
and only the wait ends: a refresh the caller started or joined still
finishes and saves for everyone else.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Optional

from ._ffi.freshtoken import (Clock, ExchangeCodeOptions, HttpClient, SeedOptions, SessionStatus, TokenInfo,
                              TokenStore, discover_client)
from . import _check, _loop
from ._errors import FreshTokenError
from ._shared import (ClientCore, SessionCore, answered_store, closed_error, guarded_store, scopes_list,
                      seed_options)

__all__ = ["Client", "Session"]

# The system clock the mirror reads (a module global: the fastest lookup).
_time = time.time


class Session(SessionCore):
    """One user's tokens, for synchronous code (from ``Client.session``).

    Handles with the same key in one client share one state, one refresh and
    one mirrored token, so making one per request is fine.
    """

    __slots__ = ()

    def access_token(self, timeout: Optional[float] = None) -> str:
        """A fresh access token. While the mirrored token is fresh on the
        client's clock this is an attribute read and a clock read, no call
        into the core; otherwise the core answers (one refresh shared by all
        callers, the rotated record saved before anyone gets the new token).
        ``timeout`` (seconds) bounds only this caller's wait."""
        entry = self._entry
        if timeout is None and entry.since <= _time() < entry.until:
            return entry.token
        return self._access_token(timeout)

    def _mirrored(self) -> Optional[str]:
        """The mirrored token if it is fresh on the client's clock, else None."""
        entry = self._entry
        return entry.token if entry.since <= _time() < entry.until else None

    def _access_token(self, timeout: Optional[float]) -> str:
        # A timeout is checked on every path, the mirrored one too: a bad one
        # must not pass while a token is fresh and fail only once it is not.
        timeout = _check.timeout(timeout)
        token = self._mirrored()
        if token is None:
            token = self._refill()
        if token is not None:
            return token
        token = _loop.call(self._handle().access_token, timeout=timeout)
        self._refill()
        return token

    def tokens(self, *, timeout: Optional[float] = None) -> TokenInfo:
        """The fresh token with its expiry, scope, ID token and refresh expiry."""
        return self._replacing("tokens", timeout=timeout)

    def refresh(self, *, timeout: Optional[float] = None) -> TokenInfo:
        """A forced refresh, shared with concurrent callers."""
        return self._replacing("refresh", timeout=timeout)

    def token_rejected(self, token: str, *, timeout: Optional[float] = None) -> TokenInfo:
        """The API rejected ``token``: refresh, unless another caller already did."""
        return self._replacing("token_rejected", _check.text(token, "token"), timeout=timeout)

    def seed(self, options: Optional[SeedOptions] = None, *, timeout: Optional[float] = None,
             **fields: Any) -> None:
        """Adopts an existing refresh token: ``seed(refresh_token=…, access_token=…, expires_in=…)``."""
        self._replacing("seed", seed_options(options, fields), timeout=timeout)

    def status(self, *, timeout: Optional[float] = None) -> SessionStatus:
        """What is known without sending anything (a record not saved yet is
        saved first, as by every call)."""
        return self._replacing("status", timeout=timeout)

    def revoke(self, *, timeout: Optional[float] = None) -> None:
        """Revokes the session at the server (RFC 7009: the refresh token,
        then a live access token) and marks it dead, reason ``"revoked"``:
        every later call raises ``ReauthorizationRequired`` without a request,
        in this process and, through the store, in others, until ``seed()``
        or a new code exchange (``status()`` answers, and ``revoke()``
        returns or retries a revocation still pending). A refresh in flight
        finishes first, so the rotated token is the one revoked. A
        revocation that fails for good raises the cause's class
        (``TransientError``, ``NetworkError``, ``InvalidClientError``, …)
        whose message says the server may still hold the token; the session
        is dead all the same, and ``revoke()`` again retries. A session whose
        last refresh lost its answer (``status().in_doubt``) may have a
        successor token at the server that this client never received: the
        token held is revoked, then ``ReauthorizationRequired`` (reason
        ``lost_rotation``) says the server may still hold a token, at every
        later call too (sending nothing): end that grant at the provider. A
        client with no revocation endpoint raises ``ConfigError`` naming
        ``revocation_endpoint`` and changes nothing. ``timeout`` (seconds)
        bounds only this caller's wait."""
        try:
            _loop.call(self._drop().revoke, timeout=timeout)
        finally:
            self._dropped()

    def _replacing(self, method: str, *args: Any, timeout: Optional[float]) -> Any:
        try:
            result = _loop.call(getattr(self._drop(), method), *args, timeout=timeout)
        finally:
            self._dropped()
        self._refill()
        return result


class _HostClockSession(Session):
    """A ``Session`` of a client built with ``clock=``: the mirror reads that clock."""

    __slots__ = ()

    def access_token(self, timeout: Optional[float] = None) -> str:
        token = self._mirrored() if timeout is None else None
        return token if token is not None else self._access_token(timeout)

    def _mirrored(self) -> Optional[str]:
        entry = self._entry
        try:
            if entry.since <= self._now() < entry.until:
                return entry.token
        except Exception:  # noqa: BLE001 - a failing host clock: ask the core
            pass
        return None

    access_token.__doc__ = Session.access_token.__doc__


class Client(ClientCore):
    """One OAuth client for synchronous code: user sessions, client tokens,
    the code flow, revocation. Thread-safe.

    ``Client(token_endpoint, client_id, client_secret=…, leeway_seconds=…,
    timeout_ms=…, retry={…}, revocation_endpoint=…, …)`` takes the fields of
    ``TokenClientOptions`` as keywords (``revocation_endpoint`` defaults to
    the token endpoint's ``…/token`` → ``…/revocation``; there is none for
    a token endpoint not ending in ``/token``);
    ``Client.discover(issuer, client_id, …)`` reads the endpoints from the
    provider's discovery document instead. ``http`` defaults to :class:`UrllibHttpClient`; ``clock``
    (for tests with fake time) to the system clock.

    ``on_event=callable`` receives every event (refresh, failure, re-link,
    save, lease wait, client token, revocation) as a :class:`TokenEvent`,
    on freshtoken's events thread, after the fact: what it raises is
    ignored, and a slow one never delays a refresh. ``event_keys="hidden"``
    leaves the session key out of events (default ``"full"``).
    """

    _session_classes = (Session, _HostClockSession)

    def client_token(self, scopes: Iterable[str] = (), *, timeout: Optional[float] = None) -> str:
        """A fresh client-credentials token for ``scopes`` (cached per scope set)."""
        return _loop.call(self._native.client_token, scopes_list(scopes), timeout=timeout)

    def revoke_client_tokens(self, *, timeout: Optional[float] = None) -> None:
        """Revokes every cached client token at the server (RFC 7009) and
        forgets it: the next ``client_token()`` asks for a new one. Every
        scope set is tried; the first failure is raised, and a token whose
        revocation failed is kept and revoked again by the next call. A
        ``client_token()`` already waiting for a request in flight still gets
        its token, which is revoked right after. With no revocation
        endpoint, ``ConfigError`` naming it, the tokens kept.
        ``timeout`` (seconds) bounds only the wait: the revocations go on."""
        _loop.call(self._native.revoke_client_tokens, timeout=timeout)

    def save_unsaved(self, *, timeout: Optional[float] = None) -> None:
        """Saves every session record this client holds only in memory: a
        rotation (or a new link) whose save the store refused, which the
        session's next call would otherwise save first. Refreshes running are
        waited for. Call it before dropping the client (at shutdown): a
        record that goes unsaved with the client takes the session's newest
        refresh token with it, and the stored one is spent. Raises ``StorageError`` saying how many are
        still unsaved (they are kept; calling again retries). Seeds and code
        exchanges running are waited for too. ``timeout`` (seconds) ends the wait:
        saves already started go on, the others are left for the next call.
        ``close()`` calls it."""
        _loop.call(self._native.save_unsaved, timeout=timeout)

    def close(self, *, timeout: Optional[float] = None) -> None:
        """Closes the client: later calls on it and on its session handles
        raise ``RuntimeError`` (``session()`` still returns a handle, whose
        calls raise); calls already running go on. Then it saves every
        record the client holds only in memory (``save_unsaved()``: a
        rotation whose save the store refused; calls running are waited for)
        and lets the native client go. Call it at shutdown, or use the client
        as a context manager (``with Client(...) as client:``), which calls
        it on leaving the block. Closing a closed client does nothing, unless
        its save failed: then it tries again.

        If the store still refuses, this logs it at ERROR on the
        ``freshtoken`` logger (how many records; never a token or a secret)
        and raises ``StorageError``: those records, each the newest refresh
        token of its session (the stored one is spent), are then lost with
        the client unless its store takes them at a later ``close()`` or at
        interpreter exit (freshtoken's exit hook tries once more for every
        live client). ``timeout`` (seconds) ends the wait with the built-in
        ``TimeoutError``: the saves go on, the client stays closed."""
        timeout = _check.timeout(timeout)
        if _loop.on_event_loop():  # before closing: it could not save
            raise RuntimeError("a blocking close() on freshtoken's own event loop (from an async store or HTTP "
                               "callback) would wait for itself: use the async client there")
        inner = self._begin_close()
        if inner is None:
            return
        try:
            _loop.call(inner.save_unsaved, timeout=timeout)
        except FreshTokenError as error:
            self._log_unsaved(error, "close")
            raise
        self._closed_saved(inner)

    def __enter__(self) -> "Client":
        if self._closed:
            raise closed_error(self)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @classmethod
    def discover(cls, issuer: str, client_id: str, *, http: Optional[HttpClient] = None,
                 clock: Optional[Clock] = None, timeout: Optional[float] = None, **options: Any) -> "Client":
        """A client for the provider ``issuer`` (``https://…``, or ``http`` on
        loopback), its token, authorization and revocation endpoints read from
        ``{issuer}/.well-known/openid-configuration`` (one request, no retry)
        and checked: the document's ``issuer`` must be ``issuer``, its
        endpoints https when the issuer is. Takes the constructor's keyword
        options (an endpoint given there wins over the document's; one the
        document does not publish is never guessed);
        ``client.provider_metadata`` keeps what was read. A missing or bad
        document raises ``InvalidResponseError``, a 429 or 5xx
        ``TransientError``, an unreachable issuer ``NetworkError`` (or
        ``freshtoken.TimeoutError``), a plain-http issuer off loopback
        ``ConfigError``. Blocks on freshtoken's loop; ``timeout`` (seconds)
        bounds the wait."""
        args = cls._discovery(issuer, client_id, http, clock, options)
        return cls._discovered(_loop.call(discover_client, *args, timeout=timeout), clock, options)

    def exchange_code(self, key: str, store: TokenStore, *, code: str, code_verifier: str,
                      redirect_uri: str, timeout: Optional[float] = None) -> Session:
        """Exchanges an authorization code; stores the first record under ``key``.

        A code is sent once per process: a repeat for the same ``key`` while
        the first runs or within 10 minutes after joins the first call or gets
        its outcome; for another key, verifier or redirect URI it raises
        ``ConfigError`` naming ``code``, nothing sent. A code that may have
        reached the server (a lost answer, a 5xx: not retried) counts as
        redeemed: a repeat then raises the same error and sends nothing, and
        the user logs in again.
        A repeat after a failed save saves the record."""
        if self._closed:
            raise closed_error(self)
        key = _check.key(key)
        guarded = guarded_store(store)
        options = _check.record(ExchangeCodeOptions, dict(code=code, code_verifier=code_verifier,
                                                          redirect_uri=redirect_uri))
        adopted = answered_store(guarded)  # its supports_* asked here, not on freshtoken's loop
        self._mirror.begin(key)
        try:
            handle = _loop.call(self._native.exchange_code, options, key, adopted, timeout=timeout)
        finally:
            self._mirror.end(key)  # nothing mirrored during it: it replaces the token
        return self._exchanged(key, store, guarded, handle)
