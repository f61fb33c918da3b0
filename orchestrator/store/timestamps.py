"""Timestamps as the store, the lock file and the events write them: UTC ISO 8601 with milliseconds and a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_seconds(stamp: str | None) -> float | None:
    """A ``now_iso()`` stamp as seconds since the epoch; ``None`` when missing or unreadable."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
