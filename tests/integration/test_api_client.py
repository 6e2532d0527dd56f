"""The HA-free API client against a real aiohttp server on loopback and against the real
agent: strict parsing, validation of everything that names a file, and every error class."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from custom_components.bioreactor.api import (
    DEFAULT_RETRY_AFTER,
    MAX_RETRY_AFTER,
    BioreactorAuthenticationError,
    BioreactorCertificateError,
    BioreactorClient,
    BioreactorConnectionError,
    BioreactorError,
    BioreactorProtocolError,
    BioreactorRateLimitedError,
    BioreactorRequestError,
    BioreactorWrongAgentError,
    DiscoveryStatus,
    Problem,
    parse_retry_after,
)
from tests.support.agent_process import AgentProcess, edge_python, running_agent

from .conftest import FIXTURES
from .tls_server import SelfSigned, make_certificate

pytestmark = pytest.mark.usefixtures("socket_enabled")
Handler = Callable[[web.Request], Any]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Any]]:
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(
        handler: Handler,
        agent_id: str | None = None,
        *,
        tls: SelfSigned | None = None,
        pin: str | None = None,
    ) -> BioreactorClient:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server(ssl=tls.server_context() if tls else None)
        servers.append(server)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return BioreactorClient(
            "127.0.0.1",
            server.port or 0,
            "secret",
            session,
            agent_id=agent_id,
            tls_fingerprint=pin,
            request_timeout=2,
        )

    yield start
    for session in sessions:
        await session.close()
    for server in servers:
        await server.close()


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        # /info is public: the token is never sent there.
        expected = None if request.path.endswith("/info") else "Bearer secret"
        assert request.headers.get("Authorization") == expected
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(
            text=text, status=status, content_type="application/json", headers=headers
        )

    return handler


def status_fixture() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / "status.json").read_text())
    return payload


READING = {"seq": 2, "time": "2026-11-25T03:00:00.000Z", "reactor": "bus1", "sensor": "bus1-ph-63",
           "quantity": "ph", "value": 7, "unit": "pH", "quality": "good"}  # fmt: skip
PAGE = {"agent_id": "a1", "epoch": "e1", "newest_seq": 3, "more": False}


async def test_status_is_parsed_into_typed_models(serve: Any) -> None:
    payload = status_fixture()
    client = await serve(answer(payload))
    status = await client.status()
    assert status.info.agent_id == payload["agent_id"]
    assert status.reactors[0].sensors[0].quantities[0].time is not None
    assert status.journal.epoch == payload["journal"]["epoch"]


async def test_status_fields_of_older_agents_are_optional(serve: Any) -> None:
    """The recorded fixture predates dropped_by_cause, discovery and error_message."""
    payload = status_fixture()
    assert "discovery" not in payload
    status = await (await serve(answer(payload))).status()
    assert status.journal.dropped_by_cause == {}
    assert status.discovery is None
    assert status.reactors[0].sensors[0].error_message is None


async def test_new_status_fields_are_parsed(serve: Any) -> None:
    payload = status_fixture()
    payload["problems"] = [
        "journal_new_epoch",
        "sensor_error:bus1-ph-63",
        "clock_unsynced",
        "Newer_Problem",
    ]
    payload["journal"]["dropped"] = 15
    payload["journal"]["dropped_by_cause"] = {"budget": 12, "recovery": 3}
    payload["discovery"] = {"state": "running", "last_scan": None}
    sensor = payload["reactors"][0]["sensors"][0]
    sensor.update(status="starting", last_error="nak", error_message="no answer at 0x44")
    status = await (await serve(answer(payload))).status()
    assert status.problems == (
        Problem("journal_new_epoch", None),
        Problem("sensor_error", "bus1-ph-63"),
        Problem("clock_unsynced", None),
        Problem("Newer_Problem", None),
    )
    assert [str(p) for p in status.problems] == payload["problems"]
    assert status.has_problem("clock_unsynced")
    assert not status.has_problem("journal_dropping")
    assert status.journal.dropped_by_cause == {"budget": 12, "recovery": 3}
    assert status.discovery == DiscoveryStatus("running", None)
    parsed = status.reactors[0].sensors[0]
    assert (parsed.status, parsed.error_message) == ("starting", "no answer at 0x44")


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
        # Ids name directories, files and entities: nothing outside the documented pattern.
        (lambda p: p.update(agent_id="../../etc"), "agent_id: expected an id matching"),
        (lambda p: p["reactors"][0].update(id="../x"), "reactors[0].id: expected an id"),
        (lambda p: p["reactors"][0].update(id="Bus1"), "reactors[0].id: expected an id"),
        (lambda p: p["reactors"][0].update(id=""), "reactors[0].id: expected an id"),
        (lambda p: p["reactors"][0].update(id="r" * 65), "reactors[0].id: expected an id"),
        (
            lambda p: p["reactors"][0]["sensors"][1].update(id="bus1/ph"),
            "reactors[0].sensors[1].id: expected an id matching",
        ),
        (
            lambda p: p["reactors"][0]["sensors"][0]["quantities"][0].update(key="a b"),
            "reactors[0].sensors[0].quantities[0].key: expected an id",
        ),
        (lambda p: p["journal"].update(epoch="e/1"), "journal.epoch: expected an epoch"),
        (
            lambda p: p["reactors"][0]["sensors"][0].update(last_seen="2026-11-25 03:00"),
            "reactors[0].sensors[0].last_seen: expected a time with a time zone",
        ),
        (lambda p: p.update(problems=["sensor_error:"]), "problems[0]: expected <code>"),
        (lambda p: p.update(problems=[":bus1-ph-63"]), "problems[0]: expected <code>"),
        (
            lambda p: p["journal"].update(dropped_by_cause={"budget": -1}),
            "journal.dropped_by_cause.budget: expected a count",
        ),
        (
            lambda p: p["journal"].update(dropped_by_cause={"budget": 1.5}),
            "journal.dropped_by_cause.budget: expected an integer",
        ),
        (lambda p: p["journal"].update(dropped_by_cause=[]), "dropped_by_cause: expected an obj"),
        (lambda p: p.update(discovery={"state": 1}), "discovery.state: expected a string"),
        (
            lambda p: p["reactors"][0]["sensors"][0].update(error_message=5),
            "reactors[0].sensors[0].error_message: expected a string",
        ),
    ],
)
async def test_malformed_status_names_the_field(
    serve: Any, mutate: Callable[[dict[str, Any]], Any], message: str
) -> None:
    payload = status_fixture()
    mutate(payload)
    client = await serve(answer(payload))
    with pytest.raises(BioreactorProtocolError, match=re.escape(message)):
        await client.status()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, BioreactorAuthenticationError),
        # Only a 401 to the token we presented means the token is wrong.
        (403, BioreactorRequestError),
        (429, BioreactorRateLimitedError),
        (500, BioreactorConnectionError),
    ],
)
async def test_http_errors_map_to_exceptions(
    serve: Any, status: int, error: type[Exception]
) -> None:
    client = await serve(answer({"error": "x", "message": "y"}, status))
    with pytest.raises(error):
        await client.status()


async def test_401_without_a_token_is_not_an_authentication_failure(serve: Any) -> None:
    """/info goes without the token: a 401 there is a host that is not an agent."""
    client = await serve(answer({"error": "unauthorized", "message": "who"}, 401))
    with pytest.raises(BioreactorRequestError) as caught:
        await client.info()
    assert not isinstance(caught.value, BioreactorAuthenticationError)
    assert caught.value.status == 401


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("30", 30.0),
        (" 7 ", 7.0),
        ("0", 1.0),  # never a busy loop
        ("999999", MAX_RETRY_AFTER),
        (None, DEFAULT_RETRY_AFTER),
        ("soon", DEFAULT_RETRY_AFTER),
        ("-5", DEFAULT_RETRY_AFTER),
    ],
)
async def test_429_is_temporary_and_carries_retry_after(
    serve: Any, header: str | None, expected: float
) -> None:
    headers = None if header is None else {"Retry-After": header}
    body = {"error": "rate_limited", "message": "too many failed authentications"}
    client = await serve(answer(body, 429, headers))
    with pytest.raises(BioreactorRateLimitedError) as caught:
        await client.status()
    assert not isinstance(caught.value, BioreactorAuthenticationError)
    assert caught.value.retry_after == expected


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 1


async def test_info_never_carries_the_token(serve: Any) -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response(status_fixture())

    client = await serve(handler)
    await client.info()
    await client.status()
    assert seen == [None, "Bearer secret"]


async def test_answers_from_another_agent_are_refused(serve: Any) -> None:
    """A client bound to an agent refuses statuses and pages of any other agent."""
    payload = status_fixture()
    client = await serve(answer(payload), agent_id="0123456789abcdef")
    with pytest.raises(BioreactorWrongAgentError) as caught:
        await client.status()
    assert (caught.value.expected, caught.value.actual) == ("0123456789abcdef", payload["agent_id"])
    client = await serve(answer({**PAGE, "readings": [READING]}), agent_id="0123456789abcdef")
    with pytest.raises(BioreactorWrongAgentError, match="agent a1 answered"):
        await client.readings(0)
    client = await serve(answer({**PAGE, "readings": [READING]}), agent_id="a1")
    assert (await client.readings(0)).agent_id == "a1"


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
    good = READING
    client = await serve(answer({**PAGE, "readings": [good, {**good, "seq": 3}]}))
    parsed = await client.readings(0)
    assert [r.seq for r in parsed.readings] == [2, 3]
    assert parsed.readings[0].value == 7.0
    for readings, message in (
        ([good, good], "not increasing"),
        ([{**good, "value": "7"}], "wrong type"),
        ([{"seq": 1}], "not a complete reading"),
    ):
        client = await serve(answer({**PAGE, "readings": readings}))
        with pytest.raises(BioreactorProtocolError, match=message):
            await client.readings(0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("reactor", "../../www", r"readings\[1\]: '../../www' is not an id"),
        ("reactor", "bus1\n", "is not an id"),
        ("sensor", "Bus1-ph-63", "is not an id"),
        ("quantity", "", "is not an id"),
        ("time", "2026-11-25T03:00:00.000+01:00", "is not YYYY-MM-DDTHH:MM:SS.mmmZ"),
        ("time", "2026-11-25T03:00:00Z", "is not YYYY-MM-DDTHH:MM:SS.mmmZ"),
        ("time", "2026-13-25T03:00:00.000Z", "is not YYYY-MM-DDTHH:MM:SS.mmmZ"),
        ("time", "../../2026-11-25T03:00:00.000Z", "is not YYYY-MM-DDTHH:MM:SS.mmmZ"),
    ],
)
async def test_readings_that_would_name_a_bad_file_are_refused(
    serve: Any, field: str, value: str, message: str
) -> None:
    # The first reading is valid: a page is checked entirely, not only its first reading.
    readings = [READING, {**READING, "seq": 3, field: value}]
    client = await serve(answer({**PAGE, "readings": readings}))
    with pytest.raises(BioreactorProtocolError, match=message):
        await client.readings(0)


@pytest.mark.parametrize(
    ("page", "message"),
    [({"agent_id": "A/1"}, "agent_id: expected an id"), ({"epoch": "e 1"}, "epoch: expected an")],
)
async def test_pages_with_a_bad_agent_or_epoch_are_refused(
    serve: Any, page: dict[str, str], message: str
) -> None:
    client = await serve(answer({**PAGE, **page, "readings": [READING]}))
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


# -- HTTPS with a pinned certificate ------------------------------------------------


async def test_certificate_fingerprint_is_read_without_sending_anything(
    serve: Any, tmp_path: Path
) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response(status_fixture())

    certificate = make_certificate(tmp_path)
    client = await serve(handler, tls=certificate)
    assert await client.certificate_fingerprint() == certificate.fingerprint
    assert seen == []
    # A plain HTTP agent has no certificate to pin.
    plain = await serve(handler)
    assert await plain.certificate_fingerprint() is None
    assert seen == []


async def test_certificate_probe_of_a_closed_port_is_a_connection_error(serve: Any) -> None:
    async with aiohttp.ClientSession() as session:
        client = BioreactorClient("127.0.0.1", 1, None, session, request_timeout=2)
        with pytest.raises(BioreactorConnectionError):
            await client.certificate_fingerprint()


async def test_pinned_certificate_is_required(serve: Any, tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response(status_fixture())

    certificate = make_certificate(tmp_path / "agent")
    client = await serve(handler, tls=certificate, pin=certificate.fingerprint)
    assert (await client.status()).info.name
    assert seen == ["Bearer secret"]

    other = make_certificate(tmp_path / "other").fingerprint
    impostor = await serve(handler, tls=certificate, pin=other)
    with pytest.raises(BioreactorCertificateError) as caught:
        await impostor.status()
    assert (caught.value.expected, caught.value.actual) == (other, certificate.fingerprint)
    assert seen == ["Bearer secret"], "the token went to a certificate that was not pinned"

    # A pinned agent that now answers plain HTTP is unreachable, never downgraded.
    downgraded = await serve(handler, pin=certificate.fingerprint)
    with pytest.raises(BioreactorConnectionError):
        await downgraded.status()
    assert seen == ["Bearer secret"]


def test_malformed_fingerprint_is_refused() -> None:
    with pytest.raises(ValueError, match="not a SHA-256 fingerprint"):
        BioreactorClient("h", 1, None, None, tls_fingerprint="ab:cd")  # type: ignore[arg-type]


# -- the real agent ------------------------------------------------------------------


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    with running_agent(tmp_path / "agent", rate_hz=5.0, sensors=4) as process:
        yield process


async def test_real_agent_answers_validate_and_name_their_agent(agent: AgentProcess) -> None:
    async with aiohttp.ClientSession() as session:
        anonymous = BioreactorClient("127.0.0.1", agent.port, None, session)
        info = await anonymous.info()
        client = BioreactorClient(
            "127.0.0.1", agent.port, agent.token, session, agent_id=info.agent_id
        )
        status = await client.status()
        page = await client.readings(0, limit=50)
        for _ in range(100):
            if page.readings:
                break
            await asyncio.sleep(0.1)
            page = await client.readings(0, limit=50)
        assert status.info.agent_id == page.agent_id == info.agent_id
        # The agent's newer status fields arrive typed.
        assert status.discovery is not None
        assert status.discovery.state in {"running", "idle"}
        assert page.readings, "the simulated agent journals readings within seconds"
        other = BioreactorClient(
            "127.0.0.1", agent.port, agent.token, session, agent_id="0000000000000000"
        )
        with pytest.raises(BioreactorWrongAgentError):
            await other.status()
        with pytest.raises(BioreactorWrongAgentError):
            await other.readings(0, limit=1)


async def test_a_named_consumer_pulls_and_acknowledges_on_its_own_watermark(
    agent: AgentProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        home = BioreactorClient("127.0.0.1", agent.port, agent.token, session)
        lims = BioreactorClient(
            "127.0.0.1", agent.port, agent.token, session, consumer="lims-export"
        )
        page = await lims.readings(0, limit=20)
        for _ in range(100):
            if page.readings:
                break
            await asyncio.sleep(0.1)
            page = await lims.readings(0, limit=20)
        assert page.readings
        acked = await lims.ack(page.epoch, page.readings[-1].seq)
        assert acked == page.readings[-1].seq
        listed = await asyncio.to_thread(agent.get, "/api/v1/consumers")
        listing = {c["id"]: c["acked_seq"] for c in listed["consumers"]}
        assert listing["lims-export"] == acked
        # The default consumer (Home Assistant) has acknowledged nothing yet.
        assert listing["default"] == 0
        assert (await home.readings(0, limit=1)).readings[0].seq == 1


async def test_real_agent_rate_limit_is_a_temporary_error(agent: AgentProcess) -> None:
    """Failed logins from this address make the agent answer 429 with Retry-After: the
    client reports it as temporary, never as a refused token."""
    async with aiohttp.ClientSession() as session:
        wrong = BioreactorClient("127.0.0.1", agent.port, "w" * 43, session)
        failures = 0
        while True:
            with pytest.raises(BioreactorError) as caught:
                await wrong.status()
            if not isinstance(caught.value, BioreactorAuthenticationError):
                break
            failures += 1
            assert failures < 30, "the agent never rate limited"
        assert failures >= 1
        assert isinstance(caught.value, BioreactorRateLimitedError), caught.value
        assert 1 <= caught.value.retry_after <= 60


async def test_real_https_agent_is_pinned_to_the_fingerprint_it_prints(tmp_path: Path) -> None:
    """`simulate --tls`: the fingerprint the client reads from the handshake is the one
    `bioreactor-edge token` prints beside the token, and pins every request."""
    python = edge_python()
    agent = AgentProcess(python, tmp_path / "agent", rate_hz=5.0, sensors=2, extra_args=("--tls",))
    agent.start()
    try:
        async with aiohttp.ClientSession() as session:
            probe = BioreactorClient("127.0.0.1", agent.port, None, session, request_timeout=2)
            for _ in range(300):
                with contextlib.suppress(BioreactorConnectionError):
                    fingerprint = await probe.certificate_fingerprint()
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"the agent never served: {agent.log_tail()}")
            token = await asyncio.create_subprocess_exec(
                *(python, "-m", "bioreactor_edge", "token", "--data-dir", str(agent.agent_dir)),
                stdout=asyncio.subprocess.PIPE,
            )
            printed, _ = await token.communicate()
            assert f"certificate SHA-256 fingerprint: {fingerprint}" in printed.decode()

            pinned = BioreactorClient(
                "127.0.0.1", agent.port, agent.token, session, tls_fingerprint=fingerprint
            )
            assert (await pinned.status()).journal.epoch
            other = "00:" * 31 + "00"
            wrong = BioreactorClient(
                "127.0.0.1", agent.port, agent.token, session, tls_fingerprint=other
            )
            with pytest.raises(BioreactorCertificateError):
                await wrong.status()
            plain = BioreactorClient("127.0.0.1", agent.port, agent.token, session)
            with pytest.raises(BioreactorConnectionError):
                await plain.status()
    finally:
        agent.stop()
