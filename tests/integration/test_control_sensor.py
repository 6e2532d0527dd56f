"""Control sensors: each loop's state and output, each pump's doses against its caps."""

from __future__ import annotations

from typing import Any
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry
from syrupy.assertion import SnapshotAssertion

from .control_support import CONTROL, DEVICE, actuator_of, loop_of, poll

pytestmark = pytest.mark.usefixtures("control")

TEMPERATURE_STATE = f"sensor.{DEVICE}_temperature_control_state"
PH_STATE = f"sensor.{DEVICE}_ph_control_state"
TEMPERATURE_OUTPUT = f"sensor.{DEVICE}_temperature_control_output"
DOSED_HOUR = f"sensor.{DEVICE}_base_dosed_in_the_last_hour"
DOSED_DAY = f"sensor.{DEVICE}_base_dosed_in_the_last_24_hours"
LAST_DOSE = f"sensor.{DEVICE}_base_last_dose"
CONTROL_SENSORS = [
    DOSED_DAY, DOSED_HOUR, LAST_DOSE, PH_STATE, TEMPERATURE_OUTPUT, TEMPERATURE_STATE
]  # fmt: skip
# The PID's heater duty (0-1) in the recorded state.
CONTROL_OUTPUT = next(x["output"] for x in CONTROL["loops"] if x["kind"] == "temperature")


@pytest.fixture
def platforms() -> list[Platform]:
    return [Platform.SENSOR]


async def test_entities(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    loaded: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """The control sensors only (the quantities' sensors have their own snapshot)."""
    control = [
        e
        for e in er.async_entries_for_config_entry(entity_registry, loaded.entry_id)
        if e.unique_id.split("_", 1)[1].startswith(("bus1-ph_", "bus1-temperature_", "bus1-base_"))
    ]
    assert sorted(e.entity_id for e in control) == CONTROL_SENSORS
    for entry in control:
        assert entry == snapshot(name=f"{entry.entity_id}-entry")
        assert hass.states.get(entry.entity_id) == snapshot(name=f"{entry.entity_id}-state")


async def test_loop_state_and_output(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    loaded: MockConfigEntry,
    status_payload: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    assert hass.states.get(TEMPERATURE_STATE).state == "running"
    output = hass.states.get(TEMPERATURE_OUTPUT)
    assert float(output.state) == pytest.approx(100 * CONTROL_OUTPUT)
    assert output.attributes["unit_of_measurement"] == "%"

    # A stale reading locks the loop out: the reason is shown, the output is no demand.
    loop_of(status_payload, "bus1-temperature").update(state="lockout", reason="input_stale")
    loop_of(status_payload, "bus1-ph").update(
        state="lockout", reason="dosing_alarm", alarm="unresponsive"
    )
    await poll(hass, freezer)
    state = hass.states.get(TEMPERATURE_STATE)
    assert (state.state, state.attributes["reason"]) == ("lockout", "input_stale")
    assert hass.states.get(TEMPERATURE_OUTPUT).state == STATE_UNKNOWN
    ph = hass.states.get(PH_STATE)
    assert (ph.state, ph.attributes["alarm"]) == ("lockout", "unresponsive")


async def test_pump_doses_against_caps(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    loaded: MockConfigEntry,
    status_payload: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    hour = hass.states.get(DOSED_HOUR)
    assert (float(hour.state), hour.attributes["limit_ml"]) == (0.0, 30.0)
    assert hour.attributes["device_class"] == "volume"
    assert hour.attributes["unit_of_measurement"] == "mL"
    assert "state_class" not in hour.attributes  # a rolling window is no growing total
    assert hass.states.get(LAST_DOSE).state == STATE_UNKNOWN

    actuator_of(status_payload, "bus1-base").update(
        last_dose_ml=2.0, delivered_ml=1.0, dosed_last_hour_ml=2.0, dosed_last_day_ml=6.0,
        error="short_dose", error_message="bus1-base: pump total grew 1.0 mL for a dose of 2.0 mL",
    )  # fmt: skip
    await poll(hass, freezer)
    assert float(hass.states.get(DOSED_HOUR).state) == 2.0
    assert float(hass.states.get(DOSED_DAY).state) == 6.0
    last = hass.states.get(LAST_DOSE)
    assert float(last.state) == 1.0
    assert last.attributes["requested_ml"] == 2.0
    assert last.attributes["error_message"].endswith("for a dose of 2.0 mL")
