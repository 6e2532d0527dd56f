"""The chip models' protocol details, as the datasheets describe them."""

from __future__ import annotations

import pytest

from bioreactor_edge.bus import BusNak
from bioreactor_edge.simulator.ads1115 import Ads1115Chip
from bioreactor_edge.simulator.eeprom import WRITE_CYCLE_S, Eeprom24c256, cape_contents
from bioreactor_edge.simulator.ezo import EzoChip
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.sht4x import Sht4xChip, crc8
from bioreactor_edge.simulator.tca9548a import Tca9548aMux


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def model(clock: FakeClock) -> ReactorModel:
    return ReactorModel(seed=3, clock=clock)


def ezo(kind: str, model: ReactorModel, clock: FakeClock, **kwargs: object) -> EzoChip:
    return EzoChip(kind, 0x63, model, clock=clock, **kwargs)  # type: ignore[arg-type]


def exchange(chip: EzoChip, command: str, clock: FakeClock, wait_s: float = 2.0) -> bytes:
    """Writes `command`, lets `wait_s` pass, returns the response code and text."""
    chip.on_write(command.encode())
    clock.now += wait_s
    return chip.on_read(40).rstrip(b"\0")


@pytest.mark.parametrize(
    ("kind", "reply"),
    [
        ("ph", b"\x01?I,pH,2.16"),
        ("do", b"\x01?I,D.O.,2.16"),
        ("orp", b"\x01?I,ORP,2.16"),
        ("ec", b"\x01?I,EC,2.16"),
        ("rtd", b"\x01?I,RTD,2.16"),
        ("pmp", b"\x01?I,PMP,2.16"),
    ],
)
def test_every_circuit_names_itself(
    kind: str, reply: bytes, model: ReactorModel, clock: FakeClock
) -> None:
    assert exchange(ezo(kind, model, clock), "i", clock) == reply


def test_response_codes_follow_the_processing_delay(model: ReactorModel, clock: FakeClock) -> None:
    chip = ezo("ph", model, clock)
    assert chip.on_read(31) == b"\xff" + b"\0" * 30  # nothing asked yet
    chip.on_write(b"R")
    clock.now = 0.89
    assert chip.on_read(31)[0] == 254  # pH R: 900 ms
    clock.now = 0.9
    reply = chip.on_read(31)
    assert reply[0] == 1
    assert 6.5 < float(reply[1:].split(b"\0")[0]) < 7.5
    assert chip.answers[-1] == ("R", reply[1:].split(b"\0")[0].decode())
    assert chip.on_read(31)[0] == 255  # sent once
    assert exchange(chip, "Frobnicate", clock) == b"\x02"
    assert chip.on_read(31)[0] == 255
    chip.faults.stuck_busy = True
    assert exchange(chip, "R", clock, 100.0) == b"\xfe"


def test_speed_divides_every_delay(model: ReactorModel, clock: FakeClock) -> None:
    chip = ezo("rtd", model, clock, speed=10.0)
    chip.on_write(b"R")
    clock.now = 0.059
    assert chip.on_read(31)[0] == 254  # RTD R: 600 ms / 10
    clock.now = 0.06
    assert chip.on_read(31)[0] == 1
    with pytest.raises(ValueError, match="speed"):
        ezo("rtd", model, clock, speed=0)


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("Status", b"\x01?Status,P,5.038"),
        ("status", b"\x01?Status,P,5.038"),  # commands are not case sensitive
        ("L,0", b"\x01"),
        ("L,?", b"\x01?L,1"),
        ("L,2", b"\x02"),
        ("Find", b"\x01"),
        ("Name,tank1", b"\x01"),
        ("Name,?", b"\x01?Name,"),
        ("Name,abcdefghijklmnopq", b"\x02"),
        ("Plock,1", b"\x01"),
        ("Plock,?", b"\x01?Plock,0"),
        ("T,30.5", b"\x01"),
        ("T,?", b"\x01?T,25.0"),
        ("RT,abc", b"\x02"),
        ("Cal,mid,7.00", b"\x01"),
        ("Cal,?", b"\x01?CAL,0"),
        ("Slope,?", b"\x01?Slope,100.0,100.0,0.00"),
        ("pHext,?", b"\x01?pHext,0"),
        ("TV,?", b"\x02"),
        ("O,?", b"\x02"),
        ("K,?", b"\x02"),
    ],
)
def test_ph_circuit_commands(
    command: str, reply: bytes, model: ReactorModel, clock: FakeClock
) -> None:
    assert exchange(ezo("ph", model, clock), command, clock) == reply


def test_ph_calibration_points_and_slope(model: ReactorModel, clock: FakeClock) -> None:
    chip = ezo("ph", model, clock)
    for command in ("Cal,mid,7.00", "Cal,low,4.00", "Cal,high,10.00"):
        assert exchange(chip, command, clock) == b"\x01"
    assert exchange(chip, "Cal,?", clock) == b"\x01?CAL,3"
    assert exchange(chip, "Slope,?", clock) == b"\x01?Slope,99.7,100.3,-0.89"
    assert exchange(chip, "Cal,mid,7.00", clock) == b"\x01"  # clears the other points
    assert exchange(chip, "Cal,?", clock) == b"\x01?CAL,1"
    assert exchange(chip, "Cal,clear", clock) == b"\x01"
    assert exchange(chip, "Cal,?", clock) == b"\x01?CAL,0"


def test_compensated_read_and_old_firmware_without_rt(
    model: ReactorModel, clock: FakeClock
) -> None:
    chip = ezo("ec", model, clock)
    assert exchange(chip, "RT,36.46", clock)[0] == 1
    assert chip.compensation_c == pytest.approx(36.46)
    assert exchange(chip, "T,?", clock) == b"\x01?T,36.46"
    old = ezo("ph", model, clock, rt_supported=False)
    assert exchange(old, "RT,30", clock) == b"\x02"
    assert exchange(old, "T,30", clock) == b"\x01"
    assert exchange(old, "R", clock)[0] == 1
    assert exchange(ezo("orp", model, clock), "RT,30", clock) == b"\x02"
    assert exchange(ezo("do", model, clock), "T,?", clock) == b"\x01?T,20.0"


def test_do_outputs(model: ReactorModel, clock: FakeClock) -> None:
    chip = ezo("do", model, clock)
    assert exchange(chip, "O,?", clock) == b"\x01?,O,mg"
    assert len(exchange(chip, "R", clock).split(b",")) == 1
    assert exchange(chip, "O,%,1", clock) == b"\x01"
    assert exchange(chip, "O,?", clock) == b"\x01?,O,%,mg"
    mg, percent = (float(v) for v in exchange(chip, "R", clock)[1:].split(b","))
    assert 0 < mg < 15 and 50 < percent < 110
    for name in ("mg", "%"):
        exchange(chip, f"O,{name},0", clock)
    assert exchange(chip, "O,?", clock) == b"\x01?,O"
    assert exchange(chip, "R", clock) == b"\x01no output"
    assert exchange(chip, "O,ppm,1", clock) == b"\x02"


@pytest.mark.parametrize(
    ("firmware", "outputs"),
    [("2.10", b"\x01?,O,EC"), ("2.16", b"\x01?,O,EC"), ("2.09", b"\x01?,O,EC,TDS,S,SG")],
)
def test_ec_factory_outputs_depend_on_firmware(
    firmware: str, outputs: bytes, model: ReactorModel, clock: FakeClock
) -> None:
    chip = ezo("ec", model, clock, firmware=firmware)
    assert exchange(chip, "O,?", clock) == outputs
    fields = exchange(chip, "R", clock)[1:].split(b",")
    assert len(fields) == outputs.count(b",") - 1


def test_ec_settings(model: ReactorModel, clock: FakeClock) -> None:
    chip = ezo("ec", model, clock)
    assert exchange(chip, "K,?", clock) == b"\x01?K,1.0"
    assert exchange(chip, "K,10", clock) == b"\x01"
    assert exchange(chip, "K,11", clock) == b"\x02"
    assert exchange(chip, "K,?", clock) == b"\x01?K,10.0"
    assert exchange(chip, "TDS,?", clock) == b"\x01?TDS,0.54"
    assert exchange(chip, "Cal,dry", clock) == b"\x01"
    assert exchange(chip, "Cal,low,12880", clock) == b"\x01"
    assert exchange(chip, "Cal,?", clock) == b"\x01?CAL,1"  # dry is not a point
    assert exchange(chip, "O,tds,1", clock) == b"\x01"
    assert exchange(chip, "O,?", clock) == b"\x01?,O,EC,TDS"


def test_rtd_scale_and_missing_probe(model: ReactorModel, clock: FakeClock) -> None:
    chip = ezo("rtd", model, clock)
    assert exchange(chip, "S,?", clock) == b"\x01?S,c"
    celsius = float(exchange(chip, "R", clock)[1:])
    assert exchange(chip, "S,k", clock) == b"\x01"
    assert exchange(chip, "S,?", clock) == b"\x01?S,k"
    assert float(exchange(chip, "R", clock)[1:]) == pytest.approx(celsius + 273.15, abs=0.2)
    assert exchange(chip, "S,x", clock) == b"\x02"
    chip.probe_connected = False
    assert exchange(chip, "R", clock) == b"\x01-1023.000"
    assert exchange(chip, "D,?", clock) == b"\x01?D,0"


def test_sleep_factory_plock_and_baud(model: ReactorModel, clock: FakeClock) -> None:
    chip = ezo("orp", model, clock)
    chip.on_write(b"Sleep")
    clock.now += 1
    assert chip.on_read(31)[0] == 255 and chip.asleep  # no response code
    assert exchange(chip, "L,0", clock) == b"\x01"
    assert not chip.asleep
    chip.on_write(b"Factory")
    clock.now += 1
    assert chip.on_read(31)[0] == 255
    assert exchange(chip, "L,?", clock) == b"\x01?L,1"
    assert exchange(chip, "Status", clock) == b"\x01?Status,S,5.038"
    assert exchange(chip, "Plock,1", clock) == b"\x01"
    assert exchange(chip, "Baud,9600", clock) == b"\x02"
    assert exchange(chip, "Plock,0", clock) == b"\x01"
    chip.on_write(b"Baud,9600")
    with pytest.raises(BusNak):
        chip.on_read(31)


def test_pump_doses_into_the_reactor_over_time(model: ReactorModel, clock: FakeClock) -> None:
    chip = ezo("pmp", model, clock)
    before = model.state().ph
    assert exchange(chip, "D,10", clock, 0.3) == b"\x01"
    assert exchange(chip, "D,?", clock, 0.3) == b"\x01?D,10.00,1"
    clock.now += 6.0  # 10 ml at 105 ml/min takes 5.7 s
    assert exchange(chip, "TV,?", clock, 0.3) == b"\x01?TV,10.00"
    assert exchange(chip, "D,?", clock, 0.3) == b"\x01?D,10.00,0"
    assert exchange(chip, "R", clock, 0.3) == b"\x01" + b"10.00"
    assert model.state().ph > before + 0.15
    assert exchange(chip, "D,-5", clock, 0.3) == b"\x01"
    clock.now += 6.0
    assert exchange(chip, "TV,?", clock, 0.3) == b"\x01?TV,5.00"
    assert exchange(chip, "ATV,?", clock, 0.3) == b"\x01?ATV,15.00"
    assert exchange(chip, "D,*", clock, 0.3) == b"\x01"
    assert exchange(chip, "D,?", clock, 0.3) == b"\x01?D,*,1"
    assert exchange(chip, "X", clock, 0.3) == b"\x01"
    assert exchange(chip, "D,?", clock, 0.3).endswith(b",0")
    assert exchange(chip, "DC,?", clock, 0.3) == b"\x01?maxrate,105.0"
    assert exchange(chip, "DC,200,5", clock, 0.3) == b"\x02"
    assert exchange(chip, "Clear", clock, 0.3) == b"\x01"
    assert exchange(chip, "TV,?", clock, 0.3) == b"\x01?TV,0.00"


def test_sht4x_naks_while_measuring_and_checks_its_crc(
    model: ReactorModel, clock: FakeClock
) -> None:
    assert crc8(b"\xbe\xef") == 0x92  # the datasheet's CRC example
    chip = Sht4xChip(0x44, model, serial=0x0BADCAFE, clock=clock)
    with pytest.raises(BusNak):
        chip.on_read(6)  # nothing to send
    chip.on_write(b"\xfd")
    clock.now = 0.008
    with pytest.raises(BusNak):
        chip.on_read(6)  # still measuring (8.3 ms)
    with pytest.raises(BusNak):
        chip.on_write(b"\x89")  # busy: not acknowledged
    clock.now = 0.0084
    answer = chip.on_read(6)
    assert crc8(answer[0:2]) == answer[2] and crc8(answer[3:5]) == answer[5]
    t_raw = int.from_bytes(answer[0:2], "big")
    assert (t_raw, int.from_bytes(answer[3:5], "big")) == chip.measurements[-1]
    assert 20 < -45 + 175 * t_raw / 65535 < 30
    with pytest.raises(BusNak):
        chip.on_read(6)  # read once
    chip.on_write(b"\x89")
    clock.now += 0.01
    serial = chip.on_read(6)
    assert serial[0:2] + serial[3:5] == bytes.fromhex("0badcafe")
    with pytest.raises(BusNak):
        chip.on_write(b"\x24\x00")
    with pytest.raises(BusNak):
        chip.on_write(b"\x42")
    chip.faults.garbage = True
    noise = chip.garbage(6)
    assert crc8(noise[0:2]) != noise[2]


def test_ads1115_registers_and_conversion_timing(model: ReactorModel, clock: FakeClock) -> None:
    chip = Ads1115Chip(0x48, model, clock=clock)
    for pointer, reset in ((1, 0x8583), (2, 0x8000), (3, 0x7FFF), (0, 0x0000)):
        chip.on_write(bytes([pointer]))
        assert chip.on_read(2) == reset.to_bytes(2, "big")
    with pytest.raises(BusNak):
        chip.on_write(b"\x04")
    # AIN0 vs GND, +-4.096 V, 128 SPS, single shot, start.
    chip.on_write(bytes([0x01, 0xC3, 0x83]))
    assert chip.on_read(2) == bytes([0x43, 0x83])  # OS reads 0: converting
    clock.now = 1 / 128
    assert chip.on_read(2) == bytes([0xC3, 0x83])
    chip.on_write(b"\x00")
    volts = int.from_bytes(chip.on_read(2), "big", signed=True) * 4.096 / 32768
    assert volts == pytest.approx(model.state().analog_v[0], abs=0.01)
    # Differential AIN0 - AIN1 reads the difference.
    chip.on_write(bytes([0x01, 0x85, 0x83]))
    clock.now += 1
    chip.on_write(b"\x00")
    state = model.state()
    difference = int.from_bytes(chip.on_read(2), "big", signed=True) * 2.048 / 32768
    assert difference == pytest.approx(state.analog_v[0] - state.analog_v[1], abs=0.02)
    chip.on_write(bytes([0x02, 0x12, 0x34]))
    chip.on_write(b"\x02")
    assert chip.on_read(2) == b"\x12\x34"


def test_tca9548a_keeps_the_last_byte(clock: FakeClock) -> None:
    mux = Tca9548aMux(0x71)
    assert mux.on_read(1) == b"\x00"
    mux.on_write(b"\x01\x02\x04")
    assert (mux.mask, mux.selects) == (0x04, 1)
    mux.on_write(b"")
    assert mux.mask == 0x04
    with pytest.raises(ValueError, match="0x70-0x77"):
        Tca9548aMux(0x60)


def test_eeprom_pages_pointer_and_write_cycle(clock: FakeClock) -> None:
    eeprom = Eeprom24c256(0x57, contents=cape_contents("BB-TEST"), clock=clock)
    eeprom.on_write(b"\x00\x00")
    assert eeprom.on_read(6) == b"\xaa\x55\x33\xeeA1"
    assert eeprom.on_read(7) == b"BB-TEST"  # sequential read continues
    eeprom.on_write(b"\x00\x3e" + b"xyz")  # wraps within the 64-byte page
    assert eeprom.writes == 1
    with pytest.raises(BusNak):
        eeprom.on_quick()  # write cycle: no acknowledge
    clock.now = WRITE_CYCLE_S
    eeprom.on_write(b"\x00\x00")
    assert eeprom.on_read(1) == b"z"
    eeprom.on_write(b"\x7f\xff")
    assert eeprom.on_read(2) == b"\xffz"  # rolls over from 0x7FFF to 0x0000
    with pytest.raises(ValueError, match="0x50-0x57"):
        Eeprom24c256(0x60)
