"""A RawBus whose chips follow scripts written in the tests, for driver unit tests.

Each chip answers exactly what its script says, so a test states the bytes a
datasheet shows and checks that the driver sends and understands them. An
unexpected command fails the test (AssertionError reaches the awaiting driver).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from smbus2 import I2cFunc

from bioreactor_edge.bus import BusNak


class ScriptedChip:
    """Acknowledges everything and has nothing to say; subclasses script replies."""

    def on_write(self, data: bytes) -> None:
        return

    def on_read(self, length: int) -> bytes:
        raise BusNak("nothing to read")


@dataclass
class Step:
    """One EZO command and the replies its successive reads get (padded with NULs)."""

    command: bytes
    replies: list[bytes]


def ok(text: str) -> bytes:
    """A successful EZO reply: response code 1, the ASCII text, NUL ("Requesting data" page)."""
    return b"\x01" + text.encode("ascii") + b"\x00"


SYNTAX_ERROR = b"\x02"
PROCESSING = b"\xfe"
NO_DATA = b"\xff"


@dataclass
class EzoTranscript(ScriptedChip):
    """An EZO circuit replaying a transcript of commands and replies, in order."""

    steps: list[Step]
    received: list[bytes] = field(default_factory=list)
    _current: Step | None = None

    def on_write(self, data: bytes) -> None:
        self.received.append(data)
        assert self.steps, f"unexpected command {data!r}: transcript is finished"
        expected = self.steps[0].command
        assert data == expected, f"expected command {expected!r}, got {data!r}"
        self._current = self.steps.pop(0)

    def on_read(self, length: int) -> bytes:
        if self._current is None or not self._current.replies:
            reply = NO_DATA
        else:
            reply = self._current.replies.pop(0)
        return reply.ljust(length, b"\x00")[:length]

    @property
    def finished(self) -> bool:
        return not self.steps and (self._current is None or not self._current.replies)


class ScriptedBus:
    """A RawBus with scripted chips; absent addresses NAK. Records writes with timestamps."""

    def __init__(self, chips: dict[int, ScriptedChip]) -> None:
        self.chips = chips
        self.events: list[tuple[float, str, int, bytes]] = []

    def _chip(self, address: int) -> ScriptedChip:
        chip = self.chips.get(address)
        if chip is None:
            raise BusNak(f"0x{address:02x}: no chip")
        return chip

    def funcs(self) -> int:
        return int(I2cFunc.I2C | I2cFunc.SMBUS_QUICK | I2cFunc.SMBUS_READ_BYTE)

    def quick_write(self, address: int) -> None:
        self._chip(address)

    def receive_byte(self, address: int) -> int:
        return self._chip(address).on_read(1)[0]

    def write(self, address: int, data: bytes) -> None:
        chip = self._chip(address)
        self.events.append((time.monotonic(), "write", address, data))
        chip.on_write(data)

    def read(self, address: int, length: int) -> bytes:
        chip = self._chip(address)
        self.events.append((time.monotonic(), "read", address, b""))
        return chip.on_read(length)

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        chip = self._chip(address)
        self.events.append((time.monotonic(), "write_read", address, data))
        chip.on_write(data)
        return chip.on_read(length)

    def close(self) -> None:
        return

    def writes(self, address: int) -> list[bytes]:
        """Every byte string written to `address` (plain writes and register pointers)."""
        return [data for _, kind, a, data in self.events if a == address and kind != "read"]
