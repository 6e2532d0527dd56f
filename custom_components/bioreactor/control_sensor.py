"""Sensor entities of the agent's control: each loop's state and output, each pump's
doses against its caps. Added by sensor.py (one platform per entity domain)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, UnitOfVolume
from homeassistant.helpers.entity import Entity

from .api import Actuator, ControlLoop, PumpState, Reactor
from .control_entity import ActuatorEntity, LoopEntity, actuators_of, known_loops
from .coordinator import BioreactorCoordinator

LOOP_STATES = ["off", "manual", "running", "lockout"]


class LoopStateSensor(LoopEntity, SensorEntity):
    """off / manual / running / lockout; `reason` says why a loop is locked out (input
    missing, stale or in error, an output failing, a dosing alarm)."""

    _attr_device_class = SensorDeviceClass.ENUM
    _attr_options = LOOP_STATES

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, loop: ControlLoop
    ) -> None:
        super().__init__(coordinator, reactor, loop, "state")
        self._attr_translation_key = f"{loop.kind}_state"

    @property
    def native_value(self) -> str | None:
        loop = self.loop
        return None if loop is None or loop.state not in LOOP_STATES else loop.state

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        loop = self.loop
        if loop is None:
            return {}
        attributes: dict[str, Any] = {"reason": loop.reason}
        if loop.kind == "ph":
            attributes["alarm"] = loop.alarm
        return attributes


class LoopOutputSensor(LoopEntity, SensorEntity):
    """The heater duty a temperature loop's PID asks for (%); unknown unless running."""

    _attr_translation_key = "temperature_output"
    _attr_native_unit_of_measurement = PERCENTAGE
    _attr_state_class = SensorStateClass.MEASUREMENT
    _attr_suggested_display_precision = 0

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, loop: ControlLoop
    ) -> None:
        super().__init__(coordinator, reactor, loop, "output")

    @property
    def native_value(self) -> float | None:
        loop = self.loop
        if loop is None or loop.output is None or loop.state != "running":
            return None
        return loop.output * 100


@dataclass(frozen=True, kw_only=True)
class PumpSensorDescription(SensorEntityDescription):
    value_fn: Callable[[PumpState], float | None]
    attributes_fn: Callable[[Actuator, PumpState], dict[str, Any]]


# Rolling windows go down as doses age out: volumes, but no total a statistic could sum
# (the pump's own growing total is its sensor's *Dispensed volume*).
PUMP_SENSORS = (
    PumpSensorDescription(
        key="dosed_last_hour",
        translation_key="dosed_last_hour",
        value_fn=lambda pump: pump.dosed_last_hour_ml,
        attributes_fn=lambda _, pump: {"limit_ml": pump.max_ml_per_hour},
    ),
    PumpSensorDescription(
        key="dosed_last_day",
        translation_key="dosed_last_day",
        value_fn=lambda pump: pump.dosed_last_day_ml,
        attributes_fn=lambda _, pump: {"limit_ml": pump.max_ml_per_day},
    ),
    PumpSensorDescription(
        key="last_dose",
        translation_key="last_dose",
        value_fn=lambda pump: pump.delivered_ml,
        attributes_fn=lambda actuator, pump: {
            "requested_ml": pump.last_dose_ml,
            "dosing": pump.dosing,
            "commanded_by": actuator.commanded_by,
            "error_message": actuator.error_message,
        },
    ),
)


class PumpSensor(ActuatorEntity, SensorEntity):
    entity_description: PumpSensorDescription
    _attr_device_class = SensorDeviceClass.VOLUME
    _attr_native_unit_of_measurement = UnitOfVolume.MILLILITERS
    _attr_suggested_display_precision = 2

    def __init__(
        self,
        coordinator: BioreactorCoordinator,
        reactor: Reactor,
        actuator: Actuator,
        description: PumpSensorDescription,
    ) -> None:
        super().__init__(coordinator, reactor, actuator, description.key)
        self.entity_description = description

    @property
    def _pump(self) -> tuple[Actuator, PumpState] | None:
        actuator = self.actuator
        if actuator is None or actuator.pump is None:
            return None
        return actuator, actuator.pump

    @property
    def available(self) -> bool:
        return self._pump is not None

    @property
    def native_value(self) -> float | None:
        found = self._pump
        return None if found is None else self.entity_description.value_fn(found[1])

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        found = self._pump
        return {} if found is None else self.entity_description.attributes_fn(*found)


def control_sensor_specs(
    coordinator: BioreactorCoordinator, reactor: Reactor
) -> Iterable[tuple[str, Callable[[], Entity]]]:
    for loop in known_loops(reactor):
        yield f"{loop.id}/state", partial(LoopStateSensor, coordinator, reactor, loop)
        if loop.kind == "temperature":
            yield f"{loop.id}/output", partial(LoopOutputSensor, coordinator, reactor, loop)
    for pump in actuators_of(reactor, "pump"):
        for description in PUMP_SENSORS:
            key = f"{pump.id}/{description.key}"
            yield key, partial(PumpSensor, coordinator, reactor, pump, description)
