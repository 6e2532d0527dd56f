"""Select platform: each control loop's mode, set on the agent."""

from __future__ import annotations

from typing import Any
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.select import ATTR_OPTION, DOMAIN as SELECT, SERVICE_SELECT_OPTION
from homeassistant.const import ATTR_ENTITY_ID, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.api import BioreactorConnectionError

from .control_support import DEVICE, loop_of, poll, refusal

pytestmark = pytest.mark.usefixtures("control")

PH_MODE = f"select.{DEVICE}_ph_control"
TEMPERATURE_MODE = f"select.{DEVICE}_temperature_control"


@pytest.fixture
def platforms() -> list[Platform]:
    return [Platform.SELECT]


async def select(hass: HomeAssistant, entity_id: str, option: str) -> None:
    await hass.services.async_call(
        SELECT,
        SERVICE_SELECT_OPTION,
        {ATTR_ENTITY_ID: entity_id, ATTR_OPTION: option},
        blocking=True,
    )


async def test_mode_is_set_on_the_agent(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    loaded: MockConfigEntry,
    status_payload: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    state = hass.states.get(PH_MODE)
    assert state.state == "auto"
    assert state.attributes["options"] == ["off", "manual", "auto"]
    assert state.attributes["friendly_name"] == "Simulated bench 1 Reactor 1 pH control"

    mock_client.configure_loop.side_effect = lambda loop_id, changes: loop_of(
        status_payload, loop_id
    ).update(changes)
    await select(hass, PH_MODE, "manual")
    mock_client.configure_loop.assert_awaited_once_with("bus1-ph", {"mode": "manual"})
    assert hass.states.get(PH_MODE).state == "manual"
    assert hass.states.get(TEMPERATURE_MODE).state == "auto"

    # A mode a newer agent invented reads unknown rather than breaking the entity.
    loop_of(status_payload, "bus1-ph")["mode"] = "tuning"
    await poll(hass, freezer)
    assert hass.states.get(PH_MODE).state == "unknown"


async def test_refusal_and_connection_failure(
    hass: HomeAssistant, mock_client: AsyncMock, loaded: MockConfigEntry
) -> None:
    reason = "mode must be one of off, manual, auto"
    mock_client.configure_loop.side_effect = refusal("mode", reason)
    with pytest.raises(ServiceValidationError) as refused:
        await select(hass, PH_MODE, "off")
    assert refused.value.translation_key == "control_refused"
    assert refused.value.translation_placeholders == {
        "limit": "mode",
        "reason": "mode must be one of off, manual, auto",
    }
    assert str(refused.value) == (
        "The edge agent refused (mode): mode must be one of off, manual, auto"
    )

    mock_client.configure_loop.side_effect = BioreactorConnectionError("timed out")
    with pytest.raises(HomeAssistantError) as failed:
        await select(hass, PH_MODE, "off")
    assert not isinstance(failed.value, ServiceValidationError)
    assert failed.value.translation_key == "cannot_connect"
    assert hass.states.get(PH_MODE).state == "auto"
