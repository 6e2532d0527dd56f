"""Epochs on a real agent: journals swapped A -> B -> A (an SD card put back, a backup
restored), and a damaged journal tail after which delivery must continue. Every
reading of every journal is archived exactly once; readings a damaged tail took are
counted by the agent, never skipped silently by Home Assistant."""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.support.agent_process import AgentProcess

from .conftest import cycles
from .harness import deliver_all, drain_and_stop, judge_and_record, start_consumer


def test_journals_swapped_a_b_a(edge_python: str, tmp_path: Path, socket_enabled: None) -> None:
    rng = random.Random(31)
    agent = AgentProcess(edge_python, tmp_path / "agent", rate_hz=20.0, sensors=2)
    out = tmp_path / "consumer"
    journal = agent.agent_dir / "journal"
    cards = [agent.agent_dir / "card-a", agent.agent_dir / "card-b"]
    swaps = cycles(200)
    try:
        agent.start()
        agent.wait_ready()
        for swap in range(swaps):
            time.sleep(0.2 + rng.random() * 0.3)
            if rng.random() < 0.7:  # sometimes swapped before Home Assistant caught up
                deliver_all(agent, out)
            agent.stop()
            journal.rename(cards[swap % 2])
            if cards[(swap + 1) % 2].exists():
                cards[(swap + 1) % 2].rename(journal)
            agent.start()
            agent.wait_ready()
        deliver_all(agent, out)
    finally:
        agent.stop()
    out_of_use = next(card for card in cards if card.exists())
    verdict = judge_and_record(
        "journals swapped A -> B -> A (SD card / backup)",
        swaps,
        agent,
        out / "archive",
        journals=(journal / "journal.db", out_of_use / "journal.db"),
        # A stopping agent may journal its last batch without recording it.
        unrecorded_per_kill=64,
    )
    assert verdict.lost == 0
    assert verdict.duplicated == 0


def test_damaged_journal_tail_then_delivery_continues(agent: AgentProcess, tmp_path: Path) -> None:
    """SIGKILL the agent, cut or flip its WAL tail, restart it, keep delivering. Every
    reading the agent still holds, inherited ones included, and every one journaled
    after the restart reaches the archive exactly once: Home Assistant skips none.
    Readings the damage took before Home Assistant had them are the agent's loss
    (counted in `dropped_by_cause.recovery` where the agent can prove them)."""
    rng = random.Random(37)
    out = tmp_path / "consumer"
    wal = agent.agent_dir / "journal" / "journal.db-wal"
    damages = cycles(200)
    counted = 0
    for _ in range(damages):
        consumer = start_consumer(agent, out)
        time.sleep(0.3 + rng.random() * 0.4)
        agent.kill()
        consumer.kill()
        consumer.wait()
        if wal.exists() and wal.stat().st_size > 64:
            size = wal.stat().st_size
            offset = rng.randrange(size // 2, size)
            if rng.random() < 0.5:
                with wal.open("r+b") as file:
                    file.truncate(offset)
            else:
                data = bytearray(wal.read_bytes())
                data[offset] ^= 1 << rng.randrange(8)
                wal.write_bytes(bytes(data))
        agent.start()
        status = agent.wait_ready()
        counted = max(counted, status["journal"].get("dropped_by_cause", {}).get("recovery", 0))
    drain_and_stop(agent, out)

    verdict = judge_and_record(
        "journal tail damaged, delivery continues",
        damages,
        agent,
        out / "archive",
        unrecorded_per_kill=64,
        agent_side_losses=True,
    )
    print(f"taken by the damage: {verdict.gone_from_agent}, counted by the agent: {counted}")
    assert verdict.lost == verdict.gone_from_agent, verdict
    assert verdict.duplicated == 0
