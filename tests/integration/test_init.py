"""Setup, devices and their names, availability, dynamic devices, removal, repairs, brand."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from PIL import Image
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from syrupy.assertion import SnapshotAssertion

import custom_components.bioreactor
from custom_components.bioreactor.api import (
    BioreactorAuthenticationError,
    BioreactorClient,
    BioreactorConnectionError,
    ReadingsPage,
    parse_info,
    parse_status,
)
from custom_components.bioreactor.const import DOMAIN

from .conftest import AGENT_ID, ENTRY_DATA

BRAND = Path(custom_components.bioreactor.__file__).parent / "brand"

PH = "sensor.simulated_bench_1_reactor_1_ph"
pytestmark = pytest.mark.usefixtures("mock_client")


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)


async def poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory, seconds: float) -> None:
    freezer.tick(timedelta(seconds=seconds))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)


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
        "Simulated bench 1 Reactor 1",
        "0.1.0",
    )


async def test_a_reactor_with_a_configured_room_is_suggested_that_area(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
    device_registry: dr.DeviceRegistry,
    area_registry: ar.AreaRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    status_payload["reactors"][0]["area"] = "Lab 2.14"
    await setup(hass, mock_config_entry)
    reactor = device_registry.async_get_device_by_identifier(
        (DOMAIN, f"{AGENT_ID}_bus1"), mock_config_entry.entry_id
    )
    assert reactor is not None and reactor.area_id is not None
    area = area_registry.async_get_area(reactor.area_id)
    assert area is not None and area.name == "Lab 2.14"
    # Home Assistant names the entities with the room in front.
    assert (
        entity_registry.async_get_entity_id("sensor", DOMAIN, f"{AGENT_ID}_bus1-ph-63_ph")
        == "sensor.lab_2_14_simulated_bench_1_reactor_1_ph"
    )


async def test_devices(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    await setup(hass, mock_config_entry)
    devices = dr.async_entries_for_config_entry(device_registry, mock_config_entry.entry_id)
    assert sorted(devices, key=lambda d: d.name or "") == snapshot


OTHER_AGENT_ID = "5b0e3c7a9d2f4e61"


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
@pytest.mark.parametrize(
    ("names", "expected"),
    [
        # simulate's defaults, and two boards left at the same default host name.
        (("Simulated bench 1", "Simulated bench 2"), ("Simulated bench 1", "Simulated bench 2")),
        (("beaglebone", "beaglebone"), ("beaglebone ef785e", "beaglebone 5b0e3c")),
    ],
)
async def test_two_agents_never_collide_whatever_the_setup_order(
    hass: HomeAssistant,
    status_payload: dict[str, Any],
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
    order: tuple[int, int],
    names: tuple[str, str],
    expected: tuple[str, str],
) -> None:
    """Both agents keep the default reactor ("Reactor 1" on bus 1)."""
    agent_ids = (AGENT_ID, OTHER_AGENT_ID)
    hosts = ("192.0.2.10", "192.0.2.11")
    payloads = {
        host: {**copy.deepcopy(status_payload), "agent_id": agent_id, "name": name}
        for host, agent_id, name in zip(hosts, agent_ids, names, strict=True)
    }

    def client_for(host: str, *_: Any, **__: Any) -> AsyncMock:
        payload = payloads[host]
        client = AsyncMock(spec=BioreactorClient)
        client.info.side_effect = lambda: parse_info(payload)
        client.status.side_effect = lambda: parse_status(
            {**payload, "time": dt_util.utcnow().isoformat()}
        )
        client.readings.return_value = ReadingsPage(payload["agent_id"], "epoch1", 0, False, ())
        client.ack.return_value = 0
        return client

    entries = [
        MockConfigEntry(
            domain=DOMAIN,
            title=name,
            unique_id=agent_id,
            data={**ENTRY_DATA, CONF_HOST: host},
        )
        for host, agent_id, name in zip(hosts, agent_ids, names, strict=True)
    ]
    # Registered in either order and set up together, as at every start of Home Assistant.
    for index in order:
        entries[index].add_to_hass(hass)
    with patch("custom_components.bioreactor.BioreactorClient", side_effect=client_for):
        assert await async_setup_component(hass, DOMAIN, {})
        await hass.async_block_till_done(wait_background_tasks=True)

    entity_ids: list[set[str]] = []
    for entry, agent_name in zip(entries, expected, strict=True):
        reactor = device_registry.async_get_device_by_identifier(
            (DOMAIN, f"{entry.unique_id}_bus1"), entry.entry_id
        )
        assert reactor is not None
        assert reactor.name == f"{agent_name} Reactor 1"
        prefix = agent_name.lower().replace(" ", "_")
        ids = {
            e.entity_id for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)
        }
        assert f"sensor.{prefix}_reactor_1_ph" in ids
        # Every entity id starts with its own agent's name: nothing left to a `_2`.
        assert all(i.split(".")[1].startswith(f"{prefix}_") for i in ids)
        entity_ids.append({i.replace(f".{prefix}_", ".") for i in ids})
    assert entity_ids[0] == entity_ids[1]


async def test_brand_images_are_served(hass: HomeAssistant, hass_client: Any) -> None:
    assert await async_setup_component(hass, "brands", {})
    client = await hass_client()
    sizes = {}
    for image in ("icon.png", "icon@2x.png", "logo.png", "logo@2x.png"):
        response = await client.get(f"/api/brands/integration/{DOMAIN}/{image}")
        assert response.status == 200, image
        assert await response.read() == (BRAND / image).read_bytes()
        with Image.open(BRAND / image) as png:
            sizes[image] = png.size
            assert png.mode == "RGBA", image
    assert sizes["icon.png"] == (256, 256)
    assert sizes["icon@2x.png"] == (512, 512)
    # Logos: landscape, the shorter side 128 to 256 pixels (twice that for @2x).
    width, height = sizes["logo.png"]
    assert width >= height and 128 <= height <= 256
    assert sizes["logo@2x.png"] == (2 * width, 2 * height)


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
    liquid = "sensor.simulated_bench_1_reactor_1_liquid_temperature"
    assert hass.states.get(liquid).state == "31.5"
    assert hass.states.get("sensor.simulated_bench_1_reactor_1_status_ph_0x63").state == "offline"


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
    state = hass.states.get("sensor.simulated_bench_1_reactor_2_orp")
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
    # A sensor that is still starting is in use too: the agent would refuse to forget it.
    for sensor in sensors_of():
        sensor["status"] = "offline"
    sensors_of()[0]["status"] = "starting"
    await poll(hass, freezer, 10)
    assert not await remove(reactor.id)
    assert not mock_client.forget_sensor.await_args_list
    for sensor in sensors_of():
        sensor["status"] = "offline"
    await poll(hass, freezer, 10)
    assert await remove(reactor.id)
    forgotten = {call.args[0] for call in mock_client.forget_sensor.await_args_list}
    assert forgotten == {s["id"] for s in sensors_of()}


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
