"""One owner per I2C bus: serialized, counted transactions with timeouts.

Every transaction of a bus runs in that bus's own worker thread, one at a
time, so a hung bus blocks neither the event loop nor the other buses. A
TCA9548A multiplexer channel is selected inside the same job as the
transaction it is for, so nothing can slip in between.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from fcntl import ioctl
from typing import Any, Protocol, TypeVar

from smbus2 import I2cFunc, SMBus, i2c_msg
from smbus2.smbus2 import I2C_SLAVE

T = TypeVar("T")

MUX_ADDRESSES = range(0x70, 0x78)
MUX_CHANNELS = range(8)
# i2cdetect probes these with receive-byte: a quick-write can corrupt some EEPROMs.
# The multiplexer range is added: nothing is ever written there unasked.
RECEIVE_BYTE_PROBE_RANGES = (range(0x30, 0x38), range(0x50, 0x60), MUX_ADDRESSES)
# What Linux i2c-dev adapters report when the addressed chip does not acknowledge.
_NAK_ERRNOS = frozenset({errno.ENXIO, errno.EREMOTEIO, errno.EIO})


class BusError(Exception):
    """A failed I2C transaction; `code` says how it failed."""

    code: str = "io"


class BusNak(BusError):
    """The addressed chip did not acknowledge."""

    code = "nak"


class BusTimeout(BusError):
    """The transaction did not finish within the bus owner's timeout."""

    code = "timeout"


class BusUnsupported(BusError):
    """The adapter cannot do this kind of transfer (EOPNOTSUPP), e.g. SMBus quick on i2c-omap."""

    code = "unsupported"


class BusKernelOwned(BusError):
    """A kernel driver is bound to the address (EBUSY; i2cdetect shows `UU`): never touch it."""

    code = "kernel_owned"


class Presence(StrEnum):
    """What a probe of one address found."""

    ABSENT = "absent"
    PRESENT = "present"
    # A kernel driver is bound there (i2cdetect's `UU`): never touched again.
    KERNEL_OWNED = "kernel_owned"


class RawBus(Protocol):
    """Blocking access to one I2C bus; each call is one transaction.

    Raises BusNak, BusUnsupported, BusKernelOwned, BusTimeout or BusError.
    """

    def funcs(self) -> int:
        """The adapter's functionality bitmask (Linux I2C_FUNC_*, smbus2.I2cFunc)."""
        ...

    def quick_write(self, address: int) -> None: ...
    def receive_byte(self, address: int) -> int: ...
    def write(self, address: int, data: bytes) -> None: ...
    def read(self, address: int, length: int) -> bytes: ...
    def write_read(self, address: int, data: bytes, length: int) -> bytes: ...
    def close(self) -> None: ...


def _translate(err: OSError, what: str) -> BusError:
    if err.errno == errno.EOPNOTSUPP:
        return BusUnsupported(f"{what}: the adapter does not support it ({err.strerror or err})")
    if err.errno in _NAK_ERRNOS:
        return BusNak(f"{what}: no acknowledge ({err.strerror or err})")
    if err.errno == errno.ETIMEDOUT:
        return BusTimeout(f"{what}: adapter timed out ({err.strerror or err})")
    return BusError(f"{what}: {err.strerror or err}")


class SMBusRaw:
    """A RawBus over Linux i2c-dev (/dev/i2c-N) using smbus2."""

    def __init__(self, bus_number: int) -> None:
        self.bus_number = bus_number
        try:
            self._smbus = SMBus(bus_number)
        except OSError as err:
            raise BusError(f"cannot open /dev/i2c-{bus_number}: {err.strerror or err}") from err

    def funcs(self) -> int:
        return int(self._smbus.funcs)

    def _select(self, address: int) -> None:
        # I2C_SLAVE fails with EBUSY where a kernel driver is bound; I2C_RDWR
        # alone would not check, so every transaction selects the address first.
        # smbus2 keeps the selected address in `address` and skips its own ioctl
        # while it stays the same.
        if self._smbus.address == address:
            return
        if self._smbus.fd is None:
            raise BusError(f"/dev/i2c-{self.bus_number} is closed")
        try:
            ioctl(self._smbus.fd, I2C_SLAVE, address)
        except OSError as err:
            if err.errno == errno.EBUSY:
                raise BusKernelOwned(
                    f"0x{address:02x} is in use by a kernel driver ({err.strerror or err})"
                ) from err
            raise _translate(err, f"select 0x{address:02x}") from err
        self._smbus.address = address

    def quick_write(self, address: int) -> None:
        self._select(address)
        try:
            self._smbus.write_quick(address)
        except OSError as err:
            raise _translate(err, f"quick write to 0x{address:02x}") from err

    def receive_byte(self, address: int) -> int:
        self._select(address)
        try:
            return int(self._smbus.read_byte(address))
        except OSError as err:
            raise _translate(err, f"receive byte from 0x{address:02x}") from err

    def write(self, address: int, data: bytes) -> None:
        self._select(address)
        try:
            self._smbus.i2c_rdwr(i2c_msg.write(address, data))
        except OSError as err:
            raise _translate(err, f"write to 0x{address:02x}") from err

    def read(self, address: int, length: int) -> bytes:
        self._select(address)
        message = i2c_msg.read(address, length)
        try:
            self._smbus.i2c_rdwr(message)
        except OSError as err:
            raise _translate(err, f"read from 0x{address:02x}") from err
        return bytes(message)

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        self._select(address)
        reply = i2c_msg.read(address, length)
        try:
            self._smbus.i2c_rdwr(i2c_msg.write(address, data), reply)
        except OSError as err:
            raise _translate(err, f"write-read at 0x{address:02x}") from err
        return bytes(reply)

    def close(self) -> None:
        self._smbus.close()


@dataclass(slots=True)
class BusStats:
    """Transaction counters of one bus; timeouts are also counted as errors."""

    transactions_ok: int = 0
    transactions_error: int = 0
    timeouts: int = 0


class _Worker:
    """One daemon thread running jobs in order (a hung ioctl must not block process exit)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((future, job))
        return future

    def stop(self) -> None:
        self._jobs.put(None)

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as err:  # handed to the awaiting coroutine
                future.set_exception(err)


def _check_mux(mux_address: int | None, mux_channel: int | None) -> None:
    if (mux_address is None) != (mux_channel is None):
        raise ValueError("mux_address and mux_channel must be given together")
    if mux_address is not None and mux_address not in MUX_ADDRESSES:
        raise ValueError(f"multiplexer address 0x{mux_address:02x} is not in 0x70-0x77")
    if mux_channel is not None and mux_channel not in MUX_CHANNELS:
        raise ValueError(f"multiplexer channel {mux_channel} is not in 0-7")


class BusOwner:
    """The only way to the bus: serializes, times out and counts every transaction."""

    def __init__(self, raw: RawBus, bus_number: int, *, timeout_s: float = 1.0) -> None:
        self.bus_number = bus_number
        self.stats = BusStats()
        self._raw = raw
        self._timeout_s = timeout_s
        self._worker = _Worker(f"i2c-{bus_number}")
        self._lock = asyncio.Lock()
        # The job still running in the worker after it timed out, if any.
        self._pending: asyncio.Future[Any] | None = None
        # Channel mask each multiplexer is known to be set to; absent = unknown.
        # Only the worker thread changes it while a job runs.
        self._mux_masks: dict[int, int] = {}
        self._muxes: set[int] = set()
        # Addresses a kernel driver is bound to: refused without touching the bus.
        self._kernel_owned: set[int] = set()
        # The adapter's I2C_FUNC_* bits, read once by the worker at the first probe;
        # cleared SMBUS_QUICK when the adapter refuses it although it claims it.
        self._funcs: int | None = None
        self._closed = False
        # One lock per chip for command-reply conversations (see I2CDevice.conversation).
        self._conversations: dict[tuple[int, int | None, int | None], asyncio.Lock] = {}

    @property
    def known_muxes(self) -> frozenset[int]:
        """Multiplexer addresses this bus has been asked to use."""
        return frozenset(self._muxes)

    @property
    def kernel_owned(self) -> frozenset[int]:
        """Addresses found bound to a kernel driver; no transaction goes there any more."""
        return frozenset(self._kernel_owned)

    def register_mux(self, address: int) -> None:
        """Declares a configured TCA9548A: its channels are closed for main-bus transactions."""
        _check_mux(address, 0)
        self._muxes.add(address)

    def quick_probe(self, address: int) -> bool:
        """Whether `address` is probed with a quick write (known after the first probe)."""
        return (
            self._funcs is not None
            and bool(self._funcs & I2cFunc.SMBUS_QUICK)
            and not any(address in r for r in RECEIVE_BYTE_PROBE_RANGES)
        )

    def conversation(
        self, address: int, mux_address: int | None, mux_channel: int | None
    ) -> asyncio.Lock:
        """The lock of one chip's command-reply conversations (shared by all its handles)."""
        return self._conversations.setdefault((address, mux_address, mux_channel), asyncio.Lock())

    def device(
        self, address: int, *, mux_address: int | None = None, mux_channel: int | None = None
    ) -> I2CDevice:
        if address not in range(0x80):
            raise ValueError(f"I2C address {address!r} is not a 7-bit address")
        _check_mux(mux_address, mux_channel)
        return I2CDevice(self, address, mux_address, mux_channel)

    async def run(
        self,
        fn: Callable[[RawBus], T],
        *,
        address: int | None = None,
        mux_address: int | None = None,
        mux_channel: int | None = None,
    ) -> T:
        """Runs `fn` as one serialized job in the bus thread, after selecting the mux channel.

        `address` is the chip `fn` talks to: refused when it is kernel-owned, and
        learned as kernel-owned when the job says so.
        """
        _check_mux(mux_address, mux_channel)
        if mux_address is not None:
            self._muxes.add(mux_address)
        async with self._lock:
            if self._closed:
                raise BusError(f"bus {self.bus_number} is closed")
            if address in self._kernel_owned:
                raise BusKernelOwned(f"0x{address:02x} is in use by a kernel driver")
            try:
                await self._wait_for_pending()
                future = asyncio.wrap_future(
                    self._worker.submit(lambda: self._job(fn, mux_address, mux_channel))
                )
                future.add_done_callback(_retrieve)
                self._pending = future
                # asyncio.timeout, not wait_for: before Python 3.12, wait_for drops a
                # cancellation that arrives as the job completes (about 1 in 4 here).
                async with asyncio.timeout(self._timeout_s):
                    result = await asyncio.shield(future)
                self._pending = None
            except TimeoutError:
                self.stats.timeouts += 1
                self.stats.transactions_error += 1
                self._mux_masks.clear()
                raise BusTimeout(
                    f"bus {self.bus_number}: transaction took longer than {self._timeout_s} s"
                ) from None
            except asyncio.CancelledError:
                raise  # the job, if still running, stays in _pending
            except BusKernelOwned:
                self._pending = None
                self.stats.transactions_error += 1
                if address is not None:
                    self._kernel_owned.add(address)
                raise
            except Exception:
                self._pending = None
                self.stats.transactions_error += 1
                raise
            self.stats.transactions_ok += 1
            return result

    async def probe(
        self, address: int, *, mux_address: int | None = None, mux_channel: int | None = None
    ) -> Presence:
        """See I2CDevice.probe; a kernel-owned address is remembered and never touched again."""
        if address in self._kernel_owned:
            return Presence.KERNEL_OWNED
        presence = await self.run(
            lambda raw: self._probe(raw, address), mux_address=mux_address, mux_channel=mux_channel
        )
        if presence is Presence.KERNEL_OWNED:
            self._kernel_owned.add(address)
        return presence

    def _probe(self, raw: RawBus, address: int) -> Presence:
        # Runs in the worker thread, the only one that touches _funcs.
        if self._funcs is None:
            self._funcs = raw.funcs()
        methods = ["quick", "receive"] if self.quick_probe(address) else ["receive"]
        refused: list[str] = []
        for method in methods:
            try:
                if method == "quick":
                    raw.quick_write(address)
                else:
                    raw.receive_byte(address)
            except BusUnsupported as err:
                if method == "quick":
                    # Claimed but refused (zero-length messages): never tried again.
                    self._funcs &= ~I2cFunc.SMBUS_QUICK
                refused.append(str(err))
                continue
            # A NAK is an answer here ("nobody home"), not a failed transaction.
            except BusNak:
                return Presence.ABSENT
            except BusKernelOwned:
                return Presence.KERNEL_OWNED
            return Presence.PRESENT
        raise BusUnsupported(f"0x{address:02x}: no probe works here ({'; '.join(refused)})")

    async def _wait_for_pending(self) -> None:
        # A timed-out job still holds the thread: wait for it rather than queue behind it.
        if self._pending is not None and not self._pending.done():
            await asyncio.wait((self._pending,), timeout=self._timeout_s)
            if not self._pending.done():
                raise TimeoutError
        self._pending = None

    def _job(self, fn: Callable[[RawBus], T], mux: int | None, channel: int | None) -> T:
        try:
            self._select(mux, channel)
            return fn(self._raw)
        except Exception:
            self._mux_masks.clear()
            raise

    def _select(self, mux: int | None, channel: int | None) -> None:
        # Channels of other multiplexers are closed so their chips cannot shadow ours.
        for other in sorted(self._muxes - {mux} if mux is not None else self._muxes):
            if self._mux_masks.get(other) != 0:
                # An unpowered multiplexer connects no channel either.
                with contextlib.suppress(BusNak):
                    self._raw.write(other, b"\x00")
                self._mux_masks[other] = 0
        if mux is not None and channel is not None:
            mask = 1 << channel
            if self._mux_masks.get(mux) != mask:
                self._raw.write(mux, bytes([mask]))
                self._mux_masks[mux] = mask

    async def close(self) -> None:
        """Closes the raw bus once the current job has finished (or timed out)."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            future = asyncio.wrap_future(self._worker.submit(self._raw.close))
            future.add_done_callback(_retrieve)
            self._worker.stop()
            # A hung bus thread is a daemon and ends with the process; a failing
            # close leaves nothing to clean up.
            with contextlib.suppress(TimeoutError, BusError, OSError):
                async with asyncio.timeout(self._timeout_s * 2):
                    await asyncio.shield(future)


def _retrieve(future: asyncio.Future[T]) -> None:
    # Results of abandoned (timed-out) jobs are dropped on purpose.
    if not future.cancelled():
        future.exception()


class I2CDevice:
    """One chip's handle; every call is a serialized transaction of its BusOwner."""

    def __init__(
        self, owner: BusOwner, address: int, mux_address: int | None, mux_channel: int | None
    ) -> None:
        self.address = address
        self.mux_address = mux_address
        self.mux_channel = mux_channel
        self._owner = owner

    def __repr__(self) -> str:
        where = f"bus {self._owner.bus_number}"
        if self.mux_address is not None:
            where += f" mux 0x{self.mux_address:02x}/{self.mux_channel}"
        return f"I2CDevice(0x{self.address:02x} on {where})"

    async def _run(self, fn: Callable[[RawBus], T]) -> T:
        return await self._owner.run(
            fn, address=self.address, mux_address=self.mux_address, mux_channel=self.mux_channel
        )

    async def write(self, data: bytes) -> None:
        await self._run(lambda raw: raw.write(self.address, data))

    async def read(self, length: int) -> bytes:
        return await self._run(lambda raw: raw.read(self.address, length))

    async def write_read(self, data: bytes, length: int) -> bytes:
        return await self._run(lambda raw: raw.write_read(self.address, data, length))

    def conversation(self) -> asyncio.Lock:
        """Held across a command, its processing delay and its reply read.

        An EZO circuit keeps one pending reply: a second command sent to it
        between another's write and read (the sampler reading a pump while a
        dose is commanded) would take that reply. Both parties hold this lock.
        """
        return self._owner.conversation(self.address, self.mux_address, self.mux_channel)

    async def probe(self) -> Presence:
        """Whether a chip acknowledges, probing the way i2cdetect's default mode does.

        Quick write where the adapter has it, receive-byte in i2cdetect's EEPROM
        ranges, in the multiplexer range and on adapters without quick (the
        BeagleBone's i2c-omap); a method the adapter refuses falls back to the
        other. Raises BusUnsupported only when the adapter refuses both.
        """
        return await self._owner.probe(
            self.address, mux_address=self.mux_address, mux_channel=self.mux_channel
        )
