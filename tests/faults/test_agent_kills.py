"""SIGKILL the edge agent at random moments while the consumer pulls: the journal
keeps every reading it reported durable and delivery resumes exactly once."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from tests.support.agent_process import AgentProcess

from .conftest import cycles
from .harness import drain_and_stop, judge_and_record, start_consumer


def test_agent_killed_at_random_moments(agent: AgentProcess, tmp_path: Path) -> None:
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
        "edge agent SIGKILL while pulling",
        kills,
        agent,
        out / "archive",
        unrecorded_per_kill=64,
    )
    assert agent.starts == kills + 1
    assert verdict.generated > 5 * kills
    assert verdict.lost == 0
    assert verdict.duplicated == 0
