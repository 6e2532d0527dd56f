"""Golden transcripts: command and reply bytes as the vendors' datasheets show them.

Each transcript is run against the chip model (it must answer exactly these
bytes, and not before the documented delay) and against the drivers (a scripted
bus replays it; the driver must send exactly these commands and make of the
replies what the datasheet says they mean).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Exchange:
    """One command and what a read returns once `wait_s` has passed."""

    command: bytes
    wait_s: float  # the processing delay the datasheet documents for it
    reply: bytes  # response code, text and NUL (EZO) or the register bytes
    # A measurement: the model's value comes from its reactor, so only the form
    # (digits before and after the point, fields) must match.
    measured: bool = False


@dataclass(frozen=True)
class Transcript:
    name: str
    chip: str  # an EZO kind, "sht4x", "ads1115" or "tca9548a"
    address: int
    exchanges: tuple[Exchange, ...]
    source: str  # datasheet, page or section the bytes are copied from
    firmware: str = "2.16"  # EZO: what the model's `i` reports
    # Model attributes set before the transcript (the state the example assumes).
    state: dict[str, Any] = field(default_factory=dict)
    # What the driver must conclude, by operation (see test_golden_transcripts).
    driver: str | None = None
    expect: Any = None


def ezo_ok(text: str) -> bytes:
    """Response code 1, the ASCII reply, NUL (every EZO datasheet, I2C "Response codes")."""
    return b"\x01" + text.encode("ascii") + b"\x00"
