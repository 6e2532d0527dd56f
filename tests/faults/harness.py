"""Steps every delivery fault scenario shares: the light consumer process, the final
drain, and the verdict recorded in the harness table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.agent_process import AgentProcess
from tests.support.fault_report import record

from .oracle import Verdict, judge

CONSUMER = Path(__file__).with_name("consumer.py")


def consumer_args(port: int, token: str, out: Path) -> list[str]:
    return [sys.executable, str(CONSUMER), "127.0.0.1", str(port), token, str(out), "40"]


def start_consumer(
    agent: AgentProcess,
    out: Path,
    *,
    until_caught_up: bool = False,
    consumer_id: str | None = None,
) -> subprocess.Popen[bytes]:
    args = consumer_args(agent.port, agent.token, out)
    if until_caught_up:
        args.append("--until-caught-up")
    if consumer_id is not None:
        args += ["--consumer", consumer_id]
    return subprocess.Popen(args, stderr=subprocess.PIPE)


def deliver_all(agent: AgentProcess, out: Path, *, consumer_id: str | None = None) -> None:
    """Delivers everything the agent holds now (to one consumer)."""
    final = start_consumer(agent, out, until_caught_up=True, consumer_id=consumer_id)
    _, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr.decode()


def drain_and_stop(agent: AgentProcess, out: Path) -> None:
    """Delivers everything the agent holds now, then stops the agent."""
    deliver_all(agent, out)
    agent.stop()


def judge_and_record(
    scenario: str,
    cycles: int,
    agent: AgentProcess,
    archive: Path,
    *,
    unrecorded_per_kill: int = 0,
    journals: tuple[Path, ...] = (),
    agent_side_losses: bool = False,
) -> Verdict:
    """Compares the agent's record with the archive and adds the row to the table.

    An archived reading the oracle never recorded is possible only when a SIGKILL cut
    the agent's record after its journal commit: at most `unrecorded_per_kill` per
    agent start after the first; anything else is a reading from nowhere. With
    `agent_side_losses` (a damaged journal), readings gone from the agent before Home
    Assistant archived them are left out of the table's "lost" (the agent counts
    what it can prove); the caller reports them."""
    verdict = judge(
        agent.generated(), archive, *(journals or (agent.agent_dir / "journal" / "journal.db",))
    )
    record(
        scenario,
        cycles=cycles,
        generated=verdict.generated,
        delivered=verdict.delivered,
        lost=verdict.lost - verdict.gone_from_agent if agent_side_losses else verdict.lost,
        duplicated=verdict.duplicated,
    )
    assert verdict.unrecorded <= unrecorded_per_kill * max(0, agent.starts - 1), verdict
    return verdict
