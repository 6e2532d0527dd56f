"""The `bioreactor.export_readings` action: a device's archived readings in a time range."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import AsyncMock

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.api import Reading
from custom_components.bioreactor.const import ARCHIVE_DIR, DOMAIN
from custom_components.bioreactor.delivery import archive

from .conftest import AGENT_ID

START = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)


def readings(reactor: str, count: int) -> list[Reading]:
    return [
        Reading(n, (START + timedelta(minutes=30 * n)).isoformat().replace("+00:00", "Z"),
                reactor, f"{reactor}-ph-63", "ph", 7 + n / 10, "pH", "good")
        for n in range(1, count + 1)
    ]  # fmt: skip


async def export(
    hass: HomeAssistant, device_id: str, hours: int
) -> tuple[int, list[dict[str, str]]]:
    response = await hass.services.async_call(
        DOMAIN,
        "export_readings",
        {"device_id": device_id, "start": START.isoformat(),
         "end": (START + timedelta(hours=hours)).isoformat()},
        blocking=True,
        return_response=True,
    )  # fmt: skip
    assert response is not None
    text = await hass.async_add_executor_job(Path(str(response["path"])).read_text)
    return int(str(response["rows"])), list(csv.DictReader(text.splitlines()))


async def test_export_a_reactor_or_an_agent_device(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, mock_client: AsyncMock
) -> None:
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    agent_dir = Path(hass.config.path(ARCHIVE_DIR, AGENT_ID))
    await hass.async_add_executor_job(
        archive.append, archive.plan_append(agent_dir, AGENT_ID, "e1", readings("bus1", 8))
    )
    other = readings("bus2", 3)
    await hass.async_add_executor_job(
        archive.append, archive.plan_append(agent_dir, AGENT_ID, "e1", other)
    )
    devices = dr.async_get(hass)
    entry_id = mock_config_entry.entry_id
    reactor = devices.async_get_device_by_identifier((DOMAIN, f"{AGENT_ID}_bus1"), entry_id)
    agent = devices.async_get_device_by_identifier((DOMAIN, AGENT_ID), entry_id)
    assert reactor is not None and agent is not None

    count, rows = await export(hass, reactor.id, 2)  # 23:00 up to 01:00, across midnight
    assert count == len(rows) == 3
    assert [(r["agent"], r["epoch"], r["seq"]) for r in rows] == [
        (AGENT_ID, "e1", "1"), (AGENT_ID, "e1", "2"), (AGENT_ID, "e1", "3")
    ]  # fmt: skip
    assert rows[0]["time"] == "2026-11-24T23:30:00.000Z"
    assert list(rows[0]) == list(archive.COLUMNS)

    count, rows = await export(hass, agent.id, 24)
    assert count == 11
    assert {r["reactor"] for r in rows} == {"bus1", "bus2"}


async def test_export_refuses_unknown_devices_and_empty_ranges(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, mock_client: AsyncMock
) -> None:
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    with pytest.raises(ServiceValidationError) as err:
        await export(hass, "not-a-device", 1)
    assert err.value.translation_key == "export_unknown_device"
    agent = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, AGENT_ID), mock_config_entry.entry_id
    )
    assert agent is not None
    with pytest.raises(ServiceValidationError) as err:
        await export(hass, agent.id, 0)
    assert err.value.translation_key == "export_range_invalid"
