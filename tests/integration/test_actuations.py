"""Actuation events from the agent: parsed from pages, archived once by identity beside the
readings (never in their files or statistics), fired on the bus once after the archive
commit, and described in the reactor's device logbook; then end to end against a REAL
agent: a dose asked from Home Assistant comes back as an archived event and a logbook line."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.bioreactor.actuations import EVENT_ACTUATION, fire_actuations
from custom_components.bioreactor.api import (
    ActuationEvent,
    BioreactorProtocolError,
    Reading,
    ReadingsPage,
    parse_readings,
)
from custom_components.bioreactor.const import DOMAIN
from custom_components.bioreactor.delivery import archive
from custom_components.bioreactor.delivery.pipeline import Delivery, late_hours
from custom_components.bioreactor.logbook import describe
from tests.support.agent_process import AgentProcess, running_agent
from tests.support.light_pipeline import run_blocking

from .conftest import AGENT_ID
from .real_agent import pair

START = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)


def stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def measurement(seq: int) -> Reading:
    return Reading(
        seq, stamp(START + timedelta(seconds=seq)), "bus1", "bus1-ph-63", "ph", 7.0, "pH", "good"
    )


def actuation(seq: int, *, error: str | None = None) -> Reading:
    event = ActuationEvent("ha", "api", "dose", None, error, "nak, twice" if error else None)
    quality = "failed" if error else "good"
    return Reading(
        seq,
        stamp(START + timedelta(seconds=seq)),
        "bus1",
        "bus1-base",
        "actuation",
        2.0,
        "mL",
        quality,
        event,
    )


class ReplayingAgent:
    """Serves its whole journal whatever `after` asks, as an agent would after a lost
    acknowledgement or a restored backup: every page is a replay."""

    def __init__(self, readings: list[Reading]) -> None:
        self.journal = readings

    async def readings(self, after: int, limit: int = 10_000) -> ReadingsPage:
        newest = self.journal[-1].seq
        return ReadingsPage(AGENT_ID, "e1", newest, False, tuple(self.journal))

    async def ack(self, epoch: str, seq: int) -> int:
        return seq


def test_pages_carry_events_and_bad_events_are_refused() -> None:
    item = {
        "seq": 3,
        "time": "2026-11-24T22:00:03.000Z",
        "reactor": "bus1",
        "sensor": "bus1-base",
        "quantity": "actuation",
        "value": 2.0,
        "unit": "mL",
        "quality": "good",
        "event": {
            "requester": "loop:bus1-ph",
            "reason": "loop:bus1-ph",
            "command": "dose",
            "confirmed": None,
            "error": None,
            "error_message": None,
        },
    }
    page = {"agent_id": AGENT_ID, "epoch": "e1", "newest_seq": 3, "more": False, "readings": [item]}
    (reading,) = parse_readings(json.dumps(page).encode()).readings
    assert reading.event == ActuationEvent("loop:bus1-ph", "loop:bus1-ph", "dose", None, None, None)
    item["event"] = {"requester": "ha", "command": "dose"}
    with pytest.raises(BioreactorProtocolError, match=r"readings\[0\]\.event\.reason"):
        parse_readings(json.dumps(page).encode())


async def test_events_are_archived_and_announced_once_across_replays_and_restarts(
    tmp_path: Path,
) -> None:
    agent = ReplayingAgent(
        [measurement(1), actuation(2), measurement(3), actuation(4, error="nak")]
    )
    announced: list[tuple[str, int]] = []

    def pipeline() -> Delivery:
        return Delivery(
            agent,
            AGENT_ID,
            tmp_path / "a",
            tmp_path / "lineage.json",
            run_blocking,
            on_actuations=lambda epoch, events: announced.extend((epoch, r.seq) for r in events),
        )

    first = pipeline()
    await first.recover()
    await first.pull()
    await first.pull()  # the same page again
    restarted = pipeline()
    await restarted.recover()
    await restarted.pull()
    # The lineage file lost too: the marks are read back from the archive, events included.
    (tmp_path / "lineage.json").unlink()
    rebuilt = pipeline()
    await rebuilt.recover()
    await rebuilt.pull()
    assert announced == [("e1", 2), ("e1", 4)]

    day = tmp_path / "a" / "bus1"
    with (day / "2026-11-24.actuations.csv").open(newline="") as file:
        events = list(csv.DictReader(file))
    assert [
        (
            e["seq"],
            e["sensor"],
            e["value"],
            e["unit"],
            e["requester"],
            e["command"],
            e["quality"],
            e["error"],
            e["error_message"],
        )
        for e in events
    ] == [
        ("2", "bus1-base", "2.0", "mL", "ha", "dose", "good", "", ""),
        ("4", "bus1-base", "2.0", "mL", "ha", "dose", "failed", "nak", "nak, twice"),
    ]
    # Readings' files, exports and statistics hold measurements only.
    readings = list(archive.read_rows(day / "2026-11-24.csv"))
    assert [r.seq for r in readings] == [1, 3]
    assert archive.high_water_marks(tmp_path / "a") == {"e1": 4}
    archived = list(archive.read_rows(day / "2026-11-24.actuations.csv"))
    assert archived[1].event == actuation(4, error="nak").event
    assert late_hours((actuation(2),), START + timedelta(days=1)) == frozenset()
    assert late_hours((measurement(1),), START + timedelta(days=1)) == {"bus1/2026-11-24T22"}


def test_logbook_messages_say_who_asked_what_and_what_happened() -> None:
    base = {
        "actuator": "bus1-base",
        "value": 2.0,
        "unit": "mL",
        "requester": "ha",
        "reason": "api",
        "command": "dose",
        "confirmed": None,
        "error": None,
        "error_message": None,
    }
    assert describe(base) == "dose of 2 mL started, asked by Home Assistant"
    assert describe({**base, "command": "dose_result", "confirmed": 1.96}) == (
        "dose of 2 mL finished: 1.96 mL delivered, asked by Home Assistant"
    )
    relay = {
        **base,
        "actuator": "bus1-heater_enable",
        "value": 1.0,
        "unit": "",
        "command": "set",
        "requester": "loop:bus1-temperature",
        "reason": "loop:bus1-temperature",
    }
    assert describe(relay) == "set to 1, asked by loop bus1-temperature"
    failed = {
        **relay,
        "command": "safe",
        "value": 0.0,
        "requester": "safety",
        "reason": "lockout:input_stale",
        "error": "nak",
        "error_message": "no ACK at 0x20",
    }
    assert describe(failed) == (
        "safe state (0), asked by the agent's safety logic (lockout:input_stale); "
        "failed: no ACK at 0x20"
    )


async def logbook_lines(
    hass: HomeAssistant, ws: WebSocketGenerator, device_id: str, since: datetime
) -> list[dict[str, Any]]:
    await async_wait_recording_done(hass)
    client = await ws()
    await client.send_json(
        {
            "id": 1,
            "type": "logbook/get_events",
            "start_time": since.isoformat(),
            "device_ids": [device_id],
        }
    )
    answer = await client.receive_json()
    assert answer["success"], answer
    lines: list[dict[str, Any]] = answer["result"]
    return lines


async def test_fired_events_show_in_the_reactor_device_logbook(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator
) -> None:
    assert await async_setup_component(hass, "logbook", {})
    # Loading the integration is what lets the logbook find its platform (logbook.py).
    assert await async_setup_component(hass, DOMAIN, {})
    entry = MockConfigEntry(domain=DOMAIN, unique_id=AGENT_ID)
    entry.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, identifiers={(DOMAIN, f"{AGENT_ID}_bus1")}
    )
    since = datetime.now(UTC) - timedelta(seconds=1)
    fired = async_capture_events(hass, EVENT_ACTUATION)
    fire_actuations(hass, entry.entry_id, AGENT_ID, "e1", (actuation(2), actuation(4, error="nak")))
    await hass.async_block_till_done()
    assert [(e.data["device_id"], e.data["seq"], e.data["error"]) for e in fired] == [
        (device.id, 2, None),
        (device.id, 4, "nak"),
    ]
    lines = await logbook_lines(hass, hass_ws_client, device.id, since)
    assert [(line["name"], line["message"], line["domain"]) for line in lines] == [
        ("bus1-base", "dose of 2 mL started, asked by Home Assistant", DOMAIN),
        ("bus1-base", "dose of 2 mL started, asked by Home Assistant; failed: nak, twice", DOMAIN),
    ]


# -- a real agent ---------------------------------------------------------------


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    with running_agent(
        tmp_path / "agent", rate_hz=5.0, sensors=8, extra_args=("--control",)
    ) as process:
        yield process


@pytest.mark.usefixtures("socket_enabled")
async def test_a_dose_from_home_assistant_is_archived_and_in_the_logbook(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator, agent: AgentProcess
) -> None:
    assert await async_setup_component(hass, "logbook", {})
    since = datetime.now(UTC) - timedelta(seconds=1)
    entry, _ = await pair(hass, agent)
    reactor = "simulated_bench_1_reactor_1"
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": f"select.{reactor}_ph_control", "option": "manual"},
        blocking=True,
    )
    await hass.services.async_call(
        DOMAIN,
        "dose",
        {"entity_id": f"button.{reactor}_prime_base", "volume_ml": 0.5},
        blocking=True,
    )
    coordinator = entry.runtime_data
    day_files = coordinator.delivery.agent_dir / "bus1"
    doses: list[dict[str, str]] = []
    async with asyncio.timeout(30):
        while not any(d["command"] == "dose_result" for d in doses):
            await coordinator.delivery.drain(20)
            doses = []
            for path in sorted(day_files.glob("*.actuations.csv")):
                with path.open(newline="") as file:
                    doses += [
                        r
                        for r in csv.DictReader(file)
                        if r["sensor"] == "bus1-base" and r["requester"] == "ha"
                    ]
            await asyncio.sleep(0.3)
    dose = next(d for d in doses if d["command"] == "dose")
    assert (dose["value"], dose["unit"], dose["quality"], dose["reason"]) == (
        "0.5",
        "mL",
        "good",
        "api",
    )
    result = next(d for d in doses if d["command"] == "dose_result")
    assert float(result["confirmed"]) == pytest.approx(0.5, abs=0.05)
    # The agent's start put the pump in its safe state: journaled and archived too.
    started = [
        (r.event.requester, r.event.reason, r.event.command)
        for path in day_files.glob("*.actuations.csv")
        for r in archive.read_rows(path)
        if r.sensor == "bus1-base" and r.event is not None
    ]
    assert ("safety", "start", "safe") in started

    device = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, f"{entry.unique_id}_bus1"), entry.entry_id
    )
    assert device is not None
    lines = await logbook_lines(hass, hass_ws_client, device.id, since)
    messages = [(line["name"], line["message"]) for line in lines]
    assert ("bus1-base", "dose of 0.5 mL started, asked by Home Assistant") in messages
    assert any(
        name == "bus1-base" and message.startswith("dose of 0.5 mL finished: 0.5")
        for name, message in messages
    ), messages
    assert (
        sum(1 for _, m in messages if m == "dose of 0.5 mL started, asked by Home Assistant") == 1
    )
