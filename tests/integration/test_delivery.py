"""Delivery pipeline, archive, export service and statistics backfill (real files, recorder)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.bioreactor import archive, cursor
from custom_components.bioreactor.api import BioreactorRequestError, Reading, ReadingsPage
from custom_components.bioreactor.backfill import HourlyBackfill
from custom_components.bioreactor.const import ARCHIVE_DIR, DOMAIN
from custom_components.bioreactor.delivery import Delivery
from tests.support.archive_files import archive_rows
from tests.support.light_pipeline import run_blocking

from .conftest import AGENT_ID

START = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)


def reading(seq: int, at: datetime, *, sensor: str = "bus1-ph-63", value: float = 7.0) -> Reading:
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Reading(seq, stamp, "bus1", sensor, "ph", value, "pH", "good")


class FakeAgent:
    """A journal behind the ReadingsSource protocol: pages, epochs, acks."""

    def __init__(self, readings: list[Reading], epoch: str = "e1") -> None:
        self.readings = readings
        self.epoch = epoch
        self.acked: list[tuple[str, int]] = []
        self.refuse_ack = False

    async def readings_page(self, after: int, limit: int) -> ReadingsPage:
        page = [r for r in self.readings if r.seq > after][:limit]
        newest = self.readings[-1].seq if self.readings else 0
        more = bool(page) and page[-1].seq < newest
        return ReadingsPage(AGENT_ID, self.epoch, newest, more, tuple(page))

    async def ack(self, epoch: str, seq: int) -> int:
        if self.refuse_ack:
            raise BioreactorRequestError(409, "epoch_mismatch", "no")
        self.acked.append((epoch, seq))
        return seq


class Source:
    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent

    async def readings(self, after: int, limit: int = 10_000) -> ReadingsPage:
        return await self.agent.readings_page(after, limit)

    async def ack(self, epoch: str, seq: int) -> int:
        return await self.agent.ack(epoch, seq)


async def test_pages_are_archived_once_then_acknowledged(tmp_path: Path) -> None:
    agent = FakeAgent([reading(n, START + timedelta(minutes=n)) for n in range(1, 251)])
    delivery = Delivery(
        Source(agent), tmp_path / "a", tmp_path / "c.json", run_blocking, page_size=100
    )
    await delivery.recover()
    results = [await delivery.pull() for _ in range(4)]
    assert [len(r.readings) for r in results] == [100, 100, 50, 0]
    assert [r.more for r in results] == [True, True, False, False]
    assert agent.acked == [("e1", 100), ("e1", 200), ("e1", 250)]
    assert [int(r["seq"]) for r in archive_rows(tmp_path / "a")] == list(range(1, 251))
    # Readings cross midnight: one file per UTC day.
    assert sorted(p.name for p in (tmp_path / "a" / "bus1").iterdir()) == [
        "2026-11-24.csv",
        "2026-11-25.csv",
    ]
    assert delivery.remaining == 0


async def test_interrupted_append_is_undone_on_recovery(tmp_path: Path) -> None:
    agent = FakeAgent([reading(n, START + timedelta(seconds=n)) for n in range(1, 21)])
    delivery = Delivery(
        Source(agent), tmp_path / "a", tmp_path / "c.json", run_blocking, page_size=10
    )
    await delivery.recover()
    await delivery.pull()
    # A crash after the append but before the cursor moved: the page is on disk, the
    # cursor still says "pending" with the files' earlier sizes.
    plan = archive.plan_append(tmp_path / "a", "e1", agent.readings[10:20])
    sizes = archive.current_sizes(plan)
    cursor.save(tmp_path / "c.json", cursor.Cursor("e1", 10, sizes))
    archive.append(plan)

    restarted = Delivery(
        Source(agent), tmp_path / "a", tmp_path / "c.json", run_blocking, page_size=10
    )
    await restarted.recover()
    assert restarted.position == cursor.Cursor("e1", 10)
    await restarted.pull()
    assert [int(r["seq"]) for r in archive_rows(tmp_path / "a")] == list(range(1, 21))


async def test_epoch_change_restarts_the_cursor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = FakeAgent([reading(n, START + timedelta(seconds=n)) for n in range(1, 6)])
    delivery = Delivery(Source(agent), tmp_path / "a", tmp_path / "c.json", run_blocking)
    await delivery.recover()
    await delivery.pull()
    agent.epoch = "e2"
    agent.readings = [reading(n, START + timedelta(hours=1, seconds=n)) for n in range(1, 4)]
    delivered = await delivery.pull()
    assert [r.seq for r in delivered.readings] == [1, 2, 3]
    assert "new journal epoch e2" in caplog.text
    archived = archive_rows(tmp_path / "a")
    assert [(r["epoch"], int(r["seq"])) for r in archived] == [("e1", n) for n in range(1, 6)] + [
        ("e2", n) for n in range(1, 4)
    ]
    assert agent.acked[-1] == ("e2", 3)


async def test_refused_ack_is_repeated_later(tmp_path: Path) -> None:
    agent = FakeAgent([reading(n, START + timedelta(seconds=n)) for n in range(1, 4)])
    delivery = Delivery(Source(agent), tmp_path / "a", tmp_path / "c.json", run_blocking)
    await delivery.recover()
    agent.refuse_ack = True
    await delivery.pull()
    assert agent.acked == []
    agent.refuse_ack = False
    await delivery.pull()
    assert agent.acked == [("e1", 3)]
    assert len(archive_rows(tmp_path / "a")) == 3


def test_export_selects_the_range_across_day_files(tmp_path: Path) -> None:
    readings = [reading(n, START + timedelta(minutes=30 * n)) for n in range(1, 9)]
    archive.append(archive.plan_append(tmp_path / "archive" / AGENT_ID, "e1", readings))
    out, count = archive.export(
        tmp_path / "archive", "bus1", START + timedelta(hours=1), START + timedelta(hours=3),
        tmp_path / "out.csv",
    )  # fmt: skip
    text = out.read_text().splitlines()
    assert text[0] == archive.HEADER.strip()
    assert count == 4
    assert [line.split(",")[7] for line in text[1:]] == ["2", "3", "4", "5"]
    assert text[1].startswith("2026-11-24T23:00:00.000Z,bus1,bus1-ph-63,ph,7.0,pH,good,2,e1")


def test_hourly_backfill_seeds_from_the_archive(tmp_path: Path) -> None:
    agent_dir = tmp_path / AGENT_ID
    first = [reading(n, START + timedelta(minutes=10 * n), value=float(n)) for n in range(0, 3)]
    archive.append(archive.plan_append(agent_dir, "e1", first))
    backfill = HourlyBackfill(agent_dir)
    cutoff = START + timedelta(hours=5)
    hours = backfill.add(first, cutoff)
    [(start, aggregate)] = hours["bus1-ph-63", "ph"]
    assert start == START
    assert (aggregate.count, aggregate.mean, aggregate.minimum, aggregate.maximum) == (
        3,
        1.0,
        0.0,
        2.0,
    )

    later = [reading(n, START + timedelta(minutes=10 * n), value=float(n)) for n in range(3, 6)]
    archive.append(archive.plan_append(agent_dir, "e1", later))
    hours = backfill.add(later, cutoff)
    [(_, aggregate)] = hours["bus1-ph-63", "ph"]
    # The whole hour, not just the second page.
    assert (aggregate.count, aggregate.mean, aggregate.maximum) == (6, 2.5, 5.0)
    # Readings in the live window are left to the recorder.
    assert backfill.add([reading(9, cutoff)], cutoff) == {}


async def test_export_service(hass: HomeAssistant, tmp_path: Path) -> None:
    entry = MockConfigEntry(domain=DOMAIN)
    entry.add_to_hass(hass)
    assert await async_setup_component(hass, DOMAIN, {})
    readings = [reading(n, START + timedelta(minutes=n)) for n in range(1, 11)]
    await hass.async_add_executor_job(
        archive.append,
        archive.plan_append(Path(hass.config.path(ARCHIVE_DIR, AGENT_ID)), "e1", readings),
    )
    response = await hass.services.async_call(
        DOMAIN,
        "export_readings",
        {
            "reactor": "bus1",
            "start": START.isoformat(),
            "end": (START + timedelta(minutes=5, seconds=30)).isoformat(),
        },
        blocking=True,
        return_response=True,
    )
    assert response is not None
    assert response["rows"] == 5
    assert Path(str(response["path"])).read_text().count("\n") == 6
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN,
            "export_readings",
            {"reactor": "bus1", "start": START.isoformat(), "end": START.isoformat()},
            blocking=True,
            return_response=True,
        )


async def test_outage_backlog_becomes_hourly_statistics(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    mock_client: AsyncMock,
    freezer: FrozenDateTimeFactory,
) -> None:
    now = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)
    freezer.move_to(now)
    outage = [
        reading(
            n + 1,
            now - timedelta(hours=4, minutes=30) + timedelta(minutes=5 * n),
            value=6.5 + n / 100,
        )
        for n in range(36)
    ]  # three hours of readings, every 5 minutes
    agent = FakeAgent(outage)

    async def readings(after: int, limit: int) -> ReadingsPage:
        return await agent.readings_page(after, limit)

    mock_client.readings.side_effect = readings
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    freezer.tick(timedelta(seconds=10))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)

    entity_id = "sensor.simulated_bench_1_reactor_1_ph"
    stats = await hass.async_add_executor_job(
        statistics_during_period, hass, now - timedelta(hours=5), now, {entity_id}, "hour", None,
        {"mean", "min", "max"},
    )  # fmt: skip
    hours = stats[entity_id]
    assert len(hours) == 3
    assert hours[0]["min"] == pytest.approx(6.5)
    assert hours[0]["max"] == pytest.approx(6.61)
    assert hours[0]["mean"] == pytest.approx(sum(6.5 + n / 100 for n in range(12)) / 12)
    archived = archive_rows(Path(hass.config.path(ARCHIVE_DIR)))
    assert [int(r["seq"]) for r in archived] == list(range(1, 37))
    mock_client.ack.assert_awaited_with("e1", 36)
