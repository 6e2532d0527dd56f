"""The `bioreactor.dose` action: one dose of a volume on one pump, by hand.

The target is a reactor device with exactly one pump, or one of a pump's entities
(its *Prime* button or its dose sensors). The agent checks the dose against the
pump's caps and its loop's mode and names the limit when it refuses; nothing is
dosed then.
"""

from __future__ import annotations

import math

import probatio as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_DEVICE_ID, ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import (
    config_validation as cv,
    device_registry as dr,
    entity_registry as er,
)

from .api import Actuator
from .const import DOMAIN
from .control_entity import actuators_of, agent_command
from .coordinator import BioreactorCoordinator

SERVICE_DOSE = "dose"
ATTR_VOLUME_ML = "volume_ml"
# The keys of a pump's entities (button.py, control_sensor.py): any of them names the pump.
PUMP_ENTITY_KEYS = ("prime", "dosed_last_hour", "dosed_last_day", "last_dose")


def _volume(value: object) -> float:
    volume = vol.Coerce(float)(value)
    if not math.isfinite(volume) or volume <= 0:
        raise vol.Invalid("must be a volume in mL greater than 0")
    return float(volume)


DOSE_SCHEMA = vol.Schema(
    {
        vol.Optional(ATTR_DEVICE_ID): vol.All(cv.ensure_list, [cv.string]),
        vol.Optional(ATTR_ENTITY_ID): cv.entity_ids,
        vol.Required(ATTR_VOLUME_ML): _volume,
    }
)

Pump = tuple[BioreactorCoordinator, Actuator]


def _coordinators(hass: HomeAssistant, entry_ids: set[str]) -> list[BioreactorCoordinator]:
    entries = (hass.config_entries.async_get_entry(entry_id) for entry_id in entry_ids)
    return [
        entry.runtime_data
        for entry in entries
        if entry is not None and entry.domain == DOMAIN and entry.state is ConfigEntryState.LOADED
    ]


def _pumps(coordinator: BioreactorCoordinator) -> list[Actuator]:
    return [p for reactor in coordinator.data.reactors for p in actuators_of(reactor, "pump")]


def _pump_of_entity(hass: HomeAssistant, entity_id: str) -> Pump:
    entry = er.async_get(hass).async_get(entity_id)
    if entry is not None and entry.config_entry_id is not None:
        for coordinator in _coordinators(hass, {entry.config_entry_id}):
            for pump in _pumps(coordinator):
                unique_ids = {f"{coordinator.agent_id}_{pump.id}_{k}" for k in PUMP_ENTITY_KEYS}
                if entry.unique_id in unique_ids:
                    return coordinator, pump
    raise _invalid("dose_not_a_pump", target=entity_id)


def _pumps_of_device(hass: HomeAssistant, device_id: str) -> list[Pump]:
    device = dr.async_get(hass).async_get(device_id)
    if device is None:
        raise _invalid("dose_not_a_pump", target=device_id)
    found: list[Pump] = []
    for coordinator in _coordinators(hass, set(device.config_entries)):
        for reactor in coordinator.data.reactors:
            if (DOMAIN, f"{coordinator.agent_id}_{reactor.id}") in device.identifiers:
                found.extend((coordinator, p) for p in actuators_of(reactor, "pump"))
    if not found:
        raise _invalid("dose_not_a_pump", target=device.name_by_user or device.name or device_id)
    return found


def _invalid(key: str, **placeholders: str) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN, translation_key=key, translation_placeholders=placeholders
    )


def resolve_pump(hass: HomeAssistant, device_ids: list[str], entity_ids: list[str]) -> Pump:
    """The one pump the targets name; refused when they name none or several."""
    found: dict[str, Pump] = {}
    for entity_id in entity_ids:
        coordinator, pump = _pump_of_entity(hass, entity_id)
        found[f"{coordinator.agent_id}_{pump.id}"] = coordinator, pump
    for device_id in device_ids:
        for coordinator, pump in _pumps_of_device(hass, device_id):
            found[f"{coordinator.agent_id}_{pump.id}"] = coordinator, pump
    if not found:
        raise _invalid("dose_no_target")
    if len(found) > 1:
        names = ", ".join(sorted(pump.id for _, pump in found.values()))
        raise _invalid("dose_several_pumps", pumps=names)
    return next(iter(found.values()))


async def _dose(call: ServiceCall) -> None:
    coordinator, pump = resolve_pump(
        call.hass, call.data.get(ATTR_DEVICE_ID, []), call.data.get(ATTR_ENTITY_ID, [])
    )
    volume = call.data[ATTR_VOLUME_ML]
    await agent_command(coordinator, coordinator.client.dose(pump.id, volume))


def async_setup_dose_service(hass: HomeAssistant) -> None:
    hass.services.async_register(DOMAIN, SERVICE_DOSE, _dose, schema=DOSE_SCHEMA)
