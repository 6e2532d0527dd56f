"""The `bioreactor.dose` action: one pump, by device or by one of its entities; the
agent's refusals as translated validation errors naming the limit."""

from __future__ import annotations

import copy
from typing import Any
from unittest.mock import AsyncMock

import probatio as vol
import pytest
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import area_registry as ar, device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.api import BioreactorConnectionError
from custom_components.bioreactor.const import DOMAIN

from . import setup_integration
from .conftest import AGENT_ID
from .control_support import DEVICE, actuator_of, refusal

pytestmark = pytest.mark.usefixtures("control")

PRIME = f"button.{DEVICE}_prime_base"
DOSED_HOUR = f"sensor.{DEVICE}_base_dosed_in_the_last_hour"


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> str:
    """Sets up the entry; the reactor's device id."""
    await setup_integration(hass, entry, [Platform.BUTTON, Platform.SENSOR])
    device = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, f"{AGENT_ID}_bus1"), entry.entry_id
    )
    assert device is not None
    return device.id


async def dose(hass: HomeAssistant, volume_ml: Any, **target: Any) -> None:
    await hass.services.async_call(
        DOMAIN, "dose", {"volume_ml": volume_ml, **target}, blocking=True
    )


async def test_dose_by_reactor_or_pump_entity(
    hass: HomeAssistant, mock_client: AsyncMock, mock_config_entry: MockConfigEntry
) -> None:
    device_id = await setup(hass, mock_config_entry)
    await dose(hass, 2.5, device_id=device_id)
    mock_client.dose.assert_awaited_once_with("bus1-base", 2.5)
    await dose(hass, "0.5", entity_id=PRIME)
    mock_client.dose.assert_awaited_with("bus1-base", 0.5)
    await dose(hass, 1, entity_id=[DOSED_HOUR], device_id=[device_id])  # the same pump
    mock_client.dose.assert_awaited_with("bus1-base", 1.0)
    assert mock_client.dose.await_count == 3

    # An area holding the reactor names its one pump too.
    area = ar.async_get(hass).async_create("Lab bench")
    dr.async_get(hass).async_update_device(device_id, area_id=area.id)
    await dose(hass, 0.2, area_id=area.id)
    mock_client.dose.assert_awaited_with("bus1-base", 0.2)


async def test_agent_refusal_names_the_limit(
    hass: HomeAssistant, mock_client: AsyncMock, mock_config_entry: MockConfigEntry
) -> None:
    device_id = await setup(hass, mock_config_entry)
    reason = "bus1-base: 4.0 mL exceeds max_dose_ml 3.0"
    mock_client.dose.side_effect = refusal("max_dose_ml", reason)
    with pytest.raises(ServiceValidationError) as refused:
        await dose(hass, 4, device_id=device_id)
    assert refused.value.translation_domain == DOMAIN
    assert refused.value.translation_placeholders == {"limit": "max_dose_ml", "reason": reason}
    assert str(refused.value) == f"The edge agent refused (max_dose_ml): {reason}"

    reason = "bus1-base is driven by loop bus1-ph (mode auto); set the loop to manual first"
    mock_client.dose.side_effect = refusal("loop_mode", reason, status=409)
    with pytest.raises(ServiceValidationError, match="set the loop to manual first"):
        await dose(hass, 1, device_id=device_id)

    mock_client.dose.side_effect = BioreactorConnectionError("cannot reach the agent")
    with pytest.raises(HomeAssistantError, match="cannot reach the agent") as failed:
        await dose(hass, 1, device_id=device_id)
    assert not isinstance(failed.value, ServiceValidationError)


async def test_targets_that_name_no_single_pump(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
) -> None:
    acid = copy.deepcopy(actuator_of(status_payload, "bus1-base"))
    acid.update(id="bus1-acid", name="acid", address=0x68)
    status_payload["reactors"][0]["actuators"].append(acid)
    device_id = await setup(hass, mock_config_entry)

    with pytest.raises(ServiceValidationError) as several:
        await dose(hass, 1, device_id=device_id)
    assert several.value.translation_key == "dose_several_pumps"
    assert several.value.translation_placeholders == {"pumps": "bus1-acid, bus1-base"}
    with pytest.raises(ServiceValidationError, match="several pumps"):
        await dose(hass, 1, entity_id=[PRIME, f"button.{DEVICE}_prime_acid"])
    await dose(hass, 1, entity_id=f"button.{DEVICE}_prime_acid")
    mock_client.dose.assert_awaited_once_with("bus1-acid", 1.0)

    with pytest.raises(ServiceValidationError) as not_a_pump:
        await dose(hass, 1, entity_id=f"sensor.{DEVICE}_ph")
    assert not_a_pump.value.translation_key == "dose_not_a_pump"
    agent = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, AGENT_ID), mock_config_entry.entry_id
    )
    assert agent is not None
    with pytest.raises(ServiceValidationError, match="names no dosing pump"):
        await dose(hass, 1, device_id=agent.id)
    with pytest.raises(ServiceValidationError) as no_target:
        await dose(hass, 1)
    assert no_target.value.translation_key == "dose_no_target"
    mock_client.dose.assert_awaited_once()


@pytest.mark.parametrize("volume", [0, -1, "nan", "a lot"])
async def test_volume_must_be_positive(
    hass: HomeAssistant, mock_client: AsyncMock, mock_config_entry: MockConfigEntry, volume: Any
) -> None:
    device_id = await setup(hass, mock_config_entry)
    with pytest.raises(vol.Invalid):
        await dose(hass, volume, device_id=device_id)
    mock_client.dose.assert_not_awaited()
