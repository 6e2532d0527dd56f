"""Sensor entities: one per measured quantity, plus sensor status and agent diagnostics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    PERCENTAGE,
    EntityCategory,
    UnitOfConductivity,
    UnitOfElectricPotential,
    UnitOfTemperature,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .api import AgentStatus, QuantityValue, Reactor, Sensor
from .const import CONF_RESOLUTIONS, DEFAULT_RESOLUTIONS, HEARTBEAT
from .coordinator import BioreactorConfigEntry, BioreactorCoordinator
from .entity import AgentEntity, SensorHandlerEntity

PARALLEL_UPDATES = 0

SENSOR_STATUSES = ["online", "offline", "error", "unknown"]


@dataclass(frozen=True, kw_only=True)
class QuantityDescription(SensorEntityDescription):
    """How a quantity key maps to Home Assistant."""

    precision: int


# Keys are the agent's stable quantity keys (docs/api.md).
QUANTITIES: dict[str, QuantityDescription] = {
    d.key: d
    for d in (
        QuantityDescription(
            key="temperature",
            translation_key="temperature",
            precision=2,
            device_class=SensorDeviceClass.TEMPERATURE,
            native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        ),
        QuantityDescription(
            key="ph", translation_key="ph", precision=2, device_class=SensorDeviceClass.PH
        ),
        QuantityDescription(
            key="dissolved_oxygen",
            translation_key="dissolved_oxygen",
            precision=2,
            native_unit_of_measurement="mg/L",
        ),
        QuantityDescription(
            key="oxygen_saturation",
            translation_key="oxygen_saturation",
            precision=1,
            native_unit_of_measurement=PERCENTAGE,
        ),
        QuantityDescription(
            key="orp",
            translation_key="orp",
            precision=0,
            device_class=SensorDeviceClass.VOLTAGE,
            native_unit_of_measurement=UnitOfElectricPotential.MILLIVOLT,
        ),
        QuantityDescription(
            key="conductivity",
            translation_key="conductivity",
            precision=0,
            device_class=SensorDeviceClass.CONDUCTIVITY,
            native_unit_of_measurement=UnitOfConductivity.MICROSIEMENS_PER_CM,
        ),
        QuantityDescription(
            key="total_dissolved_solids",
            translation_key="total_dissolved_solids",
            precision=0,
            native_unit_of_measurement="ppm",
        ),
        QuantityDescription(
            key="salinity",
            translation_key="salinity",
            precision=2,
            native_unit_of_measurement="PSU",
        ),
        QuantityDescription(
            key="specific_gravity", translation_key="specific_gravity", precision=3
        ),
        QuantityDescription(
            key="humidity",
            translation_key="humidity",
            precision=1,
            device_class=SensorDeviceClass.HUMIDITY,
            native_unit_of_measurement=PERCENTAGE,
        ),
    )
}


def quantity_description(quantity: QuantityValue) -> QuantityDescription:
    known = QUANTITIES.get(quantity.key)
    if known is not None:
        return known
    if quantity.key.startswith("voltage_"):
        return QuantityDescription(
            key=quantity.key,
            translation_key="voltage_channel",
            translation_placeholders={"channel": quantity.key.removeprefix("voltage_")},
            precision=4,
            device_class=SensorDeviceClass.VOLTAGE,
            native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        )
    # A quantity this version does not know: generic, with the agent's unit.
    return QuantityDescription(
        key=quantity.key,
        name=quantity.key.replace("_", " ").capitalize(),
        precision=3,
        native_unit_of_measurement=quantity.unit or None,
    )


class QuantitySensor(SensorHandlerEntity, SensorEntity):
    """The newest reading of one quantity, written to the recorder only when it moves
    by more than its resolution, or at least every HEARTBEAT (delta + heartbeat)."""

    entity_description: QuantityDescription
    _attr_state_class = SensorStateClass.MEASUREMENT

    def __init__(
        self,
        coordinator: BioreactorCoordinator,
        reactor: Reactor,
        sensor: Sensor,
        quantity: QuantityValue,
    ) -> None:
        super().__init__(coordinator, reactor, sensor, quantity.key)
        description = quantity_description(quantity)
        self.entity_description = description
        self._attr_suggested_display_precision = description.precision
        if description.translation_key is None and description.name is None:
            self._attr_name = quantity.key
        self._key = quantity.key
        resolutions = {
            **DEFAULT_RESOLUTIONS,
            **coordinator.config_entry.options.get(CONF_RESOLUTIONS, {}),
        }
        self._resolution = float(resolutions.get(quantity.unit, quantity.resolution))
        self._written_at: datetime | None = None
        self._attr_native_value = self._current()

    def _quantity(self) -> QuantityValue | None:
        sensor = self.sensor
        if sensor is None or sensor.status != "online":
            return None
        return next((q for q in sensor.quantities if q.key == self._key), None)

    def _current(self) -> float | None:
        quantity = self._quantity()
        return None if quantity is None else quantity.value

    @property
    def available(self) -> bool:
        return self._current() is not None

    @callback
    def _handle_coordinator_update(self) -> None:
        value = self._current()
        written = self._attr_native_value
        now = dt_util.utcnow()
        moved = (
            value is None
            or not isinstance(written, (int, float))
            or abs(value - written) > self._resolution
        )
        due = self._written_at is None or now - self._written_at >= HEARTBEAT
        if moved or due or self._attr_available != (value is not None):
            self._attr_native_value = value
            self._attr_available = value is not None
            self._written_at = now
            self.async_write_ha_state()

    async def async_added_to_hass(self) -> None:
        await super().async_added_to_hass()
        self._written_at = dt_util.utcnow()


class SensorStatusEntity(SensorHandlerEntity, SensorEntity):
    """online / offline / error / unknown of one I2C sensor."""

    _attr_device_class = SensorDeviceClass.ENUM
    _attr_options = SENSOR_STATUSES
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_translation_key = "sensor_status"

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, sensor: Sensor
    ) -> None:
        super().__init__(coordinator, reactor, sensor, "status")
        self._attr_translation_placeholders = {"sensor": f"{sensor.kind} 0x{sensor.address:02x}"}

    @property
    def available(self) -> bool:
        return self.coordinator.last_update_success

    @property
    def native_value(self) -> str | None:
        sensor = self.sensor
        # A sensor the agent forgot or no longer lists reads "offline".
        return "offline" if sensor is None else sensor.status


@dataclass(frozen=True, kw_only=True)
class AgentSensorDescription(SensorEntityDescription):
    value_fn: Callable[[BioreactorCoordinator, AgentStatus], int]


AGENT_SENSORS = (
    AgentSensorDescription(
        key="journal_pending",
        translation_key="journal_pending",
        entity_category=EntityCategory.DIAGNOSTIC,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda _, status: status.journal.pending,
    ),
    AgentSensorDescription(
        key="journal_dropped",
        translation_key="journal_dropped",
        entity_category=EntityCategory.DIAGNOSTIC,
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda _, status: status.journal.dropped,
    ),
    AgentSensorDescription(
        key="bus_errors",
        translation_key="bus_errors",
        entity_category=EntityCategory.DIAGNOSTIC,
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_registry_enabled_default=False,
        value_fn=lambda _, status: sum(b.transactions_error for b in status.buses),
    ),
    AgentSensorDescription(
        key="readings_to_import",
        translation_key="readings_to_import",
        entity_category=EntityCategory.DIAGNOSTIC,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda coordinator, status: max(
            coordinator.delivery.remaining,
            status.journal.newest_seq - coordinator.delivery.position.seq
            if coordinator.delivery.position.epoch == status.journal.epoch
            else status.journal.newest_seq,
        ),
    ),
)


class AgentSensor(AgentEntity, SensorEntity):
    entity_description: AgentSensorDescription

    def __init__(
        self, coordinator: BioreactorCoordinator, description: AgentSensorDescription
    ) -> None:
        super().__init__(coordinator, description.key)
        self.entity_description = description

    @property
    def native_value(self) -> int:
        return self.entity_description.value_fn(self.coordinator, self.coordinator.data)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BioreactorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    coordinator = entry.runtime_data
    async_add_entities(AgentSensor(coordinator, d) for d in AGENT_SENSORS)
    known: set[str] = set()

    @callback
    def add_new() -> None:
        """Adds entities for sensors and quantities the agent lists for the first time."""
        if not coordinator.last_update_success or coordinator.data is None:
            return
        new: list[SensorEntity] = []
        for reactor in coordinator.data.reactors:
            for sensor in reactor.sensors:
                if sensor.id not in known:
                    known.add(sensor.id)
                    new.append(SensorStatusEntity(coordinator, reactor, sensor))
                for quantity in sensor.quantities:
                    key = f"{sensor.id}/{quantity.key}"
                    if key not in known:
                        known.add(key)
                        new.append(QuantitySensor(coordinator, reactor, sensor, quantity))
        if new:
            async_add_entities(new)

    add_new()
    entry.async_on_unload(coordinator.async_add_listener(add_new))
