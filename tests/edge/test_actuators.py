"""Actuator drivers and chip models against the datasheets' byte sequences (golden
transcripts), each on its own: the drivers must send exactly these bytes, and the
simulated chips must do what the datasheet says these bytes do."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bioreactor_edge.bus import BusNak, BusOwner, RawBus
from bioreactor_edge.drivers.base import DriverError, Identity, Timing
from bioreactor_edge.drivers.ezo import PmpDriver
from bioreactor_edge.drivers.mcp23017 import Mcp23017
from bioreactor_edge.drivers.pca9685 import Pca9685, channel_registers, prescale
from bioreactor_edge.simulator.actuation import add_actuators
from bioreactor_edge.simulator.ezo import EzoChip
from bioreactor_edge.simulator.mcp23017 import Mcp23017Chip
from bioreactor_edge.simulator.pca9685 import Pca9685Chip
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus
from tests.edge.scripted_bus import EzoTranscript, ScriptedBus, Step, ok

FAST = Timing(read_s=0.01, command_s=0.01, poll_s=0.005, timeout_s=2.0)


@dataclass
class Recorder:
    """A RawBus in front of another that records every message as (op, address, bytes)."""

    inner: RawBus
    log: list[tuple[str, int, bytes]] = field(default_factory=list)

    def funcs(self) -> int:
        return self.inner.funcs()

    def quick_write(self, address: int) -> None:
        self.inner.quick_write(address)

    def receive_byte(self, address: int) -> int:
        return self.inner.receive_byte(address)

    def write(self, address: int, data: bytes) -> None:
        self.log.append(("w", address, bytes(data)))
        self.inner.write(address, data)

    def read(self, address: int, length: int) -> bytes:
        data = self.inner.read(address, length)
        self.log.append(("r", address, data))
        return data

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        self.log.append(("w", address, bytes(data)))
        reply = self.inner.write_read(address, data, length)
        self.log.append(("r", address, reply))
        return reply

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def model() -> ReactorModel:
    return ReactorModel(seed=3)


@pytest.fixture
def recorder(model: ReactorModel) -> Recorder:
    return Recorder(VirtualBus())


@pytest.fixture
def raw_bus(recorder: Recorder) -> Recorder:
    return recorder


def writes(recorder: Recorder, address: int) -> list[bytes]:
    return [data for op, a, data in recorder.log if op == "w" and a == address]


# -- MCP23017 ----------------------------------------------------------------


def test_mcp23017_model_follows_the_datasheet_bytes() -> None:
    driven: list[int] = []
    chip = Mcp23017Chip(0x20, on_change=driven.append)
    # POR: IODIRA/B 0xFF, OLAT 0 (Table 3-5): nothing driven.
    chip.on_write(b"\x00")
    assert chip.on_read(2) == b"\xff\xff"
    assert driven == [0]
    # Sequential write of OLATA/OLATB, then IODIRA/IODIRB (pins 0-2 outputs).
    chip.on_write(bytes([0x14, 0x05, 0x00]))
    assert driven == [0], "a latch behind input pins drives nothing"
    chip.on_write(bytes([0x00, 0xF8, 0xFF]))
    assert driven == [0, 0x05]
    # GPIO reads the latch of output pins; a GPIO write lands in OLAT (3.5.10).
    chip.on_write(b"\x12")
    assert chip.on_read(1) == b"\x05"
    chip.on_write(bytes([0x12, 0x02]))
    assert driven[-1] == 0x02
    chip.on_write(b"\x14")
    assert chip.on_read(2) == b"\x02\x00"
    # Byte mode (IOCON.SEQOP): the pointer toggles within the pair.
    chip.on_write(bytes([0x0A, 0x20]))
    chip.on_write(b"\x14")
    assert chip.on_read(3) == b"\x02\x00\x02"
    chip.power_cycle()
    assert driven[-1] == 0
    chip.on_write(b"\x00")
    assert chip.on_read(2) == b"\xff\xff"


async def test_mcp23017_driver_transcript_and_reset_recovery(
    owner: BusOwner, recorder: Recorder
) -> None:
    chip = Mcp23017Chip(0x20)
    assert isinstance(recorder.inner, VirtualBus)
    recorder.inner.add(chip)
    relays = Mcp23017(owner.device(0x20), frozenset({0, 1, 2}))
    assert await relays.apply(0b101) is False
    assert recorder.log == [
        ("w", 0x20, b"\x00"),
        ("r", 0x20, b"\xff\xff"),  # IODIR at reset: all inputs
        ("w", 0x20, b"\x14\x05\x00"),  # OLAT first ...
        ("w", 0x20, b"\x00\xf8\xff"),  # ... then pins 0-2 become outputs
        ("w", 0x20, b"\x14"),
        ("r", 0x20, b"\x05\x00"),
        ("w", 0x20, b"\x00"),
        ("r", 0x20, b"\xf8\xff"),
    ]
    assert chip.driven == 0b101
    # Steady state: no direction write.
    recorder.log.clear()
    assert await relays.apply(0b001) is False
    assert b"\x00\xf8\xff" not in writes(recorder, 0x20)
    # A brown-out: found on the next apply and the direction set again.
    chip.power_cycle()
    assert await relays.apply(0b001) is True
    assert chip.driven == 0b001
    assert relays.resets_seen == 1


async def test_mcp23017_latch_that_does_not_stick_is_an_error(
    owner: BusOwner, recorder: Recorder
) -> None:
    class StuckLatch(Mcp23017Chip):
        def on_write(self, data: bytes) -> None:
            super().on_write(data[:1] if data[:1] == b"\x14" else data)

    assert isinstance(recorder.inner, VirtualBus)
    recorder.inner.add(StuckLatch(0x21))
    relays = Mcp23017(owner.device(0x21), frozenset({0}))
    with pytest.raises(DriverError, match="latch reads"):
        await relays.apply(1)
    with pytest.raises(ValueError, match="0-15"):
        Mcp23017(owner.device(0x21), frozenset({16}))


# -- PCA9685 -------------------------------------------------------------------


def test_pca9685_prescale_and_channel_bytes_follow_the_datasheet() -> None:
    # 7.3.5: 200 Hz -> round(25e6 / (4096 * 200)) - 1 = 30 (0x1E, the reset value).
    assert prescale(200) == 0x1E
    assert prescale(1526) == 3
    with pytest.raises(ValueError, match="Hz"):
        prescale(2000)
    assert channel_registers(0.0) == b"\x00\x00\x00\x10"  # full off
    assert channel_registers(1.0) == b"\x00\x10\x00\x00"  # full on
    assert channel_registers(0.25) == b"\x00\x00\x00\x04"  # off at count 1024
    with pytest.raises(ValueError, match="0-1"):
        channel_registers(1.5)


def test_pca9685_model_follows_the_datasheet_bytes() -> None:
    duties: dict[int, float] = {}
    chip = Pca9685Chip(0x40, on_change=lambda c, d: duties.__setitem__(c, d))
    assert chip.answers_all_call  # 7.1.4: LED All Call on at power-up
    chip.on_write(b"\x00")
    assert chip.on_read(1) == b"\x11"  # MODE1 reset value
    chip.on_write(b"\xfe\x03")
    chip.on_write(b"\xfe")
    assert chip.on_read(1) == b"\x03"  # PRE_SCALE writable while asleep
    chip.on_write(b"\x00\x20")  # awake, auto-increment, ALLCALL off
    assert not chip.answers_all_call
    chip.on_write(b"\xfe\x40")
    chip.on_write(b"\xfe")
    assert chip.on_read(1) == b"\x03", "PRE_SCALE writes are blocked while awake"
    chip.on_write(b"\x06\x00\x00\x00\x08")  # LED0 off at count 2048
    assert duties[0] == 0.5
    chip.on_write(b"\x0a\x00\x10\x00\x10")  # LED1 full on and full off: off wins
    assert duties.get(1, 0.0) == 0.0
    chip.on_write(b"\x0a\x00\x10\x00\x00")
    assert duties[1] == 1.0
    chip.on_write(b"\xfd\x10")  # ALL_LED_OFF_H full off: every channel off
    assert set(duties.values()) == {0.0}
    chip.on_write(b"\xfd")
    assert chip.on_read(1) == b"\x00", "ALL_LED registers read zero"
    with pytest.raises(BusNak):
        chip.on_write(b"\x50\x00")  # reserved register: not acknowledged


async def test_pca9685_driver_transcript_and_reset_recovery(
    owner: BusOwner, recorder: Recorder
) -> None:
    chip = Pca9685Chip(0x40)
    assert isinstance(recorder.inner, VirtualBus)
    recorder.inner.add(chip)
    pwm = Pca9685(owner.device(0x40), frequency_hz=200)
    assert await pwm.set_duty(0, 0.5) is False
    assert writes(recorder, 0x40) == [
        b"\x00",  # read MODE1: 0x11 after reset, so configure
        b"\x00\x30",  # SLEEP | AI, ALLCALL cleared
        b"\xfe\x1e",  # PRE_SCALE for 200 Hz
        b"\x00\x20",  # wake, AI
        b"\x01\x04",  # MODE2 totem pole
        b"\xfe",  # PRE_SCALE read back
        b"\x06\x00\x00\x00\x08",  # LED0 off at count 2048
        b"\x06",  # read back
    ]
    assert chip.duty(0) == 0.5
    assert not chip.answers_all_call
    recorder.log.clear()
    assert await pwm.set_duty(0, 0.0) is False
    assert writes(recorder, 0x40) == [b"\x00", b"\x06\x00\x00\x00\x10", b"\x06"]
    chip.power_cycle()
    assert await pwm.set_duty(0, 0.75) is True
    assert chip.duty(0) == 0.75
    assert pwm.resets_seen == 1


# -- EZO-PMP ---------------------------------------------------------------------


async def test_pmp_driver_commands_follow_the_datasheet() -> None:
    pump = EzoTranscript(
        [
            Step(b"D,2.5", [ok("")]),
            Step(b"D,?", [ok("?D,2.50,1")]),
            Step(b"X", [ok("")]),
            Step(b"DC,1.5,*", [ok("")]),
            Step(b"DC,20,0.5", [ok("")]),
            Step(b"D,?", [ok("?D,*,1")]),
            Step(b"TV,?", [ok("?TV,12.34")]),
        ]
    )
    bus_owner = BusOwner(ScriptedBus({0x67: pump}), 1, timeout_s=5.0)
    try:
        driver = PmpDriver(bus_owner.device(0x67), Identity("pmp", "EZO-PMP", "1.0"), timing=FAST)
        await driver.dose(2.5)
        assert await driver.dispensing() == (2.5, True)
        await driver.stop()
        await driver.constant_flow(1.5, None)
        await driver.constant_flow(20, 0.5)
        volume, running = await driver.dispensing()
        assert volume == float("inf") and running
        assert await driver.total_volume() == 12.34
        assert pump.finished
        with pytest.raises(ValueError, match="non-zero"):
            await driver.dose(0.001)
        with pytest.raises(ValueError, match="mL/min"):
            await driver.constant_flow(200, 1)
    finally:
        await bus_owner.close()


async def test_pmp_dose_on_the_model_reaches_the_reactor(
    owner: BusOwner, recorder: Recorder, model: ReactorModel
) -> None:
    assert isinstance(recorder.inner, VirtualBus)
    recorder.inner.add(EzoChip("pmp", 0x67, model, speed=100.0))
    driver = PmpDriver(owner.device(0x67), Identity("pmp", "EZO-PMP", "2.16"), timing=FAST)
    ph_before = model.state().ph
    await driver.dose(3.0)
    assert writes(recorder, 0x67)[0] == b"D,3"
    # 105 mL/min at speed 100: 3 mL take ~17 ms.
    for _ in range(50):
        volume, running = await driver.dispensing()
        if not running:
            break
    assert (volume, running) == (3.0, False)
    assert await driver.total_volume() == 3.0
    assert model.state().base_dosed_ml == pytest.approx(3.0)
    assert model.state().ph > ph_before


# -- physical effect of the simulated actuators ----------------------------------


async def test_relays_and_pwm_drive_the_model(owner: BusOwner, model: ReactorModel) -> None:
    bus = VirtualBus()
    actuation = add_actuators(bus, model)
    assert model.heater_power == 0.0 and model.stir_rpm == 0.0, "power-up: everything off"
    local = BusOwner(bus, 2, timeout_s=5.0)
    try:
        relays = Mcp23017(local.device(0x20), frozenset({0, 1, 2}))
        pwm = Pca9685(local.device(0x40))
        await pwm.set_duty(0, 0.6)
        assert model.heater_power == 0.0, "the heater relay is still open"
        await relays.apply(0b011)
        assert model.heater_power == pytest.approx(0.6, abs=1e-3)
        await pwm.set_duty(1, 0.3)
        assert model.stir_rpm == pytest.approx(300.0, abs=1.0)
        actuation.expander.power_cycle()
        assert model.heater_power == 0.0 and model.stir_rpm == 0.0
    finally:
        await local.close()
