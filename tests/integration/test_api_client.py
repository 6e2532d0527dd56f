"""The HA-free API client against a real aiohttp server on loopback: strict parsing and
every error class."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from custom_components.bioreactor.api import (
    BioreactorAuthenticationError,
    BioreactorClient,
    BioreactorConnectionError,
    BioreactorProtocolError,
    BioreactorRequestError,
)

from .conftest import FIXTURES

pytestmark = pytest.mark.usefixtures("socket_enabled")
Handler = Callable[[web.Request], Any]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Any]]:
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(handler: Handler) -> BioreactorClient:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return BioreactorClient("127.0.0.1", server.port or 0, "secret", session, request_timeout=2)

    yield start
    for session in sessions:
        await session.close()
    for server in servers:
        await server.close()


def answer(body: Any, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer secret"
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(text=text, status=status, content_type="application/json")

    return handler


async def test_status_is_parsed_into_typed_models(serve: Any) -> None:
    payload = json.loads((FIXTURES / "status.json").read_text())
    client = await serve(answer(payload))
    status = await client.status()
    assert status.info.agent_id == payload["agent_id"]
    assert status.reactors[0].sensors[0].quantities[0].time is not None
    assert status.journal.epoch == payload["journal"]["epoch"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("journal"), "journal: missing"),
        (lambda p: p.update(uptime_s="long"), "uptime_s: expected a number"),
        (lambda p: p["reactors"][0].update(bus=True), "reactors[0].bus: expected an integer"),
        (lambda p: p.update(time="yesterday"), "time: expected an ISO 8601 time"),
        (lambda p: p.update(time="2026-11-25T03:00:00"), "time: expected a time with a time zone"),
        (lambda p: p.update(problems=[1]), "problems[0]: expected a string"),
        (lambda p: p.update(reactors={}), "reactors: expected a list"),
        (lambda p: p["journal"].update(writable="yes"), "journal.writable: expected true or false"),
    ],
)
async def test_malformed_status_names_the_field(
    serve: Any, mutate: Callable[[dict[str, Any]], Any], message: str
) -> None:
    payload = json.loads((FIXTURES / "status.json").read_text())
    mutate(payload)
    client = await serve(answer(payload))
    with pytest.raises(BioreactorProtocolError, match=re.escape(message)):
        await client.status()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, BioreactorAuthenticationError),
        (403, BioreactorAuthenticationError),
        (429, BioreactorAuthenticationError),
        (500, BioreactorConnectionError),
    ],
)
async def test_http_errors_map_to_exceptions(
    serve: Any, status: int, error: type[Exception]
) -> None:
    client = await serve(answer({"error": "x", "message": "y"}, status))
    with pytest.raises(error):
        await client.info()


async def test_refused_request_carries_the_agent_error_code(serve: Any) -> None:
    client = await serve(answer({"error": "epoch_mismatch", "message": "other epoch"}, 409))
    with pytest.raises(BioreactorRequestError) as caught:
        await client.ack("e", 1)
    assert (caught.value.status, caught.value.code) == (409, "epoch_mismatch")
    client = await serve(answer("<html>", 404))
    with pytest.raises(BioreactorRequestError) as caught:
        await client.scan()
    assert caught.value.code == "unknown"


async def test_non_json_answers_are_protocol_errors(serve: Any) -> None:
    client = await serve(answer("not json"))
    with pytest.raises(BioreactorProtocolError):
        await client.info()
    with pytest.raises(BioreactorProtocolError, match="not JSON"):
        await client.readings(0)


async def test_readings_must_be_complete_and_increasing(serve: Any) -> None:
    good = {"seq": 2, "time": "2026-11-25T03:00:00.000Z", "reactor": "bus1", "sensor": "s",
            "quantity": "ph", "value": 7, "unit": "pH", "quality": "good"}  # fmt: skip
    page = {"agent_id": "a", "epoch": "e", "newest_seq": 3, "more": False}
    client = await serve(answer({**page, "readings": [good, {**good, "seq": 3}]}))
    parsed = await client.readings(0)
    assert [r.seq for r in parsed.readings] == [2, 3]
    assert parsed.readings[0].value == 7.0
    for readings, message in (
        ([good, good], "not increasing"),
        ([{**good, "value": "7"}], "wrong type"),
        ([{"seq": 1}], "not a complete reading"),
    ):
        client = await serve(answer({**page, "readings": readings}))
        with pytest.raises(BioreactorProtocolError, match=message):
            await client.readings(0)


async def test_ack_scan_and_forget(serve: Any) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.raw_path}")
        if request.path.endswith("/ack"):
            body = await request.json()
            return web.json_response({"epoch": body["epoch"], "acked_seq": body["seq"]})
        if request.path.endswith("/scan"):
            return web.json_response({"reactors": []})
        return web.json_response({"forgotten": "x"})

    client = await serve(handler)
    assert await client.ack("e1", 42) == 42
    assert await client.scan() == ()
    await client.forget_sensor("bus1/../x")
    assert seen[-1] == "DELETE /api/v1/sensors/bus1%2F..%2Fx"


async def test_unreachable_agent_is_a_connection_error(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        client = BioreactorClient("127.0.0.1", 1, "secret", session, request_timeout=2)
        with pytest.raises(BioreactorConnectionError, match="cannot reach the agent"):
            await client.info()
