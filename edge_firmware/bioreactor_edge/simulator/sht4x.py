"""Sensirion SHT4x humidity and temperature sensor, from its datasheet
(SHT4x datasheet, section 4 "Digital Interface": 4.4 command overview table,
4.5 conversion of signal output, 4.6 CRC; no clock stretching)."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..bus import BusNak
from .base import SimChip
from .physics import ReactorModel

# Command -> maximum duration (s) before the 6-byte answer can be read
# (command table: high 8.3 ms, medium 4.5 ms, low 1.7 ms repeatability).
MEASURE_S = {0xFD: 0.0083, 0xF6: 0.0045, 0xE0: 0.0017}
READ_SERIAL = 0x89
# Sensirion's own driver waits 10 ms before reading the serial number.
SERIAL_S = 0.010
SOFT_RESET = 0x94
RESET_S = 0.001
# Heater commands (power, pulse length) end with a measurement; modelled as a
# high-precision measurement taking the pulse time.
HEATER_S = {0x39: 1.1, 0x32: 0.11, 0x2F: 1.1, 0x24: 0.11, 0x1E: 1.1, 0x15: 0.11}


def crc8(data: bytes) -> int:
    """CRC-8 of the datasheet's checksum section: polynomial 0x31 (x^8 + x^5 +
    x^4 + 1), initialisation 0xFF, no reflection, no final XOR; CRC(0xBEEF) = 0x92."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def frame(first: int, second: int) -> bytes:
    """Two 16-bit words, each followed by its CRC, as every answer is sent."""
    out = bytearray()
    for word in (first, second):
        pair = max(0, min(0xFFFF, word)).to_bytes(2, "big")
        out += pair + bytes([crc8(pair)])
    return bytes(out)


def raw_temperature(celsius: float) -> int:
    """Inverse of T = -45 + 175 * S_T / 65535 (section 4.5)."""
    return round((celsius + 45.0) * 65535 / 175.0)


def raw_humidity(percent: float) -> int:
    """Inverse of RH = -6 + 125 * S_RH / 65535 (section 4.5)."""
    return round((percent + 6.0) * 65535 / 125.0)


class Sht4xChip(SimChip):
    """Answers a command's 6 bytes once its duration has passed; NAKs reads before."""

    def __init__(
        self,
        address: int,
        model: ReactorModel,
        *,
        serial: int = 0x1234ABCD,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        super().__init__(address, seed=seed)
        self.model = model
        self.serial = serial
        self.speed = speed
        self._clock = clock
        self._frame: bytes | None = None
        self._ready_at = 0.0
        self.measurements: list[tuple[int, int]] = []  # raw (T, RH) words sent (tests)
        self.words_override: tuple[int, int] | None = None  # replaces measured words (tests)

    def power_cycle(self) -> None:
        self._frame, self._ready_at = None, 0.0

    def _busy(self) -> bool:
        return self._clock() < self._ready_at

    def on_quick(self) -> None:
        if self._busy():
            raise BusNak(f"0x{self.address:02x}: SHT4x busy measuring")

    def on_write(self, data: bytes) -> None:
        # While measuring the sensor does not acknowledge its address.
        self.on_quick()
        if len(data) != 1:
            raise BusNak(f"0x{self.address:02x}: SHT4x commands are one byte, got {data.hex()}")
        command = data[0]
        if command in MEASURE_S or command in HEATER_S:
            words = self.words_override or self._measure()
            self.measurements.append(words)
            self._answer(frame(*words), MEASURE_S.get(command) or HEATER_S[command])
        elif command == READ_SERIAL:
            self._answer(frame(self.serial >> 16, self.serial & 0xFFFF), SERIAL_S)
        elif command == SOFT_RESET:
            self._frame = None
            self._ready_at = self._clock() + RESET_S / self.speed
        else:
            raise BusNak(f"0x{self.address:02x}: SHT4x does not know command 0x{command:02x}")

    def _measure(self) -> tuple[int, int]:
        state = self.model.state()
        return raw_temperature(state.air_temperature_c), raw_humidity(state.humidity_pct)

    def _answer(self, answer: bytes, duration_s: float) -> None:
        self._frame = answer
        self._ready_at = self._clock() + duration_s / self.speed

    def on_read(self, length: int) -> bytes:
        # "the sensor does not acknowledge" a read header while it measures or
        # has nothing to send; the master may stop after any byte.
        if self._frame is None or self._busy():
            raise BusNak(f"0x{self.address:02x}: SHT4x has no data to send")
        answer, self._frame = self._frame, None
        return answer[:length].ljust(length, b"\xff")

    def garbage(self, length: int) -> bytes:
        # Random bytes, but never a frame whose CRCs happen to match.
        data = bytearray(super().garbage(length))
        for offset in range(0, len(data) - 2, 3):
            data[offset + 2] = crc8(bytes(data[offset : offset + 2])) ^ 0x5A
        return bytes(data)
