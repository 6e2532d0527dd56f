"""What every simulated chip shares: the bus-facing hooks and the fault knobs."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar


@dataclass(slots=True)
class Faults:
    """Fault knobs, settable at any time (also between two halves of a transaction)."""

    nak: bool = False  # every transaction is not acknowledged
    stuck_busy: bool = False  # an EZO circuit answers 254 forever
    garbage: bool = False  # reads return random bytes with the top bit set
    unplugged: bool = False  # gone from the bus: not acknowledged, not found by a scan


class SimChip:
    """A chip that acknowledges everything and holds no data; subclasses speak a protocol.

    The virtual bus calls one hook per message: `on_quick` (address only),
    `on_write` (the bytes written) and `on_read` (the bytes to return; an SMBus
    receive-byte is a 1-byte read on the wire). A hook raises BusNak where the
    real chip would not acknowledge.
    """

    # Whether the chip holds SCL low while it prepares data (a Raspberry Pi's
    # controller mishandles that; see adapters.RASPBERRY_PI).
    clock_stretching: ClassVar[bool] = False

    def __init__(self, address: int, *, seed: int = 0) -> None:
        if address not in range(0x08, 0x78):
            raise ValueError(f"0x{address:02x} is not a usable 7-bit I2C address")
        self.address = address
        self.faults = Faults()
        self._rng = random.Random(seed)  # noqa: S311 (simulated faults, not secrets)

    def on_quick(self) -> None:
        return

    def on_write(self, data: bytes) -> None:
        return

    def on_read(self, length: int) -> bytes:
        return bytes([0xFF]) * length

    def power_cycle(self) -> None:
        """Back on the bus after losing power: volatile state is gone."""
        return

    def garbage(self, length: int) -> bytes:
        """What a read returns under the garbage fault: bytes no chip would send."""
        return bytes(self._rng.randrange(0x80, 0xFE) for _ in range(length))
