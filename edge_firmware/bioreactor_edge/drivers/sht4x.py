"""Sensirion SHT4x temperature and humidity sensor (0x44/0x45).

Commands are single bytes; the reply is two 16-bit words, each followed by a
CRC-8 (SHT4x datasheet, section 4 "Digital interface": command table and
checksum). While a command is being processed the chip does not acknowledge a
read header, so a NAK right after a command means "busy", not "absent".
"""

from __future__ import annotations

import asyncio

from ..bus import BusNak, I2CDevice
from ..models import Measurement, Quantity
from .base import Driver, DriverError, Identity

ADDRESSES = (0x44, 0x45)
MEASURE_HIGH_PRECISION = 0xFD
READ_SERIAL = 0x89
# High-precision measurement: 8.3 ms at most (datasheet, measurement timing).
MEASURE_S = 0.009
# Serial number: Sensirion's own driver (embedded-i2c-sht4x) waits 10 ms after 0x89.
SERIAL_S = 0.010
# A read NAKed while the chip is still busy is retried this often, this far apart.
BUSY_RETRIES = 3
BUSY_RETRY_S = 0.002

TEMPERATURE = Quantity("temperature", "°C", 0.01, -40.0, 125.0)
HUMIDITY = Quantity("humidity", "%", 0.01, 0.0, 100.0)


def crc8(data: bytes) -> int:
    """Sensirion CRC-8: polynomial 0x31, initial value 0xFF (CRC(0xBEEF) = 0x92)."""
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


async def read_frame(device: I2CDevice) -> bytes:
    """The 6-byte reply, retrying reads the chip NAKs while it is still busy."""
    for _ in range(BUSY_RETRIES):
        try:
            return await device.read(6)
        except BusNak:
            await asyncio.sleep(BUSY_RETRY_S)
    return await device.read(6)


async def read_serial(device: I2CDevice) -> int:
    """The chip's 32-bit serial number (command 0x89)."""
    await device.write(bytes([READ_SERIAL]))
    await asyncio.sleep(SERIAL_S)
    high, low = words(await read_frame(device), "sht4x serial")
    return (high << 16) | low


async def identify_sht4x(device: I2CDevice) -> Identity | None:
    """An SHT4x answers the serial-number command with two CRC-checked words.

    A chip still busy with an earlier command NAKs even the command byte, so a
    NAK is tried once more after the serial-number delay.
    """
    for attempt in range(2):
        try:
            await read_serial(device)
        except BusNak:
            if attempt == 0:
                await asyncio.sleep(SERIAL_S)
        except DriverError:
            return None
        else:
            return Identity(kind="sht4x", model="SHT4x", firmware=None)
    return None


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
        raw_t, raw_rh = words(await read_frame(self.device), "sht4x measurement")
        temperature = -45.0 + 175.0 * raw_t / 65535
        # The datasheet's formula can leave 0-100 %; it says to crop to the physical range.
        humidity = min(100.0, max(0.0, -6.0 + 125.0 * raw_rh / 65535))
        return [self.measurement(TEMPERATURE, temperature), self.measurement(HUMIDITY, humidity)]
