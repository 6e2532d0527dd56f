"""Actuation events on Home Assistant's bus, once each, after the archive holds them.

The delivery pipeline calls `fire_actuations` with the events of each page it has
just archived (a replayed page archives nothing new, so nothing is fired twice); the
logbook (logbook.py) describes them on the reactor's device page.
"""

from __future__ import annotations

from typing import Any

from homeassistant.const import ATTR_DEVICE_ID
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr

from .api import Reading
from .const import DOMAIN

EVENT_ACTUATION = f"{DOMAIN}_actuation"


def event_data(
    agent_id: str, epoch: str, reading: Reading, device_id: str | None
) -> dict[str, Any]:
    """The bus event's data for one archived actuation event."""
    event = reading.event
    assert event is not None
    return {
        ATTR_DEVICE_ID: device_id,
        "agent_id": agent_id,
        "epoch": epoch,
        "seq": reading.seq,
        "time": reading.time,
        "reactor": reading.reactor,
        "actuator": reading.sensor,
        "value": reading.value,
        "unit": reading.unit,
        "requester": event.requester,
        "reason": event.reason,
        "command": event.command,
        "confirmed": event.confirmed,
        "error": event.error,
        "error_message": event.error_message,
    }


@callback
def fire_actuations(
    hass: HomeAssistant, entry_id: str, agent_id: str, epoch: str, readings: tuple[Reading, ...]
) -> None:
    """Fires one `bioreactor_actuation` event per archived actuation event, with the
    device id of the reactor (of config entry `entry_id`) so it shows on its logbook."""
    devices = dr.async_get(hass)
    ids: dict[str, str | None] = {}
    for reading in readings:
        if reading.reactor not in ids:
            device = devices.async_get_device_by_identifier(
                (DOMAIN, f"{agent_id}_{reading.reactor}"), entry_id
            )
            ids[reading.reactor] = device.id if device is not None else None
        hass.bus.async_fire(
            EVENT_ACTUATION, event_data(agent_id, epoch, reading, ids[reading.reactor])
        )
