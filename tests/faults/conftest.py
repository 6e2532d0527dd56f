"""The fault-injection harness: real agents, real delivery pipeline, SIGKILL and a
TCP fault proxy. Sizes scale with BIOREACTOR_FAULT_SCALE (1 = the CI size)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agent_process import AgentProcess
from tests.support.fault_report import scale


def cycles(ci_size: int) -> int:
    return max(1, round(ci_size * scale()))


@pytest.fixture
def edge_python() -> str:
    python = os.environ.get("BIOREACTOR_EDGE_PYTHON")
    assert python, "run through ./scripts/test, which sets BIOREACTOR_EDGE_PYTHON"
    return python


@pytest.fixture
def agent(tmp_path: Path, edge_python: str, socket_enabled: None) -> Iterator[AgentProcess]:
    process = AgentProcess(edge_python, tmp_path / "agent", rate_hz=20.0, sensors=4)
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
