"""Delays, resets, truncated and repeated responses between consumer and agent."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.support.agent_process import AgentProcess
from tests.support.fault_proxy import FaultProxy
from tests.support.fault_report import scale

from .harness import consumer_args, drain_and_stop, judge_and_record


async def test_delivery_through_a_faulty_network(agent: AgentProcess, tmp_path: Path) -> None:
    out = tmp_path / "consumer"
    async with FaultProxy("127.0.0.1", agent.port, seed=3) as proxy:
        consumer = await asyncio.create_subprocess_exec(
            *consumer_args(proxy.port, agent.token, out)
        )
        await asyncio.sleep(10 * max(scale(), 0.5))
        consumer.send_signal(signal.SIGKILL)
        await consumer.wait()
    await asyncio.to_thread(drain_and_stop, agent, out)

    faults = sum(n for fault, n in proxy.counts.items() if fault != "pass")
    verdict = judge_and_record(
        "TCP fault proxy (delay/reset/truncate/repeat)", faults, agent, out / "archive"
    )
    assert faults >= 20, proxy.counts
    assert set(proxy.counts) >= {"delay", "reset_request", "reset_response", "truncate", "repeat"}
    assert verdict.lost == 0
    assert verdict.duplicated == 0
