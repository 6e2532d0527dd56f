"""Scanning and identifying chips on simulated buses, directly and behind multiplexers."""

from __future__ import annotations

import pytest

from bioreactor_edge.bus import BusOwner, BusTimeout
from bioreactor_edge.discovery import SCAN_ADDRESSES, identify_address, scan
from bioreactor_edge.drivers.base import DriverError
from bioreactor_edge.simulator.chips import EzoChip, SimChip
from bioreactor_edge.simulator.lab import STANDARD_SET, build_reactor_bus, simulation_timing
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus

FAST = simulation_timing(50.0)


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
        assert await scan(owner) == [0x08, 0x30, 0x44, 0x50, 0x5F, 0x77]
    finally:
        await owner.close()
    assert set(vbus.probes) == set(SCAN_ADDRESSES)
    receive = {a for a, probe in vbus.probes.items() if probe == "receive"}
    assert receive == set(range(0x30, 0x38)) | set(range(0x50, 0x60))
    assert owner.stats.transactions_error == 0


async def test_standard_reactor_is_found_and_identified(model: ReactorModel) -> None:
    owner = BusOwner(build_reactor_bus(model, timing=FAST), 1)
    try:
        found = await scan(owner)
        assert found == sorted(address for _, address in STANDARD_SET)
        kinds = {}
        for address in found:
            identity = await identify_address(owner.device(address), timing=FAST)
            assert identity is not None
            kinds[address] = identity.kind
    finally:
        await owner.close()
    assert kinds == {address: kind for kind, address in STANDARD_SET}


async def test_ezo_identity_carries_model_and_firmware(model: ReactorModel) -> None:
    vbus = VirtualBus()
    vbus.add(EzoChip("ph", 0x20, model, timing=FAST, firmware="2.15"))
    owner = BusOwner(vbus, 1)
    try:
        identity = await identify_address(owner.device(0x20), timing=FAST)
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
        assert await scan(owner) == [chip.address]
        assert await identify_address(owner.device(chip.address), timing=FAST) is None
    finally:
        await owner.close()


async def test_busy_ezo_is_an_error_not_an_unknown_device(model: ReactorModel) -> None:
    vbus = VirtualBus()
    chip = EzoChip("do", 0x61, model, timing=FAST)
    chip.faults.stuck_busy = True
    vbus.add(chip)
    owner = BusOwner(vbus, 1)
    try:
        with pytest.raises(DriverError) as err:
            await identify_address(owner.device(0x61), timing=FAST)
    finally:
        await owner.close()
    assert err.value.code == "timeout"


async def test_unplugged_chip_disappears_from_scans(model: ReactorModel) -> None:
    vbus = build_reactor_bus(model, timing=FAST)
    owner = BusOwner(vbus, 1)
    try:
        vbus.chip(0x63).faults.unplugged = True
        assert 0x63 not in await scan(owner)
        vbus.chip(0x63).faults.unplugged = False
        assert 0x63 in await scan(owner)
        vbus.remove(0x63)
        assert 0x63 not in await scan(owner)
    finally:
        await owner.close()


async def test_chips_behind_mux_channels(model: ReactorModel) -> None:
    vbus = VirtualBus()
    vbus.add(EzoChip("ph", 0x63, model, timing=FAST), mux_channel=0)
    vbus.add(EzoChip("rtd", 0x66, model, timing=FAST), mux_channel=0)
    vbus.add(EzoChip("orp", 0x63, model, timing=FAST), mux_channel=1)
    vbus.add(SimChip(0x10))  # on the main bus, seen from every channel
    owner = BusOwner(vbus, 1)
    try:
        assert await scan(owner, mux_address=0x70, mux_channel=0) == [0x10, 0x63, 0x66]
        assert await scan(owner, mux_address=0x70, mux_channel=1) == [0x10, 0x63]
        assert await scan(owner, mux_address=0x70, mux_channel=2) == [0x10]
        # The main bus alone: the multiplexer itself is never listed, its channels are closed.
        assert await scan(owner) == [0x10]
        kinds = []
        for channel in (0, 1):
            device = owner.device(0x63, mux_address=0x70, mux_channel=channel)
            identity = await identify_address(device, timing=FAST)
            assert identity is not None
            kinds.append(identity.kind)
    finally:
        await owner.close()
    assert kinds == ["ph", "orp"]


async def test_forty_five_sensors_on_one_bus(model: ReactorModel) -> None:
    owner = BusOwner(build_reactor_bus(model, sensors=45, timing=FAST), 1)
    try:
        found = await scan(owner)
        assert len(found) == 45
        identities = [await identify_address(owner.device(a), timing=FAST) for a in found]
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
