"""SIGKILL the consumer (the real delivery pipeline in a light process) at random
moments between pull, archive, cursor and ack: nothing lost, nothing duplicated."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from tests.support.agent_process import AgentProcess

from .conftest import cycles
from .harness import drain_and_stop, judge_and_record, start_consumer


def test_consumer_killed_at_random_moments(agent: AgentProcess, tmp_path: Path) -> None:
    rng = random.Random(5)
    out = tmp_path / "consumer"
    kills = cycles(200)
    for _ in range(kills):
        consumer = start_consumer(agent, out)
        # Past start-up (~0.3 s), then a few pages: the kill lands anywhere in the pipeline.
        time.sleep(0.3 + rng.random() * 0.25)
        consumer.send_signal(signal.SIGKILL)
        consumer.wait()
        assert consumer.returncode == -signal.SIGKILL, (
            consumer.stderr.read().decode() if consumer.stderr else ""
        )
    agent.stop()
    agent.start()  # same journal: the final drain must find everything
    agent.wait_ready()
    drain_and_stop(agent, out)

    verdict = judge_and_record(
        "consumer SIGKILL (pull/archive/cursor/ack)", kills, agent, out / "archive"
    )
    assert verdict.generated > 10 * kills
    assert verdict.lost == 0
    assert verdict.duplicated == 0
