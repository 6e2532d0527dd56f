"""The simulator: physics plausibility, determinism, chip protocol details, fault knobs, lab."""

from __future__ import annotations

import pytest

from bioreactor_edge.bus import BusNak
from bioreactor_edge.drivers.base import Timing
from bioreactor_edge.simulator.chips import EzoChip, SimChip
from bioreactor_edge.simulator.lab import (
    STANDARD_SET,
    CatchUpClock,
    build_reactor_bus,
    simulation_timing,
)
from bioreactor_edge.simulator.physics import (
    AMBIENT_C,
    HEATER_GAIN_C,
    ReactorModel,
    ReactorState,
)
from bioreactor_edge.simulator.virtual_bus import VirtualBus

HOUR = 3600.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def model_at(clock: FakeClock, seed: int = 3) -> ReactorModel:
    return ReactorModel(seed=seed, clock=clock)


@pytest.mark.parametrize("power", [0.0, 0.3, 1.0])
def test_temperature_approaches_the_heater_equilibrium(power: float) -> None:
    clock = FakeClock()
    model = model_at(clock)
    model.heater_power = power
    start = model.state().temperature_c
    equilibrium = AMBIENT_C + power * HEATER_GAIN_C
    clock.now = 0.5 * HOUR
    halfway = model.state().temperature_c
    clock.now = 3 * HOUR
    assert abs(halfway - equilibrium) < abs(start - equilibrium)
    assert model.state().temperature_c == pytest.approx(equilibrium, abs=0.15)


def test_growth_lowers_ph_and_dissolved_oxygen() -> None:
    clock = FakeClock()
    model = model_at(clock)
    states: list[ReactorState] = []
    for hours in (0, 2, 4, 6):
        clock.now = hours * HOUR
        states.append(model.state())
    ods = [s.optical_density for s in states]
    assert ods == sorted(ods)
    assert ods[-1] > 10 * ods[0]
    assert states[-1].ph < states[0].ph - 0.3
    assert states[-1].dissolved_oxygen_mg_l < states[0].dissolved_oxygen_mg_l - 1.0


def test_base_dosing_raises_ph_and_conductivity() -> None:
    clock = FakeClock()
    model = model_at(clock)
    before = model.state()
    model.dose_base(10.0)
    after = model.state()
    assert after.ph > before.ph + 0.1
    assert after.conductivity_us_cm > before.conductivity_us_cm + 200
    assert after.base_dosed_ml == 10.0
    with pytest.raises(ValueError, match="cannot dose"):
        model.dose_base(-1.0)


def test_stirring_raises_dissolved_oxygen() -> None:
    clocks = FakeClock(), FakeClock()
    slow, fast = model_at(clocks[0]), model_at(clocks[1])
    slow.stir_rpm, fast.stir_rpm = 100.0, 900.0
    for clock in clocks:
        clock.now = 5 * HOUR
    assert fast.state().dissolved_oxygen_mg_l > slow.state().dissolved_oxygen_mg_l + 0.5


def test_same_seed_same_story_other_seed_other_noise() -> None:
    def story(seed: int) -> list[ReactorState]:
        clock = FakeClock()
        model = model_at(clock, seed)
        out = []
        for step in range(5):
            clock.now = step * 600.0
            out.append(model.state())
        return out

    assert story(11) == story(11)
    assert story(11) != story(12)


def test_time_scale_speeds_up_the_culture() -> None:
    clock = FakeClock()
    normal, quick = (
        ReactorModel(seed=1, clock=clock),
        ReactorModel(seed=1, clock=clock, time_scale=60),
    )
    clock.now = 60.0
    assert quick.state().time_s == pytest.approx(3600.0)
    assert normal.state().time_s == pytest.approx(60.0)


def ezo_exchange(chip: EzoChip, command: str, clock: FakeClock) -> bytes:
    """Writes `command`, lets the processing time pass and returns the raw reply."""
    chip.on_write(command.encode())
    clock.now += 1.0
    return chip.on_read(31)


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("i", b"\x01?I,pH,2.16\x00"),
        ("Status", b"\x01?Status,P,5.038\x00"),
        ("L,0", b"\x01\x00"),
        ("L,?", b"\x01?L,1\x00"),
        ("Name,tank1", b"\x01\x00"),
        ("T,30.5", b"\x01\x00"),
        ("T,?", b"\x01?T,25.00\x00"),
        ("Cal,mid,7.00", b"\x01\x00"),
        ("Cal,?", b"\x01?Cal,1\x00"),
        ("TV,?", b"\x02"),
        ("O,?", b"\x02"),
        ("RT,abc", b"\x02"),
        ("Frobnicate", b"\x02"),
    ],
)
def test_ezo_chip_commands(command: str, reply: bytes) -> None:
    clock = FakeClock()
    chip = EzoChip("ph", 0x63, model_at(clock), clock=clock)
    assert ezo_exchange(chip, command, clock).startswith(reply)


def test_ezo_chip_is_busy_until_ready_then_has_no_data() -> None:
    clock = FakeClock()
    chip = EzoChip("rtd", 0x66, model_at(clock), timing=Timing(read_s=0.5), clock=clock)
    assert chip.on_read(31)[0] == 255
    chip.on_write(b"R")
    clock.now = 0.4
    assert chip.on_read(31)[0] == 254
    clock.now = 0.5
    reply = chip.on_read(31)
    assert reply[0] == 1
    assert 36 < float(reply[1:].split(b"\0")[0]) < 38
    assert chip.on_read(31)[0] == 255
    chip.faults.stuck_busy = True
    chip.on_write(b"R")
    clock.now = 100.0
    assert chip.on_read(31)[0] == 254


def test_virtual_bus_fault_knobs() -> None:
    clock = FakeClock()
    vbus = VirtualBus()
    chip = EzoChip("orp", 0x62, model_at(clock), clock=clock)
    vbus.add(chip)
    vbus.quick_write(0x62)
    with pytest.raises(BusNak):
        vbus.quick_write(0x63)
    chip.faults.garbage = True
    noise = vbus.read(0x62, 31)
    assert len(noise) == 31
    assert all(b >= 0x80 for b in noise)
    chip.faults.garbage = False
    chip.faults.nak = True
    with pytest.raises(BusNak):
        vbus.write(0x62, b"R")
    chip.faults.nak = False
    chip.faults.unplugged = True
    with pytest.raises(BusNak):
        vbus.receive_byte(0x62)
    assert vbus.transactions == 5


def test_mux_routes_only_selected_channels() -> None:
    vbus = VirtualBus()
    vbus.add(SimChip(0x40), mux_channel=3, mux_address=0x74)
    with pytest.raises(BusNak):
        vbus.quick_write(0x40)
    vbus.write(0x74, bytes([1 << 3]))
    vbus.quick_write(0x40)
    assert vbus.receive_byte(0x74) == 1 << 3
    vbus.remove(0x40, mux_channel=3, mux_address=0x74)
    with pytest.raises(BusNak):
        vbus.quick_write(0x40)
    with pytest.raises(ValueError, match="0-7"):
        vbus.add(SimChip(0x41), mux_channel=9)


def test_build_reactor_bus_layouts() -> None:
    model = ReactorModel(seed=1)
    standard = build_reactor_bus(model)
    for kind, address in STANDARD_SET:
        standard.quick_write(address)
        chip = standard.chip(address)
        assert getattr(chip, "kind", kind) == kind
    small = build_reactor_bus(model, sensors=3)
    small.quick_write(0x61)
    with pytest.raises(BusNak):
        small.quick_write(0x62)

    def addresses(bus: VirtualBus) -> list[int]:
        found = []
        for address in range(0x08, 0x78):
            try:
                bus.quick_write(address)
            except BusNak:
                continue
            found.append(address)
        return found

    big = addresses(build_reactor_bus(model, sensors=45))
    assert len(big) == 45
    assert not set(big) & set(range(0x70, 0x78))
    assert big == addresses(build_reactor_bus(model, sensors=45))  # deterministic
    with pytest.raises(ValueError, match="at most"):
        build_reactor_bus(model, sensors=200)


def test_simulation_timing() -> None:
    assert simulation_timing(1.0) == Timing()
    fast = simulation_timing(10.0)
    assert fast.read_s == pytest.approx(0.09)
    assert fast.command_s == pytest.approx(0.03)
    assert fast.timeout_s == 1.0
    with pytest.raises(ValueError, match="positive"):
        simulation_timing(0)


def test_catch_up_clock_runs_fast_then_follows_real_time() -> None:
    real = [1_000_000.0]
    clock = CatchUpClock(behind_s=3600, scale=60, real=lambda: real[0])
    assert clock() == 1_000_000.0 - 3600
    real[0] += 30  # half an hour of simulated time
    assert clock() == 1_000_000.0 - 1800
    real[0] += 32  # caught up (after 3600 / 59 s): from now on real time
    assert clock() == real[0]
    real[0] += 100
    assert clock() == real[0]
    with pytest.raises(ValueError, match="scale"):
        CatchUpClock(behind_s=10, scale=0.5)
