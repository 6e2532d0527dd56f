"""The API client's control part: strict parsing of actuators and loops, and the control
requests with the agent's refusals (the named limit) on a real aiohttp server."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from custom_components.bioreactor.api import (
    BioreactorClient,
    BioreactorProtocolError,
    BioreactorRequestError,
    parse_status,
)

from .conftest import FIXTURES
from .control_support import CONTROL

pytestmark = pytest.mark.usefixtures("socket_enabled")


def status() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / "status.json").read_text())
    payload["reactors"][0].update(copy.deepcopy(CONTROL))
    return payload


def test_actuators_and_loops_are_parsed() -> None:
    (reactor,) = parse_status(status()).reactors
    actuators = {a.name: a for a in reactor.actuators}
    assert actuators["stirrer"].kind == "pwm"
    assert (actuators["stirrer"].max_duty, actuators["stirrer"].safe) == (0.8, 0.3)
    assert actuators["aeration"].max_duty is None and actuators["aeration"].pump is None
    pump = actuators["base"].pump
    assert pump is not None
    assert (pump.max_dose_ml, pump.max_ml_per_hour, pump.last_dose_ml) == (3.0, 30.0, None)
    loops = {x.kind: x for x in reactor.loops}
    assert loops["ph"].limits["max_dose_ml"] == loops["ph"].hard_limits["max_dose_ml"] == 2.0
    assert loops["ph"].outputs == ("bus1-base",)
    assert loops["temperature"].output is not None and loops["temperature"].alarm is None


def test_reactors_of_agents_without_control_have_none() -> None:
    payload = status()
    del payload["reactors"][0]["actuators"], payload["reactors"][0]["loops"]
    (reactor,) = parse_status(payload).reactors
    assert (reactor.actuators, reactor.loops) == ((), ())


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("loops", 0, "outputs"), ["../etc"], "reactors[0].loops[0].outputs[0]"),
        (("loops", 1, "limits"), {"max_dose_ml": "2"}, "reactors[0].loops[1].limits.max_dose_ml"),
        (
            ("actuators", 5, "dosed_last_hour_ml"),
            None,
            "reactors[0].actuators[5].dosed_last_hour_ml",
        ),
        (("actuators", 0, "id"), "Bus 1", "reactors[0].actuators[0].id"),
    ],
)
def test_malformed_control_state_names_the_field(
    path: tuple[Any, ...], value: Any, field: str
) -> None:
    payload = status()
    target = payload["reactors"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(
        BioreactorProtocolError, match=field.replace("[", r"\[").replace("]", r"\]")
    ):
        parse_status(payload)


@pytest.fixture
async def agent() -> AsyncIterator[tuple[BioreactorClient, list[tuple[str, str, Any]]]]:
    """A server answering control requests like the agent: 400 naming the limit for a dose
    over 3 mL, otherwise {}; every request is recorded."""
    seen: list[tuple[str, str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        seen.append((request.method, request.raw_path, body))
        if body and body.get("volume_ml", 0) > 3:
            return web.json_response(
                {"error": "out_of_limits", "limit": "max_dose_ml", "message": "exceeds 3.0"},
                status=400,
            )
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield BioreactorClient("127.0.0.1", server.port or 0, "secret", session), seen
    await server.close()


async def test_control_requests(agent: tuple[BioreactorClient, list[tuple[str, str, Any]]]) -> None:
    client, seen = agent
    await client.configure_loop("bus1-ph", {"mode": "manual", "limits": {"max_dose_ml": 1.0}})
    await client.set_actuator("bus1-aeration", 1.0)
    await client.dose("bus1-base", 0.5)
    await client.emergency_stop("bus1")
    assert seen == [
        ("PATCH", "/api/v1/loops/bus1-ph", {"mode": "manual", "limits": {"max_dose_ml": 1.0}}),
        ("POST", "/api/v1/actuators/bus1-aeration", {"value": 1.0}),
        ("POST", "/api/v1/actuators/bus1-base/dose", {"volume_ml": 0.5}),
        ("POST", "/api/v1/reactors/bus1/emergency_stop", None),
    ]
    with pytest.raises(BioreactorRequestError) as refused:
        await client.dose("bus1-base", 4)
    assert (refused.value.status, refused.value.code) == (400, "out_of_limits")
    assert (refused.value.limit, refused.value.message) == ("max_dose_ml", "exceeds 3.0")
