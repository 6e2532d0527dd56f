"""Control loops closed around the simulator through the real Agent: holding 37 °C and
pH 7, refusing stale or failed input, resuming after a restart, staying inside the
hard limits, and byte-level faults on the actuators."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bioreactor_edge.actuators import Pump, Refused
from bioreactor_edge.agent import Agent
from bioreactor_edge.config import AgentConfig, ConfigError, default_config, parse_config
from bioreactor_edge.control.config import ActuatorConfig, LoopConfig
from bioreactor_edge.control.runner import Controller, PhLoop, PidLoop, StateUnwritable
from bioreactor_edge.drivers.base import Timing
from bioreactor_edge.simulator.actuation import Actuation, add_actuators
from bioreactor_edge.simulator.ezo import EzoChip
from bioreactor_edge.simulator.lab import build_reactor_bus
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus

CHIP_SPEED = 20.0
TIMING = Timing().scaled(CHIP_SPEED)
# Simulated seconds per real second: the reactor model and the agent's clock agree.
SCALE = 600.0
INTERVAL_S = 0.1  # real seconds between readings
HEATER_MAX = 0.9


class ScaledClock:
    """Wall-clock seconds running SCALE times faster than real time."""

    def __init__(self, scale: float = SCALE) -> None:
        self.scale = scale
        self._start = time.monotonic()
        self._origin = 1_800_000_000.0

    def __call__(self) -> float:
        return self._origin + (time.monotonic() - self._start) * self.scale


ACTUATORS = (
    ActuatorConfig("heater_relay", "relay", 0x20, channel=0),
    ActuatorConfig("stirrer_relay", "relay", 0x20, channel=1, safe=1.0),
    ActuatorConfig("heater", "pwm", 0x40, channel=0, max_duty=HEATER_MAX),
    ActuatorConfig("stirrer", "pwm", 0x40, channel=1, safe=0.3, max_duty=0.8),
    ActuatorConfig("base", "pump", 0x67, max_dose_ml=3.0, max_ml_per_hour=30, max_ml_per_day=200),
)


def loops(
    mode: str = "auto", max_input_age_s: float = 3 * INTERVAL_S * SCALE
) -> tuple[LoopConfig, ...]:
    return (
        LoopConfig(
            "temperature",
            "temperature",
            mode=mode,
            heater="heater",
            heater_enable="heater_relay",
            # Tuned for a reading a simulated minute (PI, SIMC rules: the reading's
            # age, up to ~80 s, against the vessel's 600 s time constant).
            kp=0.2,
            ki=0.0006,
            max_output=HEATER_MAX,
            max_input_age_s=max_input_age_s,
        ),
        LoopConfig(
            "ph",
            "ph",
            mode=mode,
            setpoint=7.0,
            setpoint_min=6.5,
            setpoint_max=7.5,
            base_pump="base",
            deadband=0.03,
            ml_per_unit=10,
            max_dose_ml=3.0,
            max_ml_per_hour=30,
            max_ml_per_day=200,
            min_interval_s=120,
            max_input_age_s=max_input_age_s,
        ),
    )


def lab_config(data_dir: Path, interval_s: float = INTERVAL_S, **loop_changes: Any) -> AgentConfig:
    base = default_config(data_dir)
    reactor = replace(base.reactors[0], actuators=ACTUATORS, loops=loops(**loop_changes))
    return replace(
        base,
        sampling=replace(base.sampling, interval_s=interval_s),
        discovery=replace(base.discovery, interval_s=3600),
        reactors=(reactor,),
    )


class Lab:
    """One simulated reactor with sensors and actuators on one bus."""

    def __init__(self, seed: int = 3) -> None:
        self.model = ReactorModel(seed=seed, time_scale=SCALE)
        self.bus = build_reactor_bus(self.model, sensors=8, speed=CHIP_SPEED, seed=seed)
        self.actuation: Actuation = add_actuators(self.bus, self.model)
        self.clock = ScaledClock()

    @property
    def pump(self) -> EzoChip:
        chip = self.bus.chip(0x67)
        assert isinstance(chip, EzoChip)
        return chip

    def agent(self, data_dir: Path, config: AgentConfig | None = None) -> Agent:
        bus: VirtualBus = self.bus
        return Agent(
            config or lab_config(data_dir),
            agent_id="c" * 16,
            raw_bus=lambda _n: bus,
            timing=TIMING,
            clock=self.clock,
        )


async def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def controller(agent: Agent) -> Controller:
    assert agent.control is not None
    return agent.control


def pump(agent: Agent) -> Pump:
    actuator = controller(agent).actuator("bus1-base")
    assert isinstance(actuator, Pump)
    return actuator


@pytest.fixture
def lab() -> Lab:
    return Lab()


@pytest.fixture
async def agent(tmp_path: Path, lab: Lab) -> AsyncIterator[Agent]:
    agent = lab.agent(tmp_path)
    await agent.start()
    yield agent
    await agent.stop()


# -- configuration -----------------------------------------------------------------


def test_actuator_and_loop_configuration_is_validated(tmp_path: Path) -> None:
    reactor: dict[str, Any] = {
        "id": "r1",
        "actuators": [
            {"name": "heater", "kind": "pwm", "address": 0x40, "channel": 0, "max_duty": 0.8},
            {"name": "heat_on", "kind": "relay", "address": 0x20, "channel": 0},
            {"name": "base", "kind": "pump", "address": 0x67, "max_dose_ml": 2},
        ],
        "loops": [
            {
                "name": "temperature",
                "kind": "temperature",
                "heater": "heater",
                "mode": "auto",
                "max_output": 0.8,
            },
            {"name": "ph", "kind": "ph", "base_pump": "base", "max_ml_per_hour": 5},
        ],
    }
    config = parse_config({"reactors": [reactor]}, default_data_dir=tmp_path)
    (parsed,) = config.reactors
    assert [a.name for a in parsed.actuators] == ["heater", "heat_on", "base"]
    assert parsed.actuators[0].max_duty == 0.8
    assert parsed.loops[1].setpoint == 7.0, "pH loops default to a pH setpoint"
    assert parsed.loops[0].outputs == ("heater",)

    def problem(change: Callable[[dict[str, Any]], None]) -> str:
        broken = json.loads(json.dumps(reactor))
        change(broken)
        with pytest.raises(ConfigError) as err:
            parse_config({"reactors": [broken]}, default_data_dir=tmp_path)
        return str(err.value)

    assert problem(lambda r: r["actuators"][0].update(max_duty=1.5)) == (
        "reactors[0].actuators[0].max_duty: must be a number between 0.0 and 1.0"
    )
    assert problem(lambda r: r["actuators"][1].update(address=0x40)).startswith(
        "reactors[0].actuators[1].address:"
    )
    assert problem(lambda r: r["actuators"][0].update(safe=0.9)) == (
        "reactors[0].actuators[0].safe: must not exceed max_duty"
    )
    assert problem(lambda r: r["loops"][0].update(heater="base")) == (
        "reactors[0].loops[0].heater: must name a pwm actuator of this reactor"
    )
    assert problem(lambda r: r["loops"][0].update(max_output=0.9)) == (
        "reactors[0].loops[0].max_output: must not exceed the max_duty 0.8 of 'heater'"
    )
    assert problem(lambda r: r["loops"][1].update(setpoint=9)) == (
        "reactors[0].loops[1].setpoint: must be within setpoint_min and setpoint_max"
    )
    assert problem(lambda r: r["loops"][1].update(kind="co2")) == (
        "reactors[0].loops[1].kind: must be one of temperature, ph, do"
    )
    assert problem(
        lambda r: r["loops"].append(
            {"name": "do", "kind": "do", "stirrer": "heater", "min_output": 0.9, "max_output": 0.5}
        )
    ) == ("reactors[0].loops[2].min_output: must be below max_output")
    assert problem(lambda r: r["loops"].append(dict(r["loops"][1], name="ph2"))) == (
        "reactors[0].loops[2].base_pump: is already driven by another loop"
    )


# -- closed loops through the agent ------------------------------------------------


async def test_loops_hold_temperature_and_ph_with_no_client(agent: Agent, lab: Lab) -> None:
    temperature = controller(agent).loop("bus1-temperature")
    ph_loop = controller(agent).loop("bus1-ph")
    assert isinstance(temperature, PidLoop) and isinstance(ph_loop, PhLoop)
    await wait_for(lambda: temperature.state == "running" and ph_loop.state == "running")
    # Settle for a simulated hour (from the drop while the agent started), watch 1.5 more.
    start = lab.clock()
    await asyncio.sleep(3600 / SCALE)
    worst_t = worst_ph = 0.0
    heater_max = 0.0
    while lab.clock() - start < 9000:
        state = lab.model.state()
        worst_t = max(worst_t, abs(state.temperature_c - 37.0))
        worst_ph = max(worst_ph, abs(state.ph - 7.0))
        heater_max = max(heater_max, lab.actuation.duties.get(0, 0.0))
        assert temperature.state == "running", temperature.reason
        await asyncio.sleep(0.02)
    assert worst_t <= 0.3, f"temperature strayed {worst_t:.3f} °C from 37.0"
    assert worst_ph <= 0.1, f"pH strayed {worst_ph:.3f} from 7.0"
    assert heater_max <= HEATER_MAX + 1 / 4096, "the heater never exceeds max_duty"
    assert lab.actuation.relay(0), "the heater relay is closed while the loop runs"
    assert pump(agent).dosed_within(3600) <= 30.0
    status = agent.status()
    (reactor,) = status["reactors"]
    assert {a["name"] for a in reactor["actuators"]} == {a.name for a in ACTUATORS}
    assert {loop["state"] for loop in reactor["loops"]} == {"running"}
    assert not [p for p in status["problems"] if "lockout" in p or "actuator" in p]


async def test_failed_ph_sensor_stops_the_pump_within_one_interval(
    tmp_path: Path, lab: Lab
) -> None:
    # A longer interval than the other tests': the bound is timed in real seconds.
    interval_s = 0.3
    agent = lab.agent(tmp_path, lab_config(tmp_path, interval_s=interval_s))
    await agent.start()
    try:
        ph_loop = controller(agent).loop("bus1-ph")
        await wait_for(lambda: ph_loop.state == "running")
        handler = agent.reactors["bus1"].sensors["bus1-ph-63"]
        lab.bus.chip(0x63).faults.nak = True
        await wait_for(lambda: handler.consecutive_errors > 0)
        failed_at = time.monotonic()
        await wait_for(lambda: ph_loop.state == "lockout" and pump(agent).in_safe_state)
        assert time.monotonic() - failed_at <= interval_s
        assert ph_loop.reason == "input_error"
        assert "loop_lockout:bus1-ph" in agent.status()["problems"]
        # No dose goes out while the input is bad.
        doses, commands = len(pump(agent).doses), len(lab.pump.commands)
        await asyncio.sleep(5 * interval_s)
        assert len(pump(agent).doses) == doses
        sent = list(lab.pump.commands)[commands:]
        assert sent and not [c for c in sent if c.startswith("D,") and c != "D,?"]
        lab.bus.chip(0x63).faults.nak = False
        await wait_for(lambda: ph_loop.state == "running")
    finally:
        await agent.stop()


async def test_stale_ph_reading_locks_out(tmp_path: Path, lab: Lab) -> None:
    age_s = 2 * INTERVAL_S * SCALE
    agent = lab.agent(tmp_path, lab_config(tmp_path, max_input_age_s=age_s))
    await agent.start()
    try:
        ph_loop = controller(agent).loop("bus1-ph")
        await wait_for(lambda: ph_loop.state == "running")
        # The sampler hangs: the sensor stays online, its reading ages.
        assert agent._sampler is not None
        await agent._sampler.stop(agent.reactors["bus1"].sensors["bus1-ph-63"])
        await wait_for(lambda: ph_loop.state == "lockout")
        assert ph_loop.reason == "input_stale"
        assert ph_loop.input is not None
        age = lab.clock() - ph_loop.input.time_s
        assert age_s < age <= age_s + 2 * INTERVAL_S * SCALE
        assert pump(agent).in_safe_state
    finally:
        await agent.stop()


async def test_settings_narrow_but_never_widen_hard_limits(agent: Agent) -> None:
    control = controller(agent)
    loop = control.loop("bus1-ph")
    before = loop.as_json()
    with pytest.raises(Refused) as err:
        await control.configure("bus1-ph", {"setpoint": 7.8})
    assert err.value.limit == "setpoint_max"
    with pytest.raises(Refused) as err:
        await control.configure("bus1-ph", {"setpoint": 7.1, "limits": {"max_dose_ml": 5}})
    assert err.value.limit == "max_dose_ml"
    with pytest.raises(Refused) as err:
        await control.configure("bus1-ph", {"limits": {"min_interval_s": 10}})
    assert err.value.limit == "min_interval_s"
    with pytest.raises(Refused) as err:
        await control.configure("bus1-ph", {"mode": "fast"})
    assert err.value.limit == "mode"
    assert loop.as_json()["setpoint"] == before["setpoint"], "a refused request changes nothing"
    assert loop.as_json()["limits"] == before["limits"]
    narrowed = await control.configure(
        "bus1-ph", {"setpoint": 7.1, "limits": {"max_dose_ml": 1.5, "min_interval_s": 300}}
    )
    assert narrowed["limits"]["max_dose_ml"] == 1.5
    assert narrowed["hard_limits"]["max_dose_ml"] == 3.0
    # Actuators: a duty above max_duty, a dose above the pump's cap, a loop's output by hand.
    with pytest.raises(Refused) as err:
        await control.command("bus1-stirrer", 0.95)
    assert err.value.limit == "max_duty"
    with pytest.raises(Refused) as err:
        await control.command("bus1-heater", 0.2)
    assert err.value.limit == "loop_mode"
    await control.configure("bus1-ph", {"mode": "manual"})
    with pytest.raises(Refused) as err:
        await control.dose("bus1-base", 3.5)
    assert err.value.limit == "max_dose_ml"
    state = await control.command("bus1-stirrer", 0.5)
    assert state["applied"] == 0.5


async def test_a_change_that_cannot_be_persisted_is_not_made(agent: Agent) -> None:
    control = controller(agent)
    state = agent.config.data_dir / "control.json"
    state.unlink(missing_ok=True)
    state.mkdir()  # the rename onto it fails, as on a full or failing disk
    (state / "keep").write_text("x")
    with pytest.raises(StateUnwritable):
        await control.configure("bus1-temperature", {"setpoint": 36.0})
    assert control.loop("bus1-temperature").settings.setpoint == 37.0
    (state / "keep").unlink()
    state.rmdir()
    assert (await control.configure("bus1-temperature", {"setpoint": 36.0}))["setpoint"] == 36.0
    assert json.loads(state.read_text())["loops"]["bus1-temperature"]["setpoint"] == 36.0


async def test_restart_resumes_loops_and_dose_caps(tmp_path: Path, lab: Lab) -> None:
    agent = lab.agent(tmp_path, lab_config(tmp_path, mode="off"))
    await agent.start()
    control = controller(agent)
    await control.configure("bus1-temperature", {"mode": "auto", "setpoint": 36.5})
    await control.configure("bus1-ph", {"mode": "manual", "limits": {"max_ml_per_hour": 12}})
    await control.dose("bus1-base", 2.0)
    await wait_for(lambda: pump(agent).delivered_ml == 2.0)
    await agent.stop()
    assert not lab.actuation.relay(0) and lab.actuation.duties[0] == 0.0, "stopped: heater safe"
    saved = json.loads((tmp_path / "control.json").read_text())
    assert saved["loops"]["bus1-temperature"]["mode"] == "auto"

    again = lab.agent(tmp_path, lab_config(tmp_path, mode="off"))
    await again.start()
    try:
        control = controller(again)
        temperature = control.loop("bus1-temperature")
        assert temperature.settings.mode == "auto"
        assert temperature.settings.setpoint == 36.5
        assert control.loop("bus1-ph").limit("max_ml_per_hour") == 12
        assert pump(again).dosed_within(3600) == pytest.approx(2.0), "the caps survive"
        await wait_for(lambda: temperature.state == "running" and lab.actuation.relay(0))
    finally:
        await again.stop()


async def test_emergency_stop_puts_every_actuator_safe_and_loops_off(
    agent: Agent, lab: Lab
) -> None:
    control = controller(agent)
    await wait_for(lambda: lab.actuation.relay(0))
    result = await control.emergency_stop("bus1")
    assert all(a["in_safe_state"] for a in result["actuators"])
    assert {loop["mode"] for loop in result["loops"]} == {"off"}
    assert lab.model.heater_power == 0.0
    assert lab.actuation.relay(1), "the stirrer's safe state is on"
    assert lab.actuation.duties[1] == pytest.approx(0.3, abs=1e-3)
    await asyncio.sleep(3 * INTERVAL_S)
    assert lab.model.heater_power == 0.0, "loops stay off after an emergency stop"
    saved = json.loads((agent.config.data_dir / "control.json").read_text())
    assert {loop["mode"] for loop in saved["loops"].values()} == {"off"}


# -- byte-level faults on the actuators ----------------------------------------------


async def test_relay_expander_reset_and_naks_never_leave_the_heater_unsafe(
    agent: Agent, lab: Lab
) -> None:
    temperature = controller(agent).loop("bus1-temperature")
    await wait_for(lambda: temperature.state == "running" and lab.actuation.relay(0))
    # A brown-out of the expander: found and set back within a tick or two.
    lab.actuation.expander.power_cycle()
    assert not lab.actuation.relay(0)
    await wait_for(lambda: lab.actuation.relay(0), timeout=2 * INTERVAL_S + 1)
    relay = controller(agent).actuator("bus1-heater_relay")
    await wait_for(lambda: relay.applied == 1.0)
    # The expander stops answering: the loop locks out and the PWM heater goes off.
    lab.actuation.expander.faults.nak = True
    await wait_for(lambda: temperature.state == "lockout")
    assert temperature.reason == "output_error:bus1-heater_relay"
    await wait_for(lambda: lab.model.heater_power == 0.0)
    assert "actuator_error:bus1-heater_relay" in agent.status()["problems"]
    lab.actuation.expander.faults.nak = False
    await wait_for(lambda: temperature.state == "running" and lab.actuation.relay(0))


async def test_pump_that_stops_answering_locks_the_ph_loop_out(agent: Agent, lab: Lab) -> None:
    ph_loop = controller(agent).loop("bus1-ph")
    await wait_for(lambda: ph_loop.state == "running")
    lab.pump.faults.nak = True
    await wait_for(lambda: ph_loop.state == "lockout")
    assert ph_loop.reason == "output_error:bus1-base"
    assert pump(agent).error == "nak"
    assert "actuator_error:bus1-base" in agent.status()["problems"]
    lab.pump.faults.nak = False
    await wait_for(lambda: ph_loop.state == "running" and pump(agent).error is None)
    # Relay and PWM chips were never taken for sensors (no identification sent).
    addresses = {s.address for s in agent.reactors["bus1"].sensors.values()}
    assert not addresses & {0x20, 0x40}


async def test_pwm_chip_that_stops_answering_opens_the_heater_relay(agent: Agent, lab: Lab) -> None:
    temperature = controller(agent).loop("bus1-temperature")
    await wait_for(lambda: temperature.state == "running" and lab.actuation.relay(0))
    lab.actuation.pwm.faults.nak = True
    await wait_for(lambda: temperature.state == "lockout" and not lab.actuation.relay(0))
    assert temperature.reason == "output_error:bus1-heater"
    assert lab.model.heater_power == 0.0, "the relay alone cuts the heater"
    lab.actuation.pwm.faults.nak = False
    await wait_for(lambda: temperature.state == "running" and lab.actuation.relay(0))


async def test_start_stops_a_pump_found_dispensing_and_sets_corrupt_state_aside(
    tmp_path: Path, lab: Lab
) -> None:
    lab.pump.on_write(b"D,*")  # left running by whatever ran before the agent
    (tmp_path / "control.json").write_text("{not json")
    agent = lab.agent(tmp_path, lab_config(tmp_path, mode="off"))
    await agent.start()
    try:
        assert pump(agent).in_safe_state
        assert "X" in lab.pump.commands
        assert (tmp_path / "control.corrupt").read_text() == "{not json"
        assert controller(agent).loop("bus1-ph").settings.mode == "off", "as configured"
    finally:
        await agent.stop()


async def test_pwm_reset_is_reconfigured_and_duty_stays_capped(agent: Agent, lab: Lab) -> None:
    temperature = controller(agent).loop("bus1-temperature")
    await wait_for(lambda: temperature.state == "running")
    lab.actuation.pwm.power_cycle()
    assert lab.actuation.pwm.answers_all_call
    await wait_for(lambda: not lab.actuation.pwm.answers_all_call)
    worst = 0.0
    for _ in range(50):
        worst = max(worst, lab.actuation.pwm.duty(0))
        await asyncio.sleep(0.01)
    assert worst <= HEATER_MAX + 1 / 4096


async def test_pump_reporting_a_dose_it_did_not_deliver_raises_the_alarm(
    agent: Agent, lab: Lab
) -> None:
    class BlockedLine:
        """The tubing is off the vessel: the pump turns and counts, nothing arrives."""

        def dose_base(self, ml: float) -> None:
            return

    ph_loop = controller(agent).loop("bus1-ph")
    assert isinstance(ph_loop, PhLoop)
    await wait_for(lambda: ph_loop.state == "running")
    lab.pump.model = BlockedLine()  # type: ignore[assignment]
    # Acid the culture would make in hours, at once: the loop must dose.
    with lab.model._lock:
        lab.model._ph -= 0.3
    await wait_for(lambda: ph_loop.state == "lockout", timeout=30)
    assert ph_loop.reason == "no_response"
    assert "dosing_alarm:bus1-ph" in agent.status()["problems"]
    assert pump(agent).in_safe_state
    assert pump(agent).dosed_within(3600) <= 30.0
    doses = len(pump(agent).doses)
    await asyncio.sleep(5 * INTERVAL_S)
    assert len(pump(agent).doses) == doses, "no dose while in alarm"


class StallingPump(EzoChip):
    """A motor that slips: the dose ends on time, the total grows by half of it."""

    def _settle_pump(self) -> None:
        before = self.total_volume_ml
        super()._settle_pump()
        self.total_volume_ml = before + (self.total_volume_ml - before) / 2


async def test_pump_that_dispenses_less_than_commanded_is_an_error(
    tmp_path: Path, lab: Lab
) -> None:
    lab.bus.remove(0x67)
    lab.bus.add(StallingPump("pmp", 0x67, lab.model, speed=CHIP_SPEED))
    agent = lab.agent(tmp_path, lab_config(tmp_path, mode="manual"))
    await agent.start()
    try:
        await controller(agent).dose("bus1-base", 2.0)
        await wait_for(lambda: pump(agent).error == "short_dose")
        assert pump(agent).delivered_ml == pytest.approx(1.0)
        assert "actuator_error:bus1-base" in agent.status()["problems"]
        assert pump(agent).dosed_within(3600) == pytest.approx(2.0), "counted whatever happened"
        assert pump(agent).in_safe_state, "stopped, though in error"
        await asyncio.sleep(3 * INTERVAL_S)
        assert pump(agent).error == "short_dose", "sticky until a good dose or a person"
        await controller(agent).configure("bus1-ph", {"clear_alarm": True})
        await wait_for(lambda: pump(agent).error is None)
    finally:
        await agent.stop()
