"""Actuation events: every command that reaches an actuator is journaled once, in the
readings' sequence space, with who asked, what was commanded and what the chip confirmed.
Real journal (SQLite), real actuator drivers speaking bytes to the simulated chips."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bioreactor_edge.actuation_events import ActuationLog
from bioreactor_edge.actuators import Actuator, Refused, build_actuators
from bioreactor_edge.bus import BusOwner
from bioreactor_edge.config import ReactorConfig
from bioreactor_edge.control.dosing import Input
from bioreactor_edge.control.runner import Controller
from bioreactor_edge.drivers.base import Timing
from bioreactor_edge.journal import DB_NAME, Journal
from bioreactor_edge.models import NewReading, Reading
from bioreactor_edge.simulator.actuation import add_actuators
from bioreactor_edge.simulator.ezo import EzoChip
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus
from tests.edge.test_control_loops import ACTUATORS, StallingPump, loops

SPEED = 1000.0
TIMING = Timing().scaled(SPEED)


class SimClock:
    """Simulated seconds moved by the test; the chips also see real time, sped up, so
    their processing delays end."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self._real = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def chip(self) -> float:
        return self.now + (time.monotonic() - self._real) * SPEED


@dataclass
class Rig:
    clock: SimClock
    model: ReactorModel
    bus: VirtualBus
    journal: Journal
    control: Controller
    actuators: dict[str, Actuator]
    inputs: dict[str, Input]

    async def events(self) -> list[tuple[Reading, dict[str, Any]]]:
        rows, _ = await self.journal.read_after(0, 10_000)
        return [(r, json.loads(r.event)) for r in rows if r.event is not None]

    async def tick(self, seconds: float = 10.0) -> None:
        self.clock.now += seconds
        for key, value in self.inputs.items():
            self.inputs[key] = Input(value.value, self.clock.now, value.good)
        await self.control.tick()


async def make_rig(tmp_path: Path, mode: str) -> AsyncIterator[Rig]:
    clock = SimClock()
    model = ReactorModel(seed=5, clock=clock)
    bus = VirtualBus()
    add_actuators(bus, model)
    bus.add(EzoChip("pmp", 0x67, model, speed=SPEED, clock=clock.chip))
    owner = BusOwner(bus, 1, timeout_s=5.0)
    journal = await Journal.open(tmp_path / "journal", clock=clock)
    inputs = {"rtd": Input(37.0, clock.now, True), "ph": Input(7.0, clock.now, True)}

    def read(_reactor: str, kind: str, _quantity: str) -> Input:
        return inputs[kind]

    reactor = ReactorConfig(
        id="bus1", name="R1", bus=1, actuators=ACTUATORS, loops=loops(mode=mode)
    )
    actuators = build_actuators(
        reactor, owner, timing=TIMING, clock=clock, log=ActuationLog(journal.append, clock)
    )
    control = Controller([(reactor, actuators)], read, tmp_path / "control.json", clock=clock)
    await control.start()
    try:
        yield Rig(clock, model, bus, journal, control, actuators, inputs)
    finally:
        await control.stop()
        await owner.close()
        await journal.close()


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[Rig]:
    async for rig in make_rig(tmp_path, "manual"):
        yield rig


@pytest.fixture
async def auto(tmp_path: Path) -> AsyncIterator[Rig]:
    async for rig in make_rig(tmp_path, "auto"):
        yield rig


async def new_events(rig: Rig, since: int) -> list[tuple[Reading, dict[str, Any]]]:
    return [(r, e) for r, e in await rig.events() if r.seq > since]


async def test_start_and_shutdown_journal_each_safe_state_once(tmp_path: Path) -> None:
    rig_gen = make_rig(tmp_path, "off")
    rig = await anext(rig_gen)
    started = await rig.events()
    assert sorted(r.sensor for r, _ in started) == sorted(a.id for a in rig.actuators.values())
    for reading, event in started:
        actuator = rig.control.actuator(reading.sensor)
        assert reading.quantity == "actuation"
        assert reading.value == actuator.safe
        assert reading.quality == "good"
        assert event == {
            "requester": "safety",
            "reason": "start",
            "command": "safe",
            "confirmed": actuator.safe,
            "error": None,
            "error_message": None,
        }
    # Loops in `off` keep their outputs safe at every tick: nothing moved, nothing journaled.
    await rig.tick()
    await rig.tick()
    assert len(await rig.events()) == len(started)
    newest = rig.journal.stats().newest_seq
    with pytest.raises(StopAsyncIteration):
        await anext(rig_gen)  # stops the controller, then closes the journal
    reopened = await Journal.open(tmp_path / "journal")
    try:
        rows, _ = await reopened.read_after(newest, 100)
    finally:
        await reopened.close()
    stopped = [json.loads(r.event) for r in rows if r.event is not None]
    assert len(stopped) == len(rig.actuators)
    assert {(e["requester"], e["reason"]) for e in stopped} == {("safety", "shutdown")}


async def test_each_api_command_emits_exactly_one_event(manual: Rig) -> None:
    rig = manual
    since = rig.journal.stats().newest_seq
    await rig.control.command("bus1-heater_relay", 1)
    await rig.control.command("bus1-heater_relay", 1)  # a person asking twice: two events
    await rig.control.command("bus1-heater", 0.42)
    with pytest.raises(Refused):
        await rig.control.command("bus1-heater", 0.95)  # beyond max_duty: nothing moved
    await rig.tick()  # manual: the outputs are refreshed, not commanded
    events = await new_events(rig, since)
    assert [
        (r.sensor, r.value, e["command"], e["requester"], e["confirmed"]) for r, e in events
    ] == [
        ("bus1-heater_relay", 1.0, "set", "ha", 1.0),
        ("bus1-heater_relay", 1.0, "set", "ha", 1.0),
        ("bus1-heater", 0.42, "set", "ha", 0.42),
    ]
    # Same sequence space as readings: a reading appended now follows the events.
    await rig.journal.append(
        [NewReading(int(rig.clock.now * 1000), "bus1", "bus1-ph-63", "ph", 7.0, "pH", "good")]
    )
    assert rig.journal.stats().newest_seq == events[-1][0].seq + 1


async def dose_and_wait(rig: Rig, ml: float) -> list[tuple[Reading, dict[str, Any]]]:
    """Doses by hand; the dose's two events once the pump is idle again."""
    since = rig.journal.stats().newest_seq
    await rig.control.dose("bus1-base", ml)
    for _ in range(200):
        await asyncio.sleep(0.005)
        await rig.tick(1.0)
        if len(await new_events(rig, since)) >= 2:
            break
    return await new_events(rig, since)


async def test_a_dose_is_journaled_when_commanded_and_when_confirmed(manual: Rig) -> None:
    (dose, commanded), (result, confirmed) = await dose_and_wait(manual, 1.0)
    assert (dose.sensor, dose.value, dose.unit) == ("bus1-base", 1.0, "mL")
    assert commanded["command"] == "dose"
    assert commanded["requester"] == "ha"
    assert commanded["confirmed"] is None  # the volume is known once the pump is idle
    assert (result.value, result.unit, result.quality) == (1.0, "mL", "good")
    assert confirmed["command"] == "dose_result"
    assert confirmed["requester"] == "ha"
    assert confirmed["confirmed"] == pytest.approx(1.0, abs=0.1)
    assert confirmed["error"] is None


async def test_a_short_dose_is_confirmed_as_a_failure(manual: Rig) -> None:
    manual.bus.remove(0x67)
    manual.bus.add(StallingPump("pmp", 0x67, manual.model, speed=SPEED, clock=manual.clock.chip))
    (dose, commanded), (result, confirmed) = await dose_and_wait(manual, 2.0)
    assert (dose.quality, commanded["error"]) == ("good", None)  # the pump took the command
    assert (result.value, result.quality) == (2.0, "failed")
    assert confirmed["command"] == "dose_result"
    assert confirmed["confirmed"] == pytest.approx(1.0, abs=0.1)
    assert confirmed["error"] == "short_dose"
    assert "grew" in confirmed["error_message"]


async def test_loops_journal_a_change_not_every_tick(auto: Rig) -> None:
    rig = auto
    since = rig.journal.stats().newest_seq
    rig.inputs["rtd"] = Input(36.0, rig.clock.now, True)
    await rig.tick()
    first = await new_events(rig, since)
    by_loop = {r.sensor: e for r, e in first if e["requester"] == "loop:bus1-temperature"}
    assert set(by_loop) == {"bus1-heater", "bus1-heater_relay"}
    assert by_loop["bus1-heater_relay"]["confirmed"] == 1.0
    await rig.tick()  # the PID's first step with a time step
    # The same input again: the relay stays closed, the duty moves less than a step.
    count = len(await rig.events())
    await rig.tick(0.1)
    await rig.tick(0.1)
    assert len(await rig.events()) == count
    # A loop's dose: the pH far below its setpoint.
    rig.inputs["ph"] = Input(6.5, rig.clock.now, True)
    await rig.tick()
    doses = [(r, e) for r, e in await new_events(rig, since) if e["command"] == "dose"]
    assert len(doses) == 1
    assert doses[0][1]["requester"] == "loop:bus1-ph"
    assert doses[0][0].value > 0


async def test_stale_input_and_emergency_stop_are_safety_events(auto: Rig) -> None:
    rig = auto
    rig.inputs["rtd"] = Input(36.0, rig.clock.now, True)
    await rig.tick()
    await rig.tick()  # heating
    assert rig.actuators["heater"].applied
    since = rig.journal.stats().newest_seq
    # The temperature input stops updating: the loop locks its outputs out once.
    stale = rig.inputs["rtd"]
    rig.clock.now += 3600
    rig.inputs["ph"] = Input(7.0, rig.clock.now, True)
    await rig.control.tick()
    rig.inputs["rtd"] = stale
    await rig.control.tick()
    locked = [
        (r.sensor, e["reason"]) for r, e in await new_events(rig, since) if r.sensor != "bus1-base"
    ]
    assert sorted(locked) == [
        ("bus1-heater", "lockout:input_stale"),
        ("bus1-heater_relay", "lockout:input_stale"),
    ]
    assert {e["requester"] for _, e in await new_events(rig, since)} == {"safety"}
    since = rig.journal.stats().newest_seq
    await rig.control.emergency_stop("bus1")
    stopped = await new_events(rig, since)
    assert sorted(r.sensor for r, _ in stopped) == sorted(a.id for a in rig.actuators.values())
    assert {(e["requester"], e["reason"], e["command"]) for _, e in stopped} == {
        ("safety", "emergency_stop", "safe")
    }


async def test_a_failed_command_records_the_failure(manual: Rig) -> None:
    rig = manual
    since = rig.journal.stats().newest_seq
    rig.bus.remove(0x20)  # the relay expander stops answering
    await rig.control.command("bus1-heater_relay", 1)
    rig.bus.remove(0x67)  # and the pump
    with pytest.raises(Refused):
        await rig.control.dose("bus1-base", 5.0)  # over max_dose_ml: refused, not journaled
    await rig.control.dose("bus1-base", 1.0)
    (relay, relay_event), (dose, dose_event) = await new_events(rig, since)
    assert (relay.sensor, relay.value, relay.quality) == ("bus1-heater_relay", 1.0, "failed")
    assert relay_event["confirmed"] is None
    assert relay_event["error"] == "nak"
    assert relay_event["error_message"]
    assert (dose.sensor, dose.value, dose.quality) == ("bus1-base", 1.0, "failed")
    assert dose_event["error"] == "nak"
    assert "dose of 1.0 mL" in dose_event["error_message"]


async def test_a_journal_from_before_events_opens_and_takes_them(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = await Journal.open(directory)
    await journal.append([NewReading(1_000, "bus1", "bus1-ph-63", "ph", 7.0, "pH", "good")])
    await journal.close()
    with sqlite3.connect(directory / DB_NAME) as conn:  # the schema of the previous release
        conn.execute("ALTER TABLE readings DROP COLUMN event")
    journal = await Journal.open(directory)
    try:
        event = NewReading(2_000, "bus1", "bus1-base", "actuation", 1.0, "mL", "good", '{"a":1}')
        await journal.append([event])
        rows, _ = await journal.read_after(0, 10)
    finally:
        await journal.close()
    assert [(r.seq, r.quantity, r.event) for r in rows] == [
        (1, "ph", None),
        (2, "actuation", '{"a":1}'),
    ]
    assert not journal.recovery.new_epoch
