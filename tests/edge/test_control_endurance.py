"""The controller alone for long simulated stretches: a week with no client, and random
disturbances and limits. Actuators speak real bytes to the simulated chips; the loops'
inputs come straight from the reactor model, stamped with the simulated clock."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from bioreactor_edge.actuators import Pump, Refused, build_actuators
from bioreactor_edge.bus import BusOwner
from bioreactor_edge.config import ReactorConfig
from bioreactor_edge.control.config import loop_config
from bioreactor_edge.control.dosing import DAY_S, HOUR_S, Input
from bioreactor_edge.control.runner import Controller
from bioreactor_edge.drivers.base import Timing
from bioreactor_edge.simulator.actuation import add_actuators
from bioreactor_edge.simulator.ezo import EzoChip
from bioreactor_edge.simulator.physics import BASE_PH_PER_ML, ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus
from tests.edge.test_control_loops import ACTUATORS, loops

SPEED = 1000.0
TIMING = Timing().scaled(SPEED)
STEP_S = 60.0
PEAK_DEMAND_ML_PER_H = 18.0


class SimClock:
    """Simulated seconds, moved by the test; chips see it advance with real time too,
    so their processing delays end."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self._real = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def chip(self) -> float:
        return self.now + (time.monotonic() - self._real) * SPEED


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


async def run(
    tmp_path: Path,
    clock: SimClock,
    reactor: ReactorConfig,
    hours: float,
    *,
    acid_per_hour: float = 0.0,
    step_s: float = STEP_S,
) -> dict[str, float]:
    """Runs the loops for `hours`; returns the worst deviations after the first hour."""
    model = ReactorModel(seed=11, clock=clock)
    bus = VirtualBus()
    add_actuators(bus, model)
    bus.add(EzoChip("pmp", 0x67, model, speed=SPEED, clock=clock.chip))
    owner = BusOwner(bus, 1, timeout_s=5.0)

    def read(_reactor: str, kind: str, quantity: str) -> Input:
        state = model.state()
        value = state.temperature_c if kind == "rtd" else state.ph
        return Input(value, clock.now, True)

    actuators = build_actuators(reactor, owner, timing=TIMING, clock=clock)
    control = Controller([(reactor, actuators)], read, tmp_path / "control.json", clock=clock)
    pump = actuators["base"]
    assert isinstance(pump, Pump)
    worst = {"temperature": 0.0, "ph": 0.0}
    try:
        await control.start()
        start = clock.now
        while clock.now - start < hours * HOUR_S:
            clock.now += step_s
            if acid_per_hour:
                with model._lock:  # acid added on top of what the culture makes
                    model._ph -= acid_per_hour * step_s / HOUR_S
            await control.tick()
            # Let a started dose finish on the chip before the next step.
            await asyncio.sleep(0)
            for loop in control.loops.values():
                assert loop.state == "running", f"{loop.id}: {loop.state} {loop.reason}"
            assert pump.dosed_within(HOUR_S) <= reactor.actuators[-1].max_ml_per_hour + 1e-9
            assert pump.dosed_within(DAY_S) <= reactor.actuators[-1].max_ml_per_day + 1e-9
            ph_loop = control.loop("bus1-ph")
            assert pump.dosed_within(HOUR_S) <= ph_loop.limit("max_ml_per_hour") + 1e-9
            if clock.now - start > HOUR_S:
                state = model.state()
                worst["temperature"] = max(worst["temperature"], abs(state.temperature_c - 37.0))
                worst["ph"] = max(worst["ph"], abs(state.ph - 7.0))
        worst["dosed_ml"] = model.state().base_dosed_ml
    finally:
        await control.stop()
        await owner.close()
    return worst


def reactor_config(**loop_changes: float) -> ReactorConfig:
    temperature, ph = loops()
    ph = replace(ph, **loop_changes)  # type: ignore[arg-type]
    return ReactorConfig(id="bus1", name="R1", bus=1, actuators=ACTUATORS, loops=(temperature, ph))


async def test_a_simulated_week_with_no_client(tmp_path: Path, clock: SimClock) -> None:
    worst = await run(tmp_path, clock, reactor_config(), hours=7 * 24, step_s=2 * STEP_S)
    assert worst["temperature"] <= 0.3, worst
    assert worst["ph"] <= 0.1, worst
    assert worst["dosed_ml"] > 5, "the culture's acid was neutralised by base"
    assert (tmp_path / "control.json").exists()


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    max_dose=st.floats(0.5, 3.0),
    per_hour=st.floats(3.0, 30.0),
    per_day=st.floats(30.0, 200.0),
    interval=st.sampled_from([60.0, 120.0, 300.0]),
    acid_per_hour=st.floats(0.0, 0.05),
)
@example(max_dose=3.0, per_hour=30.0, per_day=200.0, interval=60.0, acid_per_hour=0.05)
@example(max_dose=0.5, per_hour=3.0, per_day=30.0, interval=300.0, acid_per_hour=0.05)
async def test_property_ph_holds_without_exceeding_a_cap(
    tmp_path_factory: pytest.TempPathFactory,
    max_dose: float,
    per_hour: float,
    per_day: float,
    interval: float,
    acid_per_hour: float,
) -> None:
    clock = SimClock()
    reactor = reactor_config(
        max_dose_ml=max_dose,
        max_ml_per_hour=per_hour,
        max_ml_per_day=per_day,
        min_interval_s=interval,
    )
    worst = await run(
        tmp_path_factory.mktemp("prop"), clock, reactor, hours=8, acid_per_hour=acid_per_hour
    )
    # The caps are asserted at every step inside run(). pH stays within 0.1 whenever
    # the limits allow the base the culture needs: ~17 mL/h at its fastest growth and
    # ~48 mL in all as it grows to its carrying capacity, plus the added acid.
    hourly = min(per_hour, max_dose * HOUR_S / interval)
    added_ml_per_h = acid_per_hour / BASE_PH_PER_ML
    if hourly >= PEAK_DEMAND_ML_PER_H + added_ml_per_h and per_day >= 50 + 8 * added_ml_per_h:
        assert worst["ph"] <= 0.1, worst


async def test_do_loop_stirs_harder_as_the_culture_grows(tmp_path: Path, clock: SimClock) -> None:
    model = ReactorModel(seed=5, clock=clock)
    bus = VirtualBus()
    actuation = add_actuators(bus, model)
    owner = BusOwner(bus, 1, timeout_s=5.0)
    do_loop = loop_config({"name": "do", "kind": "do", "stirrer": "stirrer", "mode": "auto"})
    assert (do_loop.setpoint, do_loop.min_output, do_loop.max_output) == (5.0, 0.2, 0.8)
    # The culture grows only when kept warm: the temperature loop runs too.
    outputs = tuple(a for a in ACTUATORS if a.kind != "pump")
    reactor = ReactorConfig(
        id="bus1", name="R1", bus=1, actuators=outputs, loops=(loops()[0], do_loop)
    )

    def read(_reactor: str, kind: str, quantity: str) -> Input:
        state = model.state()
        value = state.dissolved_oxygen_mg_l if kind == "do" else state.temperature_c
        return Input(value, clock.now, True)

    actuators = build_actuators(reactor, owner, timing=TIMING, clock=clock)
    control = Controller([(reactor, actuators)], read, tmp_path / "control.json", clock=clock)
    lowest, duties = 99.0, []
    try:
        await control.start()
        for narrower in ({"min_output": 0.1}, {"min_output": 0.85}, {"max_output": 0.9}):
            with pytest.raises(Refused) as err:
                await control.configure("bus1-do", {"limits": narrower})
            assert err.value.limit == next(iter(narrower))
        for step in range(int(10 * HOUR_S / STEP_S)):
            clock.now += STEP_S
            await control.tick()
            duties.append(actuation.duties.get(1, 0.0))
            if step * STEP_S > 5 * HOUR_S:  # grown: oxygen uptake near its peak
                lowest = min(lowest, model.state().dissolved_oxygen_mg_l)
    finally:
        await control.stop()
        await owner.close()
    assert control.loop("bus1-do").state == "running"
    assert lowest >= 4.7, f"DO fell to {lowest:.2f} mg/L"
    assert min(duties) >= 0.2 - 1 / 4096 and max(duties) <= 0.8 + 1 / 4096
    assert duties[-1] > duties[30] + 0.1, "the stirrer speeds up as uptake grows"
