"""Reloading the config entry while a page is being stored (options, reauth, a host
update): the old pipeline's storage job finishes before the new one recovers, and
every reading is archived exactly once. A fault-harness row."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.bioreactor.api import Reading, ReadingsPage
from custom_components.bioreactor.const import ARCHIVE_DIR
from custom_components.bioreactor.delivery import pipeline
from tests.support.archive_files import archive_rows
from tests.support.fault_report import record, scale

from .conftest import AGENT_ID

PER_CYCLE = 25


async def test_reload_during_storage_archives_exactly_once(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    mock_client: AsyncMock,
    freezer: FrozenDateTimeFactory,
) -> None:
    rng = random.Random(9)
    journal: list[Reading] = []
    storing = Counter[str]()
    real_store = pipeline.store

    def slow_store(*args: Any) -> pipeline.Stored:
        storing["jobs"] += 1
        storing["in_flight"] += 1
        try:
            time.sleep(rng.random() * 0.004)  # widen the window a reload can land in
            return real_store(*args)
        finally:
            storing["in_flight"] -= 1

    def grow() -> None:
        at = dt_util.utcnow()
        for _ in range(PER_CYCLE):
            stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            journal.append(Reading(len(journal) + 1, stamp, "bus1", "bus1-ph-63", "ph",
                                   7 + len(journal) / 1e5, "pH", "good"))  # fmt: skip

    async def readings(after: int, limit: int) -> ReadingsPage:
        page = tuple(r for r in journal if r.seq > after)[: min(limit, 50)]
        newest = journal[-1].seq if journal else 0
        return ReadingsPage(AGENT_ID, "e1", newest, bool(page) and page[-1].seq < newest, page)

    mock_client.readings.side_effect = readings
    cycles = max(1, round(200 * scale()))
    with patch.object(pipeline, "store", slow_store):
        mock_config_entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
        for _ in range(cycles):
            grow()
            freezer.tick(timedelta(seconds=10))
            async_fire_time_changed(hass)  # a poll: the drain task starts
            await hass.async_block_till_done()
            for _ in range(rng.randrange(4)):
                await hass.async_add_executor_job(time.sleep, rng.random() * 0.003)
            storing["reloads_while_storing"] += storing["in_flight"] > 0
            assert await hass.config_entries.async_reload(mock_config_entry.entry_id)
        delivery = mock_config_entry.runtime_data.delivery
        for _ in range(20):  # the backlog the reloads interrupted: one drain run per poll
            freezer.tick(timedelta(seconds=10))
            async_fire_time_changed(hass)
            await hass.async_block_till_done(wait_background_tasks=True)
            if delivery.caught_up and delivery.remaining == 0:
                break
    assert mock_config_entry.state is ConfigEntryState.LOADED

    rows = archive_rows(Path(hass.config.path(ARCHIVE_DIR)))
    seen = Counter(int(r["seq"]) for r in rows)
    duplicated = sum(n - 1 for n in seen.values())
    lost = sum(1 for r in journal if r.seq not in seen)
    record(
        "HA reload during storage",
        cycles=cycles,
        generated=len(journal),
        delivered=len(rows),
        lost=lost,
        duplicated=duplicated,
    )
    assert storing["reloads_while_storing"] >= cycles // 4, storing
    assert lost == 0
    assert duplicated == 0
    mock_client.ack.assert_awaited_with("e1", journal[-1].seq)
