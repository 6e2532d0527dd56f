"""Base of the control entities (docs/home-assistant.md, Control): one control loop or
one actuator of one reactor, and how a command reaches the agent.

Safety is the agent's: it checks every command against its hard limits and refuses
with a reason naming the limit, and nothing moves then. Home Assistant only offers
what the agent reports (a number's range is the agent's hard range), and shows a
refusal as a translated ServiceValidationError carrying the agent's reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from homeassistant.core import callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .api import Actuator, BioreactorError, BioreactorRequestError, ControlLoop, Reactor
from .const import DOMAIN
from .coordinator import BioreactorConfigEntry, BioreactorCoordinator
from .entity import reactor_device

# Loop kinds this version has entities for; a newer agent's other kinds are left out.
LOOP_KINDS = ("temperature", "ph")
LOOP_MODES = ["off", "manual", "auto"]


async def agent_command(coordinator: BioreactorCoordinator, command: Awaitable[None]) -> None:
    """Runs a control command; the agent's refusal becomes a ServiceValidationError with
    its reason, a failure to reach it a HomeAssistantError. Then polls the new state."""
    try:
        await command
    except BioreactorRequestError as err:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="control_refused",
            translation_placeholders={"limit": err.limit or err.code, "reason": err.message},
        ) from err
    except BioreactorError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"error": str(err)},
        ) from err
    # Not the debounced request: a second command within its cooldown would show stale
    # state for up to a poll interval. Commands are a person's, so this stays rare.
    await coordinator.async_refresh()


def label(name: str) -> str:
    """A configured name (`heater_enable`) as it reads in an entity name (`Heater enable`)."""
    return name.replace("_", " ").capitalize()


class ReactorControlEntity(CoordinatorEntity[BioreactorCoordinator]):
    """An entity of one reactor's control, keyed by a loop or actuator id (or the reactor's)."""

    _attr_has_entity_name = True

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, subject: str, key: str
    ) -> None:
        super().__init__(coordinator)
        self.reactor_id = reactor.id
        self._attr_unique_id = f"{coordinator.agent_id}_{subject}_{key}"
        self._attr_device_info = reactor_device(coordinator, reactor)

    @property
    def reactor(self) -> Reactor | None:
        if not self.coordinator.last_update_success or self.coordinator.data is None:
            return None
        return next((r for r in self.coordinator.data.reactors if r.id == self.reactor_id), None)

    @property
    def available(self) -> bool:
        return self.reactor is not None


class LoopEntity(ReactorControlEntity):
    """An entity of one control loop; unavailable when the agent no longer lists it."""

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, loop: ControlLoop, key: str
    ) -> None:
        super().__init__(coordinator, reactor, loop.id, key)
        self.loop_id = loop.id

    @property
    def loop(self) -> ControlLoop | None:
        reactor = self.reactor
        if reactor is None:
            return None
        return next((x for x in reactor.loops if x.id == self.loop_id), None)

    @property
    def available(self) -> bool:
        return self.loop is not None

    async def configure(self, **changes: object) -> None:
        await agent_command(
            self.coordinator, self.coordinator.client.configure_loop(self.loop_id, changes)
        )


class ActuatorEntity(ReactorControlEntity):
    """An entity of one actuator."""

    def __init__(
        self, coordinator: BioreactorCoordinator, reactor: Reactor, actuator: Actuator, key: str
    ) -> None:
        super().__init__(coordinator, reactor, actuator.id, key)
        self.actuator_id = actuator.id
        self._attr_translation_placeholders = {"actuator": label(actuator.name)}

    @property
    def actuator(self) -> Actuator | None:
        reactor = self.reactor
        if reactor is None:
            return None
        return next((a for a in reactor.actuators if a.id == self.actuator_id), None)

    @property
    def available(self) -> bool:
        return self.actuator is not None


class ManualActuatorEntity(ActuatorEntity):
    """Commands an actuator by hand: available only while the agent would accept that,
    i.e. no loop drives it or its loop is in `manual` (the agent refuses otherwise)."""

    @property
    def available(self) -> bool:
        actuator, reactor = self.actuator, self.reactor
        if actuator is None or reactor is None:
            return False
        if actuator.loop is None:
            return True
        loop = next((x for x in reactor.loops if x.id == actuator.loop), None)
        return loop is not None and loop.mode == "manual"


# (unique key, entity factory) per entity a reactor should have.
EntitySpecs = Callable[[BioreactorCoordinator, Reactor], Iterable[tuple[str, Callable[[], Entity]]]]


def add_control_entities(
    entry: BioreactorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    specs: EntitySpecs,
) -> None:
    """Adds the entities `specs` lists, now and whenever the agent lists new loops or
    actuators (no reload needed)."""
    coordinator = entry.runtime_data
    known: set[str] = set()

    @callback
    def add_new() -> None:
        if not coordinator.last_update_success or coordinator.data is None:
            return
        new: list[Entity] = []
        for reactor in coordinator.data.reactors:
            for key, make in specs(coordinator, reactor):
                if key not in known:
                    known.add(key)
                    new.append(make())
        if new:
            async_add_entities(new)

    add_new()
    entry.async_on_unload(coordinator.async_add_listener(add_new))


def known_loops(reactor: Reactor) -> list[ControlLoop]:
    return [loop for loop in reactor.loops if loop.kind in LOOP_KINDS]


def actuators_of(reactor: Reactor, kind: str) -> list[Actuator]:
    return [a for a in reactor.actuators if a.kind == kind]
