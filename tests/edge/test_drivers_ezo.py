"""EZO drivers against scripted circuits replaying datasheet command/reply pairs.

Where a reply is quoted from a datasheet the comment names it; other values
are made up in the datasheets' format.
"""

from __future__ import annotations

import asyncio

import pytest

from bioreactor_edge.bus import BusOwner
from bioreactor_edge.drivers import create_driver, default_identity
from bioreactor_edge.drivers.base import Driver, DriverError, Identity, Timing
from bioreactor_edge.drivers.ezo import (
    CompensatedEzoDriver,
    PmpDriver,
    RtdDriver,
    compensation_text,
    ezo_query,
    identify_ezo,
    parse_firmware,
    parse_reply,
)
from bioreactor_edge.models import Measurement, Quality
from tests.edge.scripted_bus import (
    NO_DATA,
    PROCESSING,
    SYNTAX_ERROR,
    EzoTranscript,
    ScriptedBus,
    Step,
    ok,
)

FAST = Timing(read_s=0.001, command_s=0.001, poll_s=0.001, timeout_s=0.5)
ADDRESS = 0x63


@pytest.fixture
def bus() -> ScriptedBus:
    return ScriptedBus({})


@pytest.fixture
def raw_bus(bus: ScriptedBus) -> ScriptedBus:
    return bus


def circuit(bus: ScriptedBus, *steps: tuple[bytes, list[bytes]]) -> EzoTranscript:
    chip = EzoTranscript([Step(command, list(replies)) for command, replies in steps])
    bus.chips[ADDRESS] = chip
    return chip


def driver_for(owner: BusOwner, kind: str, firmware: str | None = None) -> Driver:
    identity = Identity(kind, default_identity(kind).model, firmware)
    return create_driver(owner.device(ADDRESS), identity, timing=FAST)


async def read(driver: Driver, temperature_c: float | None = None) -> list[Measurement]:
    await driver.start(temperature_c)
    await asyncio.sleep(driver.ready_after_s)
    return await driver.collect()


# --- identification -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind", "firmware"),
    [
        ("?I,pH,1.98", "ph", "1.98"),
        ("?i,pH,1.0", "ph", "1.0"),  # lower-case prefix, seen from pH firmware
        ("?I,D.O.,1.0", "do", "1.0"),  # the DO circuit's own spelling
        ("?i,D.O.,1.98", "do", "1.98"),
        ("?I,DO,1.7", "do", "1.7"),
        ("?I,d.o.,2.0", "do", "2.0"),
        ("?I,OR,1.0", "orp", "1.0"),  # the ORP datasheet's example spelling
        ("?I,ORP,2.0", "orp", "2.0"),
        ("?I,EC,2.10", "ec", "2.10"),
        ("?I,RTD,2.01", "rtd", "2.01"),
        ("?I,PMP,1.0", "pmp", "1.0"),
        ("?I,EC,", "ec", None),
        ("?I,EC,1.0 ", "ec", "1.0"),  # padded, as seen from EC firmware
    ],
)
async def test_identification_accepts_every_spelling(
    owner: BusOwner, bus: ScriptedBus, reply: str, kind: str, firmware: str | None
) -> None:
    circuit(bus, (b"i", [ok(reply)]))
    identity = await identify_ezo(owner.device(ADDRESS), FAST)
    assert identity == Identity(kind, default_identity(kind).model, firmware)


@pytest.mark.parametrize(
    "replies",
    [[ok("?I,CO2,1.0")], [ok("hello")], [ok("?I,pH")], [SYNTAX_ERROR], [b"\x07junk"]],
)
async def test_identification_of_something_else(
    owner: BusOwner, bus: ScriptedBus, replies: list[bytes]
) -> None:
    circuit(bus, (b"i", replies))
    assert await identify_ezo(owner.device(ADDRESS), FAST) is None


async def test_identification_of_a_circuit_that_stays_busy_is_retried_later(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    circuit(bus, (b"i", [PROCESSING] * 1000))
    with pytest.raises(DriverError) as err:
        await identify_ezo(owner.device(ADDRESS), FAST)
    assert err.value.code == "timeout"


def test_firmware_versions_compare_by_parts() -> None:
    assert parse_firmware("2.10") == (2, 10)
    assert parse_firmware("2.10") > parse_firmware("2.9")
    assert parse_firmware("1.98") < parse_firmware("2.10")
    assert parse_firmware(None) is None
    assert parse_firmware("V5.0") is None


# --- reply bytes ----------------------------------------------------------------------


async def test_a_glitched_reading_is_read_correctly(owner: BusOwner, bus: ScriptedBus) -> None:
    circuit(bus, (b"R", [b"\x01" + bytes(c | 0x80 for c in b"9.560") + b"\x00"]))
    assert await read(driver_for(owner, "ph")) == [Measurement("ph", 9.56)]


def test_top_bit_is_cleared_as_atlas_raspberry_pi_code_does() -> None:
    # AtlasI2C.py handle_raspi_glitch: `chr(x & ~0x80)` for every byte after the first.
    glitched = b"\x01" + bytes(c | 0x80 for c in b"9.560") + b"\x80\x00"
    assert parse_reply(glitched, ADDRESS) == (1, "9.560")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x07abc\x00",  # unknown response code
        b"\x81" + b"9.560\x00",  # a glitched response code is not guessed at
        b"\x019.560",  # no NUL terminator
        b"\x019.\x8900\x00",  # a tab once the top bit is cleared
        b"\x019.0\n\x00",  # control character
    ],
)
def test_true_garbage_is_rejected(raw: bytes) -> None:
    with pytest.raises(DriverError) as err:
        parse_reply(raw, ADDRESS)
    assert err.value.code == "garbage"


def test_response_codes() -> None:
    # EZO-pH datasheet, I2C "Response codes": 1 success, 2 syntax error,
    # 254 still processing, 255 no data.
    assert parse_reply(ok("9.560") + b"\x00\x00", ADDRESS) == (1, "9.560")
    assert parse_reply(b"\x02\x00", ADDRESS) == (2, "")
    assert parse_reply(b"\xfe\x00", ADDRESS) == (254, "")
    assert parse_reply(b"\xff\x00", ADDRESS) == (255, "")


async def test_reading_polls_while_processing(owner: BusOwner, bus: ScriptedBus) -> None:
    # EZO-pH datasheet, "Taking reading": R -> 1 "9.560" NUL after 900 ms.
    chip = circuit(bus, (b"R", [PROCESSING, PROCESSING, ok("9.560")]))
    measurements = await read(driver_for(owner, "ph"))
    assert measurements == [Measurement("ph", 9.56)]
    assert chip.finished


@pytest.mark.parametrize(("reply", "code"), [(SYNTAX_ERROR, "syntax_error"), (NO_DATA, "no_data")])
async def test_error_response_codes(
    owner: BusOwner, bus: ScriptedBus, reply: bytes, code: str
) -> None:
    circuit(bus, (b"R", [reply]))
    with pytest.raises(DriverError) as err:
        await read(driver_for(owner, "orp"))
    assert err.value.code == code


@pytest.mark.parametrize("payload", ["abc", "nan", "inf", "7.0,7.1", "", "1_000", "7.0x"])
async def test_unparseable_values_are_garbage(
    owner: BusOwner, bus: ScriptedBus, payload: str
) -> None:
    circuit(bus, (b"R", [ok(payload)]))
    with pytest.raises(DriverError) as err:
        await read(driver_for(owner, "ph"))
    assert err.value.code == "garbage"


@pytest.mark.parametrize(
    ("kind", "payload", "quality"),
    [
        ("ph", "15.200", Quality.SUSPECT),
        ("ph", "14.000", Quality.GOOD),
        ("orp", "-1020.0", Quality.SUSPECT),
        ("orp", "225.3", Quality.GOOD),
    ],
)
async def test_range_check(
    owner: BusOwner, bus: ScriptedBus, kind: str, payload: str, quality: Quality
) -> None:
    circuit(bus, (b"R", [ok(payload)]))
    measurements = await read(driver_for(owner, kind))
    assert measurements[0].value == float(payload)
    assert measurements[0].quality is quality


async def test_collect_without_start(owner: BusOwner, bus: ScriptedBus) -> None:
    circuit(bus)
    with pytest.raises(DriverError) as err:
        await driver_for(owner, "ph").collect()
    assert err.value.code == "no_data"


# --- temperature compensation: RT, or T then R ------------------------------------------


@pytest.mark.parametrize(
    ("celsius", "text"),
    [(19.5, "19.5"), (36.456, "36.46"), (25.0, "25"), (-0.001, "0"), (-5.25, "-5.25")],
)
def test_compensation_temperature_is_written_as_the_datasheets_do(
    celsius: float, text: str
) -> None:
    assert compensation_text(celsius) == text


def test_non_finite_compensation_is_refused() -> None:
    with pytest.raises(ValueError, match="not finite"):
        compensation_text(float("nan"))


async def test_rt_reads_compensated(owner: BusOwner, bus: ScriptedBus) -> None:
    chip = circuit(
        bus,
        (b"RT,19.5", [ok("9.560")]),
        (b"R", [ok("9.561")]),  # no temperature: plain R
        (b"RT,20", [ok("9.562")]),
    )
    driver = driver_for(owner, "ph", "2.16")
    assert isinstance(driver, CompensatedEzoDriver)
    assert await read(driver, 19.5) == [Measurement("ph", 9.56)]
    assert driver.rt_supported is True
    assert await read(driver) == [Measurement("ph", 9.561)]
    assert await read(driver, 20.0) == [Measurement("ph", 9.562)]
    assert chip.finished


async def test_firmware_without_rt_falls_back_to_t_then_r_once(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    # RT answered with a syntax error (response code 2): T,<t> (reply: code 1 and
    # nothing else, "Temperature compensation" page) and R instead, from then on.
    chip = circuit(
        bus,
        (b"RT,19.5", [SYNTAX_ERROR]),
        (b"T,19.5", [ok("")]),
        (b"R", [ok("9.560")]),
        (b"T,21.25", [ok("")]),
        (b"R", [ok("9.570")]),
    )
    driver = driver_for(owner, "ph", "1.0")
    assert isinstance(driver, CompensatedEzoDriver)
    assert await read(driver, 19.5) == [Measurement("ph", 9.56)]
    assert driver.rt_supported is False
    assert await read(driver, 21.25) == [Measurement("ph", 9.57)]
    assert chip.finished


async def test_a_syntax_error_after_rt_worked_is_an_error(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    circuit(bus, (b"RT,19.5", [ok("9.560")]), (b"RT,19.5", [SYNTAX_ERROR]))
    driver = driver_for(owner, "ph")
    await read(driver, 19.5)
    with pytest.raises(DriverError) as err:
        await read(driver, 19.5)
    assert err.value.code == "syntax_error"


async def test_orp_is_not_compensated(owner: BusOwner, bus: ScriptedBus) -> None:
    chip = circuit(bus, (b"R", [ok("225.3")]))
    await read(driver_for(owner, "orp"), 30.0)
    assert chip.received == [b"R"]


# --- enabled outputs (EC, DO) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "reading", "expected"),
    [
        # EZO-EC datasheet, "Enable/disable parameters": all four enabled.
        ("?,O,EC,TDS,S,SG", "1413,707,0.70,1.000",
         ["conductivity", "total_dissolved_solids", "salinity", "specific_gravity"]),
        ("?,O,EC", "1413", ["conductivity"]),
        ("?,O,SG,EC", "1413,1.000", ["conductivity", "specific_gravity"]),
        ("?O,EC,S", "1413,0.70", ["conductivity", "salinity"]),  # without the comma
    ],
)  # fmt: skip
async def test_ec_reads_its_enabled_outputs_in_datasheet_order(
    owner: BusOwner, bus: ScriptedBus, reply: str, reading: str, expected: list[str]
) -> None:
    circuit(bus, (b"O,?", [ok(reply)]), (b"RT,25", [ok(reading)]))
    driver = driver_for(owner, "ec", "2.16")
    await driver.setup()
    assert [q.key for q in driver.quantities] == expected
    measurements = await read(driver, 25.0)
    assert [m.quantity for m in measurements] == expected
    assert all(m.quality is Quality.GOOD for m in measurements)


async def test_do_reads_mg_then_percent_whatever_o_lists_first(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    # EZO-DO datasheet V4.1 p.55, "Enable/disable parameters": O,? -> "?,O,%,mg".
    circuit(bus, (b"O,?", [ok("?,O,%,mg")]), (b"RT,37", [ok("6.95,98.4")]))
    driver = driver_for(owner, "do", "1.0")
    assert [q.key for q in driver.quantities] == ["dissolved_oxygen"]  # factory default
    await driver.setup()
    assert await read(driver, 37.0) == [
        Measurement("dissolved_oxygen", 6.95),
        Measurement("oxygen_saturation", 98.4),
    ]


@pytest.mark.parametrize(
    ("firmware", "expected"),
    [
        ("2.10", ["conductivity"]),
        ("2.11", ["conductivity"]),
        ("3.0", ["conductivity"]),
        (None, ["conductivity"]),
        ("2.9", ["conductivity", "total_dissolved_solids", "salinity", "specific_gravity"]),
        ("1.5", ["conductivity", "total_dissolved_solids", "salinity", "specific_gravity"]),
    ],
)
async def test_ec_factory_default_depends_on_firmware(
    owner: BusOwner, firmware: str | None, expected: list[str]
) -> None:
    # EZO-EC datasheet V6.2, cover: "firmware version 2.10 and above will only output EC".
    driver = driver_for(owner, "ec", firmware)
    assert [q.key for q in driver.quantities] == expected


@pytest.mark.parametrize("reply", ["?,O,", "?,O", "?O"])
async def test_no_output_enabled_enables_the_first(
    owner: BusOwner, bus: ScriptedBus, reply: str
) -> None:
    chip = circuit(bus, (b"O,?", [ok(reply)]), (b"O,EC,1", [ok("")]))
    driver = driver_for(owner, "ec")
    await driver.setup()
    assert [q.key for q in driver.quantities] == ["conductivity"]
    assert chip.finished


@pytest.mark.parametrize("reply", ["?,O,EC,CO2", "EC,TDS", "?I,EC,2.10", "?,OEC"])
async def test_unexpected_outputs_reply_is_garbage(
    owner: BusOwner, bus: ScriptedBus, reply: str
) -> None:
    circuit(bus, (b"O,?", [ok(reply)]))
    with pytest.raises(DriverError) as err:
        await driver_for(owner, "ec").setup()
    assert err.value.code == "garbage"


async def test_reading_not_matching_outputs_is_garbage(owner: BusOwner, bus: ScriptedBus) -> None:
    circuit(bus, (b"O,?", [ok("?,O,EC,TDS,S,SG")]), (b"R", [ok("5000,2700")]))
    driver = driver_for(owner, "ec")
    await driver.setup()
    with pytest.raises(DriverError) as err:
        await read(driver)
    assert err.value.code == "garbage"


# --- RTD: scale and the no-probe value ---------------------------------------------------


@pytest.mark.parametrize(
    ("scale_reply", "reading", "celsius"),
    [("?S,c", "37.000", 37.0), ("?S,k", "310.150", 37.0), ("?S,f", "98.600", 37.0),
     ("?S,C", "25.104", 25.104)],
)  # fmt: skip
async def test_rtd_reports_celsius_whatever_its_scale(
    owner: BusOwner, bus: ScriptedBus, scale_reply: str, reading: str, celsius: float
) -> None:
    circuit(bus, (b"S,?", [ok(scale_reply)]), (b"R", [ok(reading)]))
    driver = driver_for(owner, "rtd")
    await driver.setup()
    (measurement,) = await read(driver)
    assert measurement.quantity == "temperature"
    assert measurement.value == pytest.approx(celsius)
    assert measurement.quality is Quality.GOOD


@pytest.mark.parametrize("scale_reply", ["?S,c", "?S,f", "?S,k"])
async def test_rtd_without_probe_is_an_error_never_a_reading(
    owner: BusOwner, bus: ScriptedBus, scale_reply: str
) -> None:
    circuit(bus, (b"S,?", [ok(scale_reply)]), (b"R", [ok("-1023.000")]))
    driver = driver_for(owner, "rtd")
    await driver.setup()
    with pytest.raises(DriverError) as err:
        await read(driver)
    assert err.value.code == "no_probe"


@pytest.mark.parametrize("reply", ["?S,x", "?S", "?S,c,1", "?T,c"])
async def test_rtd_unknown_scale_is_garbage(owner: BusOwner, bus: ScriptedBus, reply: str) -> None:
    circuit(bus, (b"S,?", [ok(reply)]))
    driver = driver_for(owner, "rtd")
    assert isinstance(driver, RtdDriver)
    with pytest.raises(DriverError) as err:
        await driver.setup()
    assert err.value.code == "garbage"
    assert driver.scale == "c"


# --- PMP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "ml"), [("?TV,12.50", 12.5), ("?tv,-3.00", -3.0)])
async def test_pump_total_volume(owner: BusOwner, bus: ScriptedBus, reply: str, ml: float) -> None:
    circuit(bus, (b"TV,?", [ok(reply)]))
    driver = driver_for(owner, "pmp")
    assert await read(driver) == [Measurement("total_volume", ml)]
    assert driver.quantities[0].unit == "mL"


@pytest.mark.parametrize("reply", ["12.50", "?ATV,12.50", "?TV,", "?TV,1,2"])
async def test_pump_unexpected_total_volume_reply_is_garbage(
    owner: BusOwner, bus: ScriptedBus, reply: str
) -> None:
    circuit(bus, (b"TV,?", [ok(reply)]))
    with pytest.raises(DriverError) as err:
        await read(driver_for(owner, "pmp"))
    assert err.value.code == "garbage"


@pytest.mark.parametrize(
    ("reply", "expected"), [("?D,5.00,1", (5.0, True)), ("?D,-2.50,0", (-2.5, False))]
)
async def test_pump_dispensing_status(
    owner: BusOwner, bus: ScriptedBus, reply: str, expected: tuple[float, bool]
) -> None:
    circuit(bus, (b"D,?", [ok(reply)]))
    driver = driver_for(owner, "pmp")
    assert isinstance(driver, PmpDriver)
    assert await driver.dispensing() == expected


async def test_pump_command_on_another_circuit_is_a_syntax_error(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    circuit(bus, (b"D,2.5", [SYNTAX_ERROR]))
    with pytest.raises(DriverError) as err:
        await ezo_query(owner.device(ADDRESS), "D,2.5", FAST)
    assert err.value.code == "syntax_error"


def test_default_identity_and_unknown_kinds(owner: BusOwner) -> None:
    assert default_identity("ph").model == "EZO-pH"
    assert default_identity("ads1115").model == "ADS1115"
    with pytest.raises(ValueError, match="unknown sensor kind 'co2'"):
        default_identity("co2")
    with pytest.raises(ValueError, match="no driver"):
        create_driver(owner.device(0x10), Identity("co2", "x", None))
