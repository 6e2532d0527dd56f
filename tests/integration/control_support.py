"""Helpers of the control tests: the agent's control state (recorded from
`bioreactor-edge simulate --control`) merged into the status fixture, and refusals as
the agent words them."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.bioreactor.api import BioreactorRequestError

# Not conftest.FIXTURES: conftest imports this module for its `control` fixture.
CONTROL_FILE = Path(__file__).parent / "fixtures" / "control.json"
CONTROL: dict[str, Any] = json.loads(CONTROL_FILE.read_text())
DEVICE = "simulated_bench_1_reactor_1"


def add_control(payload: dict[str, Any]) -> None:
    """Gives the status fixture's reactor the recorded actuators and loops."""
    payload["reactors"][0].update(copy.deepcopy(CONTROL))


def loop_of(payload: dict[str, Any], loop_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(x for x in payload["reactors"][0]["loops"] if x["id"] == loop_id)
    return found


def actuator_of(payload: dict[str, Any], actuator_id: str) -> dict[str, Any]:
    actuators = payload["reactors"][0]["actuators"]
    found: dict[str, Any] = next(a for a in actuators if a["id"] == actuator_id)
    return found


def refusal(limit: str, message: str, status: int = 400) -> BioreactorRequestError:
    """What the client raises for the agent's 4xx refusal naming `limit`."""
    code = "out_of_limits" if status == 400 else "conflict"
    return BioreactorRequestError(status, code, message, limit)


async def poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """One coordinator poll (the status fixture may have been edited)."""
    freezer.tick(timedelta(seconds=11))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
