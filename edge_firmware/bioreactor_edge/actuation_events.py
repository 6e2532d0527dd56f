"""Actuation events: what an actuator was told to do, by whom, and what it confirmed.

An event is journaled as a row of the readings table (quantity `actuation`, the
actuator's id in the sensor column, the commanded value and unit) with its
details as JSON in the row's `event` column. It shares the readings' sequence
space, so one cursor and one acknowledgement deliver both exactly once
(docs/api.md, "Actuation events"). actuators.py is the only emitter.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .models import NewReading

ACTUATION = "actuation"  # the quantity of an event's row
# One-off safe-state commands (control/runner.py), journaled even when nothing changed;
# repeated ones (a lockout, a loop that is off, a failing tick) only when something did.
SAFETY_COMMANDS = frozenset({"start", "shutdown", "emergency_stop"})

Append = Callable[[Sequence[NewReading]], Awaitable[None]]


def requester(by: str) -> str:
    """Who asked, from an actuator's `commanded_by`: `loop:<id>`, `ha` (an API request),
    `cli`, or `safety` (safe states at start and stop, lockouts, an emergency stop)."""
    if by == "api":
        return "ha"
    if by == "cli":
        return "cli"
    if by.startswith("loop:"):
        # "loop:<id>" drives it; "loop:<id>:<mode>" is the loop's mode making it safe.
        return "loop:" + by.split(":")[1]
    return "safety"


@dataclass(frozen=True, slots=True)
class Actuation:
    """One command an actuator carried out (or failed to)."""

    actuator: str  # actuator id, `<reactor>-<name>`
    command: str  # set | safe | dose | dose_result
    value: float  # commanded: 0/1 for a relay, a duty, or mL for a dose
    unit: str  # "mL" for doses, "" otherwise
    by: str  # the actuator's `commanded_by` (e.g. "api", "lockout:input_stale")
    confirmed: float | None  # what the chip confirmed (a dose: the volume), None on failure
    error: str | None = None
    error_message: str | None = None

    def details(self) -> dict[str, object]:
        return {
            "requester": requester(self.by),
            "reason": self.by,
            "command": self.command,
            "confirmed": self.confirmed,
            "error": self.error,
            "error_message": self.error_message,
        }

    def reading(self, time_ms: int, reactor: str) -> NewReading:
        return NewReading(
            time_ms=time_ms,
            reactor=reactor,
            sensor=self.actuator,
            quantity=ACTUATION,
            value=self.value,
            unit=self.unit,
            quality="failed" if self.error else "good",
            event=json.dumps(self.details(), separators=(",", ":")),
        )


class ActuationLog:
    """Journals actuation events, timed by the agent's clock."""

    def __init__(self, append: Append, clock: Callable[[], float]) -> None:
        self._append = append
        self._clock = clock

    async def record(self, reactor: str, actuation: Actuation) -> None:
        """Returns once the event is durable (the journal never raises: it parks, counts)."""
        await self._append([actuation.reading(round(self._clock() * 1000), reactor)])
