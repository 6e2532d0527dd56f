"""The `bioreactor.dose` action: one dose of a volume on one pump, by hand.

The target names exactly one pump: one of its entities (its *Prime* button or dose
sensors), or a reactor device (an area, a label) with one pump. The agent checks the
dose against the pump's caps and its loop's mode and names the limit when it refuses;
nothing is dosed then.
"""

from __future__ import annotations

import math

import probatio as vol
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv, entity_registry as er
from homeassistant.helpers.target import TargetSelection, async_extract_referenced_entity_ids

from .api import Actuator
from .const import DOMAIN
from .control_entity import actuators_of, agent_command
from .coordinator import BioreactorCoordinator

SERVICE_DOSE = "dose"
ATTR_VOLUME_ML = "volume_ml"
# A pump's entities (button.py, control_sensor.py) by key: any of them names the pump.
PUMP_ENTITIES = {
    "prime": "button",
    "dosed_last_hour": "sensor",
    "dosed_last_day": "sensor",
    "last_dose": "sensor",
}


def _volume(value: object) -> float:
    volume = vol.Coerce(float)(value)
    if not math.isfinite(volume) or volume <= 0:
        raise vol.Invalid("must be a volume in mL greater than 0")
    return float(volume)


DOSE_SCHEMA = vol.Schema({**cv.ENTITY_SERVICE_FIELDS, vol.Required(ATTR_VOLUME_ML): _volume})

Pump = tuple[BioreactorCoordinator, Actuator]


def _pump_entities(hass: HomeAssistant) -> dict[str, Pump]:
    """Every pump entity's id -> its pump, over the loaded agents."""
    registry = er.async_get(hass)
    found: dict[str, Pump] = {}
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        coordinator: BioreactorCoordinator = entry.runtime_data
        for reactor in coordinator.data.reactors:
            for pump in actuators_of(reactor, "pump"):
                for key, domain in PUMP_ENTITIES.items():
                    unique_id = f"{coordinator.agent_id}_{pump.id}_{key}"
                    entity_id = registry.async_get_entity_id(domain, DOMAIN, unique_id)
                    if entity_id is not None:
                        found[entity_id] = coordinator, pump
    return found


def _invalid(key: str, **placeholders: str) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN, translation_key=key, translation_placeholders=placeholders
    )


def resolve_pump(hass: HomeAssistant, target: TargetSelection) -> Pump:
    """The one pump the target names. An entity named explicitly must be a pump's; a
    device, area or label counts the pumps among its entities. Refused unless exactly one."""
    selected = async_extract_referenced_entity_ids(hass, target, expand_group=False)
    pumps = _pump_entities(hass)
    for entity_id in sorted(selected.referenced):
        if entity_id not in pumps:
            raise _invalid("dose_not_a_pump", target=entity_id)
    chosen: dict[str, Pump] = {}
    for entity_id in selected.referenced | selected.indirectly_referenced:
        if entity_id in pumps:
            coordinator, pump = pumps[entity_id]
            chosen[f"{coordinator.agent_id}_{pump.id}"] = coordinator, pump
    if not chosen:
        raise _invalid("dose_no_target")
    if len(chosen) > 1:
        names = ", ".join(sorted(pump.id for _, pump in chosen.values()))
        raise _invalid("dose_several_pumps", pumps=names)
    return next(iter(chosen.values()))


async def _dose(call: ServiceCall) -> None:
    coordinator, pump = resolve_pump(call.hass, TargetSelection(call.data))
    volume = call.data[ATTR_VOLUME_ML]
    await agent_command(coordinator, coordinator.client.dose(pump.id, volume))


def async_setup_dose_service(hass: HomeAssistant) -> None:
    hass.services.async_register(DOMAIN, SERVICE_DOSE, _dose, schema=DOSE_SCHEMA)
