"""Switch platform: relays set by hand, only while no loop drives them (or it is manual)."""

from __future__ import annotations

from typing import Any
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.switch import DOMAIN as SWITCH
from homeassistant.const import (
    ATTR_ENTITY_ID,
    SERVICE_TURN_OFF,
    SERVICE_TURN_ON,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    Platform,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from . import setup_integration
from .control_support import DEVICE, actuator_of, loop_of, poll, refusal

pytestmark = pytest.mark.usefixtures("control")

AERATION = f"switch.{DEVICE}_aeration_relay"
HEATER_ENABLE = f"switch.{DEVICE}_heater_enable_relay"


@pytest.fixture
def platforms() -> list[Platform]:
    return [Platform.SWITCH]


async def switch(hass: HomeAssistant, service: str, entity_id: str) -> None:
    await hass.services.async_call(SWITCH, service, {ATTR_ENTITY_ID: entity_id}, blocking=True)


async def test_free_relay_switched_on_the_agent(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    loaded: MockConfigEntry,
    status_payload: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    state = hass.states.get(AERATION)
    assert state.state == STATE_OFF
    assert state.attributes["safe_state"] == "off"

    await switch(hass, SERVICE_TURN_ON, AERATION)
    mock_client.set_actuator.assert_awaited_once_with("bus1-aeration", 1.0)
    await switch(hass, SERVICE_TURN_OFF, AERATION)
    mock_client.set_actuator.assert_awaited_with("bus1-aeration", 0.0)

    # On is what the expander confirmed; after a chip failure nobody knows.
    aeration = actuator_of(status_payload, "bus1-aeration")
    aeration.update(applied=1.0, wanted=1.0, commanded_by="api")
    await poll(hass, freezer)
    assert hass.states.get(AERATION).state == STATE_ON
    aeration.update(applied=None, error="nak", error_message="0x20: no acknowledge")
    await poll(hass, freezer)
    state = hass.states.get(AERATION)
    assert state.state == STATE_UNKNOWN
    assert state.attributes["error_message"] == "0x20: no acknowledge"


async def test_loop_relay_only_in_manual(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    loaded: MockConfigEntry,
    status_payload: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    assert hass.states.get(HEATER_ENABLE).state == STATE_UNAVAILABLE
    loop_of(status_payload, "bus1-temperature")["mode"] = "manual"
    await poll(hass, freezer)
    assert hass.states.get(HEATER_ENABLE).state == STATE_ON

    # Between HA's last poll and the command the loop may have left manual: the agent says so.
    reason = "bus1-heater_enable is driven by loop bus1-temperature (mode auto)"
    mock_client.set_actuator.side_effect = refusal("loop_mode", reason, status=409)
    with pytest.raises(ServiceValidationError) as refused:
        await switch(hass, SERVICE_TURN_OFF, HEATER_ENABLE)
    assert refused.value.translation_placeholders == {"limit": "loop_mode", "reason": reason}


async def test_new_outputs_appear_and_removed_ones_go_unavailable(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    reactor = status_payload["reactors"][0]
    actuators = reactor["actuators"]
    reactor["actuators"] = [a for a in actuators if a["id"] != "bus1-aeration"]
    await setup_integration(hass, mock_config_entry, [Platform.SWITCH])
    assert hass.states.get(AERATION) is None

    reactor["actuators"] = actuators  # the board's configuration gained the valve
    await poll(hass, freezer)
    assert hass.states.get(AERATION).state == STATE_OFF

    reactor["actuators"] = [a for a in actuators if a["id"] != "bus1-aeration"]
    await poll(hass, freezer)
    assert hass.states.get(AERATION).state == STATE_UNAVAILABLE
