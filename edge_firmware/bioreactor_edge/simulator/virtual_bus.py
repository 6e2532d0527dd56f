"""A RawBus made of simulated chips behind a modelled adapter, optionally behind
simulated TCA9548A multiplexers."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

from ..bus import BusKernelOwned, BusNak, BusUnsupported
from .adapters import GENERIC, Adapter
from .base import SimChip
from .byte_faults import ByteFaults, Moment
from .tca9548a import Tca9548aMux

DEFAULT_MUX_ADDRESS = 0x70


class VirtualBus:
    """Routes each transaction to the chip answering at that address right now.

    Counts every transaction per address (acknowledged or not), so tests can
    prove that nothing was written where nothing may be written.
    """

    def __init__(self, adapter: Adapter = GENERIC, *, seed: int = 0) -> None:
        self.adapter = adapter
        self.hang_s = 0.0  # fault knob: every transaction blocks this long
        self.byte_faults: ByteFaults | None = None  # fault knob: seeded byte-level faults
        self.transactions = 0
        self._chips: dict[int, SimChip] = {}
        # mux address -> channel -> address -> chip
        self._behind: dict[int, dict[int, dict[int, SimChip]]] = {}
        self._kernel_owned: set[int] = set()
        self._writes: Counter[int] = Counter()
        self._transactions: Counter[int] = Counter()
        self._rng = random.Random(seed)  # noqa: S311 (simulated glitches, not secrets)
        self._lock = threading.RLock()

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

    def bind_kernel_driver(self, address: int) -> None:
        """Marks `address` as claimed by a kernel driver (i2cdetect shows `UU`).

        SMBus calls there fail like the I2C_SLAVE ioctl does (EBUSY); plain I2C
        messages (I2C_RDWR) are not checked by the kernel and still reach the chip,
        which is exactly what the agent must never do - `transactions_to` tells.
        """
        with self._lock:
            self._kernel_owned.add(address)

    @property
    def kernel_owned(self) -> frozenset[int]:
        return frozenset(self._kernel_owned)

    def writes_to(self, address: int) -> int:
        """Messages carrying data bytes addressed to `address`, acknowledged or not."""
        return self._writes[address]

    def transactions_to(self, address: int) -> int:
        """Every transaction addressed to `address`, probes included."""
        return self._transactions[address]

    def funcs(self) -> int:
        return self.adapter.funcs

    def quick_write(self, address: int) -> None:
        with self._lock:
            self._begin(address, smbus=True)
            if not self.adapter.quick:
                raise BusUnsupported(f"quick write to 0x{address:02x}: operation not supported")
            chip = self._route(address)
            self._fault(chip, reading=False)
            chip.on_quick()

    def receive_byte(self, address: int) -> int:
        with self._lock:
            self._begin(address, smbus=True)
            chip = self._route(address)
            moment = self._fault(chip, reading=True)
            return self._read(chip, 1, moment)[0]

    def write(self, address: int, data: bytes) -> None:
        with self._lock:
            self._begin(address, written=len(data))
            chip = self._route(address)
            self._fault(chip, reading=False)
            chip.on_write(bytes(data))
            if chip.address != address and self._chips.get(address) is chip:
                # The chip took a new address (an EZO circuit's `I2C,n`).
                del self._chips[address]
                self._chips[chip.address] = chip

    def read(self, address: int, length: int) -> bytes:
        with self._lock:
            self._begin(address, read=length)
            chip = self._route(address)
            moment = self._fault(chip, reading=True)
            return self._read(chip, length, moment)

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        with self._lock:
            self._begin(address, written=len(data), read=length)
            chip = self._route(address)
            moment = self._fault(chip, reading=True)
            chip.on_write(bytes(data))
            if moment is Moment.AFTER_WRITE:
                return b"\xff" * length  # gone before the read: nobody drives SDA
            return self._read(chip, length, moment)

    def close(self) -> None:
        return

    def _begin(
        self,
        address: int,
        *,
        smbus: bool = False,
        written: int | None = None,
        read: int | None = None,
    ) -> None:
        """Counts one transaction and refuses what the adapter or kernel refuses."""
        self.transactions += 1
        self._transactions[address] += 1
        if written is not None:
            self._writes[address] += 1
        if self.hang_s > 0:
            time.sleep(self.hang_s)
        if smbus and address in self._kernel_owned:
            raise BusKernelOwned(f"0x{address:02x}: device or resource busy (kernel driver)")
        if not self.adapter.zero_length_messages and 0 in (written, read):
            raise BusUnsupported(f"0x{address:02x}: zero-length message not supported")

    def _route(self, address: int) -> SimChip:
        """The chip that acknowledges `address` now; BusNak if none does."""
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

    def _fault(self, chip: SimChip, *, reading: bool) -> Moment | None:
        if self.byte_faults is None or isinstance(chip, Tca9548aMux):
            return None
        return self.byte_faults.before(chip, reading=reading)

    def _read(self, chip: SimChip, length: int, moment: Moment | None = None) -> bytes:
        if chip.faults.garbage:
            return chip.garbage(length)
        if self.byte_faults is not None and self.byte_faults.garbage():
            chip.on_read(length)  # the chip sent its bytes; noise is what arrived
            return chip.garbage(length)
        stretching = chip.clock_stretching
        if stretching and self._chance(self.adapter.stretch_nak_rate):
            # The controller lost the stretched clock: the transfer fails, and
            # the chip still holds its reply.
            raise BusNak(f"0x{chip.address:02x}: transfer failed while the chip stretched SCL")
        data = bytearray(chip.on_read(length))
        if stretching and self.adapter.top_bit_rate > 0:
            # Only the characters after the response code: Atlas's sample code
            # checks the code unmasked and masks the rest with & 0x7F.
            for index in range(1, len(data)):
                if data[index] and self._chance(self.adapter.top_bit_rate):
                    data[index] |= 0x80
        if moment is Moment.MID_READ and self.byte_faults is not None:
            return self.byte_faults.cut(bytes(data))
        return bytes(data)

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
