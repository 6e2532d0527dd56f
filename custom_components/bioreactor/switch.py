"""Switch entities: relays set by hand (those no loop drives, or whose loop is manual)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from homeassistant.components.switch import SwitchEntity
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import Actuator, Reactor
from .control_entity import ManualActuatorEntity, actuators_of, add_control_entities, agent_command
from .coordinator import BioreactorConfigEntry, BioreactorCoordinator

PARALLEL_UPDATES = 1


class RelaySwitch(ManualActuatorEntity, SwitchEntity):
    """On is a closed relay, as the expander last confirmed it (unknown after a chip
    failure, when the agent keeps driving it to what it should be)."""

    _attr_translation_key = "relay"

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, actuator: Actuator
    ) -> None:
        super().__init__(coordinator, reactor, actuator, "relay")

    @property
    def is_on(self) -> bool | None:
        actuator = self.actuator
        if actuator is None or actuator.applied is None:
            return None
        return actuator.applied == 1

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        actuator = self.actuator
        if actuator is None:
            return {}
        return {
            "safe_state": "on" if actuator.safe == 1 else "off",
            "commanded_by": actuator.commanded_by,
            "error_message": actuator.error_message,
        }

    async def _set(self, on: bool) -> None:
        command = self.coordinator.client.set_actuator(self.actuator_id, 1.0 if on else 0.0)
        await agent_command(self.coordinator, command)

    async def async_turn_on(self, **kwargs: Any) -> None:
        await self._set(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        await self._set(False)


def _specs(
    coordinator: BioreactorCoordinator, reactor: Reactor
) -> Iterable[tuple[str, Callable[[], Entity]]]:
    for actuator in actuators_of(reactor, "relay"):
        yield f"{actuator.id}/relay", partial(RelaySwitch, coordinator, reactor, actuator)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BioreactorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    add_control_entities(entry, async_add_entities, _specs)
