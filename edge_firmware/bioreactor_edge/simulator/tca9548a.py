"""TI TCA9548A 8-channel I2C switch, from its datasheet (SCPS207F, Nov 2016)."""

from __future__ import annotations

from .base import SimChip

# §8.5.4 Table 2: 0x00, no channel selected, is the power-up/reset default state.
POWER_UP_MASK = 0x00


class Tca9548aMux(SimChip):
    """One control register; bit C set connects downstream channel C (§8.5.4)."""

    def __init__(self, address: int = 0x70, *, seed: int = 0) -> None:
        if address not in range(0x70, 0x78):
            # §8.5.2 Table 1: A2-A0 select 0x70-0x77.
            raise ValueError(f"a TCA9548A answers at 0x70-0x77, not 0x{address:02x}")
        super().__init__(address, seed=seed)
        self.mask = POWER_UP_MASK
        self.selects = 0  # control-register writes received (for tests)

    def on_write(self, data: bytes) -> None:
        # §8.5.4: "If multiple bytes are received by the TCA9548A, it saves the
        # last byte received." A write of no byte (a quick write) changes nothing.
        if data:
            self.mask = data[-1]
            self.selects += 1

    def power_cycle(self) -> None:
        self.mask = POWER_UP_MASK

    def on_read(self, length: int) -> bytes:
        # §8.5.3.2 / Figure 11: a read returns the control register.
        return bytes([self.mask]) * length
