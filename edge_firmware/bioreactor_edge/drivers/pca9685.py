"""NXP PCA9685 16-channel 12-bit PWM driver, for proportional heater and stirrer outputs.

From the NXP PCA9685 product data sheet (Rev. 4), section numbers as there:
- 7.3.1 MODE1 (0x00): RESTART bit 7, AI (auto-increment) bit 5, SLEEP bit 4,
  ALLCALL bit 0; reset value 0x11 (asleep, LED All Call on).
- 7.3.2 MODE2 (0x01): OUTDRV bit 2 (totem pole), reset value 0x04.
- 7.3.3 LEDn_ON_L/H, LEDn_OFF_L/H from 0x06, four per channel: 12-bit on and
  off counts; bit 4 of LEDn_ON_H is "full on", bit 4 of LEDn_OFF_H "full off",
  and full off wins over full on. LEDn_OFF_H resets to 0x10: every output off.
- 7.3.5 PRE_SCALE (0xFE) = round(25 MHz / (4096 x frequency)) - 1, 3 to 255;
  writable only while SLEEP is set.
- 7.3.1.1: the oscillator needs 500 us after SLEEP is cleared.
- 7.1.4: the LED All Call address 0x70 (0xE0 in 8-bit form) is enabled at
  power-up. 0x70 is also the TCA9548A multiplexer's default address: a write
  meant for the multiplexer would land in every PCA9685 too. `configure()`
  clears ALLCALL; until then, keep PCA9685s off a bus whose multiplexer sits at 0x70.

A reset (power glitch) puts the chip back to sleep with every output off,
which is why MODE1 is read before each write: a chip found asleep is
configured again before its duty is written.
"""

from __future__ import annotations

import asyncio
import math

from ..bus import I2CDevice
from .base import DriverError

ADDRESSES = range(0x40, 0x80)
MODE1 = 0x00
MODE2 = 0x01
LED0_ON_L = 0x06
PRE_SCALE = 0xFE
MODE1_RESTART = 0x80
MODE1_AI = 0x20
MODE1_SLEEP = 0x10
MODE1_ALLCALL = 0x01
MODE2_OUTDRV = 0x04
FULL_BIT = 0x10  # bit 4 of LEDn_ON_H (full on) and LEDn_OFF_H (full off)
CHANNELS = range(16)
OSCILLATOR_HZ = 25_000_000
COUNTS = 4096
OSCILLATOR_START_S = 0.0005


def prescale(frequency_hz: float) -> int:
    """PRE_SCALE for a PWM frequency (7.3.5); ValueError outside the chip's 3-255 range."""
    value = round(OSCILLATOR_HZ / (COUNTS * frequency_hz)) - 1 if frequency_hz > 0 else -1
    if not 3 <= value <= 255:
        raise ValueError(f"PCA9685 cannot run at {frequency_hz} Hz (about 24-1526 Hz)")
    return value


def channel_registers(duty: float) -> bytes:
    """LEDn_ON_L, ON_H, OFF_L, OFF_H for a duty cycle in [0, 1] (7.3.3)."""
    if not math.isfinite(duty) or not 0.0 <= duty <= 1.0:
        raise ValueError(f"duty must be within 0-1, got {duty!r}")
    off = round(duty * COUNTS)
    if off <= 0:
        return bytes([0, 0, 0, FULL_BIT])
    if off >= COUNTS:
        return bytes([0, FULL_BIT, 0, 0])
    return bytes([0, 0, off & 0xFF, off >> 8])


class Pca9685:
    """One PWM chip; channels are driven one at a time and read back."""

    def __init__(self, device: I2CDevice, *, frequency_hz: float = 200.0) -> None:
        self.device = device
        self.prescale = prescale(frequency_hz)
        self.resets_seen = 0
        self._configured = False

    async def _register(self, register: int, length: int = 1) -> bytes:
        data = await self.device.write_read(bytes([register]), length)
        if len(data) != length:
            raise DriverError("garbage", f"pca9685: expected {length} bytes, got {len(data)}")
        return data

    async def configure(self) -> None:
        """Asleep: ALLCALL off and the prescaler set; then awake, auto-increment on."""
        await self.device.write(bytes([MODE1, MODE1_SLEEP | MODE1_AI]))
        await self.device.write(bytes([PRE_SCALE, self.prescale]))
        await self.device.write(bytes([MODE1, MODE1_AI]))
        await asyncio.sleep(OSCILLATOR_START_S)
        await self.device.write(bytes([MODE2, MODE2_OUTDRV]))
        scale = (await self._register(PRE_SCALE))[0]
        if scale != self.prescale:
            raise DriverError(
                "readback", f"pca9685: PRE_SCALE reads {scale}, wrote {self.prescale}"
            )

    async def set_duty(self, channel: int, duty: float) -> bool:
        """Sets one channel; True when the chip was found reset and configured again."""
        if channel not in CHANNELS:
            raise ValueError(f"PCA9685 channels are 0-15, got {channel}")
        wanted = channel_registers(duty)
        mode1 = (await self._register(MODE1))[0]
        reset = False
        if mode1 & ~MODE1_RESTART != MODE1_AI:
            reset = self._configured
            await self.configure()
        register = LED0_ON_L + 4 * channel
        await self.device.write(bytes([register]) + wanted)
        got = await self._register(register, 4)
        if got != wanted:
            raise DriverError(
                "readback", f"pca9685: channel {channel} reads {got.hex()}, wrote {wanted.hex()}"
            )
        self._configured = True
        if reset:
            self.resets_seen += 1
        return reset
