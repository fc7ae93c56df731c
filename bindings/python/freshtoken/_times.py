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


def from_ms(ms: Optional[int]) -> Optional[datetime]:
    """Unix milliseconds as an aware UTC ``datetime`` (exact to the millisecond); None stays None."""
    return None if ms is None else _EPOCH + timedelta(milliseconds=ms)


def _instant(field: str, doc: str) -> property:
    return property(lambda self: from_ms(getattr(self, field)), doc=doc)


TokenInfo.expires_at = _instant("expires_at_ms", "When the access token expires (aware UTC datetime).")
TokenInfo.refresh_expires_at = _instant(
    "refresh_expires_at_ms", "When the refresh token's sliding lifetime ends (aware UTC datetime), if known.")
SessionStatus.access_expires_at = _instant(
    "access_expires_at_ms", "When the current access token expires (aware UTC datetime), if known.")
SessionStatus.refresh_expires_at = _instant(
    "refresh_expires_at_ms", "When the refresh token's sliding lifetime ends (aware UTC datetime), if known.")
