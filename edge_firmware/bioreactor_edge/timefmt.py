"""The one time format of the API and logs: ISO 8601 UTC with milliseconds."""

from __future__ import annotations

import time


def iso_ms(time_ms: int | None) -> str | None:
    """`1764039600000` -> `"2025-11-25T03:00:00.000Z"`; None stays None."""
    if time_ms is None:
        return None
    seconds, millis = divmod(time_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
