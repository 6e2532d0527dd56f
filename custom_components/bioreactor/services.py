"""The `bioreactor.export_readings` service: a CSV of archived readings."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import probatio as vol
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.util import dt as dt_util

from . import archive
from .const import ARCHIVE_DIR, DOMAIN, EXPORT_DIR

SERVICE_EXPORT = "export_readings"
EXPORT_SCHEMA = vol.Schema(
    {
        vol.Required("reactor"): vol.All(cv.string, vol.Match(r"^[a-z0-9][a-z0-9_-]{0,31}$")),
        vol.Required("start"): cv.datetime,
        vol.Required("end"): cv.datetime,
    }
)


def _utc(value: datetime) -> datetime:
    return dt_util.as_utc(
        value if value.tzinfo else value.replace(tzinfo=dt_util.get_default_time_zone())
    )


async def _export(call: ServiceCall) -> ServiceResponse:
    hass = call.hass
    reactor: str = call.data["reactor"]
    start, end = _utc(call.data["start"]), _utc(call.data["end"])
    if end <= start:
        raise ServiceValidationError(
            translation_domain=DOMAIN, translation_key="export_range_invalid"
        )
    name = f"{reactor}_{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}.csv"
    out = Path(hass.config.path(EXPORT_DIR, name))
    path, rows = await hass.async_add_executor_job(
        archive.export, Path(hass.config.path(ARCHIVE_DIR)), reactor, start, end, out
    )
    return {"path": str(path), "rows": rows}


def async_setup_services(hass: HomeAssistant) -> None:
    hass.services.async_register(
        DOMAIN,
        SERVICE_EXPORT,
        _export,
        schema=EXPORT_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
