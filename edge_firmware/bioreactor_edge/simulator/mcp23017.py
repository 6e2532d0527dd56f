"""Microchip MCP23017 16-bit I/O expander, I2C side, from its datasheet (DS20001952C).

Modelled: the 22 registers with IOCON.BANK = 0 (Table 3-5), their power-on
values (IODIR 0xFF, every other 0x00), the register pointer set by the first
written byte, sequential mode (IOCON.SEQOP = 0: the pointer steps after each
byte and wraps to 0x00 after 0x15; section 3.2.1), byte mode (SEQOP = 1: it
toggles within the A/B pair), GPIO writes landing in OLAT (3.5.10) and GPIO
reads showing output pins' latch and input pins' external level. Not modelled:
BANK = 1 addressing, interrupts, pull-ups.

`pins` tells who is wired to the output pins: each change of what the chip
actually drives (an output pin's latch; an input pin drives nothing, i.e.
low for a relay board) is reported to `on_change` with the driven word.
`power_cycle()` is the fault of a brown-out: the registers return to reset.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import SimChip

REGISTER_COUNT = 0x16
IODIRA, IODIRB = 0x00, 0x01
IOCONA, IOCONB = 0x0A, 0x0B
GPIOA, GPIOB = 0x12, 0x13
OLATA, OLATB = 0x14, 0x15
IOCON_BANK = 0x80
IOCON_SEQOP = 0x20


class Mcp23017Chip(SimChip):
    """An MCP23017 whose driven outputs are reported to `on_change(word)`."""

    def __init__(
        self,
        address: int = 0x20,
        *,
        on_change: Callable[[int], None] | None = None,
        external_inputs: int = 0x0000,
        seed: int = 0,
    ) -> None:
        if address not in range(0x20, 0x28):
            raise ValueError(f"an MCP23017 answers at 0x20-0x27, not 0x{address:02x}")
        super().__init__(address, seed=seed)
        self.on_change = on_change
        self.external_inputs = external_inputs
        self.registers = bytearray(REGISTER_COUNT)
        self._pointer = 0
        self._driven = -1
        self.power_cycle()

    def power_cycle(self) -> None:
        """Power-on reset: IODIR 0xFF, everything else 0 (Table 3-5 "POR/RST value")."""
        self.registers = bytearray(REGISTER_COUNT)
        self.registers[IODIRA] = self.registers[IODIRB] = 0xFF
        self._pointer = 0
        self._report()

    @property
    def driven(self) -> int:
        """The word the pins drive now: latch bits of output pins, 0 for input pins."""
        direction = self.registers[IODIRA] | (self.registers[IODIRB] << 8)
        latch = self.registers[OLATA] | (self.registers[OLATB] << 8)
        return latch & ~direction & 0xFFFF

    def _report(self) -> None:
        driven = self.driven
        if driven != self._driven:
            self._driven = driven
            if self.on_change is not None:
                self.on_change(driven)

    def _advance(self) -> None:
        iocon = self.registers[IOCONA]
        if iocon & IOCON_SEQOP:
            self._pointer ^= 1  # byte mode, BANK = 0: toggles within the A/B pair
        else:
            self._pointer = (self._pointer + 1) % REGISTER_COUNT

    def on_write(self, data: bytes) -> None:
        if not data:
            return
        self._pointer = data[0] % REGISTER_COUNT
        for value in data[1:]:
            register = self._pointer
            if register in (GPIOA, GPIOB):
                register += OLATA - GPIOA  # 3.5.10: writing GPIO modifies OLAT
            if register in (IOCONA, IOCONB):
                # IOCONA and IOCONB are one register; BANK = 1 is not modelled.
                self.registers[IOCONA] = self.registers[IOCONB] = value & ~IOCON_BANK
            else:
                self.registers[register] = value
            self._advance()
        self._report()

    def on_read(self, length: int) -> bytes:
        out = bytearray()
        for _ in range(length):
            register = self._pointer
            if register in (GPIOA, GPIOB):
                shift = 8 * (register - GPIOA)
                direction = self.registers[IODIRA + register - GPIOA]
                latch = self.registers[OLATA + register - GPIOA]
                external = (self.external_inputs >> shift) & 0xFF
                out.append((latch & ~direction | external & direction) & 0xFF)
            else:
                out.append(self.registers[register])
            self._advance()
        return bytes(out)
