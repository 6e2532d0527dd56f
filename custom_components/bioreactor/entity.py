"""Base entities: agent-level and sensor-level, with their devices."""

from __future__ import annotations

from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .api import Reactor, Sensor
from .const import DOMAIN
from .coordinator import BioreactorCoordinator

MANUFACTURER = "Bioreactor"


def agent_name(coordinator: BioreactorCoordinator) -> str:
    """The agent's name, which leads its devices' names and so their entity ids.

    Boards left at the same default name (their host name) get the start of their agent
    id added, so that neither setup order nor chance decides which one is `_2`.
    """
    name = coordinator.data.info.name
    entry = coordinator.config_entry
    namesakes = [
        other
        for other in coordinator.hass.config_entries.async_entries(DOMAIN, include_ignore=False)
        if other.entry_id != entry.entry_id and other.title.casefold() == name.casefold()
    ]
    return f"{name} {coordinator.agent_id[:6]}" if namesakes else name


def agent_device(coordinator: BioreactorCoordinator) -> DeviceInfo:
    return DeviceInfo(
        identifiers={(DOMAIN, coordinator.agent_id)},
        manufacturer=MANUFACTURER,
        model="Edge agent",
        name=agent_name(coordinator),
        sw_version=coordinator.data.info.firmware_version,
    )


def reactor_device(coordinator: BioreactorCoordinator, reactor: Reactor) -> DeviceInfo:
    return DeviceInfo(
        identifiers={(DOMAIN, f"{coordinator.agent_id}_{reactor.id}")},
        manufacturer=MANUFACTURER,
        model="Bioreactor",
        # Every agent's first reactor is "Reactor 1" by default: the agent's name in front
        # keeps two benches' reactors, and the entity ids derived from them, apart.
        name=f"{agent_name(coordinator)} {reactor.name}",
        # Only the room configured on the agent: Home Assistant puts a device's area in
        # front of the entity ids it creates, so an area made up here (the bench's name)
        # would repeat in every id.
        suggested_area=reactor.area,
        sw_version=coordinator.data.info.firmware_version,
        via_device_id=dr.async_get_device_id_by_identifier(
            coordinator.hass,
            (DOMAIN, coordinator.agent_id),
            config_entry_id=coordinator.config_entry.entry_id,
        ),
    )


class AgentEntity(CoordinatorEntity[BioreactorCoordinator]):
    """An entity of the agent itself (diagnostics)."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: BioreactorCoordinator, key: str) -> None:
        super().__init__(coordinator)
        self._attr_unique_id = f"{coordinator.agent_id}_{key}"
        self._attr_device_info = agent_device(coordinator)


class SensorHandlerEntity(CoordinatorEntity[BioreactorCoordinator]):
    """An entity of one I2C sensor on one reactor; unavailable when the sensor is gone."""

    _attr_has_entity_name = True

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, sensor: Sensor, key: str
    ) -> None:
        super().__init__(coordinator)
        self.reactor_id = reactor.id
        self.sensor_id = sensor.id
        self._attr_unique_id = f"{coordinator.agent_id}_{sensor.id}_{key}"
        self._attr_device_info = reactor_device(coordinator, reactor)

    @property
    def sensor(self) -> Sensor | None:
        if not self.coordinator.last_update_success or self.coordinator.data is None:
            return None
        for reactor in self.coordinator.data.reactors:
            if reactor.id == self.reactor_id:
                for sensor in reactor.sensors:
                    if sensor.id == self.sensor_id:
                        return sensor
        return None
