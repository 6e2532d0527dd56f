"""Diagnostics download: the entry (token redacted), the agent's status and delivery."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_TOKEN
from homeassistant.core import HomeAssistant

from .coordinator import BioreactorConfigEntry

TO_REDACT = {CONF_TOKEN}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: BioreactorConfigEntry
) -> dict[str, Any]:
    coordinator = entry.runtime_data
    position = coordinator.delivery.position
    return {
        "entry": async_redact_data(
            {"data": dict(entry.data), "options": dict(entry.options)}, TO_REDACT
        ),
        "status": asdict(coordinator.data) if coordinator.data else None,
        "delivery": {
            "epoch": position.epoch,
            "cursor_seq": position.seq,
            "remaining": coordinator.delivery.remaining,
            "delivered_since_start": coordinator.delivery.delivered_total,
        },
    }
