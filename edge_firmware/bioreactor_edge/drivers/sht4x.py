"""Sensirion SHT4x temperature and humidity sensor (0x44/0x45)."""

from __future__ import annotations

import asyncio

from ..bus import BusNak, I2CDevice
from ..models import Measurement, Quantity
from .base import Driver, DriverError, Identity

ADDRESSES = (0x44, 0x45)
MEASURE_HIGH_PRECISION = 0xFD
READ_SERIAL = 0x89
# Datasheet maxima: 8.3 ms for a high-precision measurement, 1 ms for the serial.
MEASURE_S = 0.01
SERIAL_S = 0.002

TEMPERATURE = Quantity("temperature", "°C", 0.01, -40.0, 125.0)
HUMIDITY = Quantity("humidity", "%", 0.01, 0.0, 100.0)


def crc8(data: bytes) -> int:
    """Sensirion CRC-8: polynomial 0x31, initial value 0xFF."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def words(frame: bytes, what: str) -> tuple[int, int]:
    """The two 16-bit words of a 6-byte frame, each followed by its CRC."""
    if len(frame) != 6:
        raise DriverError("garbage", f"{what}: expected 6 bytes, got {len(frame)}")
    for offset in (0, 3):
        if crc8(frame[offset : offset + 2]) != frame[offset + 2]:
            raise DriverError("garbage", f"{what}: CRC mismatch in {frame.hex()}")
    return (frame[0] << 8) | frame[1], (frame[3] << 8) | frame[4]


async def identify_sht4x(device: I2CDevice) -> Identity | None:
    """An SHT4x answers the serial-number command with two CRC-checked words."""
    try:
        await device.write(bytes([READ_SERIAL]))
        await asyncio.sleep(SERIAL_S)
        words(await device.read(6), "sht4x serial")
    except (BusNak, DriverError):
        return None
    return Identity(kind="sht4x", model="SHT4x", firmware=None)


class Sht4xDriver(Driver):
    kind = "sht4x"
    min_interval_s = 0.1
    quantities = (TEMPERATURE, HUMIDITY)

    async def start(self, temperature_c: float | None) -> None:
        await self.device.write(bytes([MEASURE_HIGH_PRECISION]))

    @property
    def ready_after_s(self) -> float:
        return MEASURE_S

    async def collect(self) -> list[Measurement]:
        raw_t, raw_rh = words(await self.device.read(6), "sht4x measurement")
        temperature = -45.0 + 175.0 * raw_t / 65535
        # The datasheet's formula can leave 0-100 %; it says to crop to the physical range.
        humidity = min(100.0, max(0.0, -6.0 + 125.0 * raw_rh / 65535))
        return [self.measurement(TEMPERATURE, temperature), self.measurement(HUMIDITY, humidity)]
