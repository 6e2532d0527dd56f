"""The `bioreactor.export_readings` service: a CSV of one device's archived readings."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import probatio as vol
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.util import dt as dt_util

from .const import ARCHIVE_DIR, DOMAIN, EXPORT_DIR
from .delivery import archive
from .dose_service import async_setup_dose_service

SERVICE_EXPORT = "export_readings"
EXPORT_SCHEMA = vol.Schema(
    {
        vol.Required("device_id"): cv.string,
        vol.Required("start"): cv.datetime,
        vol.Required("end"): cv.datetime,
    }
)


def _utc(value: datetime) -> datetime:
    return dt_util.as_utc(
        value if value.tzinfo else value.replace(tzinfo=dt_util.get_default_time_zone())
    )


def _archive_scope(hass: HomeAssistant, device_id: str) -> tuple[str, str | None]:
    """(agent id, reactor id) of a reactor device, (agent id, None) of an agent device."""
    device = dr.async_get(hass).async_get(device_id)
    if device is not None:
        for entry_id in device.config_entries:
            entry = hass.config_entries.async_get_entry(entry_id)
            if entry is None or entry.domain != DOMAIN or entry.unique_id is None:
                continue
            agent_id = entry.unique_id
            for domain, identifier in device.identifiers:
                if domain != DOMAIN:
                    continue
                if identifier == agent_id:
                    return agent_id, None
                if identifier.startswith(agent_id + "_"):
                    return agent_id, identifier.removeprefix(agent_id + "_")
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="export_unknown_device",
        translation_placeholders={"device_id": device_id},
    )


async def _export(call: ServiceCall) -> ServiceResponse:
    hass = call.hass
    agent_id, reactor = _archive_scope(hass, call.data["device_id"])
    start, end = _utc(call.data["start"]), _utc(call.data["end"])
    if end <= start:
        raise ServiceValidationError(
            translation_domain=DOMAIN, translation_key="export_range_invalid"
        )
    scope = f"{agent_id}_{reactor}" if reactor else agent_id
    name = f"{scope}_{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}.csv"
    out = Path(hass.config.path(EXPORT_DIR, name))
    rows = await hass.async_add_executor_job(
        archive.export,
        Path(hass.config.path(ARCHIVE_DIR, agent_id)),
        None if reactor is None else {reactor},
        start,
        end,
        out,
    )
    return {"path": str(out), "rows": rows}


def async_setup_services(hass: HomeAssistant) -> None:
    async_setup_dose_service(hass)
    hass.services.async_register(
        DOMAIN,
        SERVICE_EXPORT,
        _export,
        schema=EXPORT_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
