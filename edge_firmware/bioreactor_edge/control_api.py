"""HTTP routes of the control loops and actuators (docs/api.md, "Control").

Every request is validated and checked against the hard limits before anything
moves: a refusal is a 4xx naming the limit or state that refused it, and leaves
loops and actuators as they were. The routes sit behind the API's token
authentication and body-size cap like every other non-public route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from .actuators import Refused
from .control.runner import Controller, StateUnwritable

PREFIX = "/api/v1"
# Refusals by state (retrying later or changing a mode can help), not by a limit.
STATE_REFUSALS = frozenset({"loop_mode", "busy", "kind"})


class ControlSource(Protocol):
    """What these routes need from the agent: its controller once started."""

    @property
    def control(self) -> Controller | None: ...


def _refused(err: Refused) -> web.Response:
    status, code = (409, "conflict") if err.limit in STATE_REFUSALS else (400, "out_of_limits")
    return web.json_response(
        {"error": code, "limit": err.limit, "message": str(err)}, status=status
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def _body(request: web.Request, allowed: set[str]) -> dict[str, Any] | web.Response:
    refused = _no_query(request)
    if refused is not None:
        return refused
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "bad_request", "the body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "bad_request", "the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        return _error(400, "bad_request", f"unknown field {sorted(unknown)[0]!r}")
    return body


async def _number_body(request: web.Request, key: str) -> float | web.Response:
    """The number of a `{key: number}` body."""
    body = await _body(request, {key})
    if isinstance(body, web.Response):
        return body
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _error(400, "bad_request", f"{key!r} must be a number")
    return float(value)


def _no_query(request: web.Request) -> web.Response | None:
    if request.query:
        return _error(400, "bad_request", f"unknown query parameter {sorted(request.query)[0]!r}")
    return None


Work = Callable[[Controller], Awaitable[dict[str, Any]]]
# Controller.command or Controller.dose: (controller, actuator id, number) -> the answer.
ActuatorCommand = Callable[[Controller, str, float], Awaitable[dict[str, Any]]]


class _ControlRoutes:
    def __init__(self, source: ControlSource) -> None:
        self._source = source

    async def _run(self, work: Work, missing: str) -> web.Response:
        """`work`'s answer; 404 naming `missing` on KeyError, 4xx naming a refusal's limit."""
        control = self._source.control
        if control is None:
            return _error(503, "starting", "the agent is starting; try again shortly")
        try:
            return web.json_response(await work(control))
        except KeyError:
            return _error(404, "not_found", f"no {missing}")
        except Refused as err:
            return _refused(err)
        except StateUnwritable as err:
            return _error(503, "state_unwritable", str(err))

    async def state(self, request: web.Request) -> web.Response:
        async def work(control: Controller) -> dict[str, Any]:
            return {"reactors": [{"id": r, **control.reactor_json(r)} for r in control.reactor_ids]}

        return _no_query(request) or await self._run(work, "control")

    async def configure_loop(self, request: web.Request) -> web.Response:
        loop_id = request.match_info["loop_id"]
        body = await _body(request, {"mode", "setpoint", "limits", "clear_alarm"})
        if isinstance(body, web.Response):
            return body
        return await self._run(lambda c: c.configure(loop_id, body), f"loop {loop_id!r}")

    async def set_actuator(self, request: web.Request) -> web.Response:
        return await self._command(request, "value", Controller.command)

    async def dose(self, request: web.Request) -> web.Response:
        return await self._command(request, "volume_ml", Controller.dose)

    async def _command(
        self, request: web.Request, key: str, command: ActuatorCommand
    ) -> web.Response:
        """`command` on the request's actuator with the body's number `key`."""
        actuator_id = request.match_info["actuator_id"]
        number = await _number_body(request, key)
        if isinstance(number, web.Response):
            return number
        missing = f"actuator {actuator_id!r}"
        return await self._run(lambda c: command(c, actuator_id, number), missing)

    async def emergency_stop(self, request: web.Request) -> web.Response:
        reactor_id = request.match_info["reactor_id"]

        async def work(control: Controller) -> dict[str, Any]:
            return {"id": reactor_id, **await control.emergency_stop(reactor_id)}

        return _no_query(request) or await self._run(work, f"reactor {reactor_id!r}")


def add_control_routes(app: web.Application, source: ControlSource) -> None:
    """Adds GET /control, PATCH /loops/{id}, POST /actuators/{id}[/dose] and
    POST /reactors/{id}/emergency_stop."""
    routes = _ControlRoutes(source)
    app.router.add_get(f"{PREFIX}/control", routes.state, allow_head=False)
    app.router.add_patch(PREFIX + "/loops/{loop_id}", routes.configure_loop)
    app.router.add_post(PREFIX + "/actuators/{actuator_id}", routes.set_actuator)
    app.router.add_post(PREFIX + "/actuators/{actuator_id}/dose", routes.dose)
    app.router.add_post(PREFIX + "/reactors/{reactor_id}/emergency_stop", routes.emergency_stop)
