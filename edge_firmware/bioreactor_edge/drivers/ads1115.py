"""TI ADS1115 16-bit ADC (0x48-0x4B): four single-ended channels, single-shot."""

from __future__ import annotations

import asyncio

from ..bus import BusNak, I2CDevice
from ..models import Measurement, Quantity
from .base import Driver, DriverError, Identity

ADDRESSES = (0x48, 0x49, 0x4A, 0x4B)
CONVERSION_REGISTER = 0x00
CONFIG_REGISTER = 0x01
POWER_ON_CONFIG = 0x8583
OS_BIT = 0x8000  # write: start a conversion; read: 1 when idle
FULL_SCALE_V = 4.096
# PGA +/-4.096 V, single-shot, 128 samples/s, comparator off; MUX set per channel.
CONFIG_BASE = 0x0383
# AIN<n> against GND.
CHANNEL_MUX = (0x4000, 0x5000, 0x6000, 0x7000)
CONVERSION_S = 1 / 128 + 0.001
CONVERSION_TIMEOUT_S = 0.1

VOLTAGES = tuple(
    Quantity(f"voltage_{n}", "V", FULL_SCALE_V / 32768, -FULL_SCALE_V, FULL_SCALE_V)
    for n in range(4)
)


async def read_register(device: I2CDevice, register: int) -> int:
    raw = await device.write_read(bytes([register]), 2)
    if len(raw) != 2:
        raise DriverError("garbage", f"ads1115: expected 2 bytes, got {len(raw)}")
    return (raw[0] << 8) | raw[1]


async def identify_ads1115(device: I2CDevice) -> Identity | None:
    """An idle ADS1115 reads back its power-on configuration (restored after each use)."""
    try:
        config = await read_register(device, CONFIG_REGISTER)
    except (BusNak, DriverError):
        return None
    if config != POWER_ON_CONFIG:
        return None
    return Identity(kind="ads1115", model="ADS1115", firmware=None)


class Ads1115Driver(Driver):
    kind = "ads1115"
    min_interval_s = 0.1
    quantities = VOLTAGES

    async def _convert(self, channel: int) -> None:
        config = OS_BIT | CHANNEL_MUX[channel] | CONFIG_BASE
        await self.device.write(bytes([CONFIG_REGISTER, config >> 8, config & 0xFF]))

    async def start(self, temperature_c: float | None) -> None:
        await self._convert(0)

    @property
    def ready_after_s(self) -> float:
        return CONVERSION_S

    async def collect(self) -> list[Measurement]:
        measurements = []
        for channel, quantity in enumerate(VOLTAGES):
            if channel:
                await self._convert(channel)
                await asyncio.sleep(CONVERSION_S)
            await self._wait_idle(channel)
            raw = await read_register(self.device, CONVERSION_REGISTER)
            signed = raw - 0x10000 if raw & 0x8000 else raw
            measurements.append(self.measurement(quantity, signed * FULL_SCALE_V / 32768))
        # Back to the power-on configuration (without starting a conversion), so the
        # chip is still recognised when the agent restarts.
        idle = POWER_ON_CONFIG & ~OS_BIT
        await self.device.write(bytes([CONFIG_REGISTER, idle >> 8, idle & 0xFF]))
        return measurements

    async def _wait_idle(self, channel: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONVERSION_TIMEOUT_S
        expected = CHANNEL_MUX[channel] | CONFIG_BASE
        while True:
            config = await read_register(self.device, CONFIG_REGISTER)
            if config & ~OS_BIT != expected:
                raise DriverError(
                    "garbage", f"ads1115: config reads back 0x{config:04x}, wrote 0x{expected:04x}"
                )
            if config & OS_BIT:
                return
            if loop.time() >= deadline:
                raise DriverError("timeout", f"ads1115: channel {channel} conversion never ended")
            await asyncio.sleep(CONVERSION_S / 4)
