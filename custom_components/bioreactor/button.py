"""Button entities: the reactor's emergency stop, priming a pump, acknowledging a pH
loop's dosing alarm."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

from homeassistant.components.button import ButtonEntity
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import Actuator, ControlLoop, Reactor
from .control_entity import (
    LoopEntity,
    ManualActuatorEntity,
    ReactorControlEntity,
    actuators_of,
    add_control_entities,
    agent_command,
    known_loops,
)
from .coordinator import BioreactorConfigEntry, BioreactorCoordinator

PARALLEL_UPDATES = 1
# Enough to fill a dosing line of a bench reactor; never more than the pump's max_dose_ml.
PRIME_ML = 1.0


class EmergencyStopButton(ReactorControlEntity, ButtonEntity):
    """Every loop of the reactor off and every actuator in its safe state, on the agent."""

    _attr_translation_key = "emergency_stop"

    def __init__(self, coordinator: BioreactorCoordinator, reactor: Reactor) -> None:
        super().__init__(coordinator, reactor, reactor.id, "emergency_stop")

    async def async_press(self) -> None:
        await agent_command(
            self.coordinator, self.coordinator.client.emergency_stop(self.reactor_id)
        )


class PrimeButton(ManualActuatorEntity, ButtonEntity):
    """Doses PRIME_ML (or the pump's max_dose_ml if smaller) to fill the line."""

    _attr_translation_key = "prime"

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, actuator: Actuator
    ) -> None:
        super().__init__(coordinator, reactor, actuator, "prime")

    async def async_press(self) -> None:
        actuator = self.actuator
        cap = None if actuator is None or actuator.pump is None else actuator.pump.max_dose_ml
        volume = PRIME_ML if cap is None else min(PRIME_ML, cap)
        await agent_command(
            self.coordinator, self.coordinator.client.dose(self.actuator_id, volume)
        )


class ClearAlarmButton(LoopEntity, ButtonEntity):
    """Once pumps and lines are checked: a pH loop in dosing alarm may dose again."""

    _attr_translation_key = "ph_clear_alarm"
    _attr_entity_category = EntityCategory.CONFIG

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, loop: ControlLoop
    ) -> None:
        super().__init__(coordinator, reactor, loop, "clear_alarm")

    async def async_press(self) -> None:
        await self.configure(clear_alarm=True)


def _specs(
    coordinator: BioreactorCoordinator, reactor: Reactor
) -> Iterable[tuple[str, Callable[[], Entity]]]:
    if reactor.actuators:
        yield f"{reactor.id}/emergency_stop", partial(EmergencyStopButton, coordinator, reactor)
    for pump in actuators_of(reactor, "pump"):
        yield f"{pump.id}/prime", partial(PrimeButton, coordinator, reactor, pump)
    for loop in known_loops(reactor):
        if loop.kind == "ph":
            yield f"{loop.id}/clear_alarm", partial(ClearAlarmButton, coordinator, reactor, loop)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BioreactorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    add_control_entities(entry, async_add_entities, _specs)
