"""EZO drivers against simulated circuits: every status code, garbage, ranges, outputs."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bioreactor_edge.bus import BusNak, BusOwner
from bioreactor_edge.drivers import create_driver, default_identity
from bioreactor_edge.drivers.base import Driver, DriverError, Identity, Timing
from bioreactor_edge.drivers.ezo import EcDriver, ezo_query, ezo_reply, parse_reply
from bioreactor_edge.models import Measurement, Quality
from bioreactor_edge.simulator.chips import EzoChip
from bioreactor_edge.simulator.lab import simulation_timing
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus

FAST = simulation_timing(50.0)

ADDRESS = {"ph": 0x63, "do": 0x61, "orp": 0x62, "ec": 0x64, "rtd": 0x66, "pmp": 0x67}


def add_chip(vbus: VirtualBus, model: ReactorModel, kind: str) -> EzoChip:
    chip = EzoChip(kind, ADDRESS[kind], model, timing=FAST)
    vbus.add(chip)
    return chip


def driver_for(owner: BusOwner, kind: str) -> Driver:
    return create_driver(owner.device(ADDRESS[kind]), default_identity(kind), timing=FAST)


async def read(driver: Driver, temperature_c: float | None = None) -> list[Measurement]:
    await driver.start(temperature_c)
    await asyncio.sleep(driver.ready_after_s)
    return await driver.collect()


@pytest.mark.parametrize(
    ("kind", "quantity", "low", "high"),
    [
        ("ph", "ph", 6.9, 7.1),
        ("do", "dissolved_oxygen", 4.0, 9.0),
        ("orp", "orp", 100.0, 400.0),
        ("ec", "conductivity", 4900.0, 5100.0),
        ("rtd", "temperature", 36.5, 37.5),
        ("pmp", "total_volume", 0.0, 0.0),
    ],
)
async def test_each_kind_reads_the_model(
    owner: BusOwner,
    vbus: VirtualBus,
    model: ReactorModel,
    kind: str,
    quantity: str,
    low: float,
    high: float,
) -> None:
    add_chip(vbus, model, kind)
    driver = driver_for(owner, kind)
    await driver.setup()
    measurements = await read(driver, 37.0 if driver.compensated else None)
    first = measurements[0]
    assert first.quantity == quantity
    assert low <= first.value <= high
    assert first.quality is Quality.GOOD
    assert [m.quantity for m in measurements] == [q.key for q in driver.quantities]


async def test_compensation_uses_rt_and_plain_r_without_temperature(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    ph_chip = add_chip(vbus, model, "ph")
    orp_chip = add_chip(vbus, model, "orp")
    ph = driver_for(owner, "ph")
    await read(ph, 36.456)
    assert ph_chip.commands[-1] == "RT,36.46"
    assert ph_chip.compensation_c == pytest.approx(36.46)
    await read(ph, None)
    assert ph_chip.commands[-1] == "R"
    # ORP is not temperature compensated: the temperature is ignored.
    await read(driver_for(owner, "orp"), 30.0)
    assert orp_chip.commands[-1] == "R"


async def test_still_processing_is_polled_until_ready(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    # The chip's clock moves 10 ms per look: written at 0, ready at 25 ms, so the
    # driver's first two reads see 254 whatever the machine's load.
    ticks = itertools.count()
    chip = EzoChip("rtd", 0x66, model, timing=Timing(read_s=0.025), clock=lambda: next(ticks) / 100)
    vbus.add(chip)
    driver = driver_for(owner, "rtd")
    await driver.start(None)
    before = vbus.transactions
    measurements = await driver.collect()
    assert measurements[0].quantity == "temperature"
    assert vbus.transactions - before == 3


async def test_processing_forever_times_out(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    chip = add_chip(vbus, model, "ph")
    chip.faults.stuck_busy = True
    driver = create_driver(
        owner.device(0x63),
        default_identity("ph"),
        timing=Timing(read_s=0.01, command_s=0.01, poll_s=0.01, timeout_s=0.1),
    )
    await driver.start(None)
    with pytest.raises(DriverError) as err:
        await driver.collect()
    assert err.value.code == "timeout"


async def test_syntax_error(owner: BusOwner, vbus: VirtualBus, model: ReactorModel) -> None:
    add_chip(vbus, model, "ph")
    with pytest.raises(DriverError) as err:
        await ezo_query(owner.device(0x63), "Frobnicate,3", FAST)
    assert err.value.code == "syntax_error"
    # A pump command sent to a pH circuit is rejected the same way.
    pump_on_ph = create_driver(owner.device(0x63), default_identity("pmp"), timing=FAST)
    with pytest.raises(DriverError) as err:
        await read(pump_on_ph)
    assert err.value.code == "syntax_error"


async def test_no_data(owner: BusOwner, vbus: VirtualBus, model: ReactorModel) -> None:
    add_chip(vbus, model, "orp")
    device = owner.device(0x62)
    with pytest.raises(DriverError) as err:
        await ezo_reply(device, FAST)
    assert err.value.code == "no_data"
    driver = driver_for(owner, "orp")
    await driver.start(None)
    await asyncio.sleep(driver.ready_after_s)
    await ezo_reply(device, FAST)  # someone else took the reply
    with pytest.raises(DriverError) as err:
        await driver.collect()
    assert err.value.code == "no_data"


async def test_garbage_fault(owner: BusOwner, vbus: VirtualBus, model: ReactorModel) -> None:
    chip = add_chip(vbus, model, "ph")
    driver = driver_for(owner, "ph")
    chip.faults.garbage = True
    with pytest.raises(DriverError) as err:
        await read(driver)
    assert err.value.code == "garbage"
    chip.faults.garbage = False
    assert (await read(driver))[0].quality is Quality.GOOD


@pytest.mark.parametrize("payload", ["abc", "nan", "inf", "7.0,7.1", "", "1_000", "7.0x"])
async def test_unparseable_values_are_garbage(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel, payload: str
) -> None:
    chip = add_chip(vbus, model, "ph")
    chip.reading_override = payload
    with pytest.raises(DriverError) as err:
        await read(driver_for(owner, "ph"))
    assert err.value.code == "garbage"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x07abc\x00",  # unknown status byte
        b"\x017.00",  # no NUL terminator
        b"\x017.\xe900\x00",  # not ASCII
        b"\x017.0\n\x00",  # control character
    ],
)
def test_malformed_replies_are_garbage(raw: bytes) -> None:
    with pytest.raises(DriverError) as err:
        parse_reply(raw, 0x63)
    assert err.value.code == "garbage"


def test_well_formed_reply() -> None:
    assert parse_reply(b"\x017.012\x00\x00\x00", 0x63) == (1, "7.012")
    assert parse_reply(b"\xfe\x00", 0x63) == (254, "")


async def test_nak(owner: BusOwner, vbus: VirtualBus, model: ReactorModel) -> None:
    chip = add_chip(vbus, model, "do")
    chip.faults.nak = True
    with pytest.raises(BusNak):
        await driver_for(owner, "do").start(20.0)
    assert owner.stats.transactions_error == 1


@pytest.mark.parametrize(
    ("kind", "payload", "quality"),
    [
        ("ph", "15.200", Quality.SUSPECT),
        ("ph", "14.000", Quality.GOOD),
        ("rtd", "-1023.000", Quality.SUSPECT),  # what the RTD circuit says without a probe
        ("orp", "-1020.0", Quality.SUSPECT),
        ("do", "-0.50", Quality.SUSPECT),
    ],
)
async def test_range_check(
    owner: BusOwner,
    vbus: VirtualBus,
    model: ReactorModel,
    kind: str,
    payload: str,
    quality: Quality,
) -> None:
    chip = add_chip(vbus, model, kind)
    chip.reading_override = payload
    measurements = await read(driver_for(owner, kind))
    assert measurements[0].value == float(payload)
    assert measurements[0].quality is quality


@pytest.mark.parametrize(
    ("enabled", "expected"),
    [
        ({"EC", "TDS", "S", "SG"}, ["conductivity", "total_dissolved_solids", "salinity",
                                    "specific_gravity"]),
        ({"EC", "S"}, ["conductivity", "salinity"]),
        ({"SG"}, ["specific_gravity"]),
    ],
)  # fmt: skip
async def test_ec_learns_enabled_outputs(
    owner: BusOwner,
    vbus: VirtualBus,
    model: ReactorModel,
    enabled: set[str],
    expected: list[str],
) -> None:
    chip = add_chip(vbus, model, "ec")
    chip.outputs = set(enabled)
    driver = driver_for(owner, "ec")
    await driver.setup()
    assert [q.key for q in driver.quantities] == expected
    measurements = await read(driver, 25.0)
    assert [m.quantity for m in measurements] == expected
    assert all(m.quality is Quality.GOOD for m in measurements)


async def test_ec_without_outputs_enables_conductivity(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    chip = add_chip(vbus, model, "ec")
    chip.outputs = set()
    driver = driver_for(owner, "ec")
    await driver.setup()
    assert chip.outputs == {"EC"}
    assert [q.key for q in driver.quantities] == ["conductivity"]


async def test_ec_reply_not_matching_outputs_is_garbage(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    chip = add_chip(vbus, model, "ec")
    driver = driver_for(owner, "ec")
    await driver.setup()  # all four outputs
    chip.reading_override = "5000,2700"
    with pytest.raises(DriverError) as err:
        await read(driver)
    assert err.value.code == "garbage"
    assert isinstance(driver, EcDriver)


async def test_do_with_saturation_output(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    chip = add_chip(vbus, model, "do")
    chip.outputs = {"mg", "%"}
    driver = driver_for(owner, "do")
    assert [q.key for q in driver.quantities] == ["dissolved_oxygen"]  # factory default
    await driver.setup()
    measurements = await read(driver, 37.0)
    assert [m.quantity for m in measurements] == ["dissolved_oxygen", "oxygen_saturation"]
    assert 50 < measurements[1].value < 110


async def test_pump_total_volume_follows_doses(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    add_chip(vbus, model, "pmp")
    device = owner.device(0x67)
    await ezo_query(device, "D,2.5", FAST)
    await ezo_query(device, "D,1.25", FAST)
    measurements = await read(driver_for(owner, "pmp"))
    assert measurements == [Measurement("total_volume", 3.75)]
    assert model.state().base_dosed_ml == pytest.approx(3.75)


async def test_collect_without_start(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    add_chip(vbus, model, "ph")
    with pytest.raises(DriverError) as err:
        await driver_for(owner, "ph").collect()
    assert err.value.code == "no_data"


def test_default_identity_and_unknown_kinds(owner: BusOwner) -> None:
    assert default_identity("ph").model == "EZO-pH"
    assert default_identity("ads1115").model == "ADS1115"
    with pytest.raises(ValueError, match="unknown sensor kind 'co2'"):
        default_identity("co2")
    with pytest.raises(ValueError, match="no driver"):
        create_driver(owner.device(0x10), Identity("co2", "x", None))
