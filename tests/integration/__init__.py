"""Tests of the Home Assistant integration."""

from __future__ import annotations

from unittest.mock import patch

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry


async def setup_integration(
    hass: HomeAssistant, entry: MockConfigEntry, platforms: list[Platform] | None = None
) -> None:
    """Sets the entry up (with only `platforms` when given) and waits until it settled."""
    entry.add_to_hass(hass)
    if platforms is None:
        assert await hass.config_entries.async_setup(entry.entry_id)
    else:
        with patch("custom_components.bioreactor.PLATFORMS", platforms):
            assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
