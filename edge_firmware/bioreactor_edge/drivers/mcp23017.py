"""Microchip MCP23017 16-bit I/O expander (0x20-0x27) driving relays (heater, stirrer, air).

Register map with IOCON.BANK = 0, the power-on default (datasheet DS20001952C,
Table 3-5 "Control register summary (IOCON.BANK = 0)"): IODIRA 0x00 / IODIRB
0x01, OLATA 0x14 / OLATB 0x15. A register pointer byte starts every
write; in sequential mode (IOCON.SEQOP = 0, the default) the pointer then steps
to the next register (section 3.2.1 "Byte mode and sequential mode"), so A and
B of a pair are written or read in one transaction.

At power-on reset IODIR is 0xFF (Register 3-1: every pin an input) and OLAT is
0x00, so a chip that browns out or restarts silently drops every relay. The
driver reads IODIR back before each write: a used pin found as an input again
means the chip was reset, and the latch is rewritten *before* the direction,
so no pin drives anything but the wanted level for even one transaction.
"""

from __future__ import annotations

from ..bus import I2CDevice
from .base import DriverError

ADDRESSES = range(0x20, 0x28)
IODIRA = 0x00
OLATA = 0x14
PINS = range(16)
# Register 3-1: POR value of IODIRA and IODIRB.
IODIR_RESET = 0xFFFF


def _word(data: bytes, what: str) -> int:
    """A register pair read A then B (sequential mode): port A is the low byte."""
    if len(data) != 2:
        raise DriverError("garbage", f"mcp23017: expected 2 bytes of {what}, got {len(data)}")
    return data[0] | (data[1] << 8)


def _pair(register: int, word: int) -> bytes:
    return bytes([register, word & 0xFF, word >> 8])


class Mcp23017:
    """The output pins of one expander; pins not in `output_pins` stay inputs (high impedance)."""

    def __init__(self, device: I2CDevice, output_pins: frozenset[int]) -> None:
        if not output_pins <= set(PINS):
            raise ValueError(f"MCP23017 pins are 0-15, got {sorted(output_pins)}")
        self.device = device
        self.output_mask = sum(1 << pin for pin in output_pins)
        # Wanted IODIR: 0 (output) for used pins, 1 (input) for the rest.
        self.direction = IODIR_RESET & ~self.output_mask
        # Resets found after the first successful apply (a brown-out, a glitch).
        self.resets_seen = 0
        self._configured = False

    async def read_pair(self, register: int) -> int:
        return _word(await self.device.write_read(bytes([register]), 2), f"0x{register:02x}")

    async def apply(self, levels: int) -> bool:
        """Drives the output pins to `levels` (bit n = pin n high) and checks the latch.

        Returns True when the chip was found reset after it had been configured
        (its direction had to be set again). Raises DriverError when the latch does not
        read back what was written.
        """
        levels &= self.output_mask
        iodir = await self.read_pair(IODIRA)
        lost = iodir & self.output_mask != 0
        # Latch first: a pin switched to output drives the latched level at once.
        await self.device.write(_pair(OLATA, levels))
        if lost or iodir != self.direction:
            await self.device.write(_pair(IODIRA, self.direction))
        latched = await self.read_pair(OLATA) & self.output_mask
        if latched != levels:
            raise DriverError(
                "readback", f"mcp23017: latch reads 0x{latched:04x}, wrote 0x{levels:04x}"
            )
        direction = await self.read_pair(IODIRA)
        if direction & self.output_mask:
            raise DriverError(
                "readback", f"mcp23017: pins 0x{direction & self.output_mask:04x} are still inputs"
            )
        reset = lost and self._configured
        self._configured = True
        if reset:
            self.resets_seen += 1
        return reset
