"""TI ADS1115 16-bit ADC, from its datasheet (SBAS444): 9.6 register map
(pointer register, conversion, config, Lo_thresh, Hi_thresh), 9.4 operating modes."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..bus import BusNak
from .base import SimChip
from .physics import ReactorModel

CONVERSION, CONFIG, LO_THRESH, HI_THRESH = range(4)
# 9.6: reset values.
RESET = {CONVERSION: 0x0000, CONFIG: 0x8583, LO_THRESH: 0x8000, HI_THRESH: 0x7FFF}
OS = 0x8000  # config bit 15: write 1 starts a single conversion; reads 0 while converting
MODE = 0x0100  # config bit 8: 1 = single-shot / power-down (reset), 0 = continuous
# Config bits 14:12 MUX -> (positive input, negative input or None for GND).
MUX = {
    0: (0, 1),
    1: (0, 3),
    2: (1, 3),
    3: (2, 3),
    4: (0, None),
    5: (1, None),
    6: (2, None),
    7: (3, None),
}
# Config bits 11:9 PGA -> full-scale range (V).
FULL_SCALE_V = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)
# Config bits 7:5 DR -> samples per second; a conversion takes 1/DR.
DATA_RATE_SPS = (8, 16, 32, 64, 128, 250, 475, 860)


class Ads1115Chip(SimChip):
    """Pointer byte selects a register; two bytes after it write it, reads return it."""

    def __init__(
        self,
        address: int,
        model: ReactorModel,
        *,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        super().__init__(address, seed=seed)
        self.model = model
        self.speed = speed
        self._clock = clock
        self.registers = dict(RESET)
        self.pointer = CONVERSION
        self._converting: tuple[float, int] | None = None  # (done at, result)
        self.conversions: list[tuple[int, int]] = []  # (config, result) of each conversion
        self._continuous_since: float | None = None

    def power_cycle(self) -> None:
        self.registers = dict(RESET)
        self.pointer = CONVERSION
        self._converting, self._continuous_since = None, None

    @property
    def config(self) -> int:
        """The config register as a read returns it (OS reads 0 while converting)."""
        self._settle()
        return self.registers[CONFIG]

    @config.setter
    def config(self, value: int) -> None:
        self.registers[CONFIG] = value

    def on_write(self, data: bytes) -> None:
        if not data:
            return
        # 9.6.1: pointer register bits 7:2 are reserved and always written 0.
        if data[0] & 0xFC:
            raise BusNak(f"0x{self.address:02x}: ADS1115 pointer byte 0x{data[0]:02x} invalid")
        self._settle()
        self.pointer = data[0]
        if len(data) < 3 or self.pointer == CONVERSION:
            return  # the conversion register is read-only
        value = (data[1] << 8) | data[2]
        if self.pointer != CONFIG:
            self.registers[self.pointer] = value
            return
        self.registers[CONFIG] = value | OS  # OS is a start bit, not stored
        if value & MODE:
            self._continuous_since = None
            if value & OS:
                self._start(value)
        else:
            self._continuous_since = self._clock()
            self._start(value)

    def _start(self, config: int) -> None:
        duration = 1.0 / DATA_RATE_SPS[(config >> 5) & 0x7] / self.speed
        self.registers[CONFIG] &= ~OS
        self._converting = (self._clock() + duration, self._sample(config))

    def _sample(self, config: int) -> int:
        positive, negative = MUX[(config >> 12) & 0x7]
        volts = self.model.state().analog_v
        difference = volts[positive] - (volts[negative] if negative is not None else 0.0)
        raw = round(difference / FULL_SCALE_V[(config >> 9) & 0x7] * 32768)
        return max(-32768, min(32767, raw)) & 0xFFFF

    def _settle(self) -> None:
        if self._converting is None or self._clock() < self._converting[0]:
            return
        self.registers[CONVERSION] = self._converting[1]
        self.conversions.append((self.registers[CONFIG], self._converting[1]))
        self._converting = None
        if self._continuous_since is None:
            self.registers[CONFIG] |= OS  # single-shot: powers down, OS reads 1
        else:
            self._start(self.registers[CONFIG])  # continuous: the next one begins

    def on_read(self, length: int) -> bytes:
        self._settle()
        register = self.registers[self.pointer]
        return (register.to_bytes(2, "big") * ((length + 1) // 2))[:length]
