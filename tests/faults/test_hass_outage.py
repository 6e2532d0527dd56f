"""End to end with a real `hass`: the agent records through a multi-hour outage (its
simulated clock runs fast), Home Assistant is SIGKILLed while it catches up, then
restarted: every reading is archived exactly once, the long-term statistics cover
the outage hours, and the live state resumes."""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.support.agent_process import AgentProcess
from tests.support.archive_files import archive_rows
from tests.support.hass_process import HassProcess, wait_for

from .conftest import cycles
from .harness import judge_and_record

OUTAGE_HOURS = 4
TIME_SCALE = 720  # 4 simulated hours in 20 s


def test_outage_backfill_and_hass_kills(
    edge_python: str, tmp_path: Path, socket_enabled: None
) -> None:
    agent = AgentProcess(
        edge_python,
        tmp_path / "agent",
        rate_hz=5.0,
        sensors=3,
        extra_args=("--backdate-hours", str(OUTAGE_HOURS), "--time-scale", str(TIME_SCALE)),
    )
    hass = HassProcess(tmp_path / "homeassistant")
    rng = random.Random(7)
    agent.start()
    try:
        info = agent.wait_ready()
        hass.configure(
            agent_id=info["agent_id"], name=info["name"], port=agent.port, token=agent.token
        )
        # The outage: Home Assistant is down while the agent's clock covers the hours.
        time.sleep(OUTAGE_HOURS * 3600 / (TIME_SCALE - 1) + 1)
        archive = hass.config_dir / "bioreactor_archive"

        kills = cycles(3)
        for _ in range(kills):
            hass.start()
            before = len(archive_rows(archive)) if archive.exists() else 0
            wait_for(
                lambda before=before: archive.exists() and len(archive_rows(archive)) > before,
                180,
                "Home Assistant to deliver readings",
            )
            time.sleep(rng.random() * 2)
            hass.kill()

        hass.start()
        # Caught up: the agent's acknowledged watermark reaches what it had at this moment.
        target = agent.get("/api/v1/status")["journal"]["newest_seq"]
        wait_for(
            lambda: agent.get("/api/v1/status")["journal"]["acked_seq"] >= target,
            300,
            "the backlog to drain",
        )
        entity = "sensor.simulated_bench_1_reactor_1_ph"
        metadata = wait_for(
            lambda: hass.query("SELECT id FROM statistics_meta WHERE statistic_id = ?", entity),
            120,
            "statistics metadata for " + entity,
        )
        hours = wait_for(
            lambda: hass.query(
                "SELECT COUNT(DISTINCT start_ts) FROM statistics WHERE metadata_id = ?",
                metadata[0][0],
            )[0][0]
            >= OUTAGE_HOURS - 1
            and hass.query(
                "SELECT COUNT(DISTINCT start_ts) FROM statistics WHERE metadata_id = ?",
                metadata[0][0],
            )[0][0],
            120,
            "hourly statistics covering the outage",
        )
        live = wait_for(
            lambda: hass.query(
                "SELECT s.state FROM states s JOIN states_meta m ON m.metadata_id = s.metadata_id "
                "WHERE m.entity_id = ? ORDER BY s.state_id DESC LIMIT 1",
                entity,
            ),
            60,
            "a live pH state",
        )
        assert 5.0 < float(live[0][0]) < 8.0
        hass.stop()
    finally:
        hass.kill()
        agent.stop()

    verdict = judge_and_record("real hass SIGKILL + multi-hour outage", kills, agent, archive)
    assert hours >= OUTAGE_HOURS - 1
    assert verdict.lost == 0
    assert verdict.duplicated == 0
