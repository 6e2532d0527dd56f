"""Select entities: each control loop's mode (off / manual / auto) on the agent."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

from homeassistant.components.select import SelectEntity
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import ControlLoop, Reactor
from .control_entity import LOOP_MODES, LoopEntity, add_control_entities, known_loops
from .coordinator import BioreactorConfigEntry, BioreactorCoordinator

PARALLEL_UPDATES = 1


class LoopModeSelect(LoopEntity, SelectEntity):
    """`off` holds the loop's outputs in their safe states, `manual` leaves them to
    commands by hand, `auto` lets the loop drive them (persisted on the agent)."""

    _attr_options = LOOP_MODES

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, loop: ControlLoop
    ) -> None:
        super().__init__(coordinator, reactor, loop, "mode")
        self._attr_translation_key = f"{loop.kind}_mode"

    @property
    def current_option(self) -> str | None:
        loop = self.loop
        # A mode of a newer agent is no option here: shown as unknown.
        return None if loop is None or loop.mode not in LOOP_MODES else loop.mode

    async def async_select_option(self, option: str) -> None:
        await self.configure(mode=option)


def _specs(
    coordinator: BioreactorCoordinator, reactor: Reactor
) -> Iterable[tuple[str, Callable[[], Entity]]]:
    for loop in known_loops(reactor):
        yield f"{loop.id}/mode", partial(LoopModeSelect, coordinator, reactor, loop)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BioreactorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    add_control_entities(entry, async_add_entities, _specs)
