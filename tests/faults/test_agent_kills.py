"""SIGKILL the edge agent at random moments while the consumer pulls: the journal
keeps every reading it reported durable and delivery resumes exactly once."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from tests.support.agent_process import AgentProcess
from tests.support.fault_report import record

from .conftest import cycles
from .oracle import judge
from .test_consumer_kills import start_consumer


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
    final = start_consumer(agent, out, until_caught_up=True)
    _, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr.decode()
    agent.stop()

    verdict = judge(agent.generated(), out / "archive", agent.agent_dir / "journal" / "journal.db")
    record(
        "edge agent SIGKILL while pulling",
        cycles=kills,
        generated=verdict.generated,
        delivered=verdict.delivered,
        lost=verdict.lost,
        duplicated=verdict.duplicated,
    )
    assert agent.starts == kills + 1
    assert verdict.generated > 5 * kills
    assert verdict.lost == 0
    assert verdict.duplicated == 0
