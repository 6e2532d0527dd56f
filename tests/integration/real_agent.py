"""Home Assistant paired with a real agent (`bioreactor-edge simulate`) on loopback."""

from __future__ import annotations

from typing import Any

from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.const import DOMAIN
from tests.support.agent_process import AgentProcess


async def pair(hass: HomeAssistant, agent: AgentProcess) -> tuple[MockConfigEntry, dict[str, Any]]:
    """A config entry for `agent`, set up as the config flow would make it; and the
    agent's /info answer (its name and id)."""
    info: dict[str, Any] = await hass.async_add_executor_job(agent.get, "/api/v1/info")
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=info["name"],
        unique_id=info["agent_id"],
        data={CONF_HOST: "127.0.0.1", CONF_PORT: agent.port, CONF_TOKEN: agent.token},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry, info
