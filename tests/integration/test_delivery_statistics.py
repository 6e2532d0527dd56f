"""Statistics of an outage backlog, from the archive: each hour imported once complete
(the outage's last hour too), converted to the statistic's unit, durably remembered."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util.unit_system import METRIC_SYSTEM, US_CUSTOMARY_SYSTEM, UnitSystem
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.bioreactor.api import Reading, ReadingsPage
from custom_components.bioreactor.const import ARCHIVE_DIR, DOMAIN
from custom_components.bioreactor.delivery import archive, statistics
from custom_components.bioreactor.delivery.pipeline import Delivery, late_hours
from custom_components.bioreactor.delivery.recorder_import import unit_converter
from tests.support.archive_files import archive_rows
from tests.support.light_pipeline import run_blocking

from .conftest import AGENT_ID

NOW = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)
OUTAGE_START = NOW - timedelta(hours=6)


def backlog() -> list[Reading]:
    """Six hours of pH and temperature readings up to NOW, one pair every 5 minutes."""
    out: list[Reading] = []
    at = OUTAGE_START
    while at < NOW:
        stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        minutes = (at - OUTAGE_START).total_seconds() / 60
        out.append(Reading(len(out) + 1, stamp, "bus1", "bus1-ph-63", "ph",
                           6.5 + minutes / 1000, "pH", "good"))  # fmt: skip
        out.append(Reading(len(out) + 1, stamp, "bus1", "bus1-rtd-66", "temperature",
                           30 + minutes / 100, "°C", "good"))  # fmt: skip
        at += timedelta(minutes=5)
    return out


def archive_hourly_means(config_dir: Path, sensor: str) -> dict[datetime, float]:
    values: dict[datetime, list[float]] = defaultdict(list)
    for row in archive_rows(config_dir / ARCHIVE_DIR):
        if row["sensor"] == sensor:
            at = datetime.fromisoformat(row["time"])
            values[at.replace(minute=0, second=0, microsecond=0)].append(float(row["value"]))
    return {hour: sum(v) / len(v) for hour, v in values.items()}


async def run_polls(hass: HomeAssistant, freezer: FrozenDateTimeFactory, to: datetime) -> None:
    freezer.move_to(to)
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)


async def hourly(hass: HomeAssistant, entity_id: str) -> dict[datetime, float]:
    stats = await hass.async_add_executor_job(
        statistics_during_period, hass, OUTAGE_START - timedelta(hours=1), NOW + timedelta(hours=2),
        {entity_id}, "hour", None, {"mean"},
    )  # fmt: skip
    return {
        datetime.fromtimestamp(row["start"], UTC): float(row["mean"] or 0)
        for row in stats.get(entity_id, [])
    }


@pytest.mark.parametrize(
    ("units", "to_statistic"),
    [(METRIC_SYSTEM, lambda c: c), (US_CUSTOMARY_SYSTEM, lambda c: c * 9 / 5 + 32)],
    ids=["metric", "us_customary"],
)
async def test_outage_hours_equal_the_archive_means(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    mock_client: AsyncMock,
    freezer: FrozenDateTimeFactory,
    units: UnitSystem,
    to_statistic: object,
) -> None:
    hass.config.units = units
    freezer.move_to(NOW)
    journal = backlog()

    async def readings(after: int, limit: int) -> ReadingsPage:
        page = tuple(r for r in journal if r.seq > after)[:limit]
        more = bool(page) and page[-1].seq < journal[-1].seq
        return ReadingsPage(AGENT_ID, "e1", journal[-1].seq, more, page)

    mock_client.readings.side_effect = readings
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await run_polls(hass, freezer, NOW + timedelta(seconds=10))

    registry = er.async_get(hass)
    ph = registry.async_get_entity_id("sensor", DOMAIN, f"{AGENT_ID}_bus1-ph-63_ph")
    temp = registry.async_get_entity_id("sensor", DOMAIN, f"{AGENT_ID}_bus1-rtd-66_temperature")
    assert ph and temp
    config = Path(hass.config.config_dir)
    ph_means = archive_hourly_means(config, "bus1-ph-63")
    temp_means = archive_hourly_means(config, "bus1-rtd-66")
    assert len(ph_means) == 7  # 06:30-07:00 ... 12:00-12:25

    # The six hours that ended before now: imported, equal to the archive's means.
    complete = sorted(ph_means)[:6]
    imported = await hourly(hass, ph)
    assert sorted(imported) == complete
    for hour in complete:
        assert imported[hour] == pytest.approx(ph_means[hour])
    imported_temp = await hourly(hass, temp)
    assert sorted(imported_temp) == complete
    for hour in complete:
        assert imported_temp[hour] == pytest.approx(to_statistic(temp_means[hour]))  # type: ignore[operator]

    # The outage's last hour (12:00) is imported once it is complete, from the archive.
    await run_polls(hass, freezer, NOW + timedelta(minutes=50))
    last = max(ph_means)
    imported = await hourly(hass, ph)
    assert imported[last] == pytest.approx(ph_means[last])
    assert not mock_config_entry.runtime_data.delivery.lineage.hours
    mock_client.ack.assert_awaited_with("e1", journal[-1].seq)


def test_due_hours_wait_until_complete() -> None:
    hours = ["bus1/2026-11-25T10", "bus1/2026-11-25T11"]
    end = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    # Ended, settled, but delivery has not passed 12:00 yet: only 10:00 is due.
    assert statistics.due_hours(
        hours, end + statistics.SETTLE, end - timedelta(minutes=1), False
    ) == {"bus1/2026-11-25T10"}
    assert statistics.due_hours(hours, end + statistics.SETTLE, None, True) == set(hours)
    # Not settled yet: the recorder may still compile 11:00 from states.
    assert statistics.due_hours(hours, end + timedelta(minutes=1), None, True) == {
        "bus1/2026-11-25T10"
    }


async def test_wide_page_marks_every_hour_without_error(tmp_path: Path) -> None:
    """A page spanning 600 hours (a long outage) marks each once; aggregating any is exact."""
    start = datetime(2026, 10, 1, tzinfo=UTC)
    journal = [
        Reading(n + 1, (start + timedelta(minutes=30 * n)).isoformat().replace("+00:00", "Z"),
                "bus1", "bus1-ph-63", "ph", float(n), "pH", "good")
        for n in range(1200)
    ]  # fmt: skip

    class Source:
        async def readings(self, after: int, limit: int = 10_000) -> ReadingsPage:
            return ReadingsPage(AGENT_ID, "e1", 1200, False, tuple(journal[after:][:limit]))

        async def ack(self, epoch: str, seq: int) -> int:
            return seq

    delivery = Delivery(
        Source(), AGENT_ID, tmp_path / "a", tmp_path / "l.json", run_blocking,
        now=lambda: start + timedelta(days=40),
    )  # fmt: skip
    await delivery.recover()
    await delivery.pull()
    assert len(delivery.lineage.hours) == 600
    [(series, aggregate)] = statistics.aggregate_hour(tmp_path / "a", "bus1/2026-10-05T03").items()
    assert series == ("bus1-ph-63", "ph", "pH")
    assert (aggregate.count, aggregate.mean) == (2, 4 * 48 + 6.5)
    await delivery.forget_hours(frozenset(list(delivery.lineage.hours)[:10]))
    restarted = Delivery(Source(), AGENT_ID, tmp_path / "a", tmp_path / "l.json", run_blocking)
    await restarted.recover()
    assert len(restarted.lineage.hours) == 590  # remembered durably


def test_unit_converter() -> None:
    to_f = unit_converter("°C", "°F")
    assert to_f is not None
    assert to_f[0](100.0) == pytest.approx(212.0)
    assert to_f[1] == "temperature"
    unitless = unit_converter("pH", None)
    assert unitless is not None
    assert unitless[0](7.1) == 7.1
    assert unit_converter("mg/L", "°F") is None  # never mislabelled


async def test_an_hour_in_two_units_is_one_statistic(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    mock_client: AsyncMock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A series whose unit changed within an hour: every value converted, one row."""
    freezer.move_to(NOW)
    hour = NOW - timedelta(hours=3)
    values = [(30.0, "°C"), (86.0, "°F"), (32.0, "°C")]
    journal = [
        Reading(n + 1, (hour + timedelta(minutes=10 * n)).isoformat().replace("+00:00", "Z"),
                "bus1", "bus1-rtd-66", "temperature", value, unit, "good")
        for n, (value, unit) in enumerate(values)
    ]  # fmt: skip
    mock_client.readings.side_effect = lambda after, limit: ReadingsPage(
        AGENT_ID, "e1", 3, False, tuple(r for r in journal if r.seq > after)
    )
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await run_polls(hass, freezer, NOW + timedelta(seconds=10))
    temp = er.async_get(hass).async_get_entity_id(
        "sensor", DOMAIN, f"{AGENT_ID}_bus1-rtd-66_temperature"
    )
    assert temp
    stats = await hass.async_add_executor_job(
        statistics_during_period, hass, hour - timedelta(hours=1), NOW, {temp}, "hour", None,
        {"mean", "min", "max"},
    )  # fmt: skip
    [row] = stats[temp]
    assert (row["mean"], row["min"], row["max"]) == pytest.approx((92 / 3, 30.0, 32.0))


def test_readings_of_an_unsynchronized_clock_or_a_calibration_make_no_statistics(
    tmp_path: Path,
) -> None:
    at = datetime(2026, 11, 25, 3, 10, tzinfo=UTC)
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    good = Reading(1, stamp, "bus1", "bus1-ph-63", "ph", 7.0, "pH", "good")
    unsynced = Reading(2, stamp, "bus1", "bus1-ph-63", "ph", 9.0, "pH", "unsynced")
    # The probe in a pH 4 buffer: archived, but not the culture's pH.
    buffer = Reading(3, stamp, "bus1", "bus1-ph-63", "ph", 4.0, "pH", "calibrating")
    cutoff = at + timedelta(hours=2)
    assert late_hours((unsynced,), cutoff) == frozenset()
    assert late_hours((good, unsynced), cutoff) == {"bus1/2026-11-25T03"}
    archive.append(archive.plan_append(tmp_path, AGENT_ID, "e1", [good, unsynced, buffer]))
    [aggregate] = statistics.aggregate_hour(tmp_path, "bus1/2026-11-25T03").values()
    assert (aggregate.count, aggregate.mean) == (1, 7.0)
