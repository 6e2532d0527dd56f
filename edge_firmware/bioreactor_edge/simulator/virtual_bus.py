"""A RawBus made of simulated chips, optionally behind simulated TCA9548A multiplexers."""

from __future__ import annotations

import threading
import time

from smbus2 import I2cFunc

from ..bus import BusNak
from .chips import SimChip, Tca9548aMux

DEFAULT_MUX_ADDRESS = 0x70


class VirtualBus:
    """Routes each transaction to the chip answering at that address right now."""

    def __init__(self) -> None:
        self.hang_s = 0.0  # fault knob: every transaction blocks this long
        self.transactions = 0
        self._chips: dict[int, SimChip] = {}
        # mux address -> channel -> address -> chip
        self._behind: dict[int, dict[int, dict[int, SimChip]]] = {}
        self._lock = threading.Lock()

    def add(
        self,
        chip: SimChip,
        *,
        mux_channel: int | None = None,
        mux_address: int = DEFAULT_MUX_ADDRESS,
    ) -> None:
        """Connects `chip`; behind a channel, the multiplexer is created when missing."""
        with self._lock:
            if mux_channel is None:
                self._chips[chip.address] = chip
                return
            if mux_channel not in range(8):
                raise ValueError(f"multiplexer channel {mux_channel} is not in 0-7")
            if mux_address not in self._chips:
                self._chips[mux_address] = Tca9548aMux(mux_address)
            self._behind.setdefault(mux_address, {}).setdefault(mux_channel, {})[chip.address] = (
                chip
            )

    def remove(
        self,
        address: int,
        *,
        mux_channel: int | None = None,
        mux_address: int = DEFAULT_MUX_ADDRESS,
    ) -> None:
        with self._lock:
            if mux_channel is None:
                del self._chips[address]
            else:
                del self._behind[mux_address][mux_channel][address]

    def chip(
        self,
        address: int,
        *,
        mux_channel: int | None = None,
        mux_address: int = DEFAULT_MUX_ADDRESS,
    ) -> SimChip:
        """The chip connected at `address` (for tests that set its faults)."""
        if mux_channel is None:
            return self._chips[address]
        return self._behind[mux_address][mux_channel][address]

    def _route(self, address: int) -> SimChip:
        """The chip that acknowledges `address` now; BusNak if none does."""
        self.transactions += 1
        if self.hang_s > 0:
            time.sleep(self.hang_s)
        chip = self._chips.get(address)
        if chip is None:
            for mux_address, channels in self._behind.items():
                mux = self._chips.get(mux_address)
                if not isinstance(mux, Tca9548aMux) or mux.faults.unplugged:
                    continue
                for channel, chips in channels.items():
                    if mux.mask & (1 << channel) and address in chips:
                        chip = chips[address]
                        break
        if chip is None or chip.faults.unplugged or chip.faults.nak:
            raise BusNak(f"no acknowledge from 0x{address:02x}")
        return chip

    def _read(self, chip: SimChip, length: int) -> bytes:
        return chip.garbage(length) if chip.faults.garbage else chip.on_read(length)

    def funcs(self) -> int:
        return int(I2cFunc.I2C | I2cFunc.SMBUS_QUICK | I2cFunc.SMBUS_READ_BYTE)

    def quick_write(self, address: int) -> None:
        with self._lock:
            self._route(address).on_quick()

    def receive_byte(self, address: int) -> int:
        with self._lock:
            chip = self._route(address)
            return self._read(chip, 1)[0] if chip.faults.garbage else chip.on_receive_byte()

    def write(self, address: int, data: bytes) -> None:
        with self._lock:
            self._route(address).on_write(bytes(data))

    def read(self, address: int, length: int) -> bytes:
        with self._lock:
            return self._read(self._route(address), length)

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        with self._lock:
            chip = self._route(address)
            chip.on_write(bytes(data))
            return self._read(chip, length)

    def close(self) -> None:
        return
