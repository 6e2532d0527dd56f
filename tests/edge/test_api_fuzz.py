"""API fuzzing with schemathesis against the agent's own OpenAPI document, on a real
simulated agent: no 5xx, every response matches the schema; and unauthenticated or
wrong-token writes change nothing."""

from __future__ import annotations

import http.client
import json
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import ignored_auth, missing_required_header

from bioreactor_edge import api
from tests.support.agent_process import AgentProcess, running_agent
from tests.support.fault_report import scale

OPENAPI = Path(api.__file__).with_name("openapi.json")
schema = schemathesis.openapi.from_path(OPENAPI)
OPERATIONS = sum(1 for _ in schema.get_all_operations())
# >= 2,000 generated cases in all at the CI size.
EXAMPLES_PER_OPERATION = max(700, round(4000 * scale() / OPERATIONS) + 1)
CASES: list[str] = []


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    with running_agent(data_dir, rate_hz=5.0, python=sys.executable) as process:
        yield process


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_and_never_fails(case: schemathesis.Case, agent: AgentProcess) -> None:
    CASES.append(case.operation.label)
    case.call_and_validate(
        base_url=agent.url,
        headers={"Authorization": f"Bearer {agent.token}"},
        # Invalid credentials are answered 401, then 429 once rate limited (by design);
        # test_unauthenticated_writes_change_nothing covers them from distinct addresses.
        excluded_checks=[ignored_auth, missing_required_header],
    )


def test_enough_cases_were_generated() -> None:
    counts = {op: CASES.count(op) for op in set(CASES)}
    assert len(CASES) >= 2000 * min(1.0, scale()), counts
    assert len(set(CASES)) == OPERATIONS


WRITES = (
    ("POST", "/api/v1/ack", b'{"epoch": "x", "seq": 1}'),
    ("POST", "/api/v1/scan", b""),
    ("DELETE", "/api/v1/sensors/bus1-ph-63", b""),
)
# The limiter allows 10 failures per client address and minute; every few requests come
# from a new loopback address (all of 127.0.0.0/8 reaches the agent), so each request
# is judged by authentication, not refused by the limiter first.
REQUESTS_PER_ADDRESS = 5


def call(
    agent: AgentProcess, method: str, path: str, body: bytes, headers: dict[str, str], source: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", agent.port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        connection.close()


def test_unauthenticated_writes_change_nothing(tmp_path: Path) -> None:
    agent = AgentProcess(sys.executable, tmp_path / "agent", rate_hz=5.0)
    agent.start()
    try:
        before = agent.wait_ready()
        epoch = before["journal"]["epoch"]
        outcomes: Counter[tuple[int, str]] = Counter()
        requests = max(1000, round(1000 * scale()))
        for number in range(requests):
            method, path, body = WRITES[number % len(WRITES)]
            if path.endswith("/ack"):
                body = json.dumps({"epoch": epoch, "seq": 1}).encode()
            headers = {} if number % 2 else {"Authorization": "Bearer wrong-" + "x" * 40}
            address = number // REQUESTS_PER_ADDRESS
            source = f"127.1.{address // 250}.{address % 250 + 1}"
            status, answer, _ = call(agent, method, path, body, headers, source)
            outcomes[status, answer["error"]] += 1
        # Every request reached authentication and was refused by it.
        assert outcomes == {(401, "unauthorized"): requests}

        # One address failing repeatedly is limited, with Retry-After ...
        noisy = "127.2.0.1"
        wrong = {"Authorization": "Bearer wrong-" + "x" * 40}
        for _ in range(10):
            assert call(agent, "POST", "/api/v1/scan", b"", wrong, noisy)[0] == 401
        status, answer, response_headers = call(agent, "POST", "/api/v1/scan", b"", wrong, noisy)
        assert (status, answer["error"]) == (429, "rate_limited")
        assert 1 <= int(response_headers["Retry-After"]) <= 60
        # ... but a client at that address presenting the right token is never blocked.
        right = {"Authorization": f"Bearer {agent.token}"}
        assert call(agent, "GET", "/api/v1/status", b"", right, noisy)[0] == 200
    finally:
        agent.stop()
    # Nothing was acknowledged: the watermark on disk is still 0.
    db = agent.agent_dir / "journal" / "journal.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT acked_seq FROM state").fetchone() == (0,)
