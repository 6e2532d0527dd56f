"""The agent end to end on simulated buses: discovery, handlers, journal, status."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bioreactor_edge.agent import Agent
from bioreactor_edge.api import SensorInUse
from bioreactor_edge.bus import RawBus
from bioreactor_edge.config import AgentConfig, PinnedSensor, ReactorConfig, default_config
from bioreactor_edge.drivers.base import Timing
from bioreactor_edge.models import NewReading
from bioreactor_edge.simulator.chips import SimChip
from bioreactor_edge.simulator.lab import build_chip, build_reactor_bus
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus

RATE_HZ = 20.0
TIMING = Timing().scaled(RATE_HZ)


def fast_config(data_dir: Path, **changes: Any) -> AgentConfig:
    base = default_config(data_dir)
    config = replace(base, sampling=replace(base.sampling, interval_s=1 / RATE_HZ))
    return replace(config, **changes)


def single_bus(bus: VirtualBus) -> Callable[[int], RawBus]:
    return lambda _number: bus


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def sensors(agent: Agent) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for r in agent.status()["reactors"] for s in r["sensors"]}


@pytest.fixture
def bus() -> VirtualBus:
    return build_reactor_bus(ReactorModel(seed=3), sensors=8, speed=RATE_HZ, seed=3)


@pytest.fixture
async def agent(tmp_path: Path, bus: VirtualBus) -> AsyncIterator[Agent]:
    agent = Agent(fast_config(tmp_path), agent_id="a" * 16, raw_bus=single_bus(bus), timing=TIMING)
    await agent.start()
    await wait_for(lambda: not agent.discovering)
    yield agent
    await agent.stop()


async def test_discovers_identifies_and_journals_every_sensor(agent: Agent) -> None:
    found = sensors(agent)
    assert {s["kind"] for s in found.values()} == {
        "rtd",
        "ph",
        "do",
        "orp",
        "ec",
        "pmp",
        "sht4x",
        "ads1115",
    }
    assert found["bus1-ph-63"]["model"] == "EZO-pH"
    # Each is `starting` until its first good reading.
    assert {s["status"] for s in found.values()} <= {"starting", "online"}
    await wait_for(lambda: all(s["status"] == "online" for s in sensors(agent).values()))

    await wait_for(lambda: agent.journal.stats().newest_seq >= 60)
    readings, _more = await agent.journal.read_after(0, 10_000)
    by_quantity = {(r.sensor, r.quantity): r for r in readings}
    assert 5.0 < by_quantity["bus1-ph-63", "ph"].value < 8.0
    assert 20.0 < by_quantity["bus1-rtd-66", "temperature"].value < 45.0
    assert [r.seq for r in readings] == sorted({r.seq for r in readings})

    status = agent.status()
    assert status["agent_id"] == "a" * 16
    assert status["health"] == "ok"
    assert status["problems"] == []
    assert status["discovery"]["state"] == "idle"
    assert status["discovery"]["last_scan"].endswith("Z")
    assert status["journal"]["newest_seq"] >= 60
    assert status["buses"][0]["transactions_ok"] > 0
    ph = next(q for q in sensors(agent)["bus1-ph-63"]["quantities"] if q["key"] == "ph")
    assert ph["unit"] == "pH"
    assert ph["value"] is not None
    assert ph["time"].endswith("Z")


async def test_compensated_sensors_use_the_reactor_temperature(
    agent: Agent, bus: VirtualBus
) -> None:
    await wait_for(lambda: agent.journal.stats().newest_seq >= 200)
    readings, _ = await agent.journal.read_after(0, 10_000)
    first_temperature = min(r.seq for r in readings if r.sensor == "bus1-rtd-66")
    # The very first pH reads may precede the first temperature; later ones are compensated.
    later = [r for r in readings if r.sensor == "bus1-ph-63" and r.seq > first_temperature + 20]
    assert later
    assert {r.quality for r in later} == {"good"}

    # Without a live temperature the pH circuit's readings are marked uncompensated.
    bus.chip(0x66).faults.unplugged = True
    await agent.rescan()
    newest = agent.journal.stats().newest_seq
    await wait_for(lambda: agent.journal.stats().newest_seq > newest + 200)
    readings, _ = await agent.journal.read_after(newest + 150, 10_000)
    assert {r.quality for r in readings if r.sensor == "bus1-ph-63"} == {"uncompensated"}
    problems = agent.status()["problems"]
    assert {"uncompensated:bus1-ph-63", "uncompensated:bus1-do-61"} <= set(problems)
    # The RTD is back: compensation (and a clean problem list) returns.
    bus.chip(0x66).faults.unplugged = False
    await agent.rescan()
    await wait_for(
        lambda: not any(p.startswith("uncompensated:") for p in agent.status()["problems"])
    )


async def test_sensor_appears_vanishes_and_is_forgotten(agent: Agent, bus: VirtualBus) -> None:
    bus.add(build_chip("orp", 0x30, ReactorModel(seed=9), speed=RATE_HZ, seed=9))
    await agent.rescan()
    assert sensors(agent)["bus1-orp-30"]["status"] == "starting"
    await wait_for(lambda: sensors(agent)["bus1-orp-30"]["status"] == "online")

    with pytest.raises(SensorInUse):
        agent.forget_sensor("bus1-orp-30")

    bus.chip(0x30).faults.unplugged = True
    await agent.rescan()
    vanished = sensors(agent)["bus1-orp-30"]
    assert vanished["status"] == "offline"

    # Offline sensors stay listed across rescans until forgotten explicitly.
    await agent.rescan()
    assert "bus1-orp-30" in sensors(agent)
    agent.forget_sensor("bus1-orp-30")
    assert "bus1-orp-30" not in sensors(agent)
    with pytest.raises(KeyError):
        agent.forget_sensor("bus1-orp-30")


async def test_replugged_sensor_comes_back_online(agent: Agent, bus: VirtualBus) -> None:
    bus.chip(0x61).faults.unplugged = True
    await wait_for(lambda: sensors(agent)["bus1-do-61"]["consecutive_errors"] >= 3)
    await agent.rescan()
    assert sensors(agent)["bus1-do-61"]["status"] == "offline"
    bus.chip(0x61).faults.unplugged = False
    await agent.rescan()
    back = sensors(agent)["bus1-do-61"]
    # A returning sensor starts afresh: no inherited error count.
    assert (back["status"], back["consecutive_errors"]) == ("starting", 0)
    await wait_for(lambda: sensors(agent)["bus1-do-61"]["status"] == "online")
    seen = agent.journal.stats().newest_seq
    await wait_for(lambda: agent.journal.stats().newest_seq > seen + 50)
    readings, _ = await agent.journal.read_after(seen, 10_000)
    assert any(r.sensor == "bus1-do-61" for r in readings)


async def test_unidentified_address_is_listed_as_unknown(agent: Agent, bus: VirtualBus) -> None:
    bus.add(SimChip(0x20))
    await agent.rescan()
    unknown = sensors(agent)["bus1-unknown-20"]
    assert unknown["status"] == "unknown"
    assert unknown["quantities"] == []
    assert unknown["last_error"] == "unsupported_chip"
    assert "none of the supported chips" in unknown["error_message"]
    assert 0x20 in agent.reactors["bus1"].retries
    agent.forget_sensor("bus1-unknown-20")
    assert "bus1-unknown-20" not in sensors(agent)
    assert 0x20 not in agent.reactors["bus1"].retries


class CountingChip(SimChip):
    """An unidentifiable chip that counts the commands written to it."""

    def __init__(self, address: int) -> None:
        super().__init__(address)
        self.commands = 0

    def on_write(self, data: bytes) -> None:
        self.commands += 1


async def test_unknown_addresses_are_asked_again_with_backoff(
    agent: Agent, bus: VirtualBus
) -> None:
    chip = CountingChip(0x20)
    bus.add(chip)
    asked = []
    for _ in range(12):
        before = chip.commands
        await agent.rescan()
        asked.append(chip.commands > before)
    # Scans 1, 2, 4, 8 asked; the others skipped (0, 1, 3 scans between, then 7).
    assert [n for n, yes in enumerate(asked, 1) if yes] == [1, 2, 4, 8]

    # Something identifiable turns up there (a circuit that was busy, a replug).
    bus.remove(0x20)
    bus.add(build_chip("orp", 0x20, ReactorModel(seed=4), speed=RATE_HZ, seed=4))
    for _ in range(8):
        await agent.rescan()
    found = sensors(agent)
    assert "bus1-unknown-20" not in found
    assert found["bus1-orp-20"]["status"] in ("starting", "online")


async def test_a_crashing_handler_is_an_error_named_in_problems(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = next(
        h for r in agent.reactors.values() for h in r.sensors.values() if h.id == "bus1-orp-62"
    )
    assert handler.driver is not None

    async def broken_collect() -> list[Any]:
        raise KeyError("parser bug")

    monkeypatch.setattr(handler.driver, "collect", broken_collect)
    await wait_for(lambda: "sensor_error:bus1-orp-62" in agent.status()["problems"])
    failing = sensors(agent)["bus1-orp-62"]
    assert (failing["status"], failing["last_error"]) == ("error", "internal")
    assert failing["error_message"] == "KeyError: 'parser bug'"
    monkeypatch.undo()
    await wait_for(lambda: sensors(agent)["bus1-orp-62"]["status"] == "online", timeout=15)
    assert "sensor_error:bus1-orp-62" not in agent.status()["problems"]


async def test_start_returns_at_once_and_reports_discovery(tmp_path: Path) -> None:
    # 45 chips take seconds to identify; the agent must not wait for them.
    slow = Timing().scaled(2.0)
    big = build_reactor_bus(ReactorModel(seed=8), sensors=45, speed=2.0, seed=8)
    agent = Agent(fast_config(tmp_path), agent_id="c" * 16, raw_bus=single_bus(big), timing=slow)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await agent.start()
    try:
        assert loop.time() - began < 0.5
        status = agent.status()
        assert status["discovery"] == {"state": "running", "last_scan": None}
        await wait_for(lambda: not agent.discovering, timeout=120)
        assert loop.time() - began > 1.0  # discovery really took a while
        assert agent.status()["discovery"]["state"] == "idle"
        assert len(sensors(agent)) == 45
    finally:
        await agent.stop()


async def test_failing_sensor_is_in_error_while_others_keep_sampling(
    agent: Agent, bus: VirtualBus
) -> None:
    bus.chip(0x63).faults.garbage = True
    await wait_for(lambda: sensors(agent)["bus1-ph-63"]["status"] == "error")
    failing = sensors(agent)["bus1-ph-63"]
    assert failing["consecutive_errors"] >= 3
    assert failing["last_error"] == "garbage"

    seen = agent.journal.stats().newest_seq
    await wait_for(lambda: agent.journal.stats().newest_seq > seen + 50)
    readings, _ = await agent.journal.read_after(seen, 10_000)
    assert {r.sensor for r in readings} >= {"bus1-do-61", "bus1-rtd-66"}

    bus.chip(0x63).faults.garbage = False
    await wait_for(lambda: sensors(agent)["bus1-ph-63"]["status"] == "online")
    assert sensors(agent)["bus1-ph-63"]["consecutive_errors"] == 0


async def test_pinned_sensors_without_scanning(tmp_path: Path, bus: VirtualBus) -> None:
    base = fast_config(tmp_path)
    reactor = replace(
        base.reactors[0],
        sensors=(
            PinnedSensor(address=0x63, kind="ph", interval_s=None),
            PinnedSensor(address=0x5A, kind="orp", interval_s=None),
        ),
    )
    config = replace(base, reactors=(reactor,), discovery=replace(base.discovery, scan=False))
    agent = Agent(config, agent_id="b" * 16, raw_bus=single_bus(bus), timing=TIMING)
    await agent.start()
    try:
        assert agent.status()["discovery"] == {"state": "idle", "last_scan": None}
        # Only the pinned addresses, even though the bus holds eight chips.
        assert set(sensors(agent)) == {"bus1-ph-63", "bus1-orp-5a"}
        await wait_for(lambda: sensors(agent)["bus1-ph-63"]["status"] == "online")
        # A pinned sensor that does not answer is in error, not silently missing.
        await wait_for(lambda: sensors(agent)["bus1-orp-5a"]["status"] == "error")
        assert sensors(agent)["bus1-orp-5a"]["last_error"] == "nak"
    finally:
        await agent.stop()


async def test_reactors_behind_a_mux_do_not_claim_main_bus_chips(tmp_path: Path) -> None:
    model = ReactorModel(seed=11)
    vbus = VirtualBus()
    vbus.add(build_chip("rtd", 0x66, model, speed=RATE_HZ, seed=1))  # on the main bus
    vbus.add(build_chip("ph", 0x63, model, speed=RATE_HZ, seed=2), mux_channel=0)
    vbus.add(build_chip("orp", 0x62, model, speed=RATE_HZ, seed=3), mux_channel=1)
    reactors = (
        ReactorConfig(id="main", name="Main", bus=1),
        ReactorConfig(id="left", name="Left", bus=1, mux_address=0x70, mux_channel=0),
        ReactorConfig(id="right", name="Right", bus=1, mux_address=0x70, mux_channel=1),
    )
    agent = Agent(
        fast_config(tmp_path, reactors=reactors),
        agent_id="e" * 16,
        raw_bus=single_bus(vbus),
        timing=TIMING,
    )
    await agent.start()
    try:
        await wait_for(lambda: not agent.discovering)
        found = {r["id"]: sorted(s["id"] for s in r["sensors"]) for r in agent.status()["reactors"]}
    finally:
        await agent.stop()
    assert found == {
        "main": ["main-rtd-66"],
        "left": ["left-ph-63"],
        "right": ["right-orp-62"],
    }


async def test_an_rtd_without_probe_never_poisons_compensation(
    agent: Agent, bus: VirtualBus
) -> None:
    rtd, ph = bus.chip(0x66), bus.chip(0x63)
    await wait_for(lambda: agent.journal.stats().newest_seq >= 100)
    assert 30.0 < ph.compensation_c < 45.0  # type: ignore[attr-defined]
    rtd.probe_connected = False  # type: ignore[attr-defined]  # the RTD now reads -1023
    await wait_for(lambda: "uncompensated:bus1-ph-63" in agent.status()["problems"])
    seen = agent.journal.stats().newest_seq
    await wait_for(lambda: agent.journal.stats().newest_seq > seen + 100)
    readings, _ = await agent.journal.read_after(seen, 10_000)
    assert {r.quality for r in readings if r.sensor == "bus1-ph-63"} == {"uncompensated"}
    assert {r.quality for r in readings if r.sensor == "bus1-rtd-66"} <= {"suspect"}
    # The circuit keeps the last good temperature it was sent, never -1023.
    assert 30.0 < ph.compensation_c < 45.0  # type: ignore[attr-defined]
    rtd.probe_connected = True  # type: ignore[attr-defined]
    await wait_for(lambda: "uncompensated:bus1-ph-63" not in agent.status()["problems"])


async def test_a_stop_during_a_commit_still_reports_what_it_journaled(
    tmp_path: Path, bus: VirtualBus
) -> None:
    # The fault oracle's record must match the journal even when a stop cancels a
    # sampler whose batch the journal goes on committing (it shields commits).
    journaled: list[NewReading] = []
    agent = Agent(
        fast_config(tmp_path),
        agent_id="d" * 16,
        raw_bus=single_bus(bus),
        timing=TIMING,
        on_journaled=journaled.extend,
    )
    await agent.start()
    await wait_for(lambda: not agent.discovering)
    commit = agent.journal._commit

    def slow_commit(readings: list[NewReading]) -> None:
        time.sleep(0.05)  # every stop now lands while a commit is in flight
        commit(readings)

    agent.journal._commit = slow_commit  # type: ignore[method-assign]
    await wait_for(lambda: len(journaled) > 20)
    await agent.stop()

    conn = sqlite3.connect(tmp_path / "journal" / "journal.db")
    try:
        rows = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    finally:
        conn.close()
    assert rows == len(journaled)
