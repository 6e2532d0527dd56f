"""The HTTP API against a fake agent backend with a real journal (docs/api.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings, strategies as st

from bioreactor_edge.api import API_PREFIX, SensorInUse, create_app
from bioreactor_edge.auth import FailureLimiter
from bioreactor_edge.journal import Journal
from bioreactor_edge.models import NewReading

TOKEN = "T" * 20 + "_-" + "k" * 21
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPENAPI = Path(__file__).resolve().parents[2] / "edge_firmware/bioreactor_edge/openapi.json"
T0_MS = 1_795_575_600_000  # 2026-11-25T03:00:00.000Z
Client = Callable[..., Awaitable[TestClient[Any, Any]]]


class FakeBackend:
    """Implements AgentBackend; only the journal is real."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self.sensors = {
            "bus1-ph-63": "online",
            "bus1-do-61": "offline",
            "bus1-unknown-20": "unknown",
        }
        self.scans = 0
        self.forgotten: list[str] = []

    @property
    def agent_id(self) -> str:
        return "b8f1c2d3e4f5a6b7"

    @property
    def name(self) -> str:
        return "Bench A"

    @property
    def journal(self) -> Journal:
        return self._journal

    def info(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "name": self.name,
            "firmware_version": "0.1.0",
            "api_version": 1,
        }

    def status(self) -> dict[str, Any]:
        return {**self.info(), "health": "ok", "problems": [], "reactors": []}

    async def scan(self) -> dict[str, Any]:
        self.scans += 1
        return {"reactors": [{"id": "bus1", "sensors": []}]}

    def forget_sensor(self, sensor_id: str) -> None:
        status = self.sensors[sensor_id]  # KeyError for unknown ids
        if status in ("online", "error"):
            raise SensorInUse(f"sensor {sensor_id} is {status}")
        del self.sensors[sensor_id]
        self.forgotten.append(sensor_id)


def reading(i: int) -> NewReading:
    return NewReading(
        time_ms=T0_MS + (i // 2) * 1000,
        reactor="bus1",
        sensor="bus1-ph-63" if i % 2 else "bus1-do-61",
        quantity="ph" if i % 2 else "dissolved_oxygen",
        value=7.0 + i / 1000,
        unit="pH" if i % 2 else "mg/L",
        quality="good",
    )


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path / "journal")
    yield j
    await j.close()


@pytest.fixture
def backend(journal: Journal) -> FakeBackend:
    return FakeBackend(journal)


@pytest.fixture
async def client(aiohttp_client: Client, backend: FakeBackend) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(backend, TOKEN))


async def fill(journal: Journal, count: int) -> None:
    for start in range(0, count, 1000):
        await journal.append([reading(i) for i in range(start, min(count, start + 1000))])


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error", "message"}
    assert isinstance(body["message"], str)
    assert body["message"]
    return body  # type: ignore[no-any-return]


# -- authentication --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/status"),
        ("GET", "/readings"),
        ("POST", "/ack"),
        ("POST", "/scan"),
        ("DELETE", "/sensors/bus1-do-61"),
    ],
)
async def test_private_endpoints_need_token(
    client: TestClient[Any, Any], backend: FakeBackend, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = await client.request(method, API_PREFIX + path, headers=headers, json={})
        body = await error_of(response, 401)
        assert body["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in await response.text()
    assert backend.scans == 0
    assert backend.forgotten == []


async def test_right_token_accepted(client: TestClient[Any, Any], backend: FakeBackend) -> None:
    response = await client.get(f"{API_PREFIX}/status", headers=AUTH)
    assert response.status == 200
    assert await response.json() == backend.status()


async def test_public_endpoints(client: TestClient[Any, Any], backend: FakeBackend) -> None:
    response = await client.get(f"{API_PREFIX}/info")
    assert response.status == 200
    assert await response.json() == backend.info()
    response = await client.get(f"{API_PREFIX}/openapi.json")
    assert response.status == 200
    assert await response.read() == OPENAPI.read_bytes()
    assert response.content_type == "application/json"


@pytest.mark.parametrize("name", ["token", "access_token"])
async def test_token_in_query_refused(client: TestClient[Any, Any], name: str) -> None:
    for headers in ({}, AUTH):
        response = await client.get(f"{API_PREFIX}/status", params={name: TOKEN}, headers=headers)
        body = await error_of(response, 400)
        assert body["error"] == "bad_request"


async def test_rate_limited_after_ten_failures(
    client: TestClient[Any, Any], backend: FakeBackend
) -> None:
    for _ in range(10):
        response = await client.get(f"{API_PREFIX}/status", headers={"Authorization": "Bearer x"})
        await error_of(response, 401)
    for headers in ({"Authorization": "Bearer x"}, {}):
        response = await client.get(f"{API_PREFIX}/status", headers=headers)
        body = await error_of(response, 429)
        assert body["error"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    response = await client.post(f"{API_PREFIX}/scan", headers={"Authorization": "Bearer x"})
    await error_of(response, 429)
    assert backend.scans == 0
    # Public endpoints still answer.
    assert (await client.get(f"{API_PREFIX}/info")).status == 200


async def test_right_token_is_never_rate_limited(
    client: TestClient[Any, Any], backend: FakeBackend
) -> None:
    """Everything behind one address shares the limiter; the token holder is never locked out."""
    for _ in range(50):
        await client.get(f"{API_PREFIX}/status", headers={"Authorization": "Bearer x"})
    response = await client.get(f"{API_PREFIX}/status", headers={"Authorization": "Bearer x"})
    await error_of(response, 429)
    response = await client.post(f"{API_PREFIX}/scan", headers=AUTH)
    assert response.status == 200
    assert backend.scans == 1
    # Still limited for the wrong token afterwards: a success does not reset others' failures.
    await error_of(await client.get(f"{API_PREFIX}/status"), 429)


async def test_limiter_window_expires(aiohttp_client: Client, backend: FakeBackend) -> None:
    now = [0.0]
    limiter = FailureLimiter(limit=2, window_s=30, clock=lambda: now[0])
    client = await aiohttp_client(create_app(backend, TOKEN, limiter=limiter))
    for _ in range(2):
        await error_of(await client.get(f"{API_PREFIX}/status"), 401)
    response = await client.get(f"{API_PREFIX}/status")
    await error_of(response, 429)
    assert response.headers["Retry-After"] == "30"
    now[0] = 29.5
    response = await client.get(f"{API_PREFIX}/status")
    await error_of(response, 429)
    assert response.headers["Retry-After"] == "1"  # rounded up, never 0
    now[0] = 30.0
    await error_of(await client.get(f"{API_PREFIX}/status"), 401)


async def test_successes_do_not_count(client: TestClient[Any, Any]) -> None:
    for _ in range(30):
        assert (await client.get(f"{API_PREFIX}/status", headers=AUTH)).status == 200


# -- readings ----------------------------------------------------------------------


async def test_readings_empty(client: TestClient[Any, Any], journal: Journal) -> None:
    response = await client.get(f"{API_PREFIX}/readings", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body == {
        "agent_id": "b8f1c2d3e4f5a6b7",
        "epoch": journal.epoch,
        "newest_seq": 0,
        "lineage": [],
        "more": False,
        "readings": [],
    }


async def test_readings_content(client: TestClient[Any, Any], journal: Journal) -> None:
    await fill(journal, 3)
    body = await (await client.get(f"{API_PREFIX}/readings", headers=AUTH)).json()
    assert body["newest_seq"] == 3
    assert body["more"] is False
    assert body["readings"][0] == {
        "seq": 1,
        "time": "2026-11-25T03:00:00.000Z",
        "reactor": "bus1",
        "sensor": "bus1-do-61",
        "quantity": "dissolved_oxygen",
        "value": 7.0,
        "unit": "mg/L",
        "quality": "good",
    }
    assert body["readings"][2]["time"] == "2026-11-25T03:00:01.000Z"
    assert body["readings"][1]["value"] == pytest.approx(7.001)
    assert [r["seq"] for r in body["readings"]] == [1, 2, 3]


async def test_readings_paging(client: TestClient[Any, Any], journal: Journal) -> None:
    await fill(journal, 25)
    seen: list[int] = []
    after = 0
    while True:
        response = await client.get(
            f"{API_PREFIX}/readings", params={"after": after, "limit": 7}, headers=AUTH
        )
        body = await response.json()
        assert body["newest_seq"] == 25
        seqs = [r["seq"] for r in body["readings"]]
        assert len(seqs) <= 7
        seen += seqs
        if not body["more"]:
            break
        assert len(seqs) == 7
        after = seqs[-1]
    assert seen == list(range(1, 26))
    body = await (await client.get(f"{API_PREFIX}/readings?after=25", headers=AUTH)).json()
    assert body["readings"] == []
    assert body["more"] is False
    body = await (await client.get(f"{API_PREFIX}/readings?after=24&limit=1", headers=AUTH)).json()
    assert [r["seq"] for r in body["readings"]] == [25]
    assert body["more"] is False
    body = await (await client.get(f"{API_PREFIX}/readings?after=99999", headers=AUTH)).json()
    assert body["readings"] == []


async def test_readings_default_limit_and_cap(
    client: TestClient[Any, Any], journal: Journal
) -> None:
    await fill(journal, 10_050)
    body = await (await client.get(f"{API_PREFIX}/readings", headers=AUTH)).json()
    assert len(body["readings"]) == 1000
    assert body["more"] is True
    for limit in (10_001, 20_000, 10**18):
        body = await (await client.get(f"{API_PREFIX}/readings?limit={limit}", headers=AUTH)).json()
        assert len(body["readings"]) == 10_000
        assert body["readings"][-1]["seq"] == 10_000
        assert body["more"] is True
    body = await (
        await client.get(f"{API_PREFIX}/readings?after=50&limit=10000", headers=AUTH)
    ).json()
    assert len(body["readings"]) == 10_000
    assert body["more"] is False


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("after=-1", "after"),
        ("after=abc", "after"),
        ("after=1.5", "after"),
        ("after=", "after"),
        ("after=+1", "after"),
        ("after=%201", "after"),
        ("after=1e3", "after"),
        ("after=0x10", "after"),
        ("after=%D9%A1", "after"),  # Arabic-Indic digit one
        ("after=99999999999999999999", "after"),
        ("after=9223372036854775808", "after"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("limit=", "limit"),
        ("after=1&after=2", "after"),
        ("limit=1&limit=1", "limit"),
        ("foo=1", "foo"),
        ("after=1&bogus=", "bogus"),
        ("Limit=1", "Limit"),
    ],
)
async def test_readings_bad_query(
    client: TestClient[Any, Any], journal: Journal, query: str, name: str
) -> None:
    await fill(journal, 3)
    response = await client.get(f"{API_PREFIX}/readings?{query}", headers=AUTH)
    body = await error_of(response, 400)
    assert body["error"] == "bad_request"
    assert repr(name) in body["message"]


async def test_readings_max_after_accepted(client: TestClient[Any, Any]) -> None:
    response = await client.get(f"{API_PREFIX}/readings?after={(1 << 63) - 1}", headers=AUTH)
    assert response.status == 200
    assert (await response.json())["readings"] == []


# -- ack ---------------------------------------------------------------------------


async def test_ack(client: TestClient[Any, Any], journal: Journal, tmp_path: Path) -> None:
    await fill(journal, 10)
    response = await client.post(
        f"{API_PREFIX}/ack", json={"epoch": journal.epoch, "seq": 6}, headers=AUTH
    )
    assert response.status == 200
    assert await response.json() == {"epoch": journal.epoch, "acked_seq": 6, "consumer": "default"}
    assert journal.stats().acked_seq == 6
    # Lower: idempotent, watermark unchanged.
    response = await client.post(
        f"{API_PREFIX}/ack", json={"epoch": journal.epoch, "seq": 2}, headers=AUTH
    )
    assert response.status == 200
    assert (await response.json())["acked_seq"] == 6
    response = await client.post(
        f"{API_PREFIX}/ack", json={"epoch": journal.epoch, "seq": 10}, headers=AUTH
    )
    assert (await response.json())["acked_seq"] == 10
    assert journal.stats().acked_seq == 10
    assert journal.stats().pending == 0


async def test_ack_wrong_epoch(client: TestClient[Any, Any], journal: Journal) -> None:
    await fill(journal, 10)
    response = await client.post(
        f"{API_PREFIX}/ack", json={"epoch": "0123456789abcdef", "seq": 5}, headers=AUTH
    )
    body = await error_of(response, 409)
    assert body["error"] == "epoch_mismatch"
    assert journal.stats().acked_seq == 0


async def test_ack_beyond_newest(client: TestClient[Any, Any], journal: Journal) -> None:
    await fill(journal, 10)
    response = await client.post(
        f"{API_PREFIX}/ack", json={"epoch": journal.epoch, "seq": 11}, headers=AUTH
    )
    body = await error_of(response, 400)
    assert body["error"] == "bad_request"
    assert journal.stats().acked_seq == 0


async def test_consumers(client: TestClient[Any, Any], journal: Journal) -> None:
    await fill(journal, 10)
    response = await client.get(
        f"{API_PREFIX}/readings", params={"after": 4, "consumer": "grafana"}, headers=AUTH
    )
    assert [r["seq"] for r in (await response.json())["readings"]] == list(range(5, 11))
    response = await client.post(
        f"{API_PREFIX}/ack",
        json={"epoch": journal.epoch, "seq": 7, "consumer": "grafana"},
        headers=AUTH,
    )
    assert await response.json() == {"epoch": journal.epoch, "acked_seq": 7, "consumer": "grafana"}
    assert journal.stats().acked_seq == 0  # the default consumer is untouched
    body = await (await client.get(f"{API_PREFIX}/consumers", headers=AUTH)).json()
    assert body == {
        "epoch": journal.epoch,
        "consumers": [{"id": "default", "acked_seq": 0}, {"id": "grafana", "acked_seq": 7}],
    }
    response = await client.delete(f"{API_PREFIX}/consumers/default", headers=AUTH)
    assert (await error_of(response, 409))["error"] == "conflict"
    response = await client.delete(f"{API_PREFIX}/consumers/grafana", headers=AUTH)
    assert await response.json() == {"removed": "grafana"}
    response = await client.delete(f"{API_PREFIX}/consumers/grafana", headers=AUTH)
    await error_of(response, 404)
    assert journal.consumers() == {"default": 0}


@pytest.mark.parametrize("query", ["consumer=", "consumer=a%20b", "consumer=a&consumer=b"])
async def test_bad_consumer_changes_nothing(
    client: TestClient[Any, Any], journal: Journal, query: str
) -> None:
    response = await client.get(f"{API_PREFIX}/readings?{query}", headers=AUTH)
    assert "consumer" in (await error_of(response, 400))["message"]
    assert journal.consumers() == {"default": 0}


async def test_journal_trouble_is_503_with_retry_after(
    client: TestClient[Any, Any], journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    await fill(journal, 3)

    def broken(*args: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(journal._floor, "save", broken)
    response = await client.get(f"{API_PREFIX}/readings", headers=AUTH)
    body = await error_of(response, 503)
    assert body["error"] == "journal_unavailable"
    assert response.headers["Retry-After"] == "5"
    monkeypatch.undo()
    response = await client.get(f"{API_PREFIX}/readings", headers=AUTH)
    assert len((await response.json())["readings"]) == 3


BAD_ACK_BODIES: list[Any] = [
    {"seq": "5"},
    {"seq": True},
    {"seq": False},
    {"seq": 5.0},
    {"seq": 5.5},
    {"seq": -1},
    {"seq": 1 << 63},
    {"seq": None},
    {"seq": [5]},
    {"seq": {"n": 5}},
    {"seq": 5, "extra": 1},
    {"seq": 5, "epoch": 5},
    {"seq": 5, "epoch": None},
    {"seq": 5, "epoch": ""},
    {"seq": 5, "epoch": "x" * 65},
    {"seq": 5, "epoch": "bad epoch!"},
    {"seq": 5, "consumer": ""},
    {"seq": 5, "consumer": "two words"},
    {"seq": 5, "consumer": 7},
    {"epoch_only": True},
    {},
]


async def test_bad_ack_changes_nothing(client: TestClient[Any, Any], journal: Journal) -> None:
    await fill(journal, 10)
    assert (
        await client.post(
            f"{API_PREFIX}/ack", json={"epoch": journal.epoch, "seq": 3}, headers=AUTH
        )
    ).status == 200
    raw_bodies: list[bytes] = []
    for template in BAD_ACK_BODIES:
        body = {"epoch": journal.epoch, **template}
        if "epoch_only" in template:
            body = {"epoch": journal.epoch}
        raw_bodies.append(json.dumps(body).encode())
    raw_bodies += [
        b"",
        b"   ",
        b"not json",
        b"{",
        b"[1, 2]",
        json.dumps([{"epoch": journal.epoch, "seq": 5}]).encode(),
        b'"text"',
        b"5",
        b"null",
        b"\xff\xfe\x00",
        b'{"epoch": "' + journal.epoch.encode() + b'", "seq": 5',
        b'{"epoch": "' + journal.epoch.encode() + b'", "seq": NaN}',
        b'{"epoch": "' + journal.epoch.encode() + b'", "seq": Infinity}',
    ]
    for raw in raw_bodies:
        response = await client.post(
            f"{API_PREFIX}/ack",
            data=raw,
            headers={**AUTH, "Content-Type": "application/json"},
        )
        result = await error_of(response, 400)
        assert result["error"] == "bad_request", raw
        assert journal.stats().acked_seq == 3, raw
    # With a query string, even a valid body is refused.
    response = await client.post(
        f"{API_PREFIX}/ack?x=1", json={"epoch": journal.epoch, "seq": 5}, headers=AUTH
    )
    await error_of(response, 400)
    assert journal.stats().acked_seq == 3


async def test_ack_names_unknown_field(client: TestClient[Any, Any], journal: Journal) -> None:
    await fill(journal, 1)
    response = await client.post(
        f"{API_PREFIX}/ack", json={"epoch": journal.epoch, "seq": 1, "zzz": 0}, headers=AUTH
    )
    body = await error_of(response, 400)
    assert "'zzz'" in body["message"]
    assert journal.stats().acked_seq == 0


async def test_ack_persists(tmp_path: Path, aiohttp_client: Client) -> None:
    directory = tmp_path / "j2"
    journal = await Journal.open(directory)
    try:
        await fill(journal, 5)
        client = await aiohttp_client(create_app(FakeBackend(journal), TOKEN))
        response = await client.post(
            f"{API_PREFIX}/ack", json={"epoch": journal.epoch, "seq": 4}, headers=AUTH
        )
        assert response.status == 200
    finally:
        await journal.close()
    reopened = await Journal.open(directory)
    try:
        assert reopened.stats().acked_seq == 4
    finally:
        await reopened.close()


async def test_body_too_large(client: TestClient[Any, Any], journal: Journal) -> None:
    await fill(journal, 5)
    big = json.dumps({"epoch": journal.epoch, "seq": 5, "pad": "x" * 5000}).encode()
    response = await client.post(
        f"{API_PREFIX}/ack", data=big, headers={**AUTH, "Content-Type": "application/json"}
    )
    body = await error_of(response, 413)
    assert body["error"] == "payload_too_large"
    assert journal.stats().acked_seq == 0


async def test_body_too_large_chunked(client: TestClient[Any, Any], journal: Journal) -> None:
    await fill(journal, 5)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    response = await client.post(f"{API_PREFIX}/scan", data=chunks(), headers=AUTH)
    body = await error_of(response, 413)
    assert body["error"] == "payload_too_large"


async def test_body_at_limit_accepted(client: TestClient[Any, Any], journal: Journal) -> None:
    await fill(journal, 5)
    raw = json.dumps({"epoch": journal.epoch, "seq": 5}).encode()
    raw = raw + b" " * (4096 - len(raw))
    response = await client.post(
        f"{API_PREFIX}/ack", data=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 200
    assert journal.stats().acked_seq == 5


# -- errors, scan, forget ------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", f"{API_PREFIX}/nope", f"{API_PREFIX}/sensors", f"{API_PREFIX}/readings/1"]
)
async def test_not_found_json(client: TestClient[Any, Any], path: str) -> None:
    body = await error_of(await client.get(path, headers=AUTH), 404)
    assert body["error"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/ack"),
        ("PUT", "/readings"),
        ("DELETE", "/status"),
        ("GET", "/sensors/x"),
        ("POST", "/readings"),
        ("HEAD", "/readings"),
    ],
)
async def test_method_not_allowed_json(
    client: TestClient[Any, Any], method: str, path: str
) -> None:
    response = await client.request(method, API_PREFIX + path, headers=AUTH)
    assert response.status == 405
    assert response.headers["Allow"]
    if method != "HEAD":
        body = await error_of(response, 405)
        assert body["error"] == "method_not_allowed"


async def test_scan(client: TestClient[Any, Any], backend: FakeBackend) -> None:
    response = await client.post(f"{API_PREFIX}/scan", headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"reactors": [{"id": "bus1", "sensors": []}]}
    response = await client.post(f"{API_PREFIX}/scan", json={}, headers=AUTH)
    assert response.status == 200
    assert backend.scans == 2
    for raw in (b'{"now": true}', b"[]", b"nonsense"):
        response = await client.post(f"{API_PREFIX}/scan", data=raw, headers=AUTH)
        await error_of(response, 400)
    body = await error_of(await client.post(f"{API_PREFIX}/scan?full=1", headers=AUTH), 400)
    assert "'full'" in body["message"]
    assert backend.scans == 2


async def test_forget(client: TestClient[Any, Any], backend: FakeBackend) -> None:
    response = await client.delete(f"{API_PREFIX}/sensors/bus1-do-61", headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"forgotten": "bus1-do-61"}
    assert backend.forgotten == ["bus1-do-61"]
    body = await error_of(
        await client.delete(f"{API_PREFIX}/sensors/bus1-do-61", headers=AUTH), 404
    )
    assert body["error"] == "not_found"
    body = await error_of(
        await client.delete(f"{API_PREFIX}/sensors/bus1-ph-63", headers=AUTH), 409
    )
    assert body["error"] == "conflict"
    assert "bus1-ph-63" in backend.sensors
    response = await client.delete(f"{API_PREFIX}/sensors/bus1-unknown-20", headers=AUTH)
    assert response.status == 200
    assert backend.forgotten == ["bus1-do-61", "bus1-unknown-20"]


async def test_info_and_status_refuse_query(client: TestClient[Any, Any]) -> None:
    await error_of(await client.get(f"{API_PREFIX}/info?x=1"), 400)
    await error_of(await client.get(f"{API_PREFIX}/status?x=1", headers=AUTH), 400)


# -- the OpenAPI document agrees with the app ---------------------------------------------


async def test_openapi_matches_routes(backend: FakeBackend) -> None:
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    app = create_app(backend, TOKEN)
    routes = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {
        (path, method)
        for path, operations in document["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "delete", "patch", "head", "options"}
    }
    assert routes == documented
    assert len(routes) == 18


# -- fuzzing: bad input never gets a 5xx ---------------------------------------------------

PATHS = [
    f"{API_PREFIX}/info",
    f"{API_PREFIX}/openapi.json",
    f"{API_PREFIX}/status",
    f"{API_PREFIX}/readings",
    f"{API_PREFIX}/ack",
    f"{API_PREFIX}/scan",
    f"{API_PREFIX}/sensors/bus1-do-61",
    f"{API_PREFIX}/sensors/bus1-ph-63",
    f"{API_PREFIX}/sensors/nope",
    "/",
    API_PREFIX,
]
URL_CHARS = st.sampled_from([*"abcAZ09-_.~/%=&;+!$'()*,:@", "%00", "%ff", "%2F", "é"])
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["epoch", "seq", "x", ""]) | st.text(max_size=5), children, max_size=4
    ),
    max_leaves=8,
)


def test_fuzz_never_5xx(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    journal = loop.run_until_complete(Journal.open(tmp_path / "fuzz"))
    loop.run_until_complete(journal.append([reading(i) for i in range(20)]))
    backend = FakeBackend(journal)
    app = create_app(backend, TOKEN, limiter=FailureLimiter(limit=10**9))
    client: TestClient[Any, Any] = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())

    async def send(method: str, path: str, query: str, body: bytes, headers: dict[str, str]) -> int:
        url = path + ("?" + query if query else "")
        response = await client.request(method, url, data=body, headers=headers)
        await response.read()
        return response.status

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"]),
        path=st.sampled_from(PATHS)
        | st.builds(
            lambda prefix, chars: prefix + "".join(chars).lstrip("/"),
            st.sampled_from(["/", f"{API_PREFIX}/", f"{API_PREFIX}/sensors/"]),
            st.lists(URL_CHARS, max_size=30),
        ),
        query=st.sampled_from(
            [
                "",
                "after=1",
                "limit=5",
                "after=-1",
                "limit=99999999999999999999",
                "token=x",
                "after=%ff",
                "a&b&c",
                "=",
                "after=1&after=2",
            ]
        )
        | st.lists(URL_CHARS, max_size=20).map("".join),
        body=st.binary(max_size=64)
        | JSONISH.map(lambda v: json.dumps(v).encode())
        | st.builds(
            lambda seq: json.dumps({"epoch": journal.epoch, "seq": seq}).encode(),
            st.integers(min_value=-(1 << 70), max_value=1 << 70),
        ),
        authorized=st.booleans(),
        content_type=st.sampled_from(["application/json", "text/plain", "", "multipart/form-data"]),
    )
    def check(
        method: str, path: str, query: str, body: bytes, authorized: bool, content_type: str
    ) -> None:
        statuses.append(0)
        headers = dict(AUTH) if authorized else {}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            status = loop.run_until_complete(send(method, path, query, body, headers))
        except ValueError:
            return  # the client refused to build the URL; nothing reached the server
        assert 200 <= status < 500, (method, path, query, body)
        statuses[-1] = status
        assert journal.stats().acked_seq <= journal.stats().newest_seq

    statuses: list[int] = []
    try:
        check()
        # The examples really reached the server, with a variety of answers.
        assert len(statuses) >= 200
        assert {200, 400, 401, 404, 405} <= set(statuses)
    finally:
        loop.run_until_complete(client.close())
        loop.run_until_complete(journal.close())
        loop.close()


def test_fuzz_server_answers_json_errors() -> None:
    """Every error the middleware produces is in the documented code list."""
    documented = {
        "unauthorized",
        "rate_limited",
        "bad_request",
        "not_found",
        "epoch_mismatch",
        "conflict",
        "payload_too_large",
        "method_not_allowed",
        "journal_unavailable",
    }
    from bioreactor_edge import api

    assert set(api._STATUS_CODES.values()) <= documented


@pytest.mark.parametrize(
    "value",
    [
        "Bearer \xe9\xe9",
        "Bearer " + TOKEN[:-1] + "\xe9",
        "Bearer\t" + TOKEN,
        "bearer " + TOKEN,
        "Bearer " + TOKEN + "x",
        "Token " + TOKEN,
        "Bearer",
    ],
)
async def test_odd_authorization_headers(client: TestClient[Any, Any], value: str) -> None:
    response = await client.get(f"{API_PREFIX}/status", headers={"Authorization": value})
    body = await error_of(response, 401)
    assert body["error"] == "unauthorized"
