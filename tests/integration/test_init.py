"""Setup, entities, availability, dynamic devices, removal, diagnostics, repairs."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.bioreactor.api import (
    BioreactorAuthenticationError,
    BioreactorConnectionError,
)
from custom_components.bioreactor.const import DOMAIN
from custom_components.bioreactor.diagnostics import async_get_config_entry_diagnostics

from .conftest import AGENT_ID, TOKEN

PH = "sensor.reactor_1_ph"
pytestmark = pytest.mark.usefixtures("mock_client")


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)


async def poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory, seconds: float) -> None:
    freezer.tick(timedelta(seconds=seconds))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities_snapshot(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    await setup(hass, mock_config_entry)
    entries = er.async_entries_for_config_entry(entity_registry, mock_config_entry.entry_id)
    # The stable part of every entity (registry ids and times change per run).
    projection = [
        {
            "entity_id": e.entity_id,
            "unique_id": e.unique_id,
            "translation_key": e.translation_key,
            "device_class": e.original_device_class,
            "unit": e.unit_of_measurement,
            "category": e.entity_category,
            "disabled_by": e.disabled_by,
            "capabilities": e.capabilities,
            "state_attributes": {
                k: v
                for k, v in hass.states.get(e.entity_id).attributes.items()
                if k != "friendly_name"
            },
        }
        for e in sorted(entries, key=lambda e: e.entity_id)
    ]
    assert projection == snapshot
    state = hass.states.get(PH)
    assert state is not None
    assert 5.0 < float(state.state) < 8.0
    assert state.attributes["device_class"] == "ph"


@pytest.mark.usefixtures("mock_client")
async def test_devices_per_reactor_via_agent(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    await setup(hass, mock_config_entry)
    agent = device_registry.async_get_device_by_identifier(
        (DOMAIN, AGENT_ID), mock_config_entry.entry_id
    )
    reactor = device_registry.async_get_device_by_identifier(
        (DOMAIN, f"{AGENT_ID}_bus1"), mock_config_entry.entry_id
    )
    assert agent is not None
    assert reactor is not None
    assert reactor.via_device_id == agent.id
    assert (reactor.manufacturer, reactor.name, reactor.sw_version) == (
        "Bioreactor",
        "Reactor 1",
        "0.1.0",
    )


async def test_agent_down_and_back(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    mock_client: AsyncMock,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await setup(hass, mock_config_entry)
    connectivity = "binary_sensor.simulated_bench_1_agent_connection"
    assert hass.states.get(connectivity).state == STATE_ON
    working = mock_client.status.side_effect

    mock_client.status.side_effect = BioreactorConnectionError("gone")
    await poll(hass, freezer, 10)
    assert hass.states.get(PH).state == STATE_UNAVAILABLE
    assert hass.states.get(connectivity).state == STATE_OFF
    # Retries back off: 20 s after the failure there is no new attempt.
    calls = mock_client.status.await_count
    await poll(hass, freezer, 15)
    assert mock_client.status.await_count == calls
    await poll(hass, freezer, 10)
    assert mock_client.status.await_count == calls + 1
    failures = [r for r in caplog.records if "Cannot reach" in r.getMessage()]
    assert len([r for r in failures if r.levelno >= logging.WARNING]) == 1

    mock_client.status.side_effect = working
    await poll(hass, freezer, 80)
    assert hass.states.get(connectivity).state == STATE_ON
    assert float(hass.states.get(PH).state) > 0
    assert mock_config_entry.state is ConfigEntryState.LOADED


async def test_token_refused_starts_reauth(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    mock_client: AsyncMock,
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    mock_client.status.side_effect = BioreactorAuthenticationError("no")
    await poll(hass, freezer, 10)
    flows = hass.config_entries.flow.async_progress()
    assert [f["context"]["source"] for f in flows] == ["reauth"]


async def test_offline_sensor_unavailable_others_update(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    mock_client: AsyncMock,
    sensors_of: Callable[[], list[dict[str, Any]]],
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    ph = next(s for s in sensors_of() if s["kind"] == "ph")
    ph["status"] = "offline"
    temperature = next(s for s in sensors_of() if s["kind"] == "rtd")
    temperature["quantities"][0]["value"] = 31.5
    await poll(hass, freezer, 10)
    assert hass.states.get(PH).state == STATE_UNAVAILABLE
    assert hass.states.get("sensor.reactor_1_temperature_2").state == "31.5"
    assert hass.states.get("sensor.reactor_1_status_ph_0x63").state == "offline"


async def test_small_changes_are_not_recorded_until_the_heartbeat(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sensors_of: Callable[[], list[dict[str, Any]]],
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    ph = next(s for s in sensors_of() if s["kind"] == "ph")["quantities"][0]
    ph["value"] = 6.9
    await poll(hass, freezer, 10)
    first = hass.states.get(PH)
    assert first.state == "6.9"

    ph["value"] = 6.904  # below the 0.01 pH resolution: no new state
    await poll(hass, freezer, 10)
    assert hass.states.get(PH).last_updated == first.last_updated

    ph["value"] = 6.95  # beyond it: written at once
    await poll(hass, freezer, 10)
    assert hass.states.get(PH).state == "6.95"

    ph["value"] = 6.952
    for _ in range(31):  # the heartbeat writes it within 5 minutes anyway
        await poll(hass, freezer, 10)
    assert hass.states.get(PH).state == "6.952"


async def test_new_sensor_appears_without_reload(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    reactor = copy.deepcopy(status_payload["reactors"][0])
    reactor["id"], reactor["name"] = "bus2", "Reactor 2"
    reactor["sensors"] = [
        {**s, "id": s["id"].replace("bus1", "bus2")}
        for s in reactor["sensors"]
        if s["kind"] == "orp"
    ]
    status_payload["reactors"].append(reactor)
    await poll(hass, freezer, 10)
    state = hass.states.get("sensor.reactor_2_orp")
    assert state is not None
    assert state.attributes["unit_of_measurement"] == "mV"


async def test_device_removal_only_for_offline_reactors(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    mock_client: AsyncMock,
    sensors_of: Callable[[], list[dict[str, Any]]],
    device_registry: dr.DeviceRegistry,
    hass_ws_client: Any,
    freezer: FrozenDateTimeFactory,
) -> None:
    assert await async_setup_component(hass, "config", {})
    await setup(hass, mock_config_entry)
    reactor = device_registry.async_get_device_by_identifier(
        (DOMAIN, f"{AGENT_ID}_bus1"), mock_config_entry.entry_id
    )
    agent = device_registry.async_get_device_by_identifier(
        (DOMAIN, AGENT_ID), mock_config_entry.entry_id
    )
    client = await hass_ws_client(hass)

    async def remove(device_id: str) -> bool:
        await client.send_json_auto_id(
            {
                "type": "config/device_registry/remove_config_entry",
                "config_entry_id": mock_config_entry.entry_id,
                "device_id": device_id,
            }
        )
        return bool((await client.receive_json())["success"])

    assert not await remove(reactor.id)  # its sensors are online
    assert not await remove(agent.id)
    for sensor in sensors_of():
        sensor["status"] = "offline"
    await poll(hass, freezer, 10)
    assert await remove(reactor.id)
    forgotten = {call.args[0] for call in mock_client.forget_sensor.await_args_list}
    assert forgotten == {s["id"] for s in sensors_of()}


async def test_diagnostics_redact_the_token(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, mock_client: AsyncMock
) -> None:
    await setup(hass, mock_config_entry)
    diagnostics = await async_get_config_entry_diagnostics(hass, mock_config_entry)
    assert diagnostics["entry"]["data"]["token"] == "**REDACTED**"
    assert TOKEN not in repr(diagnostics)
    assert diagnostics["status"]["info"]["agent_id"] == AGENT_ID
    assert diagnostics["delivery"]["epoch"] == "epoch1"


async def test_repairs_raised_and_cleared(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
    sensors_of: Callable[[], list[dict[str, Any]]],
    issue_registry: ir.IssueRegistry,
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    assert not issue_registry.issues

    status_payload["journal"]["dropped"] = 12
    sensor = sensors_of()[0]
    sensor["status"] = "error"
    await poll(hass, freezer, 10)
    assert issue_registry.async_get_issue(DOMAIN, f"{AGENT_ID}_journal_dropping")
    assert not issue_registry.async_get_issue(DOMAIN, f"{AGENT_ID}_sensor_error_{sensor['id']}")
    for _ in range(61):
        await poll(hass, freezer, 10)
    assert issue_registry.async_get_issue(DOMAIN, f"{AGENT_ID}_sensor_error_{sensor['id']}")

    status_payload["journal"]["dropped"] = 0
    sensor["status"] = "online"
    await poll(hass, freezer, 10)
    assert not issue_registry.issues


async def test_unload(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, mock_client: AsyncMock
) -> None:
    await setup(hass, mock_config_entry)
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.NOT_LOADED
    assert hass.states.get(PH).state == STATE_UNAVAILABLE
