"""Sensor platform: names, device classes, every change written, statuses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from . import setup_integration

REACTOR = "sensor.simulated_bench_1_reactor_1"


@pytest.fixture
def platforms() -> list[Platform]:
    return [Platform.SENSOR]


async def poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    freezer.tick(timedelta(seconds=10))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)


def quantity(sensors_of: Callable[[], list[dict[str, Any]]], kind: str, key: str) -> dict[str, Any]:
    sensor = next(s for s in sensors_of() if s["kind"] == kind)
    found: dict[str, Any] = next(q for q in sensor["quantities"] if q["key"] == key)
    return found


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    await snapshot_platform(hass, entity_registry, snapshot, loaded.entry_id)


async def test_same_quantity_of_two_chips_has_two_names(
    hass: HomeAssistant, loaded: MockConfigEntry
) -> None:
    air = hass.states.get(f"{REACTOR}_air_temperature")
    liquid = hass.states.get(f"{REACTOR}_liquid_temperature")
    assert air.attributes["friendly_name"] == "Simulated bench 1 Reactor 1 Air temperature"
    assert liquid.attributes["friendly_name"] == "Simulated bench 1 Reactor 1 Liquid temperature"
    assert float(air.state) != float(liquid.state)
    assert hass.states.get(f"{REACTOR}_temperature") is None


@pytest.mark.parametrize("order", [1, -1], ids=["in_address_order", "reversed"])
async def test_two_chips_of_one_kind_are_named_by_their_addresses(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
    entity_registry: er.EntityRegistry,
    order: int,
) -> None:
    # Two RTD probes in one vessel (culture and jacket, say) and two ADCs, in either order.
    reactor = status_payload["reactors"][0]
    rtd = next(s for s in reactor["sensors"] if s["kind"] == "rtd")
    second = {**rtd, "id": "bus1-rtd-68", "address": 0x68}
    second["quantities"] = [{**rtd["quantities"][0], "value": 30.5}]
    adc = next(s for s in reactor["sensors"] if s["kind"] == "ads1115")
    reactor["sensors"] = [
        *reactor["sensors"],
        second,
        {**adc, "id": "bus1-ads1115-49", "address": 0x49},
    ][::order]
    await setup_integration(hass, mock_config_entry, [Platform.SENSOR])

    liquid = f"{REACTOR}_liquid_temperature"
    names = {
        entity_id: hass.states.get(entity_id).attributes["friendly_name"]
        for entity_id in (f"{liquid}_0x66", f"{liquid}_0x68")
    }
    assert names == {
        f"{liquid}_0x66": "Simulated bench 1 Reactor 1 Liquid temperature 0x66",
        f"{liquid}_0x68": "Simulated bench 1 Reactor 1 Liquid temperature 0x68",
    }
    assert hass.states.get(f"{liquid}_0x68").state == "30.5"
    assert hass.states.get(liquid) is None
    assert hass.states.get(f"{liquid}_2") is None
    adc_ids = {
        e.entity_id
        for e in er.async_entries_for_config_entry(entity_registry, mock_config_entry.entry_id)
        if e.translation_key == "adc_voltage_at"
    }
    assert adc_ids == {f"{REACTOR}_adc_0x{a:x}_voltage_{n}" for a in (0x48, 0x49) for n in range(4)}
    # A kind with one chip keeps its plain name.
    assert hass.states.get(f"{REACTOR}_ph").attributes["friendly_name"].endswith(" pH")


async def test_raw_adc_channels_are_disabled_by_default(
    hass: HomeAssistant, loaded: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    channels = [
        e
        for e in er.async_entries_for_config_entry(entity_registry, loaded.entry_id)
        if e.translation_key == "adc_voltage"
    ]
    assert [e.entity_id for e in channels] == [f"{REACTOR}_adc_voltage_{n}" for n in range(4)]
    assert {e.disabled_by for e in channels} == {er.RegistryEntryDisabler.INTEGRATION}
    assert all(hass.states.get(e.entity_id) is None for e in channels)


async def test_dispensed_volume_is_a_growing_volume(
    hass: HomeAssistant, loaded: MockConfigEntry
) -> None:
    state = hass.states.get(f"{REACTOR}_dispensed_volume")
    assert state.attributes["device_class"] == "volume"
    assert state.attributes["state_class"] == "total_increasing"
    assert state.attributes["unit_of_measurement"] == "mL"


async def test_every_change_is_written_and_only_changes(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    sensors_of: Callable[[], list[dict[str, Any]]],
    freezer: FrozenDateTimeFactory,
) -> None:
    ph = quantity(sensors_of, "ph", "ph")
    ph["value"] = 6.90
    await poll(hass, freezer)
    assert hass.states.get(f"{REACTOR}_ph").state == "6.9"

    # One step of the chip's 0.01 resolution (6.91 - 6.90 < 0.01 in floating point).
    ph["value"] = 6.91
    await poll(hass, freezer)
    written = hass.states.get(f"{REACTOR}_ph")
    assert written.state == "6.91"

    # An unchanged value writes no new state (the recorder stores nothing new).
    await poll(hass, freezer)
    assert hass.states.get(f"{REACTOR}_ph").last_updated == written.last_updated


async def test_a_reading_taken_during_calibration_is_not_the_cultures(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    sensors_of: Callable[[], list[dict[str, Any]]],
    freezer: FrozenDateTimeFactory,
) -> None:
    ph = quantity(sensors_of, "ph", "ph")
    # The probe sits in the pH 4 buffer: no state (and so no history or alert) says
    # the culture is at pH 4.
    ph["value"], ph["quality"] = 4.01, "calibrating"
    await poll(hass, freezer)
    assert hass.states.get(f"{REACTOR}_ph").state == STATE_UNAVAILABLE
    assert hass.states.get(f"{REACTOR}_status_ph_0x63").state == "online"
    ph["value"], ph["quality"] = 6.95, "good"
    await poll(hass, freezer)
    assert hass.states.get(f"{REACTOR}_ph").state == "6.95"


async def test_sensor_status_and_availability_follow_the_agent(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    sensors_of: Callable[[], list[dict[str, Any]]],
    freezer: FrozenDateTimeFactory,
) -> None:
    ph = next(s for s in sensors_of() if s["kind"] == "ph")
    status = f"{REACTOR}_status_ph_0x63"
    assert hass.states.get(status).state == "online"

    for agent_status in ("starting", "error", "offline"):
        ph["status"] = agent_status
        await poll(hass, freezer)
        assert hass.states.get(status).state == agent_status
        assert hass.states.get(f"{REACTOR}_ph").state == STATE_UNAVAILABLE

    ph["status"] = "calibrating"  # from a newer agent
    await poll(hass, freezer)
    assert hass.states.get(status).state == STATE_UNKNOWN

    ph["status"] = "online"
    await poll(hass, freezer)
    assert float(hass.states.get(f"{REACTOR}_ph").state) > 0


async def test_unknown_quantity_gets_a_generic_entity(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    sensors_of: Callable[[], list[dict[str, Any]]],
    freezer: FrozenDateTimeFactory,
) -> None:
    do = next(s for s in sensors_of() if s["kind"] == "do")
    do["quantities"].append({**do["quantities"][0], "key": "partial_pressure", "unit": "hPa"})
    await poll(hass, freezer)
    state = hass.states.get(f"{REACTOR}_partial_pressure")
    assert state.attributes["friendly_name"] == "Simulated bench 1 Reactor 1 Partial pressure"
    assert state.attributes["unit_of_measurement"] == "hPa"


async def test_a_failing_sensor_says_why(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    sensors_of: Callable[[], list[dict[str, Any]]],
    freezer: FrozenDateTimeFactory,
) -> None:
    status = f"{REACTOR}_status_sht4x_0x44"
    assert hass.states.get(status).attributes["error_message"] is None
    sht4x = next(s for s in sensors_of() if s["kind"] == "sht4x")
    sht4x.update(status="error", last_error="nak", error_message="no answer at 0x44")
    await poll(hass, freezer)
    state = hass.states.get(status)
    assert (state.state, state.attributes["error_message"]) == ("error", "no answer at 0x44")


async def test_dropped_readings_by_cause(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    status_payload: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    status_payload["journal"].update(dropped=7, dropped_by_cause={"budget": 5, "shutdown": 2})
    await poll(hass, freezer)
    state = hass.states.get("sensor.simulated_bench_1_dropped_readings")
    assert state.state == "7"
    assert {k: state.attributes[k] for k in ("budget", "shutdown")} == {"budget": 5, "shutdown": 2}
