"""SIGKILL the consumer (the real delivery pipeline in a light process) at random
moments between pull, archive, cursor and ack: nothing lost, nothing duplicated."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.agent_process import AgentProcess
from tests.support.fault_report import record

from .conftest import cycles
from .oracle import judge

CONSUMER = Path(__file__).with_name("consumer.py")


def start_consumer(
    agent: AgentProcess, out: Path, *, until_caught_up: bool = False
) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        str(CONSUMER),
        "127.0.0.1",
        str(agent.port),
        agent.token,
        str(out),
        "40",
    ]
    if until_caught_up:
        args.append("--until-caught-up")
    return subprocess.Popen(args, stderr=subprocess.PIPE)


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
    final = start_consumer(agent, out, until_caught_up=True)
    _, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr.decode()
    agent.stop()

    verdict = judge(agent.generated(), out / "archive", agent.agent_dir / "journal" / "journal.db")
    record(
        "consumer SIGKILL (pull/archive/cursor/ack)",
        cycles=kills,
        generated=verdict.generated,
        delivered=verdict.delivered,
        lost=verdict.lost,
        duplicated=verdict.duplicated,
    )
    assert verdict.generated > 10 * kills
    assert verdict.lost == 0
    assert verdict.duplicated == 0
