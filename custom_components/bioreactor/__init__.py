"""The Bioreactor integration: edge agents' reactors as Home Assistant devices."""

from __future__ import annotations

from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.device_registry import DeviceEntry
from homeassistant.helpers.typing import ConfigType

from .api import BioreactorClient, BioreactorError
from .calibration import async_setup_calibration_service, update_calibration_issues
from .const import CONF_TLS_FINGERPRINT, DOMAIN, LOGGER
from .coordinator import BioreactorConfigEntry, BioreactorCoordinator
from .entity import agent_device
from .services import async_setup_services

PLATFORMS = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.NUMBER,
    Platform.SELECT,
    Platform.SENSOR,
    Platform.SWITCH,
]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    async_setup_services(hass)
    async_setup_calibration_service(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: BioreactorConfigEntry) -> bool:
    client = BioreactorClient(
        entry.data[CONF_HOST],
        entry.data[CONF_PORT],
        entry.data[CONF_TOKEN],
        async_get_clientsession(hass),
        # Statuses and pages from any other agent at this address are refused.
        agent_id=entry.unique_id,
        tls_fingerprint=entry.data.get(CONF_TLS_FINGERPRINT),
    )
    coordinator = BioreactorCoordinator(hass, entry, client)
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = coordinator
    # The agent's device first: reactor devices link to it.
    dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, **agent_device(coordinator)
    )
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Overdue calibrations are checked on every status poll.
    update_calibration_issues(hass, coordinator)
    entry.async_on_unload(
        coordinator.async_add_listener(lambda: update_calibration_issues(hass, coordinator))
    )
    coordinator.start_delivery()
    return True


async def async_unload_entry(hass: HomeAssistant, entry: BioreactorConfigEntry) -> bool:
    # Delivery first: a reload's new setup waits for its storage job anyway (per-agent lock).
    await entry.runtime_data.async_stop_delivery()
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_migrate_entry(hass: HomeAssistant, entry: BioreactorConfigEntry) -> bool:
    """Upgrades entries of earlier versions (Home Assistant refuses newer major versions).

    Unique ids never change, so the entity registry keeps every entity id users built
    dashboards and automations on; new names apply only to entities created from now on.
    """
    if entry.minor_version < 2:
        # 1.1 held recorder resolutions for a change filter; every change is written now.
        hass.config_entries.async_update_entry(
            entry,
            options={k: v for k, v in entry.options.items() if k != "resolutions"},
            minor_version=2,
        )
        LOGGER.debug("migrated entry %s to version 1.2", entry.title)
    return True


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: BioreactorConfigEntry, device: DeviceEntry
) -> bool:
    """Allows removing a reactor whose sensors the agent reports offline or unknown;
    the agent is told to forget them."""
    coordinator = entry.runtime_data
    agent_id = coordinator.agent_id
    for reactor in coordinator.data.reactors:
        if (DOMAIN, f"{agent_id}_{reactor.id}") not in device.identifiers:
            continue
        if any(s.status in ("starting", "online", "error") for s in reactor.sensors):
            return False
        try:
            for sensor in reactor.sensors:
                await coordinator.client.forget_sensor(sensor.id)
        except BioreactorError as err:
            LOGGER.warning("agent %s could not forget reactor %s: %s", agent_id, reactor.id, err)
            return False
        await coordinator.async_request_refresh()
        return True
    # The agent device itself cannot be removed; a reactor the agent no longer lists can.
    return (DOMAIN, agent_id) not in device.identifiers
