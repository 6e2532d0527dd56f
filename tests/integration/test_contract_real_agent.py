"""The integration against a REAL edge agent (`bioreactor-edge simulate`) on loopback:
client and agent API cannot drift, and delivery archives every reading exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er

from custom_components.bioreactor.const import ARCHIVE_DIR, DOMAIN
from tests.support.agent_process import AgentProcess, running_agent
from tests.support.archive_files import archive_rows

from .real_agent import pair

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    with running_agent(tmp_path / "agent", rate_hz=10.0, sensors=8) as process:
        yield process


async def test_real_agent_end_to_end(hass: HomeAssistant, agent: AgentProcess) -> None:
    entry, info = await pair(hass, agent)

    # Devices and entities come from the agent's own answers.
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    assert {d.name for d in devices} == {info["name"], f"{info['name']} Reactor 1"}
    entities = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    assert {e.unique_id for e in entities} >= {
        f"{info['agent_id']}_bus1-ph-63_ph",
        f"{info['agent_id']}_bus1-rtd-66_temperature",
        f"{info['agent_id']}_bus1-do-61_dissolved_oxygen",
        f"{info['agent_id']}_bus1-ec-64_conductivity",
    }

    # Let readings accumulate and the coordinator deliver them a few times.
    coordinator = entry.runtime_data
    for _ in range(4):
        await asyncio.sleep(0.5)
        await coordinator.async_refresh()
        await hass.async_block_till_done()
    registry = er.async_get(hass)
    ph = registry.async_get_entity_id("sensor", DOMAIN, f"{info['agent_id']}_bus1-ph-63_ph")
    rtd = registry.async_get_entity_id(
        "sensor", DOMAIN, f"{info['agent_id']}_bus1-rtd-66_temperature"
    )
    assert ph is not None
    assert rtd is not None
    assert 5.0 < float(hass.states.get(ph).state) < 8.0
    assert 20.0 < float(hass.states.get(rtd).state) < 45.0
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()

    rows = archive_rows(Path(hass.config.path(ARCHIVE_DIR, info["agent_id"])))
    assert rows, "nothing was archived"
    seqs = [int(r["seq"]) for r in rows]
    assert len(seqs) == len(set(seqs)), "a reading was archived twice"
    assert seqs == list(range(1, len(seqs) + 1)), "a reading is missing"
    # The agent has every archived reading acknowledged, and the archive matches its journal.
    status = await hass.async_add_executor_job(agent.get, "/api/v1/status")
    assert status["journal"]["acked_seq"] == seqs[-1]
    page = await hass.async_add_executor_job(
        agent.get, f"/api/v1/readings?after=0&limit={len(seqs)}"
    )
    assert [
        (r["seq"], r["time"], r["sensor"], r["quantity"], float(r["value"]))
        for r in page["readings"]
    ] == [(int(r["seq"]), r["time"], r["sensor"], r["quantity"], float(r["value"])) for r in rows]
