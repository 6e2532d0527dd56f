"""Repair issues from the agent's status: readings dropped (by cause), a new journal epoch
after lost readings, an unsynchronized clock, a failing sensor, another agent at the
configured address, a changed certificate, a failing output, a dosing alarm, stalled
control. Every issue has a translation that uses exactly its placeholders."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.api import (
    BioreactorCertificateError,
    BioreactorWrongAgentError,
)
from custom_components.bioreactor.const import DOMAIN

from .conftest import AGENT_ID
from .test_init import poll, setup

pytestmark = pytest.mark.usefixtures("mock_client")
INTEGRATION = Path(__file__).parents[2] / "custom_components/bioreactor"
TRANSLATIONS = json.loads((INTEGRATION / "translations/en.json").read_text())


def issue(registry: ir.IssueRegistry, name: str) -> ir.IssueEntry | None:
    return registry.async_get_issue(DOMAIN, f"{AGENT_ID}_{name}")


def assert_translated(entry: ir.IssueEntry) -> None:
    """The issue's translation exists and names no placeholder the issue lacks, and the
    issue carries none its translation does not show."""
    texts = TRANSLATIONS["issues"][entry.translation_key]
    used = set(re.findall(r"{(\w+)}", texts["title"] + texts["description"]))
    assert used == set(entry.translation_placeholders or {}), entry.translation_key


def raised(registry: ir.IssueRegistry, name: str) -> ir.IssueEntry:
    """The issue `name`, which must exist, its translation checked (assert_translated)."""
    entry = issue(registry, name)
    assert entry is not None, name
    assert_translated(entry)
    return entry


async def test_dropped_readings_name_their_causes(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
    issue_registry: ir.IssueRegistry,
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    assert issue(issue_registry, "journal_dropping") is None

    status_payload["journal"]["dropped"] = 15
    status_payload["journal"]["dropped_by_cause"] = {"budget": 3, "disk_full": 12, "shutdown": 0}
    await poll(hass, freezer, 10)
    dropping = raised(issue_registry, "journal_dropping")
    assert dropping.translation_placeholders == {
        "agent": "Simulated bench 1",
        "dropped": "15",
        "causes": "disk_full 12, budget 3",
    }

    # An agent that reports only the total (older versions).
    del status_payload["journal"]["dropped_by_cause"]
    await poll(hass, freezer, 10)
    dropping = raised(issue_registry, "journal_dropping")
    assert dropping.translation_placeholders is not None
    assert dropping.translation_placeholders["causes"] == "?"


async def test_new_epoch_after_lost_readings_stays_until_the_next_epoch(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
    issue_registry: ir.IssueRegistry,
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    journal = status_payload["journal"]
    journal.update(epoch="b2", dropped=7, dropped_by_cause={"recovery": 7})
    status_payload["problems"] = ["journal_new_epoch"]
    await poll(hass, freezer, 10)
    new_epoch = raised(issue_registry, "journal_new_epoch_b2")
    assert new_epoch.is_persistent
    assert new_epoch.translation_key == "journal_new_epoch"
    assert new_epoch.translation_placeholders == {
        "agent": "Simulated bench 1",
        "lost": "7",
        "epoch": "b2",
    }

    # The loss stays visible after the agent stops reporting it ...
    status_payload["problems"] = []
    await poll(hass, freezer, 10)
    assert issue(issue_registry, "journal_new_epoch_b2") is not None
    # ... until the agent has moved on to another epoch.
    journal["epoch"] = "c3"
    await poll(hass, freezer, 10)
    assert issue(issue_registry, "journal_new_epoch_b2") is None
    assert issue(issue_registry, "journal_new_epoch_c3") is None


@pytest.mark.parametrize("problem", ["clock_unsynced", "control_stalled"])
async def test_agent_wide_problems_are_issues_while_reported(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
    issue_registry: ir.IssueRegistry,
    freezer: FrozenDateTimeFactory,
    problem: str,
) -> None:
    await setup(hass, mock_config_entry)
    assert issue(issue_registry, problem) is None
    status_payload["problems"] = [problem, "uncompensated:bus1-ph-63"]
    await poll(hass, freezer, 10)
    raised(issue_registry, problem)
    status_payload["problems"] = []
    await poll(hass, freezer, 10)
    assert issue(issue_registry, problem) is None


async def test_failing_output_and_dosing_alarm_are_issues_while_reported(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
    issue_registry: ir.IssueRegistry,
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    status_payload["problems"] = [
        "actuator_error:bus1-heater-relay",
        "dosing_alarm:bus1-ph",
        "loop_lockout:bus1-ph",
    ]
    await poll(hass, freezer, 10)
    output = raised(issue_registry, "actuator_error_bus1-heater-relay")
    assert output.translation_placeholders == {
        "agent": "Simulated bench 1",
        "subject": "bus1-heater-relay",
    }
    raised(issue_registry, "dosing_alarm_bus1-ph")
    # A lockout alone is the loop doing its job (stale input): no issue.
    assert not [i for i in issue_registry.issues.values() if "loop_lockout" in i.issue_id]
    status_payload["problems"] = ["dosing_alarm:bus1-ph"]
    await poll(hass, freezer, 10)
    assert issue(issue_registry, "actuator_error_bus1-heater-relay") is None
    assert issue(issue_registry, "dosing_alarm_bus1-ph") is not None
    status_payload["problems"] = []
    await poll(hass, freezer, 10)
    assert issue(issue_registry, "dosing_alarm_bus1-ph") is None


async def test_failing_sensor_issue_says_why(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sensors_of: Callable[[], list[dict[str, Any]]],
    issue_registry: ir.IssueRegistry,
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    sensor = sensors_of()[0]
    sensor.update(status="error", last_error="nak", error_message="no answer at 0x44")
    for _ in range(61):
        await poll(hass, freezer, 10)
    failing = raised(issue_registry, f"sensor_error_{sensor['id']}")
    assert failing.translation_placeholders is not None
    assert failing.translation_placeholders["error"] == "no answer at 0x44"

    # An older agent gives only the short code.
    del sensor["error_message"]
    await poll(hass, freezer, 10)
    failing = raised(issue_registry, f"sensor_error_{sensor['id']}")
    assert failing.translation_placeholders is not None
    assert failing.translation_placeholders["error"] == "nak"

    # Starting is not failing.
    sensor["status"] = "starting"
    await poll(hass, freezer, 10)
    assert issue(issue_registry, f"sensor_error_{sensor['id']}") is None


async def test_another_agent_at_the_address(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    mock_client: AsyncMock,
    issue_registry: ir.IssueRegistry,
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    mock_client.host = "192.0.2.10"
    working = mock_client.status.side_effect
    mock_client.status.side_effect = BioreactorWrongAgentError(AGENT_ID, "0000000000000000")
    await poll(hass, freezer, 10)
    wrong = raised(issue_registry, "wrong_agent")
    assert wrong.translation_placeholders == {
        "agent": "Simulated bench 1",
        "host": "192.0.2.10",
        "other": "0000000000000000",
    }
    assert mock_config_entry.state is ConfigEntryState.LOADED

    mock_client.status.side_effect = working
    await poll(hass, freezer, 30)
    assert issue(issue_registry, "wrong_agent") is None


async def test_changed_certificate_is_a_repair_not_a_reauth(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    mock_client: AsyncMock,
    issue_registry: ir.IssueRegistry,
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    mock_client.host = "192.0.2.10"
    working = mock_client.status.side_effect
    pinned, presented = "AA:" * 31 + "AA", "BB:" * 31 + "BB"
    mock_client.status.side_effect = BioreactorCertificateError(pinned, presented)
    await poll(hass, freezer, 10)
    changed = raised(issue_registry, "certificate_changed")
    assert changed.translation_placeholders == {
        "agent": "Simulated bench 1",
        "host": "192.0.2.10",
        "pinned": pinned,
        "presented": presented,
    }
    assert hass.config_entries.flow.async_progress() == []
    assert mock_config_entry.state is ConfigEntryState.LOADED

    mock_client.status.side_effect = working
    await poll(hass, freezer, 30)
    assert issue(issue_registry, "certificate_changed") is None


def test_every_issue_translation_is_used() -> None:
    """No translated issue without code that raises it (and the reverse is checked above)."""
    source = "".join(p.read_text() for p in INTEGRATION.glob("*.py"))
    for key in TRANSLATIONS["issues"]:
        assert f'"{key}' in source, key
