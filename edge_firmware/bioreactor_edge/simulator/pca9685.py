"""NXP PCA9685 16-channel 12-bit PWM controller, I2C side, from its data sheet (Rev. 4).

Modelled: MODE1 (7.3.1; reset 0x11: SLEEP and ALLCALL set), MODE2 (reset
0x04), LEDn_ON/OFF from 0x06 (7.3.3; LEDn_OFF_H resets to 0x10, "full off",
which wins over "full on"), ALL_LED_ON/OFF at 0xFA-0xFD (write: every channel;
read: zero), PRE_SCALE at 0xFE (7.3.5; reset 0x1E, writes ignored unless
SLEEP is set), auto-increment (MODE1.AI: past register 69 back to MODE1, from
250 to 254 then 0; without AI the pointer stays), and reserved registers
0x46-0xF9 not acknowledged. While asleep the oscillator is off and so are the
outputs. The LED All Call address (7.1.4, 0x70) is modelled as the flag
`answers_all_call` (MODE1 bit 0); the virtual bus routes one chip per address.

`on_change(channel, duty)` is told every change of a channel's effective duty.
`power_cycle()` is the fault of a brown-out.
"""

from __future__ import annotations

from collections.abc import Callable

from ..bus import BusNak
from .base import SimChip

MODE1, MODE2 = 0x00, 0x01
LED_BASE = 0x06
LAST_LED_REGISTER = 0x45
ALL_LED_ON_L, ALL_LED_OFF_H = 0xFA, 0xFD
PRE_SCALE = 0xFE
TEST_MODE = 0xFF
SLEEP = 0x10
AUTO_INCREMENT = 0x20
RESTART = 0x80
ALLCALL = 0x01
FULL = 0x10
CHANNELS = 16


class Pca9685Chip(SimChip):
    """A PCA9685 whose effective per-channel duty cycles are reported to `on_change`."""

    def __init__(
        self,
        address: int = 0x40,
        *,
        on_change: Callable[[int, float], None] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(address, seed=seed)
        self.on_change = on_change
        self.registers = bytearray(256)
        self._pointer = 0
        self._duties = [-1.0] * CHANNELS
        self.power_cycle()

    def power_cycle(self) -> None:
        """Power-on reset (7.3.1 - 7.3.5 reset values): asleep, every output full off."""
        self.registers = bytearray(256)
        self.registers[MODE1] = SLEEP | ALLCALL
        self.registers[MODE2] = 0x04
        for channel in range(CHANNELS):
            self.registers[LED_BASE + 4 * channel + 3] = FULL
        self.registers[PRE_SCALE] = 0x1E
        self._pointer = 0
        self._report()

    @property
    def answers_all_call(self) -> bool:
        return bool(self.registers[MODE1] & ALLCALL)

    def duty(self, channel: int) -> float:
        """The share of each period the output is on (0 while asleep)."""
        if self.registers[MODE1] & SLEEP:
            return 0.0
        on_l, on_h, off_l, off_h = self.registers[
            LED_BASE + 4 * channel : LED_BASE + 4 * channel + 4
        ]
        if off_h & FULL:
            return 0.0
        if on_h & FULL:
            return 1.0
        on = on_l | (on_h & 0x0F) << 8
        off = off_l | (off_h & 0x0F) << 8
        return ((off - on) % 4096) / 4096

    def _report(self) -> None:
        for channel in range(CHANNELS):
            duty = self.duty(channel)
            if duty != self._duties[channel]:
                self._duties[channel] = duty
                if self.on_change is not None:
                    self.on_change(channel, duty)

    def _check(self, register: int) -> None:
        if LAST_LED_REGISTER < register < ALL_LED_ON_L:
            raise BusNak(f"0x{self.address:02x}: register 0x{register:02x} is reserved")

    def _advance(self) -> None:
        if not self.registers[MODE1] & AUTO_INCREMENT:
            return
        pointer = self._pointer
        if pointer in (LAST_LED_REGISTER, PRE_SCALE):
            self._pointer = MODE1
        else:
            self._pointer = (pointer + 1) % 256

    def _write(self, register: int, value: int) -> None:
        if register == MODE1:
            old = self.registers[MODE1]
            restart = old & RESTART
            if value & RESTART:
                restart = 0  # writing 1 clears RESTART and resumes the PWM
            elif not old & SLEEP and value & SLEEP:
                restart = RESTART  # going to sleep with outputs set
            self.registers[MODE1] = (value & ~RESTART) | restart
        elif register == PRE_SCALE:
            if self.registers[MODE1] & SLEEP:
                self.registers[PRE_SCALE] = max(3, value)
        elif ALL_LED_ON_L <= register <= ALL_LED_OFF_H:
            offset = register - ALL_LED_ON_L
            for channel in range(CHANNELS):
                self.registers[LED_BASE + 4 * channel + offset] = value
        elif register != TEST_MODE:
            mask = 0x1F if register >= LED_BASE and (register - LED_BASE) % 2 else 0xFF
            self.registers[register] = value & mask

    def on_write(self, data: bytes) -> None:
        if not data:
            return
        self._check(data[0])
        self._pointer = data[0]
        for value in data[1:]:
            self._check(self._pointer)
            self._write(self._pointer, value)
            self._advance()
        self._report()

    def on_read(self, length: int) -> bytes:
        out = bytearray()
        for _ in range(length):
            register = self._pointer
            readable = not ALL_LED_ON_L <= register <= ALL_LED_OFF_H
            out.append(self.registers[register] if readable else 0)
            self._advance()
        return bytes(out)
