"""Sensor entities: one per measured quantity, plus sensor status and agent diagnostics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

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
    UnitOfVolume,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import QUALITY_CALIBRATING, AgentStatus, QuantityValue, Reactor, Sensor
from .control_entity import add_control_entities
from .control_sensor import control_sensor_specs
from .coordinator import BioreactorConfigEntry, BioreactorCoordinator
from .entity import AgentEntity, SensorHandlerEntity

PARALLEL_UPDATES = 0

SENSOR_STATUSES = ["starting", "online", "offline", "error", "unknown"]


@dataclass(frozen=True, kw_only=True)
class QuantityDescription(SensorEntityDescription):
    """How one of the agent's quantities (docs/api.md) appears in Home Assistant."""

    state_class: SensorStateClass | None = SensorStateClass.MEASUREMENT


def _measured(
    key: str,
    device_class: SensorDeviceClass | None,
    unit: str | None,
    precision: int,
    translation_key: str | None = None,
) -> QuantityDescription:
    return QuantityDescription(
        key=key,
        translation_key=translation_key or key,
        device_class=device_class,
        native_unit_of_measurement=unit,
        suggested_display_precision=precision,
    )


def _temperature(translation_key: str, precision: int) -> QuantityDescription:
    device_class, unit = SensorDeviceClass.TEMPERATURE, UnitOfTemperature.CELSIUS
    return _measured("temperature", device_class, unit, precision, translation_key)


def _humidity(translation_key: str) -> QuantityDescription:
    return _measured("humidity", SensorDeviceClass.HUMIDITY, PERCENTAGE, 1, translation_key)


_MILLIVOLT = UnitOfElectricPotential.MILLIVOLT
_MICROSIEMENS = UnitOfConductivity.MICROSIEMENS_PER_CM

# By the agent's stable quantity keys (docs/api.md).
QUANTITIES: dict[str, QuantityDescription] = {
    d.key: d
    for d in (
        _temperature("temperature", 2),
        _humidity("humidity"),
        _measured("ph", SensorDeviceClass.PH, None, 2),
        _measured("dissolved_oxygen", None, "mg/L", 2),
        _measured("oxygen_saturation", None, PERCENTAGE, 1),
        _measured("orp", SensorDeviceClass.VOLTAGE, _MILLIVOLT, 0),
        _measured("conductivity", SensorDeviceClass.CONDUCTIVITY, _MICROSIEMENS, 0),
        _measured("total_dissolved_solids", None, "ppm", 0),
        _measured("salinity", None, "PSU", 2),
        _measured("specific_gravity", None, None, 3),
        QuantityDescription(
            key="total_volume",
            translation_key="dispensed_volume",
            device_class=SensorDeviceClass.VOLUME,
            # The pump's counter only grows; a drop is a reset (`Clear` on the chip).
            state_class=SensorStateClass.TOTAL_INCREASING,
            native_unit_of_measurement=UnitOfVolume.MILLILITERS,
            suggested_display_precision=2,
        ),
    )
}

# The same quantity from different chips means different things: the SHT4x measures the
# air around the vessel, the RTD probe the culture itself.
CHIP_QUANTITIES: dict[tuple[str, str], QuantityDescription] = {
    ("sht4x", "temperature"): _temperature("air_temperature", 1),
    ("sht4x", "humidity"): _humidity("air_humidity"),
    ("rtd", "temperature"): _temperature("liquid_temperature", 2),
}


def quantity_description(kind: str, quantity: QuantityValue) -> QuantityDescription:
    known = CHIP_QUANTITIES.get((kind, quantity.key)) or QUANTITIES.get(quantity.key)
    if known is not None:
        return known
    if quantity.key.startswith("voltage_"):
        # An ADS1115's raw channels mean nothing until wired to a probe: off by default.
        return QuantityDescription(
            key=quantity.key,
            translation_key="adc_voltage",
            translation_placeholders={"channel": quantity.key.removeprefix("voltage_")},
            device_class=SensorDeviceClass.VOLTAGE,
            native_unit_of_measurement=UnitOfElectricPotential.VOLT,
            suggested_display_precision=4,
            entity_registry_enabled_default=False,
        )
    # A quantity this version does not know: generic, with the agent's unit.
    return QuantityDescription(
        key=quantity.key,
        name=quantity.key.replace("_", " ").capitalize(),
        native_unit_of_measurement=quantity.unit or None,
        suggested_display_precision=3,
    )


def at_address(description: QuantityDescription, address: int) -> QuantityDescription:
    """The name of one of several chips of a kind on a reactor (two RTD probes): each says
    its address, so that neither setup order nor chance decides which entity id is `_2`."""
    where = f"0x{address:02x}"
    if isinstance(description.name, str):  # a quantity this version does not know
        return replace(description, name=f"{description.name} {where}")
    return replace(
        description,
        translation_key=f"{description.translation_key}_at",
        translation_placeholders={**(description.translation_placeholders or {}), "address": where},
    )


class QuantitySensor(SensorHandlerEntity, SensorEntity):
    """The newest reading of one quantity. Every change is written to the state machine;
    how much of it the recorder keeps is the recorder's configuration."""

    entity_description: QuantityDescription

    def __init__(
        self,
        coordinator: BioreactorCoordinator,
        reactor: Reactor,
        sensor: Sensor,
        quantity: QuantityValue,
    ) -> None:
        super().__init__(coordinator, reactor, sensor, quantity.key)
        description = quantity_description(sensor.kind, quantity)
        if any(other.kind == sensor.kind and other.id != sensor.id for other in reactor.sensors):
            description = at_address(description, sensor.address)
        self.entity_description = description
        self._key = quantity.key

    @property
    def native_value(self) -> float | None:
        sensor = self.sensor
        if sensor is None or sensor.status != "online":
            return None
        quantity = next((q for q in sensor.quantities if q.key == self._key), None)
        # While calibrating, the probe measures a buffer solution, not the culture:
        # unavailable, so no history, statistic or alert takes it for the culture's.
        if quantity is None or quantity.quality == QUALITY_CALIBRATING:
            return None
        return quantity.value

    @property
    def available(self) -> bool:
        return self.native_value is not None


class SensorStatusEntity(SensorHandlerEntity, SensorEntity):
    """starting / online / offline / error / unknown of one I2C sensor."""

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
        if sensor is None:
            return "offline"
        # A status of a newer agent is no option of this enum: shown as unknown (None).
        return sensor.status if sensor.status in SENSOR_STATUSES else None

    @property
    def extra_state_attributes(self) -> dict[str, str | None]:
        """Why the sensor failed, in the agent's words (for notifications)."""
        sensor = self.sensor
        return {"error_message": None if sensor is None else sensor.error_message}


@dataclass(frozen=True, kw_only=True)
class AgentSensorDescription(SensorEntityDescription):
    value_fn: Callable[[BioreactorCoordinator, AgentStatus], int]
    # The value's breakdown, as state attributes.
    attributes_fn: Callable[[AgentStatus], Mapping[str, int]] | None = None


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
        # Per cause: budget, retention, disk_full, io_error, shutdown, recovery.
        attributes_fn=lambda status: status.journal.dropped_by_cause,
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

    @property
    def extra_state_attributes(self) -> dict[str, int] | None:
        attributes_fn = self.entity_description.attributes_fn
        return None if attributes_fn is None else dict(attributes_fn(self.coordinator.data))


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
    add_control_entities(entry, async_add_entities, control_sensor_specs)
