"""A 24xx256 serial EEPROM (32 KiB), as on BeagleBone capes at 0x54-0x57.

From Microchip's 24AA256/24LC256/24FC256 datasheet (DS20001203X).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..bus import BusNak
from .base import SimChip

SIZE = 32 * 1024
PAGE = 64  # §6.2 page write: up to 64 bytes, wrapping within the page
WRITE_CYCLE_S = 0.005  # §1.0 AC characteristics: TWC, write cycle time 5 ms max
# BeagleBone cape EEPROM header (the System Reference Manual's cape EEPROM
# format): magic AA 55 33 EE, format revision "A1", then the board name.
CAPE_MAGIC = bytes([0xAA, 0x55, 0x33, 0xEE])


def cape_contents(board_name: str) -> bytes:
    """An EEPROM image holding a cape header; the rest is erased (0xFF)."""
    name = board_name.encode("ascii")[:32].ljust(32, b"\0")
    return (CAPE_MAGIC + b"A1" + name).ljust(SIZE, b"\xff")


class Eeprom24c256(SimChip):
    """Two address bytes select a location; reads continue from the address pointer."""

    def __init__(
        self,
        address: int,
        *,
        contents: bytes = b"",
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        if address not in range(0x50, 0x58):
            # §5.0 control byte: 1010 A2 A1 A0.
            raise ValueError(f"a 24xx256 answers at 0x50-0x57, not 0x{address:02x}")
        super().__init__(address, seed=seed)
        self.memory = bytearray(contents.ljust(SIZE, b"\xff")[:SIZE])
        self.pointer = 0
        self.writes = 0  # completed write cycles (a cape EEPROM must never get one)
        self._clock = clock
        self._busy_until = 0.0

    def _acknowledge(self) -> None:
        # §7.0 acknowledge polling: "the device will not acknowledge during a write cycle".
        if self._clock() < self._busy_until:
            raise BusNak(f"0x{self.address:02x}: EEPROM busy with a write cycle")

    def on_quick(self) -> None:
        self._acknowledge()

    def on_write(self, data: bytes) -> None:
        self._acknowledge()
        if len(data) < 2:
            return  # no complete word address: nothing latched
        # §6.1: address high byte (bit 15 is don't care), then low byte.
        self.pointer = ((data[0] & 0x7F) << 8) | data[1]
        payload = data[2:]
        if not payload:
            return  # §8.2 random read: the address is set, no write cycle starts
        page_start = self.pointer - self.pointer % PAGE
        offset = self.pointer % PAGE
        for byte in payload:
            self.memory[page_start + offset] = byte
            offset = (offset + 1) % PAGE  # §6.2: rolls over within the page
        self.pointer = page_start + offset
        self.writes += 1
        self._busy_until = self._clock() + WRITE_CYCLE_S

    def on_read(self, length: int) -> bytes:
        self._acknowledge()
        out = bytearray()
        for _ in range(length):
            out.append(self.memory[self.pointer])
            # §8.3 sequential read: rolls over from 0x7FFF to 0x0000.
            self.pointer = (self.pointer + 1) % SIZE
        return bytes(out)
