"""Logbook lines for actuation events: who asked an actuator for what, and what it did."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.components.logbook.const import LOGBOOK_ENTRY_MESSAGE, LOGBOOK_ENTRY_NAME
from homeassistant.core import Event, HomeAssistant, callback

from .actuations import EVENT_ACTUATION
from .const import DOMAIN

_REQUESTERS = {"ha": "Home Assistant", "safety": "the agent's safety logic", "cli": "the CLI"}


def _number(value: float) -> str:
    return f"{value:g}"


def _requester(data: Mapping[str, Any]) -> str:
    requester = str(data["requester"])
    if requester.startswith("loop:"):
        return f"loop {requester.removeprefix('loop:')}"
    name = _REQUESTERS.get(requester, requester)
    return f"{name} ({data['reason']})" if requester == "safety" else name


def _what(data: Mapping[str, Any]) -> str:
    command, value, unit = data["command"], float(data["value"]), data["unit"]
    amount = f"{_number(value)} {unit}".strip()
    if command == "dose":
        return f"dose of {amount} started"
    if command == "dose_result":
        confirmed = data["confirmed"]
        delivered = "nothing confirmed" if confirmed is None else f"{_number(confirmed)} {unit}"
        return f"dose of {amount} finished: {delivered} delivered"
    if command == "safe":
        return f"safe state ({amount})"
    return f"set to {amount}"


def describe(data: Mapping[str, Any]) -> str:
    """The logbook message of one actuation event."""
    message = f"{_what(data)}, asked by {_requester(data)}"
    if data["error"]:
        return f"{message}; failed: {data['error_message'] or data['error']}"
    return message


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, str]]], None],
) -> None:
    """Describes `bioreactor_actuation` events."""

    @callback
    def async_describe_actuation(event: Event) -> dict[str, str]:
        return {
            LOGBOOK_ENTRY_NAME: str(event.data["actuator"]),
            LOGBOOK_ENTRY_MESSAGE: describe(event.data),
        }

    async_describe_event(DOMAIN, EVENT_ACTUATION, async_describe_actuation)
