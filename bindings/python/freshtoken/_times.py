"""Times as ``datetime`` (timezone-aware, UTC) beside the core's Unix
milliseconds: ``TokenInfo.expires_at`` / ``refresh_expires_at`` and
``SessionStatus.access_expires_at`` / ``refresh_expires_at`` are added to
the generated records as read-only properties; the ``*_ms`` fields stay.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

from ._ffi.freshtoken import SessionStatus, TokenInfo

__all__ = ["from_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


#: The range of Unix milliseconds a ``datetime`` holds (years 1 to 9999).
_MIN_MS = (datetime.min.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)
_MAX_MS = (datetime.max.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: Optional[int]) -> Optional[datetime]:
    """Unix milliseconds as an aware UTC ``datetime`` (exact to the millisecond); None stays None.
    A time outside years 1 to 9999 (a foreign record, a host clock far ahead)
    reads as the nearest ``datetime`` there is, never an ``OverflowError``."""
    return None if ms is None else _EPOCH + timedelta(milliseconds=max(_MIN_MS, min(ms, _MAX_MS)))


def _instant(field: str, doc: str) -> property:
    return property(lambda self: from_ms(getattr(self, field)), doc=doc)


TokenInfo.expires_at = _instant("expires_at_ms", "When the access token expires (aware UTC datetime).")
TokenInfo.refresh_expires_at = _instant(
    "refresh_expires_at_ms", "When the refresh token's sliding lifetime ends (aware UTC datetime), if known.")
SessionStatus.access_expires_at = _instant(
    "access_expires_at_ms", "When the current access token expires (aware UTC datetime), if known.")
SessionStatus.refresh_expires_at = _instant(
    "refresh_expires_at_ms", "When the refresh token's sliding lifetime ends (aware UTC datetime), if known.")
