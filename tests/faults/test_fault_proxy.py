"""Delays, resets, truncated and repeated responses between consumer and agent."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from tests.support.agent_process import AgentProcess
from tests.support.fault_proxy import FaultProxy
from tests.support.fault_report import record, scale

from .oracle import judge
from .test_consumer_kills import CONSUMER, start_consumer


async def test_delivery_through_a_faulty_network(agent: AgentProcess, tmp_path: Path) -> None:
    out = tmp_path / "consumer"
    async with FaultProxy("127.0.0.1", agent.port, seed=3) as proxy:
        consumer = await asyncio.create_subprocess_exec(
            sys.executable, str(CONSUMER), "127.0.0.1", str(proxy.port), agent.token, str(out), "40"
        )
        await asyncio.sleep(10 * max(scale(), 0.5))
        consumer.send_signal(signal.SIGKILL)
        await consumer.wait()
    final = start_consumer(agent, out, until_caught_up=True)
    _, stderr = await asyncio.to_thread(final.communicate, timeout=120)
    assert final.returncode == 0, stderr.decode()
    agent.stop()

    faults = sum(n for fault, n in proxy.counts.items() if fault != "pass")
    verdict = judge(agent.generated(), out / "archive", agent.agent_dir / "journal" / "journal.db")
    record(
        "TCP fault proxy (delay/reset/truncate/repeat)",
        cycles=faults,
        generated=verdict.generated,
        delivered=verdict.delivered,
        lost=verdict.lost,
        duplicated=verdict.duplicated,
    )
    assert faults >= 20, proxy.counts
    assert set(proxy.counts) >= {"delay", "reset_request", "reset_response", "truncate", "repeat"}
    assert verdict.lost == 0
    assert verdict.duplicated == 0
