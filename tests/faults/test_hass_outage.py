"""End to end with a real `hass`: the agent records through a 6-hour outage (its
simulated clock runs fast), Home Assistant is SIGKILLed while it catches up, then
restarted: every reading is archived exactly once, each of the 6 outage hours has a
long-term statistic equal to the archive's hourly mean (converted to °F on a
US-customary install), and the live state resumes."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.agent_process import AgentProcess
from tests.support.archive_files import archive_rows
from tests.support.hass_process import HassProcess, wait_for
from tests.support.light_pipeline import install

from .conftest import cycles
from .harness import judge_and_record

install()
from custom_components.bioreactor.delivery.statistics import SETTLE  # noqa: E402

OUTAGE_HOURS = 6
TIME_SCALE = 900  # ~7 simulated hours in ~28 s


def outage_start(now: datetime) -> datetime:
    """The outage covers the 6 whole clock hours that ended at least SETTLE ago."""
    last_end = (now - SETTLE).replace(minute=0, second=0, microsecond=0)
    return last_end - timedelta(hours=OUTAGE_HOURS)


def archive_means(archive: Path, sensor: str, quantity: str) -> dict[int, float]:
    """Hour start (epoch seconds) -> mean of the archived values of one series."""
    values: dict[int, list[float]] = defaultdict(list)
    for row in archive_rows(archive):
        if (row["sensor"], row["quantity"]) == (sensor, quantity):
            at = datetime.fromisoformat(row["time"]).replace(minute=0, second=0, microsecond=0)
            values[int(at.timestamp())].append(float(row["value"]))
    return {hour: sum(v) / len(v) for hour, v in values.items()}


def entity_id(hass: HassProcess, unique_id: str) -> str:
    registry = json.loads((hass.config_dir / ".storage" / "core.entity_registry").read_text())
    [found] = [e["entity_id"] for e in registry["data"]["entities"] if e["unique_id"] == unique_id]
    return str(found)


def hourly_statistics(hass: HassProcess, statistic_id: str) -> dict[int, float]:
    rows = hass.query(
        "SELECT s.start_ts, s.mean FROM statistics s JOIN statistics_meta m "
        "ON m.id = s.metadata_id WHERE m.statistic_id = ?",
        statistic_id,
    )
    return {round(start): mean for start, mean in rows}


@pytest.mark.parametrize(
    ("unit_system", "kills", "to_statistic"),
    [
        ("metric", cycles(3), lambda celsius: celsius),
        ("us_customary", 1, lambda celsius: celsius * 9 / 5 + 32),
    ],
)
def test_outage_statistics_and_hass_kills(
    edge_python: str,
    tmp_path: Path,
    socket_enabled: None,
    unit_system: str,
    kills: int,
    to_statistic: object,
) -> None:
    now = datetime.now(UTC)
    start = outage_start(now)
    hours = [int((start + timedelta(hours=h)).timestamp()) for h in range(OUTAGE_HOURS)]
    agent = AgentProcess(
        edge_python,
        tmp_path / "agent",
        rate_hz=2.0,
        sensors=3,
        extra_args=(
            "--backdate-hours",
            f"{(now - start).total_seconds() / 3600:.4f}",
            "--time-scale",
            str(TIME_SCALE),
        ),
    )
    hass = HassProcess(tmp_path / "homeassistant")
    rng = random.Random(7)
    agent.start()
    try:
        info = agent.wait_ready()
        hass.configure(
            agent_id=info["agent_id"], name=info["name"], port=agent.port, token=agent.token
        )
        configuration = hass.config_dir / "configuration.yaml"
        configuration.write_text(
            configuration.read_text().replace("unit_system: metric", f"unit_system: {unit_system}")
        )
        # The outage: Home Assistant is down while the agent's clock covers the hours.
        time.sleep((now - start).total_seconds() / (TIME_SCALE - 1) + 1)
        archive = hass.config_dir / "bioreactor_archive"

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
        series = {(r["sensor"], r["quantity"]) for r in archive_rows(archive)}
        ph = next(s for s in series if s[1] == "ph")
        temperature = next(s for s in series if s[1] == "temperature")
        checked = {}
        for (sensor, quantity), convert in ((ph, None), (temperature, to_statistic)):
            statistic_id = entity_id(hass, f"{info['agent_id']}_{sensor}_{quantity}")
            imported = wait_for(
                lambda statistic_id=statistic_id: (
                    found
                    if set(found := hourly_statistics(hass, statistic_id)) >= set(hours)
                    else None
                ),
                120,
                f"statistics of the {OUTAGE_HOURS} outage hours for {statistic_id}",
            )
            means = archive_means(archive, sensor, quantity)
            checked[statistic_id] = [
                (imported[h], means[h] if convert is None else convert(means[h]))  # type: ignore[operator]
                for h in hours
            ]
        live = wait_for(
            lambda: hass.query(
                "SELECT s.state FROM states s JOIN states_meta m ON m.metadata_id = s.metadata_id "
                "WHERE m.entity_id = ? ORDER BY s.state_id DESC LIMIT 1",
                entity_id(hass, f"{info['agent_id']}_{ph[0]}_ph"),
            ),
            60,
            "a live pH state",
        )
        hass.stop()
    finally:
        hass.kill()
        agent.stop()

    verdict = judge_and_record(
        f"real hass SIGKILL + 6-hour outage ({unit_system})", kills, agent, archive
    )
    for statistic_id, pairs in checked.items():
        assert [s for s, _ in pairs] == pytest.approx([m for _, m in pairs]), statistic_id
    assert 5.0 < float(live[0][0]) < 8.0
    assert verdict.lost == 0
    assert verdict.duplicated == 0
