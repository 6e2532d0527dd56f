"""The agent before its clock is synchronised: readings marked `unsynced`, a problem listed."""

from __future__ import annotations

from pathlib import Path

from bioreactor_edge.agent import Agent
from bioreactor_edge.simulator.lab import build_reactor_bus
from bioreactor_edge.simulator.physics import ReactorModel
from tests.edge.test_agent import RATE_HZ, TIMING, fast_config, single_bus, wait_for


async def test_readings_before_sync_are_marked(tmp_path: Path) -> None:
    synced = [False]
    bus = build_reactor_bus(ReactorModel(seed=3), sensors=2, speed=RATE_HZ, seed=3)
    agent = Agent(
        fast_config(tmp_path),
        agent_id="c" * 16,
        raw_bus=single_bus(bus),
        timing=TIMING,
        clock_synced=lambda: synced[0],
    )
    await agent.start()
    try:
        await wait_for(lambda: agent.journal.stats().newest_seq >= 10)
        assert "clock_unsynced" in agent.status()["problems"]
        synced[0] = True
        boundary = agent.journal.stats().newest_seq
        await wait_for(lambda: agent.journal.stats().newest_seq >= boundary + 20)
        assert "clock_unsynced" not in agent.status()["problems"]
        readings, _ = await agent.journal.read_after(0, 10_000)
    finally:
        await agent.stop()
    before = [r for r in readings if r.seq <= 10]
    # A tick in flight at the switch may go either way; well after it, none is unsynced.
    after = [r for r in readings if r.seq > boundary + 10]
    assert before
    assert {r.quality for r in before} == {"unsynced"}
    assert after
    assert "unsynced" not in {r.quality for r in after}
