"""Polling: a rate limit is temporary (the next poll waits for Retry-After, the entry stays
loaded, no reauthentication), and the real agent never limits the right token. A refused
token's reauthentication: test_init.py."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import AsyncMock

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers.update_coordinator import UpdateFailed
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.api import BioreactorRateLimitedError
from tests.support.agent_process import AgentProcess, running_agent

from .real_agent import pair
from .test_init import PH, poll, setup


def reauth_flows(hass: HomeAssistant) -> list[str]:
    return [
        f["flow_id"]
        for f in hass.config_entries.flow.async_progress()
        if f["context"]["source"] == "reauth"
    ]


@pytest.mark.usefixtures("mock_client")
async def test_rate_limit_waits_for_retry_after_and_never_reauthenticates(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    mock_client: AsyncMock,
    freezer: FrozenDateTimeFactory,
) -> None:
    await setup(hass, mock_config_entry)
    working = mock_client.status.side_effect
    mock_client.status.side_effect = BioreactorRateLimitedError(45)
    await poll(hass, freezer, 10)
    calls = mock_client.status.await_count
    assert hass.states.get(PH).state == STATE_UNAVAILABLE
    coordinator = mock_config_entry.runtime_data
    assert isinstance(coordinator.last_exception, UpdateFailed)
    assert "rate limiting" in str(coordinator.last_exception)

    # Not at the normal 10 s nor at a doubled back-off: only once Retry-After has passed.
    await poll(hass, freezer, 40)
    assert mock_client.status.await_count == calls
    mock_client.status.side_effect = working
    await poll(hass, freezer, 6)
    assert mock_client.status.await_count == calls + 1
    assert float(hass.states.get(PH).state) > 0
    assert mock_config_entry.state is ConfigEntryState.LOADED
    assert reauth_flows(hass) == []
    # The regular interval again, not a backed-off one.
    await poll(hass, freezer, 10)
    assert mock_client.status.await_count == calls + 2


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    with running_agent(tmp_path / "agent", rate_hz=5.0, sensors=4) as process:
        yield process


def fail_logins(agent: AgentProcess, times: int) -> list[int]:
    """Another client at Home Assistant's address with a wrong token: the HTTP statuses."""
    statuses = []
    for _ in range(times):
        request = urllib.request.Request(
            agent.url + "/api/v1/status", headers={"Authorization": "Bearer " + "w" * 43}
        )
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as err:
            statuses.append(err.code)
    return statuses


@pytest.mark.usefixtures("socket_enabled")
async def test_failed_logins_of_a_neighbour_do_not_block_the_real_agent(
    hass: HomeAssistant, agent: AgentProcess
) -> None:
    """Failed logins from anything else behind Home Assistant's address trip the agent's
    limiter for them; Home Assistant presents the right token and keeps polling."""
    entry, _ = await pair(hass, agent)
    statuses = await hass.async_add_executor_job(fail_logins, agent, 15)
    assert 429 in statuses, statuses

    coordinator = entry.runtime_data
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert coordinator.last_update_success, coordinator.last_exception
    assert entry.state is ConfigEntryState.LOADED
    assert reauth_flows(hass) == []
