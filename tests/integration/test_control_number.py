"""Number platform: setpoints and narrowable limits within the agent's hard limits, and
manual PWM outputs up to their max_duty."""

from __future__ import annotations

from typing import Any
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.number import ATTR_VALUE, DOMAIN as NUMBER, SERVICE_SET_VALUE
from homeassistant.const import ATTR_ENTITY_ID, STATE_UNAVAILABLE, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .control_support import DEVICE, loop_of, poll, refusal

pytestmark = pytest.mark.usefixtures("control")

PH_SETPOINT = f"number.{DEVICE}_ph_setpoint"
TEMPERATURE_SETPOINT = f"number.{DEVICE}_temperature_setpoint"
PH_DOSE_LIMIT = f"number.{DEVICE}_ph_dose_limit"
PH_INTERVAL = f"number.{DEVICE}_ph_minimum_time_between_doses"
HEATER_LIMIT = f"number.{DEVICE}_heater_output_limit"
HEATER_OUTPUT = f"number.{DEVICE}_heater_output"
STIRRER_OUTPUT = f"number.{DEVICE}_stirrer_output"


@pytest.fixture
def platforms() -> list[Platform]:
    return [Platform.NUMBER]


async def set_value(hass: HomeAssistant, entity_id: str, value: float) -> None:
    await hass.services.async_call(
        NUMBER, SERVICE_SET_VALUE, {ATTR_ENTITY_ID: entity_id, ATTR_VALUE: value}, blocking=True
    )


async def test_setpoints_span_exactly_the_hard_range(
    hass: HomeAssistant, mock_client: AsyncMock, loaded: MockConfigEntry
) -> None:
    ph = hass.states.get(PH_SETPOINT)
    assert (float(ph.state), ph.attributes["min"], ph.attributes["max"]) == (7.0, 6.5, 7.5)
    temperature = hass.states.get(TEMPERATURE_SETPOINT)
    assert (temperature.attributes["min"], temperature.attributes["max"]) == (30.0, 40.0)
    assert temperature.attributes["unit_of_measurement"] == "°C"

    await set_value(hass, PH_SETPOINT, 7.2)
    mock_client.configure_loop.assert_awaited_once_with("bus1-ph", {"setpoint": 7.2})

    # Beyond the hard limit Home Assistant refuses by itself: the agent is never asked.
    mock_client.configure_loop.reset_mock()
    for value in (7.6, 6.4):
        with pytest.raises(ServiceValidationError, match="outside valid range"):
            await set_value(hass, PH_SETPOINT, value)
    mock_client.configure_loop.assert_not_awaited()


async def test_limits_only_narrow(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    loaded: MockConfigEntry,
    status_payload: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    dose = hass.states.get(PH_DOSE_LIMIT)
    # A "max" limit: up to its hard value (2 mL), down to one step.
    assert (float(dose.state), dose.attributes["min"], dose.attributes["max"]) == (2.0, 0.1, 2.0)
    interval = hass.states.get(PH_INTERVAL)
    # A "min" limit: from its hard value (120 s) up.
    assert (interval.attributes["min"], interval.attributes["max"]) == (120.0, 86400.0)

    with pytest.raises(ServiceValidationError, match="outside valid range"):
        await set_value(hass, PH_DOSE_LIMIT, 2.5)
    with pytest.raises(ServiceValidationError, match="outside valid range"):
        await set_value(hass, PH_INTERVAL, 60)
    mock_client.configure_loop.assert_not_awaited()

    await set_value(hass, PH_DOSE_LIMIT, 1.5)
    mock_client.configure_loop.assert_awaited_once_with("bus1-ph", {"limits": {"max_dose_ml": 1.5}})
    # The agent narrowed it: the entity shows the limit in force, the range stays the hard one.
    loop_of(status_payload, "bus1-ph")["limits"]["max_dose_ml"] = 1.5
    await poll(hass, freezer)
    dose = hass.states.get(PH_DOSE_LIMIT)
    assert (float(dose.state), dose.attributes["max"]) == (1.5, 2.0)

    # The heater's limit is a duty (0-1) on the agent, a percentage here.
    heater = hass.states.get(HEATER_LIMIT)
    assert (float(heater.state), heater.attributes["max"]) == (90.0, 90.0)
    assert heater.attributes["unit_of_measurement"] == "%"
    await set_value(hass, HEATER_LIMIT, 50)
    mock_client.configure_loop.assert_awaited_with(
        "bus1-temperature", {"limits": {"max_output": 0.5}}
    )


async def test_agent_refusal_names_the_limit(
    hass: HomeAssistant, mock_client: AsyncMock, loaded: MockConfigEntry
) -> None:
    reason = "max_dose_ml 1.9 is outside the hard limit (0, 1.8]"
    mock_client.configure_loop.side_effect = refusal("max_dose_ml", reason)
    with pytest.raises(ServiceValidationError) as refused:
        await set_value(hass, PH_DOSE_LIMIT, 1.9)
    assert refused.value.translation_placeholders == {"limit": "max_dose_ml", "reason": reason}
    assert reason in str(refused.value)


async def test_manual_output_only_while_no_loop_drives_it(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    loaded: MockConfigEntry,
    status_payload: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    # No loop drives the stirrer: set by hand, up to its max_duty (80 %).
    stirrer = hass.states.get(STIRRER_OUTPUT)
    assert (float(stirrer.state), stirrer.attributes["max"]) == (30.0, 80.0)
    await set_value(hass, STIRRER_OUTPUT, 55)
    mock_client.set_actuator.assert_awaited_once_with("bus1-stirrer", 0.55)
    with pytest.raises(ServiceValidationError, match="outside valid range"):
        await set_value(hass, STIRRER_OUTPUT, 85)

    # The heater belongs to the temperature loop: by hand only while that loop is manual.
    assert hass.states.get(HEATER_OUTPUT).state == STATE_UNAVAILABLE
    loop_of(status_payload, "bus1-temperature")["mode"] = "manual"
    await poll(hass, freezer)
    heater = hass.states.get(HEATER_OUTPUT)
    assert heater.state != STATE_UNAVAILABLE
    assert heater.attributes["max"] == 90.0
    loop_of(status_payload, "bus1-temperature")["mode"] = "off"
    await poll(hass, freezer)
    assert hass.states.get(HEATER_OUTPUT).state == STATE_UNAVAILABLE
