"""Button platform: emergency stop per reactor, priming a pump, acknowledging a dosing alarm."""

from __future__ import annotations

from typing import Any
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.button import DOMAIN as BUTTON, SERVICE_PRESS
from homeassistant.const import ATTR_ENTITY_ID, STATE_UNAVAILABLE, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.api import BioreactorConnectionError

from . import setup_integration
from .control_support import DEVICE, actuator_of, loop_of, poll, refusal

pytestmark = pytest.mark.usefixtures("control")

EMERGENCY_STOP = f"button.{DEVICE}_emergency_stop"
PRIME = f"button.{DEVICE}_prime_base"
CLEAR_ALARM = f"button.{DEVICE}_acknowledge_ph_dosing_alarm"


@pytest.fixture
def platforms() -> list[Platform]:
    return [Platform.BUTTON]


async def press(hass: HomeAssistant, entity_id: str) -> None:
    data = {ATTR_ENTITY_ID: entity_id}
    await hass.services.async_call(BUTTON, SERVICE_PRESS, data, blocking=True)


async def test_emergency_stop(
    hass: HomeAssistant, mock_client: AsyncMock, loaded: MockConfigEntry
) -> None:
    await press(hass, EMERGENCY_STOP)
    mock_client.emergency_stop.assert_awaited_once_with("bus1")

    # The agent unreachable: an error (not a validation message), and no pretence it stopped.
    mock_client.emergency_stop.side_effect = BioreactorConnectionError("connection refused")
    with pytest.raises(HomeAssistantError, match="connection refused") as failed:
        await press(hass, EMERGENCY_STOP)
    assert not isinstance(failed.value, ServiceValidationError)


async def test_no_emergency_stop_without_actuators(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
) -> None:
    status_payload["reactors"][0].update(actuators=[], loops=[])
    await setup_integration(hass, mock_config_entry, [Platform.BUTTON])
    assert hass.states.async_entity_ids(BUTTON) == []


async def test_prime_only_while_the_pump_is_free(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    loaded: MockConfigEntry,
    status_payload: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    assert hass.states.get(PRIME).state == STATE_UNAVAILABLE  # the pH loop is in auto
    loop_of(status_payload, "bus1-ph")["mode"] = "manual"
    await poll(hass, freezer)
    await press(hass, PRIME)
    mock_client.dose.assert_awaited_once_with("bus1-base", 1.0)

    # Never more than the pump's own largest dose.
    actuator_of(status_payload, "bus1-base")["max_dose_ml"] = 0.5
    await poll(hass, freezer)
    await press(hass, PRIME)
    mock_client.dose.assert_awaited_with("bus1-base", 0.5)

    reason = "bus1-base: 0.5 mL more would exceed max_ml_per_hour 30.0"
    mock_client.dose.side_effect = refusal("max_ml_per_hour", reason)
    with pytest.raises(ServiceValidationError) as refused:
        await press(hass, PRIME)
    assert refused.value.translation_placeholders == {"limit": "max_ml_per_hour", "reason": reason}


async def test_acknowledge_dosing_alarm(
    hass: HomeAssistant, mock_client: AsyncMock, loaded: MockConfigEntry
) -> None:
    await press(hass, CLEAR_ALARM)
    mock_client.configure_loop.assert_awaited_once_with("bus1-ph", {"clear_alarm": True})
