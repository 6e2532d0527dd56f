"""Two consumers of one agent (Home Assistant and, say, a LIMS export), each SIGKILLed at
random moments: each has its own watermark on the agent, and each archive ends up with
every reading exactly once, whatever the other one does."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from tests.support.agent_process import AgentProcess
from tests.support.archive_files import archive_rows

from .conftest import cycles
from .harness import deliver_all, judge_and_record, start_consumer

LIMS = "lims-export"


def consumers_on(agent: AgentProcess) -> dict[str, int]:
    return {c["id"]: c["acked_seq"] for c in agent.get("/api/v1/consumers")["consumers"]}


def test_two_consumers_killed_at_random_moments(agent: AgentProcess, tmp_path: Path) -> None:
    rng = random.Random(23)
    outs = {None: tmp_path / "home-assistant", LIMS: tmp_path / "lims"}
    kills = cycles(200)
    for _ in range(kills):
        # Both pull at once; each is killed at its own random moment of its pipeline.
        running = [start_consumer(agent, out, consumer_id=who) for who, out in outs.items()]
        rng.shuffle(running)
        for process in running:
            time.sleep(0.15 + rng.random() * 0.25)
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert process.returncode == -signal.SIGKILL
    agent.stop()
    agent.start()  # same journal: the final drains must find everything
    agent.wait_ready()
    for who, out in outs.items():
        deliver_all(agent, out, consumer_id=who)
    watermarks = consumers_on(agent)
    agent.stop()

    verdicts = {
        who: judge_and_record(
            f"two consumers SIGKILLed ({who or 'default'} archive)", kills, agent, out / "archive"
        )
        for who, out in outs.items()
    }
    for verdict in verdicts.values():
        assert verdict.generated > 10 * kills
        assert verdict.lost == 0
        assert verdict.duplicated == 0
    # Each acknowledged on its own watermark exactly what it archived (the agent kept
    # journaling between the two final drains, so the second one got further).
    assert set(watermarks) == {"default", LIMS}
    for who, out in outs.items():
        archived = max(int(row["seq"]) for row in archive_rows(out / "archive"))
        assert watermarks[who or "default"] == archived > 0
    assert watermarks["default"] <= watermarks[LIMS]
