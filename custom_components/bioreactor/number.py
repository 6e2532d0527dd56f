"""Number entities: loop setpoints, the limits Home Assistant may narrow, and manual PWM
outputs. Each range is the agent's hard range, so Home Assistant cannot even offer a
value beyond it; the agent checks again and names the limit when it refuses."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from homeassistant.components.number import (
    NumberDeviceClass,
    NumberEntity,
    NumberEntityDescription,
    NumberMode,
)
from homeassistant.const import (
    PERCENTAGE,
    EntityCategory,
    UnitOfTemperature,
    UnitOfTime,
    UnitOfVolume,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import Actuator, ControlLoop, Reactor
from .control_entity import (
    LoopEntity,
    ManualActuatorEntity,
    actuators_of,
    add_control_entities,
    agent_command,
    known_loops,
)
from .coordinator import BioreactorConfigEntry, BioreactorCoordinator

PARALLEL_UPDATES = 1
# Longest `min_interval_s` offered (the agent's configuration accepts no more).
MAX_INTERVAL_S = 86400.0


@dataclass(frozen=True, kw_only=True)
class LimitDescription(NumberEntityDescription):
    """A loop limit (docs/safety.md). `narrows` is "max" for a limit that may only go
    lower than configured, "min" for one that may only go higher; `scale` converts the
    agent's value to the one shown (a duty 0-1 as %)."""

    narrows: str
    scale: float = 1.0


def _limit(
    kind: str,
    key: str,
    narrows: str,
    step: float,
    unit: str,
    device_class: NumberDeviceClass | None,
    scale: float = 1.0,
) -> LimitDescription:
    return LimitDescription(
        key=key,
        translation_key=f"{kind}_{key}",
        narrows=narrows,
        native_step=step,
        native_unit_of_measurement=unit,
        device_class=device_class,
        scale=scale,
        entity_category=EntityCategory.CONFIG,
        mode=NumberMode.BOX,
    )


# By loop kind, the limits the agent lets a request narrow (docs/api.md, Control).
_ML, _S = UnitOfVolume.MILLILITERS, UnitOfTime.SECONDS
_VOLUME, _DURATION = NumberDeviceClass.VOLUME, NumberDeviceClass.DURATION
LIMITS: dict[str, tuple[LimitDescription, ...]] = {
    "temperature": (
        _limit("temperature", "max_output", "max", 1, PERCENTAGE, None, scale=100),
        _limit("temperature", "max_input_age_s", "max", 1, _S, _DURATION),
    ),
    "ph": (
        _limit("ph", "max_dose_ml", "max", 0.1, _ML, _VOLUME),
        _limit("ph", "max_ml_per_hour", "max", 0.1, _ML, _VOLUME),
        _limit("ph", "max_ml_per_day", "max", 1, _ML, _VOLUME),
        _limit("ph", "min_interval_s", "min", 1, _S, _DURATION),
        _limit("ph", "max_input_age_s", "max", 1, _S, _DURATION),
    ),
}

SETPOINTS: dict[str, NumberEntityDescription] = {
    "temperature": NumberEntityDescription(
        key="setpoint",
        translation_key="temperature_setpoint",
        device_class=NumberDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        native_step=0.1,
        mode=NumberMode.BOX,
    ),
    "ph": NumberEntityDescription(
        key="setpoint",
        translation_key="ph_setpoint",
        device_class=NumberDeviceClass.PH,
        native_step=0.01,
        mode=NumberMode.BOX,
    ),
}


def _shown(value: float, scale: float) -> float:
    # 0.9 * 100 is 90.00000000000001 in binary floating point.
    return round(value * scale, 9)


class SetpointNumber(LoopEntity, NumberEntity):
    """A loop's setpoint, within the configured setpoint_min..setpoint_max."""

    def __init__(
        self,
        coordinator: BioreactorCoordinator,
        reactor: Reactor,
        loop: ControlLoop,
        description: NumberEntityDescription,
    ) -> None:
        super().__init__(coordinator, reactor, loop, description.key)
        self.entity_description = description

    @property
    def native_min_value(self) -> float:
        loop = self.loop
        return 0.0 if loop is None else loop.setpoint_min

    @property
    def native_max_value(self) -> float:
        loop = self.loop
        return 0.0 if loop is None else loop.setpoint_max

    @property
    def native_value(self) -> float | None:
        loop = self.loop
        return None if loop is None else loop.setpoint

    async def async_set_native_value(self, value: float) -> None:
        await self.configure(setpoint=value)


class LimitNumber(LoopEntity, NumberEntity):
    """A limit in force on a loop: narrowed by Home Assistant or as configured.

    A "max" limit is offered from one step up to its hard value, a "min" one from its hard
    value up; setting the hard value again removes the narrowing.
    """

    entity_description: LimitDescription

    def __init__(
        self,
        coordinator: BioreactorCoordinator,
        reactor: Reactor,
        loop: ControlLoop,
        description: LimitDescription,
    ) -> None:
        super().__init__(coordinator, reactor, loop, description.key)
        self.entity_description = description

    def _hard(self) -> float | None:
        loop = self.loop
        if loop is None:
            return None
        hard = loop.hard_limits.get(self.entity_description.key)
        return None if hard is None else _shown(hard, self.entity_description.scale)

    @property
    def available(self) -> bool:
        return self._hard() is not None

    @property
    def native_min_value(self) -> float:
        hard, step = self._hard() or 0.0, self.entity_description.native_step or 1.0
        return min(step, hard) if self.entity_description.narrows == "max" else hard

    @property
    def native_max_value(self) -> float:
        hard = self._hard() or 0.0
        return hard if self.entity_description.narrows == "max" else max(hard, MAX_INTERVAL_S)

    @property
    def native_value(self) -> float | None:
        loop = self.loop
        value = None if loop is None else loop.limits.get(self.entity_description.key)
        return None if value is None else _shown(value, self.entity_description.scale)

    async def async_set_native_value(self, value: float) -> None:
        scaled = value / self.entity_description.scale
        await self.configure(limits={self.entity_description.key: scaled})


class OutputNumber(ManualActuatorEntity, NumberEntity):
    """A PWM output's duty set by hand (%), up to its configured max_duty."""

    _attr_translation_key = "output"
    _attr_native_unit_of_measurement = PERCENTAGE
    _attr_native_min_value = 0.0
    _attr_native_step = 1.0
    _attr_mode = NumberMode.SLIDER

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, actuator: Actuator
    ) -> None:
        super().__init__(coordinator, reactor, actuator, "output")

    @property
    def native_max_value(self) -> float:
        actuator = self.actuator
        # Agents that do not report max_duty still refuse a duty above it.
        max_duty = 1.0 if actuator is None or actuator.max_duty is None else actuator.max_duty
        return _shown(max_duty, 100)

    @property
    def native_value(self) -> float | None:
        actuator = self.actuator
        return None if actuator is None else _shown(actuator.wanted, 100)

    async def async_set_native_value(self, value: float) -> None:
        await agent_command(
            self.coordinator,
            self.coordinator.client.set_actuator(self.actuator_id, value / 100),
        )


def _specs(
    coordinator: BioreactorCoordinator, reactor: Reactor
) -> Iterable[tuple[str, Callable[[], Entity]]]:
    for loop in known_loops(reactor):
        setpoint = SETPOINTS[loop.kind]
        yield f"{loop.id}/setpoint", partial(SetpointNumber, coordinator, reactor, loop, setpoint)
        for limit in LIMITS[loop.kind]:
            if limit.key in loop.hard_limits:
                key = f"{loop.id}/{limit.key}"
                yield key, partial(LimitNumber, coordinator, reactor, loop, limit)
    for actuator in actuators_of(reactor, "pwm"):
        yield f"{actuator.id}/output", partial(OutputNumber, coordinator, reactor, actuator)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BioreactorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    add_control_entities(entry, async_add_entities, _specs)
