"""Guided calibration in Home Assistant: the options flow (one step per point, in the
agent's order, committing only when the agent says stable, the read-back shown), the
`bioreactor.calibrate` action with translated refusals, the overdue-calibration repair
issue, and the whole path against a real agent on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.api import (
    BioreactorConnectionError,
    BioreactorRequestError,
    CalibrationSession,
    parse_calibration_session,
)
from custom_components.bioreactor.calibration import CONF_CALIBRATION_INTERVAL
from custom_components.bioreactor.const import DOMAIN
from tests.support.agent_process import AgentProcess, running_agent

from .conftest import AGENT_ID
from .real_agent import pair
from .test_init import poll, setup
from .test_repairs import assert_translated

PH = "bus1-ph-63"
POINTS = {"ph": ["mid", "low", "high"], "do": ["atmospheric", "zero"], "ec": ["dry", "low", "high"]}
DEFAULTS = {"ph": {"mid": 7.0, "low": 4.0, "high": 10.0}, "ec": {"low": 12880.0, "high": 80000.0}}


class FakeAgentCalibration:
    """The agent's calibration routes as the mocked client answers them: points in order,
    commits refused until `stable`, `Cal,?` counted, the record put into /status."""

    def __init__(self, client: AsyncMock, status_payload: dict[str, Any]) -> None:
        self.status_payload = status_payload
        self.session: dict[str, Any] | None = None
        self.stable = False
        self.commits: list[tuple[str, float | None]] = []
        client.start_calibration.side_effect = self.start
        client.calibration.side_effect = self.progress
        client.commit_calibration.side_effect = self.commit
        client.cancel_calibration.side_effect = self.cancel

    def _sensor(self, sensor_id: str) -> dict[str, Any]:
        return next(
            s for r in self.status_payload["reactors"] for s in r["sensors"] if s["id"] == sensor_id
        )

    def _answer(self) -> CalibrationSession:
        assert self.session is not None
        s = self.session
        done = len(s["committed"])
        s["next_point"] = (
            s["points"][done] if s["state"] == "active" and done < len(s["points"]) else None
        )
        s["stability"] = {
            "stable": self.stable,
            "readings": 5 if self.stable else 2,
            "readings_needed": 5,
            "seconds": 20.0 if self.stable else 4.0,
            "seconds_needed": 20.0,
            "spread": 0.01,
            "tolerance": 0.02,
            "fresh": True,
        }
        return parse_calibration_session(s)

    async def start(self, sensor_id: str, settings: Any = None) -> CalibrationSession:
        kind = self._sensor(sensor_id)["kind"]
        self.stable = False
        self.session = {
            "sensor": sensor_id,
            "kind": kind,
            "state": "active",
            "started": dt_util.utcnow().isoformat(),
            "points": POINTS[kind],
            "point_defaults": DEFAULTS.get(kind, {}),
            "committed": [],
            "reading": {
                "quantity": "ph",
                "unit": "pH",
                "value": 7.02,
                "time": "2026-11-26T10:00:00Z",
                "compensated": True,
            },
            "result": None,
        }
        return self._answer()

    async def progress(self, sensor_id: str) -> CalibrationSession:
        if self.session is None or self.session["sensor"] != sensor_id:
            raise BioreactorRequestError(
                404, "not_found", f"no calibration of {sensor_id} was started"
            )
        return self._answer()

    async def commit(
        self, sensor_id: str, point: str, value: float | None = None
    ) -> CalibrationSession:
        if self.session is None or self.session["state"] != "active":
            raise BioreactorRequestError(409, "no_session", "start one")
        expected = self._answer().next_point
        if point != expected:
            raise BioreactorRequestError(409, "out_of_order", f"next is {expected}")
        if not self.stable:
            raise BioreactorRequestError(409, "not_stable", "2 of 5 readings within 0.02 pH")
        self.commits.append((point, value))
        now = dt_util.utcnow().isoformat()
        self.session["committed"].append(
            {"point": point, "value": value, "reading": 7.0, "time": now}
        )
        held = len([c for c in self.session["committed"] if c["point"] != "dry"])
        slope = (
            {"acid_pct": 99.7, "base_pct": 100.3, "offset_mv": -0.89}
            if self.session["kind"] == "ph"
            else None
        )
        record = {"date": now, "points": held, "slope": slope}
        self.session["result"] = record
        self._sensor(sensor_id)["calibration"] = record
        if len(self.session["committed"]) == len(self.session["points"]):
            self.session["state"] = "complete"
        self.stable = False  # the next point needs its own stable readings
        return self._answer()

    async def cancel(self, sensor_id: str) -> CalibrationSession:
        assert self.session is not None
        if self.session["state"] == "active":
            self.session["state"] = "cancelled"
        return self._answer()


@pytest.fixture
def agent_calibration(
    mock_client: AsyncMock, status_payload: dict[str, Any]
) -> FakeAgentCalibration:
    for sensor in (s for r in status_payload["reactors"] for s in r["sensors"]):
        sensor["calibration"] = None
    return FakeAgentCalibration(mock_client, status_payload)


async def open_calibration(hass: HomeAssistant, entry: MockConfigEntry, sensor: str) -> Any:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["calibrate", "settings"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "calibrate"}
    )
    assert result["step_id"] == "calibrate"
    return await hass.config_entries.options.async_configure(result["flow_id"], {"sensor": sensor})


async def test_flow_walks_ph_in_order(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, agent_calibration: FakeAgentCalibration
) -> None:
    await setup(hass, mock_config_entry)
    result = await open_calibration(hass, mock_config_entry, PH)
    flow = result["flow_id"]
    # The first point only; its instructions and the live reading are in the step.
    assert (result["type"], result["step_id"]) == (FlowResultType.FORM, "ph_mid")
    assert result["description_placeholders"]["reading"] == "7.02 pH"
    assert result["description_placeholders"]["readings"] == "2"
    value_field = next(iter(result["data_schema"].schema))
    assert (str(value_field), value_field.default()) == ("value", 7.0)

    # Not stable yet: the agent refuses, the step stays with a translated error.
    result = await hass.config_entries.options.async_configure(flow, {"value": 7.0})
    assert (result["step_id"], result["errors"]) == ("ph_mid", {"base": "not_stable"})
    assert agent_calibration.commits == []

    for point, value, following in (("mid", 7.0, "ph_low"), ("low", 4.01, "ph_high")):
        agent_calibration.stable = True
        result = await hass.config_entries.options.async_configure(flow, {"value": value})
        # Committed: the only way on is the next point in order (or finishing).
        assert result["type"] is FlowResultType.MENU
        assert result["menu_options"] == [following, "calibrate_finish"]
        result = await hass.config_entries.options.async_configure(
            flow, {"next_step_id": following}
        )
        assert result["step_id"] == following
        assert agent_calibration.commits[-1] == (point, value)

    agent_calibration.stable = True
    result = await hass.config_entries.options.async_configure(flow, {"value": 10.0})
    assert (result["type"], result["step_id"]) == (FlowResultType.FORM, "calibrate_result")
    placeholders = result["description_placeholders"]
    assert placeholders["points"] == "3"
    assert placeholders["slope"] == "acid 99.7 %, base 100.3 %, offset -0.89 mV"
    assert placeholders["committed"] == "mid, low, high"
    assert agent_calibration.commits == [("mid", 7.0), ("low", 4.01), ("high", 10.0)]
    result = await hass.config_entries.options.async_configure(flow, {})
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_flow_refusals_and_early_finish(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, agent_calibration: FakeAgentCalibration
) -> None:
    await setup(hass, mock_config_entry)
    result = await open_calibration(hass, mock_config_entry, "bus1-do-61")
    flow = result["flow_id"]
    assert result["step_id"] == "do_atmospheric"
    assert list(result["data_schema"].schema) == []  # the air needs no value
    agent_calibration.stable = True
    result = await hass.config_entries.options.async_configure(flow, {})
    assert result["menu_options"] == ["do_zero", "calibrate_finish"]
    result = await hass.config_entries.options.async_configure(
        flow, {"next_step_id": "calibrate_finish"}
    )
    assert result["step_id"] == "calibrate_result"
    assert result["description_placeholders"]["points"] == "1"
    assert result["description_placeholders"]["slope"] == "—"
    assert agent_calibration.session is not None
    assert agent_calibration.session["state"] == "cancelled"

    # A session restarted elsewhere ends this flow instead of committing out of order.
    result = await open_calibration(hass, mock_config_entry, PH)
    flow = result["flow_id"]
    agent_calibration.stable = True
    await hass.config_entries.options.async_configure(flow, {"value": 7.0})
    await agent_calibration.start(PH)
    result = await hass.config_entries.options.async_configure(flow, {"next_step_id": "ph_low"})
    assert (result["type"], result["reason"]) == (FlowResultType.ABORT, "session_ended")


async def test_flow_without_calibratable_sensors(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
    agent_calibration: FakeAgentCalibration,
) -> None:
    for sensor in (s for r in status_payload["reactors"] for s in r["sensors"]):
        if sensor["kind"] in ("ph", "do", "ec"):
            sensor["status"] = "offline"
    await setup(hass, mock_config_entry)
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "calibrate"}
    )
    assert (result["type"], result["reason"]) == (FlowResultType.ABORT, "no_calibratable_sensor")


async def test_flow_with_the_agent_unreachable(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, mock_client: AsyncMock
) -> None:
    mock_client.status.side_effect = BioreactorConnectionError("no route to host")
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "calibrate"}
    )
    assert (result["type"], result["reason"]) == (FlowResultType.ABORT, "cannot_connect")


async def test_settings_keep_the_interval(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, agent_calibration: FakeAgentCalibration
) -> None:
    await setup(hass, mock_config_entry)
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "settings"}
    )
    field = next(iter(result["data_schema"].schema))
    assert field.default() == 30
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_CALIBRATION_INTERVAL: 14}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert mock_config_entry.options == {CONF_CALIBRATION_INTERVAL: 14}


def ph_entity(hass: HomeAssistant) -> str:
    entity_id = er.async_get(hass).async_get_entity_id("sensor", DOMAIN, f"{AGENT_ID}_{PH}_ph")
    assert entity_id is not None
    return entity_id


async def call_calibrate(hass: HomeAssistant, **data: Any) -> Any:
    return await hass.services.async_call(
        DOMAIN, "calibrate", data, blocking=True, return_response=True
    )


async def test_action_commits_and_refuses_with_translations(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, agent_calibration: FakeAgentCalibration
) -> None:
    await setup(hass, mock_config_entry)
    entity = ph_entity(hass)

    # Out of order: low before mid.
    with pytest.raises(ServiceValidationError) as err:
        await call_calibrate(hass, entity_id=entity, point="low", value=4.0)
    assert err.value.translation_key == "calibration_out_of_order"
    assert err.value.translation_placeholders == {
        "sensor": PH,
        "point": "low",
        "message": "next is mid",
    }
    # The first call started the session; the reading is not stable yet.
    with pytest.raises(ServiceValidationError) as err:
        await call_calibrate(hass, entity_id=entity, point="mid", value=7.0)
    assert err.value.translation_key == "calibration_not_stable"

    agent_calibration.stable = True
    response = await call_calibrate(hass, entity_id=entity, point="mid", value=7.0)
    assert response == {
        "sensor": PH,
        "committed": ["mid"],
        "next_point": "low",
        "points": 1,
        "slope": {"acid_pct": 99.7, "base_pct": 100.3, "offset_mv": -0.89},
    }
    assert agent_calibration.commits == [("mid", 7.0)]

    for bad in ("sensor.nothing_here", entity.replace("_ph", "_orp")):
        with pytest.raises(ServiceValidationError) as err:
            await call_calibrate(hass, entity_id=bad, point="mid", value=7.0)
        assert err.value.translation_key == "calibration_unknown_sensor"


async def test_repair_issue_when_calibration_is_overdue(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
    agent_calibration: FakeAgentCalibration,
    issue_registry: ir.IssueRegistry,
    freezer: FrozenDateTimeFactory,
) -> None:
    issue_id = f"{AGENT_ID}_calibration_overdue_{PH}"
    ph = next(s for r in status_payload["reactors"] for s in r["sensors"] if s["id"] == PH)
    ph["calibration"] = {
        "date": (dt_util.utcnow() - timedelta(days=29)).isoformat(),
        "points": 3,
        "slope": {"acid_pct": 99.7, "base_pct": 100.3, "offset_mv": None},
    }
    await setup(hass, mock_config_entry)
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None

    await poll(hass, freezer, 2 * 86400)  # 31 days old now
    entry = issue_registry.async_get_issue(DOMAIN, issue_id)
    assert entry is not None
    assert_translated(entry)
    assert entry.translation_placeholders is not None
    assert entry.translation_placeholders["days"] == "31"
    assert entry.translation_placeholders["interval"] == "30"

    # A longer interval in the options clears it at the next poll ...
    hass.config_entries.async_update_entry(
        mock_config_entry, options={CONF_CALIBRATION_INTERVAL: 60}
    )
    await poll(hass, freezer, 10)
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None
    # ... and so does a recalibration.
    hass.config_entries.async_update_entry(mock_config_entry, options={})
    await poll(hass, freezer, 10)
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is not None
    ph["calibration"] = {**ph["calibration"], "date": dt_util.utcnow().isoformat()}
    await poll(hass, freezer, 10)
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None


# -- the real agent ------------------------------------------------------------------


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    with running_agent(tmp_path / "agent", rate_hz=10.0, sensors=6) as process:
        yield process


@pytest.mark.usefixtures("socket_enabled")
async def test_real_agent_calibration(hass: HomeAssistant, agent: AgentProcess) -> None:
    entry, info = await pair(hass, agent)
    entity = er.async_get(hass).async_get_entity_id("sensor", DOMAIN, f"{info['agent_id']}_{PH}_ph")
    assert entity is not None
    client = entry.runtime_data.client

    # The agent enforces the order: low before mid is refused, translated.
    with pytest.raises(ServiceValidationError) as err:
        await call_calibrate(hass, entity_id=entity, point="low", value=4.0)
    assert err.value.translation_key == "calibration_out_of_order"
    assert "mid -> low -> high" in err.value.translation_placeholders["message"]

    # A lenient stability rule for the simulated culture's slowly drifting pH.
    session = await client.start_calibration(PH, {"readings": 3, "seconds": 0.2, "tolerance": 0.5})
    assert (session.next_point, session.points) == ("mid", ("mid", "low", "high"))
    async with asyncio.timeout(30):
        while not session.stable:
            await asyncio.sleep(0.2)
            session = await client.calibration(PH)
    assert session.value is not None
    response = await call_calibrate(hass, entity_id=entity, point="mid", value=7.0)
    assert response["committed"] == ["mid"]
    assert response["points"] == 1
    assert response["slope"]["acid_pct"] == pytest.approx(100.0)

    await entry.runtime_data.async_refresh()
    ph = next(s for r in entry.runtime_data.data.reactors for s in r.sensors if s.id == PH)
    assert ph.calibration is not None
    assert ph.calibration.points == 1
    assert abs(dt_util.utcnow() - ph.calibration.date) < timedelta(minutes=1)
    assert await hass.config_entries.async_unload(entry.entry_id)
