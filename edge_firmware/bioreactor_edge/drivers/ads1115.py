"""TI ADS1115 16-bit ADC (0x48-0x4B): four single-ended channels, single-shot.

Registers are selected by the pointer byte (datasheet 9.6.1, "Address Pointer
Register"): 0 conversion, 1 config, 2 Lo_thresh, 3 Hi_thresh.
"""

from __future__ import annotations

import asyncio

from ..bus import BusError, BusNak, I2CDevice
from ..models import Measurement, Quantity
from .base import Driver, DriverError, Identity

ADDRESSES = (0x48, 0x49, 0x4A, 0x4B)
CONVERSION_REGISTER = 0x00
CONFIG_REGISTER = 0x01
LO_THRESH_REGISTER = 0x02
HI_THRESH_REGISTER = 0x03
# Reset values (datasheet 9.6.4, "Lo_thresh and Hi_thresh Registers"). The agent
# never writes these registers, so they identify the chip without writing to it.
LO_THRESH_RESET = 0x8000
HI_THRESH_RESET = 0x7FFF
OS_BIT = 0x8000  # write: start a conversion; read: 1 when idle
FULL_SCALE_V = 4.096
# PGA +/-4.096 V, single-shot, 128 samples/s, comparator off; MUX set per channel.
CONFIG_BASE = 0x0383
# AIN<n> against GND.
CHANNEL_MUX = (0x4000, 0x5000, 0x6000, 0x7000)
CONVERSION_S = 1 / 128 + 0.001
# Single-ended inputs (AINn against GND) cannot go below GND, so only the ADC's own
# offset gives negative codes (datasheet 9.3.3, "Analog Inputs": single-ended use
# only half the codes; offset is a few LSB). A code further below zero is a corrupted
# transfer, e.g. the Raspberry Pi's top-bit glitch on the first byte.
SINGLE_ENDED_MIN_CODE = -32
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
    """An ADS1115 holds the threshold registers' reset values (the agent never writes them).

    An ADS1015 has the same values and would be taken for an ADS1115.
    """
    try:
        lo = await read_register(device, LO_THRESH_REGISTER)
        hi = await read_register(device, HI_THRESH_REGISTER)
    except (BusNak, DriverError):
        return None
    if (lo, hi) != (LO_THRESH_RESET, HI_THRESH_RESET):
        return None
    return Identity(kind="ads1115", model="ADS1115", firmware=None)


def _retrieve(task: asyncio.Task[None]) -> None:
    # A restore finished in the background after a cancellation: nobody awaits it.
    if not task.cancelled():
        task.exception()


class Ads1115Driver(Driver):
    """Converts the four channels in one `collect()` and restores the config afterwards.

    Nothing is written in `start()`: the whole change of configuration sits in
    one try block, so the config the chip had is restored even when sampling is
    cancelled or fails half-way.
    """

    kind = "ads1115"
    min_interval_s = 0.1
    quantities = VOLTAGES

    async def start(self, temperature_c: float | None) -> None:
        return

    @property
    def ready_after_s(self) -> float:
        return 0.0

    async def collect(self) -> list[Measurement]:
        original = await read_register(self.device, CONFIG_REGISTER)
        try:
            measurements = [await self._convert(channel) for channel in range(len(VOLTAGES))]
        except BaseException:
            await self._restore(original, quiet=True)
            raise
        await self._restore(original, quiet=False)
        return measurements

    async def _convert(self, channel: int) -> Measurement:
        await self._write_config(OS_BIT | CHANNEL_MUX[channel] | CONFIG_BASE)
        await asyncio.sleep(CONVERSION_S)
        await self._wait_idle(channel)
        raw = await read_register(self.device, CONVERSION_REGISTER)
        signed = raw - 0x10000 if raw & 0x8000 else raw
        if signed < SINGLE_ENDED_MIN_CODE:
            raise DriverError(
                "garbage", f"ads1115: channel {channel} code {signed} is below GND (0x{raw:04x})"
            )
        return self.measurement(VOLTAGES[channel], signed * FULL_SCALE_V / 32768)

    async def _write_config(self, config: int) -> None:
        await self.device.write(bytes([CONFIG_REGISTER, config >> 8, config & 0xFF]))

    async def _restore(self, config: int, *, quiet: bool) -> None:
        # OS cleared: writing it set would start another conversion. Shielded, so a
        # second cancellation cannot stop the write half-way; a failed restore
        # does not hide the error that ended the sampling (`quiet`).
        task = asyncio.ensure_future(self._write_config(config & ~OS_BIT))
        task.add_done_callback(_retrieve)
        try:
            await asyncio.shield(task)
        except (BusError, DriverError):
            if not quiet:
                raise

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
