"""Guided calibration on a real agent over simulated EZO circuits: the order of the
points, stability gating, the circuit's read-back, the record surviving a restart, and
calibration commands that never interleave with the sampler's readings."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient

from bioreactor_edge.agent import Agent
from bioreactor_edge.api import API_PREFIX, create_app
from bioreactor_edge.calibration import (
    CalibrationInvalid,
    CalibrationRefused,
    Sample,
    Stability,
    assess,
)
from bioreactor_edge.config import CalibrationConfig, ConfigError, parse_config
from bioreactor_edge.simulator.ezo import EzoChip
from bioreactor_edge.simulator.lab import build_reactor_bus
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus
from tests.edge.test_agent import RATE_HZ, TIMING, fast_config, sensors, single_bus, wait_for

PH, DO, EC = "bus1-ph-63", "bus1-do-61", "bus1-ec-64"
TOKEN = "t" * 43
# Quick sessions: three readings in a row, at 20 Hz sampling.
QUICK = {"readings": 3, "seconds": 0.1}


@pytest.fixture
def bus() -> VirtualBus:
    return build_reactor_bus(ReactorModel(seed=3), sensors=6, speed=RATE_HZ, seed=3)


def chip(bus: VirtualBus, address: int) -> EzoChip:
    return cast(EzoChip, bus.chip(address))


async def started(data_dir: Path, bus: VirtualBus, **config: Any) -> Agent:
    agent = Agent(
        fast_config(data_dir, **config), agent_id="a" * 16, raw_bus=single_bus(bus), timing=TIMING
    )
    await agent.start()
    await wait_for(lambda: not agent.discovering)
    await wait_for(lambda: all(sensors(agent)[s]["status"] == "online" for s in (PH, DO, EC)))
    return agent


@pytest.fixture
async def agent(tmp_path: Path, bus: VirtualBus) -> AsyncIterator[Agent]:
    agent = await started(tmp_path, bus)
    yield agent
    await agent.stop()


async def commit_when_stable(
    agent: Agent, sensor: str, point: str, value: float | None = None
) -> dict[str, Any]:
    await wait_for(lambda: agent.calibration.progress(sensor)["stability"]["stable"])
    return await agent.calibration.commit(sensor, point, value)


def refusal(err: pytest.ExceptionInfo[CalibrationRefused]) -> str:
    return err.value.code


async def test_ph_points_in_order_with_read_back(agent: Agent, bus: VirtualBus) -> None:
    ph = chip(bus, 0x63)
    ph.reading_override = "7.02"
    session = agent.calibration.start(PH, QUICK)
    assert session["points"] == ["mid", "low", "high"]
    assert session["next_point"] == "mid"

    # Low before mid is refused, and nothing reaches the circuit.
    with pytest.raises(CalibrationRefused) as err:
        await agent.calibration.commit(PH, "low", 4.0)
    assert refusal(err) == "out_of_order"
    assert "mid -> low -> high" in str(err.value)
    assert not any(c.startswith("Cal,") for c in ph.commands)

    done = await commit_when_stable(agent, PH, "mid", 7.0)
    assert ph.calibration == ["mid"]
    assert done["result"]["points"] == 1
    assert done["result"]["slope"] == {"acid_pct": 100.0, "base_pct": 100.0, "offset_mv": -0.89}
    assert done["committed"][0]["point"] == "mid"
    assert done["committed"][0]["reading"] == pytest.approx(7.02)
    assert done["next_point"] == "low"

    # Straight after a commit the old buffer's stable run no longer counts.
    ph.reading_override = "4.05"
    with pytest.raises(CalibrationRefused) as err:
        await agent.calibration.commit(PH, "low", 4.0)
    assert refusal(err) in ("not_stable", "implausible")
    await commit_when_stable(agent, PH, "low", 4.0)
    ph.reading_override = "9.96"
    done = await commit_when_stable(agent, PH, "high", 10.0)

    assert ph.calibration == ["mid", "low", "high"]
    assert done["state"] == "complete"
    assert done["next_point"] is None
    assert done["result"]["points"] == 3
    assert done["result"]["slope"] == {"acid_pct": 99.7, "base_pct": 100.3, "offset_mv": -0.89}
    assert [c for c in ph.commands if c.startswith("Cal,")][-4:] == [
        "Cal,low,4.00",
        "Cal,?",
        "Cal,high,10.00",
        "Cal,?",
    ]
    assert sensors(agent)[PH]["calibration"]["points"] == 3

    # A restarted session begins at mid again, which clears the circuit's other points.
    agent.calibration.start(PH, QUICK)
    ph.reading_override = "7.01"
    done = await commit_when_stable(agent, PH, "mid", 7.0)
    assert ph.calibration == ["mid"]
    assert done["result"]["points"] == 1


async def test_an_unstable_reading_commits_nothing(agent: Agent, bus: VirtualBus) -> None:
    ph = chip(bus, 0x63)
    on_write = ph.on_write

    def wobbling(data: bytes) -> None:
        # Every reading 0.1 pH from the one before: never within 0.02.
        if data.startswith((b"R", b"RT,")):
            ph.reading_override = "7.10" if ph.reading_override == "7.00" else "7.00"
        on_write(data)

    ph.on_write = wobbling  # type: ignore[method-assign]
    agent.calibration.start(PH, {"readings": 3, "seconds": 0.1, "tolerance": 0.02})
    for _ in range(5):
        await wait_for(lambda: agent.calibration.progress(PH)["stability"]["readings"] >= 1)
        with pytest.raises(CalibrationRefused) as err:
            await agent.calibration.commit(PH, "mid", 7.0)
        assert refusal(err) == "not_stable"
        assert re.search(r"[012] of 3 readings within 0\.02 pH over \d+ of 0\.1 s", str(err.value))
        await asyncio.sleep(0.1)
    assert ph.calibration == []
    assert not any(c.startswith("Cal") for c in ph.commands)
    assert sensors(agent)[PH]["calibration"] is None


async def test_a_ph_probe_far_from_the_buffer_is_refused(agent: Agent, bus: VirtualBus) -> None:
    chip(bus, 0x63).reading_override = "4.00"  # still in the pH 4 bottle
    agent.calibration.start(PH, QUICK)
    await wait_for(lambda: agent.calibration.progress(PH)["stability"]["stable"])
    with pytest.raises(CalibrationRefused) as err:
        await agent.calibration.commit(PH, "mid", 7.0)
    assert refusal(err) == "implausible"
    assert chip(bus, 0x63).calibration == []


async def test_do_atmospheric_then_zero(agent: Agent, bus: VirtualBus) -> None:
    do = chip(bus, 0x61)
    do.reading_override = "9.10"
    session = agent.calibration.start(DO, QUICK)
    assert session["points"] == ["atmospheric", "zero"]
    with pytest.raises(CalibrationInvalid, match="takes no 'value'"):
        await agent.calibration.commit(DO, "atmospheric", 8.0)
    with pytest.raises(CalibrationRefused) as err:
        await agent.calibration.commit(DO, "zero", None)
    assert refusal(err) == "out_of_order"
    assert (await commit_when_stable(agent, DO, "atmospheric"))["result"]["points"] == 1
    do.reading_override = "0.02"
    done = await commit_when_stable(agent, DO, "zero")
    assert done["result"] == {"date": done["result"]["date"], "points": 2, "slope": None}
    assert done["state"] == "complete"
    assert [c for c in do.commands if c.startswith("Cal")] == ["Cal", "Cal,?", "Cal,0", "Cal,?"]


async def test_ec_dry_low_high(agent: Agent, bus: VirtualBus) -> None:
    ec = chip(bus, 0x64)
    ec.reading_override = "0"
    session = agent.calibration.start(EC, QUICK)
    assert session["points"] == ["dry", "low", "high"]
    assert session["point_defaults"] == {"low": 12880.0, "high": 80000.0}
    with pytest.raises(CalibrationRefused) as err:
        await agent.calibration.commit(EC, "low", 12880)
    assert refusal(err) == "out_of_order"
    assert (await commit_when_stable(agent, EC, "dry"))["result"]["points"] == 0
    with pytest.raises(CalibrationInvalid, match="needs the solution's 'value'"):
        await agent.calibration.commit(EC, "low", None)
    ec.reading_override = "12650"
    await commit_when_stable(agent, EC, "low", 12880)
    with pytest.raises(CalibrationInvalid, match="must be above low"):
        await agent.calibration.commit(EC, "high", 1000)
    ec.reading_override = "79100"
    done = await commit_when_stable(agent, EC, "high", 80000)
    assert done["result"]["points"] == 2
    assert [c for c in ec.commands if c.startswith("Cal,") and c != "Cal,?"] == [
        "Cal,dry",
        "Cal,low,12880",
        "Cal,high,80000",
    ]


async def test_other_sensors_and_bad_settings_are_refused(agent: Agent) -> None:
    with pytest.raises(CalibrationRefused) as err:
        agent.calibration.start("bus1-rtd-66", {})
    assert refusal(err) == "not_calibratable"
    with pytest.raises(KeyError):
        agent.calibration.start("bus1-ph-99", {})
    for settings, problem in (
        ({"readings": 1}, "'readings' must be an integer from 2 to 120"),
        ({"seconds": -1}, "'seconds' must be from 0"),
        ({"tolerance": 0}, "'tolerance' must be positive"),
        ({"tolerance": "x"}, "'tolerance' must be a finite number"),
        ({"speed": 1}, "unknown field 'speed'"),
    ):
        with pytest.raises(CalibrationInvalid, match=problem):
            agent.calibration.start(PH, settings)
    with pytest.raises(CalibrationRefused) as err:
        agent.calibration.progress(PH)
    assert refusal(err) == "no_session"


async def test_configured_stability_rule(tmp_path: Path, bus: VirtualBus) -> None:
    config = parse_config({"calibration": {"stable_readings": 8, "stable_seconds": 60}})
    assert config.calibration == CalibrationConfig(8, 60)
    with pytest.raises(ConfigError, match=r"^calibration.stable_readings: must be an integer"):
        parse_config({"calibration": {"stable_readings": 1}})
    agent = await started(tmp_path, bus, calibration=CalibrationConfig(8, 60.0))
    try:
        stability = agent.calibration.start(PH, {})["stability"]
        assert (stability["readings_needed"], stability["seconds_needed"]) == (8, 60.0)
        # A session may still ask for its own rule.
        stability = agent.calibration.start(PH, {"seconds": 5})["stability"]
        assert (stability["readings_needed"], stability["seconds_needed"]) == (8, 5.0)
    finally:
        await agent.stop()


async def test_record_survives_a_restart(tmp_path: Path, bus: VirtualBus) -> None:
    chip(bus, 0x63).reading_override = "7.00"
    agent = await started(tmp_path, bus)
    try:
        agent.calibration.start(PH, QUICK)
        done = await commit_when_stable(agent, PH, "mid", 7.0)
        before = sensors(agent)[PH]["calibration"]
    finally:
        await agent.stop()
    assert before == done["result"]
    stored = json.loads((tmp_path / "calibration.json").read_text())
    assert stored["sensors"][PH]["points"] == 1

    again = await started(tmp_path, bus)
    try:
        assert sensors(again)[PH]["calibration"] == before
        assert sensors(again)[DO]["calibration"] is None
    finally:
        await again.stop()


async def test_an_unreadable_record_file_is_set_aside(tmp_path: Path, bus: VirtualBus) -> None:
    (tmp_path / "calibration.json").write_text("{not json")
    agent = await started(tmp_path, bus)
    try:
        assert sensors(agent)[PH]["calibration"] is None
    finally:
        await agent.stop()
    assert (tmp_path / "calibration.json.unreadable").read_text() == "{not json"


class Transcript:
    """Every write and read of one chip, to check that conversations never interleave."""

    def __init__(self, target: EzoChip) -> None:
        self.events: list[tuple[str, str | int]] = []
        on_write, on_read = target.on_write, target.on_read

        def write(data: bytes) -> None:
            self.events.append(("write", data.decode("ascii", "replace")))
            on_write(data)

        def read(length: int) -> bytes:
            reply = on_read(length)
            self.events.append(("read", reply[0]))
            return reply

        target.on_write = write  # type: ignore[method-assign]
        target.on_read = read  # type: ignore[method-assign]

    def interleavings(self) -> Iterator[str]:
        """Commands written while the previous one's reply was still to be read."""
        waiting: str | None = None
        for kind, what in self.events:
            if kind == "write":
                if waiting is not None:
                    yield f"{what!r} sent before the reply to {waiting!r}"
                waiting = str(what)
            elif what != 254:  # 254: still processing, the reply is still due
                waiting = None


async def test_calibration_never_interleaves_with_readings(agent: Agent, bus: VirtualBus) -> None:
    ph = chip(bus, 0x63)
    transcript = Transcript(ph)
    errors_before = sensors(agent)[PH]["error_count"]
    for point, value, reading in (("mid", 7.0, "7.00"), ("low", 4.0, "4.00"), ("high", 10.0, "10")):
        ph.reading_override = reading
        if point == "mid":
            agent.calibration.start(PH, QUICK)
        await commit_when_stable(agent, PH, point, value)
        # Progress polled hard while commands run: served from memory, no bus access.
        for _ in range(20):
            agent.calibration.progress(PH)
    sent = [what for kind, what in transcript.events if kind == "write"]
    assert {"Cal,mid,7.00", "Cal,low,4.00", "Cal,high,10.00"} <= set(sent)
    # Sampling went on between the points (each needs three new readings).
    between = sent[sent.index("Cal,mid,7.00") : sent.index("Cal,high,10.00")]
    assert sum(1 for s in between if str(s).startswith("RT,")) >= 6
    assert list(transcript.interleavings()) == []
    assert sensors(agent)[PH]["error_count"] == errors_before


def test_stability_is_the_trailing_run_within_tolerance() -> None:
    rule = Stability(readings=3, seconds=2.0, tolerance=0.02)
    samples = [Sample(t, v, True) for t, v in ((0, 6.5), (1, 7.00), (2, 7.01), (3, 7.02))]
    progress = assess(samples, rule, now_s=3.0, max_age_s=1.0)
    assert progress.stable
    assert (progress.readings, progress.seconds, progress.spread) == (3, 2.0, 0.02)
    # Too short a span, or an old newest reading, is not stable.
    assert not assess(samples, Stability(3, 2.5, 0.02), now_s=3.0, max_age_s=1.0).stable
    assert not assess(samples, rule, now_s=10.0, max_age_s=1.0).stable
    # Relative widening for large values (conductivity standards).
    wide = Stability(readings=2, seconds=0, tolerance=5, relative=0.01)
    assert assess([Sample(0, 12800, True), Sample(1, 12900, True)], wide, 1, 1).stable
    assert not assess([Sample(0, 12700, True), Sample(1, 12900, True)], wide, 1, 1).stable
    assert not assess([], rule, 0, 1).stable


@pytest.fixture
async def client(agent: Agent, aiohttp_client: Any) -> TestClient[Any, Any]:
    return cast(TestClient[Any, Any], await aiohttp_client(create_app(agent, TOKEN)))


async def test_http_api(client: TestClient[Any, Any], agent: Agent, bus: VirtualBus) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{API_PREFIX}/sensors/{PH}/calibration"

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = await client.request(method, path, json=body, headers=auth)
        return response.status, await response.json()

    assert (await client.post(url, json=QUICK)).status == 401
    assert await call("GET", url) == (
        404,
        {"error": "not_found", "message": f"no calibration of {PH} was started"},
    )
    status, body = await call("POST", f"{API_PREFIX}/sensors/bus1-ph-99/calibration")
    assert (status, body["error"]) == (404, "not_found")
    status, body = await call("POST", url, {"readings": 0})
    assert (status, body["error"]) == (400, "bad_request")
    assert "'readings'" in body["message"]

    chip(bus, 0x63).reading_override = "7.00"
    status, body = await call("POST", url, QUICK)
    assert (status, body["state"], body["next_point"]) == (200, "active", "mid")
    for bad, problem in (
        ({}, "'point' is required"),
        ({"point": "middle"}, "'point' must be one of mid, low, high"),
        ({"point": "mid"}, "needs the solution's 'value'"),
        ({"point": "mid", "value": 15}, "'value' must be from 0 to 14 pH"),
        ({"point": "mid", "value": 7, "extra": 1}, "unknown field 'extra'"),
    ):
        status, body = await call("POST", url + "/commit", bad)
        assert (status, body["error"]) == (400, "bad_request"), bad
        assert problem in body["message"]
    status, body = await call("POST", url + "/commit", {"point": "high", "value": 10})
    assert (status, body["error"]) == (409, "out_of_order")

    await wait_for(lambda: agent.calibration.progress(PH)["stability"]["stable"])
    status, body = await call("GET", url)
    assert body["reading"]["unit"] == "pH"
    assert body["stability"]["readings"] >= 3
    status, body = await call("POST", url + "/commit", {"point": "mid", "value": 7.0})
    assert status == 200
    assert body["result"]["points"] == 1
    status, body = await call("GET", f"{API_PREFIX}/status")
    (ph,) = [s for r in body["reactors"] for s in r["sensors"] if s["id"] == PH]
    assert ph["calibration"]["points"] == 1

    status, body = await call("DELETE", url)
    assert (status, body["state"]) == (200, "cancelled")
    status, body = await call("POST", url + "/commit", {"point": "low", "value": 4})
    assert (status, body["error"]) == (409, "no_session")


async def test_readings_in_a_session_are_marked_and_never_drive_a_loop(
    agent: Agent, bus: VirtualBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe sits in a pH 4 buffer: a loop acting on that would dose the culture."""

    async def newest_ph_quality(after: int) -> str:
        await wait_for(lambda: agent.journal.stats().newest_seq > after + 20)
        readings, _ = await agent.journal.read_after(after, 10_000)
        return [r.quality for r in readings if r.sensor == PH][-1]

    def control_input_good() -> bool:
        found = agent._control_input("bus1", "ph", "ph")
        assert found is not None
        return found.good

    assert control_input_good()
    chip(bus, 0x63).reading_override = "4.01"
    agent.calibration.start(PH, QUICK)
    seq = agent.journal.stats().newest_seq
    assert await newest_ph_quality(seq) == "calibrating"
    assert sensors(agent)[PH]["quantities"][0]["quality"] == "calibrating"
    assert not control_input_good()
    # Other sensors of the reactor are not in a buffer.
    readings, _ = await agent.journal.read_after(seq, 10_000)
    assert "calibrating" not in {r.quality for r in readings if r.sensor == DO}

    agent.calibration.cancel(PH)
    seq = agent.journal.stats().newest_seq
    assert await newest_ph_quality(seq) in ("good", "uncompensated")
    assert control_input_good()

    # A session someone walked away from ends on its own.
    monkeypatch.setattr("bioreactor_edge.calibration.IDLE_S", 0.3)
    agent.calibration.start(PH, QUICK)
    assert await newest_ph_quality(agent.journal.stats().newest_seq) == "calibrating"
    await asyncio.sleep(0.4)
    assert await newest_ph_quality(agent.journal.stats().newest_seq) in ("good", "uncompensated")
    assert agent.calibration.progress(PH)["state"] == "expired"
