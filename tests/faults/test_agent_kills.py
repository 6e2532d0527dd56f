"""SIGKILL the edge agent at random moments while the consumer pulls: the journal
keeps every reading and actuation event it reported durable and delivery resumes
exactly once."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agent_process import AgentProcess, running_agent

from .conftest import cycles
from .harness import drain_and_stop, judge_and_record, start_consumer


@pytest.fixture
def controlled_agent(tmp_path: Path, socket_enabled: None) -> Iterator[AgentProcess]:
    """An agent whose loops drive its heater and base pump: its journal interleaves
    actuation events (at every start, and whenever a loop moves an output) with readings."""
    with running_agent(
        tmp_path / "agent", rate_hz=20.0, sensors=6, extra_args=("--control",)
    ) as process:
        yield process


def test_agent_killed_at_random_moments(controlled_agent: AgentProcess, tmp_path: Path) -> None:
    agent = controlled_agent
    rng = random.Random(11)
    out = tmp_path / "consumer"
    consumer = start_consumer(agent, out)
    kills = cycles(200)
    try:
        for _ in range(kills):
            time.sleep(rng.random() * 0.3)
            agent.kill()
            agent.start()
            agent.wait_ready()
    finally:
        consumer.send_signal(signal.SIGKILL)
        consumer.wait()
    drain_and_stop(agent, out)

    # A kill can cut the record of one group commit (a few ticks of every sensor).
    verdict = judge_and_record(
        "edge agent SIGKILL while pulling (readings + actuation events)",
        kills,
        agent,
        out / "archive",
        unrecorded_per_kill=64,
    )
    assert agent.starts == kills + 1
    assert verdict.generated > 5 * kills
    assert verdict.lost == 0
    assert verdict.duplicated == 0
    # Every start puts the outputs in their safe states: at least one event per start.
    events = {when for _, quantity, when in agent.generated() if quantity == "actuation"}
    assert len(events) >= kills + 1
