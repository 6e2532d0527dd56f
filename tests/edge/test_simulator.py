"""The simulator: physics plausibility, determinism, the virtual bus, adapter models, lab."""

from __future__ import annotations

import pytest
from smbus2 import I2cFunc

from bioreactor_edge.bus import BusKernelOwned, BusNak, BusUnsupported
from bioreactor_edge.simulator.adapters import BEAGLEBONE, GENERIC, RASPBERRY_PI, Adapter
from bioreactor_edge.simulator.chips import Eeprom24c256, EzoChip, SimChip, Tca9548aMux
from bioreactor_edge.simulator.lab import (
    CAPE_EEPROMS,
    STANDARD_SET,
    UNCONFIGURED_MUX,
    CatchUpClock,
    build_board_bus,
    build_reactor_bus,
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
    assert vbus.writes_to(0x62) == 1  # the NAKed write still went out on the wire
    assert vbus.transactions_to(0x63) == 1


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


def test_generic_adapter_does_everything() -> None:
    vbus = VirtualBus()
    vbus.add(SimChip(0x40))
    assert vbus.funcs() & I2cFunc.SMBUS_QUICK
    assert vbus.funcs() & I2cFunc.I2C
    vbus.quick_write(0x40)
    vbus.write(0x40, b"")
    assert vbus.read(0x40, 0) == b""


def test_beaglebone_has_no_quick_command_and_no_zero_length_messages() -> None:
    vbus = VirtualBus(BEAGLEBONE)
    vbus.add(SimChip(0x40))
    assert not vbus.funcs() & I2cFunc.SMBUS_QUICK
    assert vbus.funcs() & I2cFunc.SMBUS_READ_BYTE
    assert not BEAGLEBONE.quick and GENERIC.quick
    with pytest.raises(BusUnsupported):
        vbus.quick_write(0x40)
    with pytest.raises(BusUnsupported):
        vbus.quick_write(0x41)  # refused before any address goes out
    with pytest.raises(BusUnsupported):
        vbus.write(0x40, b"")
    with pytest.raises(BusUnsupported):
        vbus.read(0x40, 0)
    assert vbus.receive_byte(0x40) == 0xFF  # i2cdetect -r works
    with pytest.raises(BusNak):
        vbus.receive_byte(0x41)


def test_kernel_owned_address_refuses_smbus_but_records_raw_messages() -> None:
    vbus = VirtualBus(BEAGLEBONE)
    eeprom = Eeprom24c256(0x54, contents=b"\xaa\x55\x33\xee")
    vbus.add(eeprom)
    vbus.bind_kernel_driver(0x54)
    assert vbus.kernel_owned == {0x54}
    with pytest.raises(BusKernelOwned):
        vbus.receive_byte(0x54)
    with pytest.raises(BusKernelOwned):
        vbus.quick_write(0x54)
    assert vbus.writes_to(0x54) == 0
    # I2C_RDWR is not checked by the kernel: the bytes reach the EEPROM.
    assert vbus.write_read(0x54, b"\x00\x00", 4) == b"\xaa\x55\x33\xee"
    assert (vbus.writes_to(0x54), vbus.transactions_to(0x54)) == (1, 3)
    assert eeprom.writes == 0


def glitches(adapter: Adapter, seed: int, reads: int = 400) -> tuple[int, int, int]:
    """(top-bit bytes, failed reads, top-bit bytes from a non-stretching chip)."""
    clock = FakeClock()
    vbus = VirtualBus(adapter, seed=seed)
    ezo = EzoChip("ph", 0x63, model_at(clock), clock=clock)
    vbus.add(ezo)
    mux = Tca9548aMux(0x70)
    vbus.add(mux)
    vbus.write(0x70, b"\x41")
    flipped = failed = other = 0
    for _ in range(reads):
        vbus.write(0x63, b"i")
        clock.now += 1.0
        try:
            reply = vbus.read(0x63, 31)
        except BusNak:
            failed += 1
            assert vbus.read(0x63, 31)[0] == 1  # the reply was still there
            continue
        assert reply[0] == 1
        flipped += sum(1 for b in reply[1:] if b & 0x80)
        assert bytes(b & 0x7F for b in reply).startswith(b"\x01?I,pH,")
        other += sum(1 for b in vbus.read(0x70, 2) if b & 0x80 and b != 0x41)
    return flipped, failed, other


def test_raspberry_pi_glitches_only_clock_stretching_chips_deterministically() -> None:
    flipped, failed, other = glitches(RASPBERRY_PI, seed=1)
    assert flipped > 20
    assert 0 < failed < 20
    assert other == 0
    assert glitches(RASPBERRY_PI, seed=1) == (flipped, failed, other)
    assert glitches(RASPBERRY_PI, seed=2) != (flipped, failed, other)
    assert glitches(GENERIC, seed=1) == (0, 0, 0)
    with pytest.raises(ValueError, match="top_bit_rate"):
        Adapter(name="x", funcs=0, top_bit_rate=1.5)


def test_an_ezo_circuit_moved_by_i2c_command_answers_at_its_new_address() -> None:
    clock = FakeClock()
    vbus = VirtualBus()
    vbus.add(EzoChip("orp", 0x62, model_at(clock), clock=clock))
    vbus.write(0x62, b"I2C,80")
    with pytest.raises(BusNak):
        vbus.quick_write(0x62)
    vbus.write(0x50, b"Status")
    clock.now += 1.0
    assert vbus.read(0x50, 31).startswith(b"\x01?Status,S,")


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


def test_board_bus_has_kernel_owned_eeproms_and_an_unconfigured_mux() -> None:
    vbus = build_board_bus(ReactorModel(seed=1), adapter=BEAGLEBONE, speed=10.0)
    assert vbus.adapter is BEAGLEBONE
    assert vbus.kernel_owned == set(CAPE_EEPROMS)
    for address in CAPE_EEPROMS:
        with pytest.raises(BusKernelOwned):
            vbus.receive_byte(address)
    assert vbus.receive_byte(UNCONFIGURED_MUX) == 0x00
    assert cast_ezo(vbus.chip(0x63)).speed == 10.0
    assert all(vbus.writes_to(a) == 0 for a in range(0x08, 0x78))


def cast_ezo(chip: SimChip) -> EzoChip:
    assert isinstance(chip, EzoChip)
    return chip


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
