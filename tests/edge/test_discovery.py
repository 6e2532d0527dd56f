"""Scanning and identifying chips on simulated buses, directly and behind multiplexers."""

from __future__ import annotations

from collections import Counter

import pytest
from smbus2 import I2cFunc

from bioreactor_edge.bus import (
    BusError,
    BusKernelOwned,
    BusNak,
    BusOwner,
    BusTimeout,
    BusUnsupported,
)
from bioreactor_edge.discovery import SCAN_ADDRESSES, identify_address, scan, scan_places
from bioreactor_edge.drivers.base import Timing
from bioreactor_edge.simulator.chips import EzoChip, SimChip
from bioreactor_edge.simulator.lab import STANDARD_SET, build_reactor_bus
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus

SPEED = 50.0
FAST = Timing().scaled(SPEED)


class ProbeLog(VirtualBus):
    """A VirtualBus that records which probe each address got."""

    def __init__(self) -> None:
        super().__init__()
        self.probes: dict[int, str] = {}

    def quick_write(self, address: int) -> None:
        self.probes[address] = "quick"
        super().quick_write(address)

    def receive_byte(self, address: int) -> int:
        self.probes[address] = "receive"
        return super().receive_byte(address)


async def test_scan_probes_like_i2cdetect() -> None:
    vbus = ProbeLog()
    for address in (0x08, 0x30, 0x44, 0x50, 0x5F, 0x77):
        vbus.add(SimChip(address))
    owner = BusOwner(vbus, 1)
    try:
        assert (await scan(owner)).found == [0x08, 0x30, 0x44, 0x50, 0x5F, 0x77]
    finally:
        await owner.close()
    assert set(vbus.probes) == set(SCAN_ADDRESSES)
    receive = {a for a, probe in vbus.probes.items() if probe == "receive"}
    # i2cdetect's EEPROM ranges, plus the multiplexer range: nothing is written there.
    assert receive == set(range(0x30, 0x38)) | set(range(0x50, 0x60)) | set(range(0x70, 0x78))
    assert owner.stats.transactions_error == 0


async def test_standard_reactor_is_found_and_identified(model: ReactorModel) -> None:
    owner = BusOwner(build_reactor_bus(model, speed=SPEED), 1)
    try:
        found = (await scan(owner)).found
        assert found == sorted(address for _, address in STANDARD_SET)
        kinds = {}
        for address in found:
            identity = (await identify_address(owner.device(address), timing=FAST)).identity
            assert identity is not None
            kinds[address] = identity.kind
    finally:
        await owner.close()
    assert kinds == {address: kind for kind, address in STANDARD_SET}


async def test_ezo_identity_carries_model_and_firmware(model: ReactorModel) -> None:
    vbus = VirtualBus()
    vbus.add(EzoChip("ph", 0x20, model, speed=SPEED, firmware="2.15"))
    owner = BusOwner(vbus, 1)
    try:
        identity = (await identify_address(owner.device(0x20), timing=FAST)).identity
    finally:
        await owner.close()
    assert identity is not None
    assert (identity.kind, identity.model, identity.firmware) == ("ph", "EZO-pH", "2.15")


class OtherEzo(SimChip):
    """An EZO circuit of a type without a driver (here a CO2 sensor)."""

    def on_read(self, length: int) -> bytes:
        return (b"\x01?I,CO2,1.0\x00").ljust(length, b"\x00")


@pytest.mark.parametrize(
    "chip", [SimChip(0x44), SimChip(0x48), SimChip(0x21), OtherEzo(0x22)], ids=repr
)
async def test_unknown_devices_are_not_identified(chip: SimChip) -> None:
    vbus = VirtualBus()
    vbus.add(chip)
    owner = BusOwner(vbus, 1)
    try:
        assert (await scan(owner)).found == [chip.address]
        found = await identify_address(owner.device(chip.address), timing=FAST)
    finally:
        await owner.close()
    assert found.identity is None
    assert found.code == "unsupported_chip"
    assert found.reason is not None and "none of the supported chips" in found.reason
    assert found.retry


async def test_busy_ezo_is_a_failed_identification_to_retry(model: ReactorModel) -> None:
    vbus = VirtualBus()
    chip = EzoChip("do", 0x61, model, speed=SPEED)
    chip.faults.stuck_busy = True
    vbus.add(chip)
    owner = BusOwner(vbus, 1)
    try:
        found = await identify_address(owner.device(0x61), timing=FAST)
    finally:
        await owner.close()
    assert (found.identity, found.code, found.retry) == (None, "timeout", True)
    assert found.reason is not None and found.reason.startswith("identification failed")


async def test_unplugged_chip_disappears_from_scans(model: ReactorModel) -> None:
    vbus = build_reactor_bus(model, speed=SPEED)
    owner = BusOwner(vbus, 1)
    try:
        vbus.chip(0x63).faults.unplugged = True
        assert 0x63 not in (await scan(owner)).found
        vbus.chip(0x63).faults.unplugged = False
        assert 0x63 in (await scan(owner)).found
        vbus.remove(0x63)
        assert 0x63 not in (await scan(owner)).found
    finally:
        await owner.close()


async def test_chips_behind_mux_channels(model: ReactorModel) -> None:
    vbus = VirtualBus()
    vbus.add(EzoChip("ph", 0x63, model, speed=SPEED), mux_channel=0)
    vbus.add(EzoChip("rtd", 0x66, model, speed=SPEED), mux_channel=0)
    vbus.add(EzoChip("orp", 0x63, model, speed=SPEED), mux_channel=1)
    vbus.add(SimChip(0x10))  # on the main bus, seen from every channel
    owner = BusOwner(vbus, 1)
    try:
        owner.register_mux(0x70)
        places = [None, (0x70, 0), (0x70, 1), (0x70, 2)]
        results = await scan_places(owner, places)
        # The main bus alone: the multiplexer itself is never listed, its channels are closed.
        assert results[None].found == [0x10]
        # The main bus chip is not claimed again by every channel.
        assert results[0x70, 0].found == [0x63, 0x66]
        assert results[0x70, 1].found == [0x63]
        assert results[0x70, 2].found == []
        # A plain channel scan still sees it (nothing subtracted).
        assert (await scan(owner, mux_address=0x70, mux_channel=2)).found == [0x10]
        kinds = []
        for channel in (0, 1):
            device = owner.device(0x63, mux_address=0x70, mux_channel=channel)
            identity = (await identify_address(device, timing=FAST)).identity
            assert identity is not None
            kinds.append(identity.kind)
    finally:
        await owner.close()
    assert kinds == ["ph", "orp"]


async def test_forty_five_sensors_on_one_bus(model: ReactorModel) -> None:
    owner = BusOwner(build_reactor_bus(model, sensors=45, speed=SPEED), 1)
    try:
        found = (await scan(owner)).found
        assert len(found) == 45
        identities = [
            (await identify_address(owner.device(a), timing=FAST)).identity for a in found
        ]
    finally:
        await owner.close()
    assert all(identity is not None for identity in identities)
    kinds = {identity.kind for identity in identities if identity is not None}
    assert kinds == {"ph", "do", "orp", "ec", "rtd", "pmp", "sht4x", "ads1115"}


async def test_scan_aborts_on_a_bus_timeout() -> None:
    vbus = VirtualBus()
    vbus.hang_s = 0.2
    owner = BusOwner(vbus, 1, timeout_s=0.02)
    try:
        with pytest.raises(BusTimeout):
            await scan(owner)
    finally:
        await owner.close()


class BoardBus:
    """A small RawBus with a real adapter's manners, recording every call.

    `quick`: whether SMBus quick works (i2c-omap: no); `chips`: acknowledging
    addresses; `read_naks`: chips that NAK reads (an SHT4x before a command);
    `kernel`: addresses bound to a kernel driver (EBUSY on selection);
    `broken`: addresses whose transfers fail with an adapter error.
    """

    def __init__(
        self,
        *,
        quick: bool,
        claims_quick: bool | None = None,
        chips: frozenset[int] = frozenset(),
        read_naks: frozenset[int] = frozenset(),
        kernel: frozenset[int] = frozenset(),
        broken: frozenset[int] = frozenset(),
    ) -> None:
        claims = quick if claims_quick is None else claims_quick
        self._funcs = int(I2cFunc.I2C | I2cFunc.SMBUS_READ_BYTE)
        self._funcs |= int(I2cFunc.SMBUS_QUICK) if claims else 0
        self.quick = quick
        self.chips, self.read_naks, self.kernel, self.broken = chips, read_naks, kernel, broken
        self.calls: Counter[tuple[str, int]] = Counter()

    def _begin(self, kind: str, address: int) -> None:
        self.calls[kind, address] += 1
        if address in self.kernel:
            raise BusKernelOwned(f"0x{address:02x}: device or resource busy")
        if address in self.broken:
            raise BusError(f"0x{address:02x}: arbitration lost")

    def writes(self) -> set[int]:
        return {a for (kind, a) in self.calls if kind in ("write", "quick")}

    def funcs(self) -> int:
        return self._funcs

    def quick_write(self, address: int) -> None:
        self._begin("quick", address)
        if not self.quick:
            raise BusUnsupported(f"quick write to 0x{address:02x}: Operation not supported")
        if address not in self.chips:
            raise BusNak(f"0x{address:02x}")

    def receive_byte(self, address: int) -> int:
        self._begin("receive", address)
        if address not in self.chips or address in self.read_naks:
            raise BusNak(f"0x{address:02x}")
        return 0

    def write(self, address: int, data: bytes) -> None:
        self._begin("write", address)
        if address not in self.chips:
            raise BusNak(f"0x{address:02x}")

    def read(self, address: int, length: int) -> bytes:
        self._begin("read", address)
        raise BusNak(f"0x{address:02x}")

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        self._begin("write", address)
        raise BusNak(f"0x{address:02x}")

    def close(self) -> None:
        return


@pytest.mark.parametrize("claims_quick", [True, False], ids=["claims-quick", "honest-funcs"])
async def test_beaglebone_without_quick_write_scans_every_address(claims_quick: bool) -> None:
    # Before: the scan aborted at 0x08 with "quick write: Operation not supported".
    raw = BoardBus(quick=False, claims_quick=claims_quick, chips=frozenset({0x08, 0x61, 0x63}))
    owner = BusOwner(raw, 2)
    try:
        result = await scan(owner)
    finally:
        await owner.close()
    assert result.found == [0x08, 0x61, 0x63]
    assert result.failed == {}
    assert sum(n for (kind, _), n in raw.calls.items() if kind == "quick") == int(claims_quick)
    assert {a for (kind, a) in raw.calls if kind == "receive"} == set(SCAN_ADDRESSES)


async def test_kernel_owned_eeproms_are_reported_and_never_written() -> None:
    eeproms = frozenset(range(0x54, 0x58))
    raw = BoardBus(quick=False, chips=frozenset({0x63}) | eeproms, kernel=eeproms)
    owner = BusOwner(raw, 2)
    try:
        first = await scan(owner)
        second = await scan(owner)
        for address in eeproms:
            with pytest.raises(BusKernelOwned):
                await owner.device(address).write(b"i")
    finally:
        await owner.close()
    assert first.kernel_owned == second.kernel_owned == sorted(eeproms)
    assert first.found == [0x63]
    # One refused probe each, then never again: not even a write got through.
    assert all(raw.calls["receive", a] == 1 for a in eeproms)
    assert not raw.writes() & eeproms


async def test_a_failing_address_does_not_abort_the_scan() -> None:
    raw = BoardBus(quick=True, chips=frozenset({0x10, 0x63}), broken=frozenset({0x20}))
    owner = BusOwner(raw, 1)
    try:
        result = await scan(owner)
    finally:
        await owner.close()
    assert result.found == [0x10, 0x63]
    assert list(result.failed) == [0x20]
    assert "arbitration lost" in result.failed[0x20]


async def test_sht4x_that_naks_reads_is_found_without_quick_write() -> None:
    raw = BoardBus(quick=False, chips=frozenset({0x44, 0x63}), read_naks=frozenset({0x44}))
    owner = BusOwner(raw, 2)
    try:
        assert (await scan(owner)).found == [0x44, 0x63]
    finally:
        await owner.close()
    # With quick write it answers the probe itself; no command is needed.
    raw = BoardBus(quick=True, chips=frozenset({0x44}), read_naks=frozenset({0x44}))
    owner = BusOwner(raw, 1)
    try:
        assert (await scan(owner)).found == [0x44]
    finally:
        await owner.close()
    assert raw.calls["write", 0x44] == 0


async def test_unconfigured_mux_is_listed_but_never_written() -> None:
    raw = BoardBus(quick=True, chips=frozenset({0x63, 0x70}))
    owner = BusOwner(raw, 1)
    try:
        result = await scan(owner)
        found = await identify_address(owner.device(0x70), timing=FAST)
    finally:
        await owner.close()
    assert result.found == [0x63, 0x70]
    assert (found.identity, found.code, found.retry) == (None, "mux_range", False)
    assert found.reason is not None and "mux_address" in found.reason
    assert not raw.writes() & set(range(0x70, 0x78))


async def test_kernel_owned_found_during_identification_is_an_error_of_that_address() -> None:
    raw = BoardBus(quick=True, chips=frozenset({0x50}))
    owner = BusOwner(raw, 1)
    try:
        assert (await scan(owner)).found == [0x50]
        raw.kernel = frozenset({0x50})  # a driver was bound since
        found = await identify_address(owner.device(0x50), timing=FAST)
        assert (await scan(owner)).kernel_owned == [0x50]
    finally:
        await owner.close()
    assert (found.identity, found.code) == (None, "kernel_owned")
