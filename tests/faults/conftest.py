"""The fault-injection harness: real agents, real delivery pipeline, SIGKILL and a
TCP fault proxy. Sizes scale with BIOREACTOR_FAULT_SCALE (1 = the CI size)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import agent_process
from tests.support.agent_process import AgentProcess, running_agent
from tests.support.fault_report import scale


def cycles(ci_size: int) -> int:
    return max(1, round(ci_size * scale()))


@pytest.fixture
def edge_python() -> str:
    return agent_process.edge_python()


@pytest.fixture
def agent(tmp_path: Path, socket_enabled: None) -> Iterator[AgentProcess]:
    with running_agent(tmp_path / "agent", rate_hz=20.0) as process:
        yield process
