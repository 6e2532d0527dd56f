"""Upgrading from version 1.1: every entity id users built on stays."""

from __future__ import annotations

import json
from typing import Any

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.const import DOMAIN

from . import setup_integration
from .conftest import AGENT_ID, ENTRY_DATA, FIXTURES

pytestmark = pytest.mark.usefixtures("mock_client")


@pytest.fixture
def registry_1_1() -> dict[str, Any]:
    """What version 1.1 left in the registries (tests/integration/fixtures)."""
    data: dict[str, Any] = json.loads((FIXTURES / "registry_1_1.json").read_text())
    return data


@pytest.fixture
def entry_1_1(
    hass: HomeAssistant,
    registry_1_1: dict[str, Any],
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> MockConfigEntry:
    """A version 1.1 entry with the devices and entities that version registered."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Simulated bench 1",
        unique_id=AGENT_ID,
        data=dict(ENTRY_DATA),
        version=registry_1_1["entry"]["version"],
        minor_version=registry_1_1["entry"]["minor_version"],
        options=registry_1_1["entry"]["options"],
    )
    entry.add_to_hass(hass)
    devices = {
        identifier: device_registry.async_get_or_create(
            config_entry_id=entry.entry_id, identifiers={(DOMAIN, identifier)}, name=name
        )
        for identifier, name in registry_1_1["devices"].items()
    }
    for entity_id, unique_id, disabled_by in registry_1_1["entities"]:
        domain, object_id = entity_id.split(".")
        # Reactor entities' unique ids hold a sensor id ("<agent>_bus1-ph-63_ph").
        device = unique_id.split("-")[0] if "-" in unique_id else AGENT_ID
        entity_registry.async_get_or_create(
            domain,
            DOMAIN,
            unique_id,
            suggested_object_id=object_id,
            config_entry=entry,
            device_id=devices[device].id,
            disabled_by=er.RegistryEntryDisabler(disabled_by) if disabled_by else None,
        )
    return entry


async def test_upgrade_keeps_every_entity_id(
    hass: HomeAssistant,
    entry_1_1: MockConfigEntry,
    registry_1_1: dict[str, Any],
    entity_registry: er.EntityRegistry,
) -> None:
    before = {unique_id: entity_id for entity_id, unique_id, _ in registry_1_1["entities"]}
    assert entity_registry.async_get_entity_id("sensor", DOMAIN, f"{AGENT_ID}_bus1-ph-63_ph")

    await setup_integration(hass, entry_1_1)

    assert entry_1_1.state is ConfigEntryState.LOADED
    after = {
        e.unique_id: e.entity_id
        for e in er.async_entries_for_config_entry(entity_registry, entry_1_1.entry_id)
    }
    assert after == before
    # The same entities are live under their old ids, with the new names.
    ph = hass.states.get("sensor.reactor_1_ph")
    assert ph.state != STATE_UNAVAILABLE
    assert ph.attributes["friendly_name"] == "Simulated bench 1 Reactor 1 pH"
    liquid = hass.states.get("sensor.reactor_1_temperature_2")
    assert liquid.attributes["friendly_name"] == "Simulated bench 1 Reactor 1 Liquid temperature"
    # Raw ADC channels the old version enabled stay enabled: the user may use them.
    assert hass.states.get("sensor.reactor_1_voltage_0") is not None


async def test_upgrade_drops_the_resolution_options(
    hass: HomeAssistant, entry_1_1: MockConfigEntry
) -> None:
    await setup_integration(hass, entry_1_1)
    assert (entry_1_1.version, entry_1_1.minor_version) == (1, 2)
    assert dict(entry_1_1.options) == {}
    assert dict(entry_1_1.data) == ENTRY_DATA


async def test_upgrade_keeps_a_device_name_given_by_the_user(
    hass: HomeAssistant, entry_1_1: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    reactor = device_registry.async_get_device_by_identifier(
        (DOMAIN, f"{AGENT_ID}_bus1"), entry_1_1.entry_id
    )
    assert reactor is not None
    device_registry.async_update_device(reactor.id, name_by_user="Fermenter")
    await setup_integration(hass, entry_1_1)
    reactor = device_registry.async_get(reactor.id)
    assert reactor is not None
    assert (reactor.name, reactor.name_by_user) == ("Simulated bench 1 Reactor 1", "Fermenter")
