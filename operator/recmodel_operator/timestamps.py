"""Kubernetes timestamps (RFC 3339, `2026-12-01T10:00:00Z`) as aware datetimes (pure)."""

from __future__ import annotations

import datetime


def parse_time(text: object) -> datetime.datetime | None:
    """None for an absent or unreadable timestamp."""
    if not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
