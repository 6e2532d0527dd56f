"""Fixtures for the Home Assistant integration tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, PropertyMock, patch

import pytest
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion

# PHCC puts its own testing_config first on sys.path; importing our package
# before the hass fixture runs makes HA find this integration (see docs/toolchain.md).
import custom_components.bioreactor  # noqa: F401
from custom_components.bioreactor.api import ReadingsPage, parse_info, parse_status
from custom_components.bioreactor.const import DOMAIN

from . import setup_integration
from .control_support import add_control

FIXTURES = Path(__file__).parent / "fixtures"
AGENT_ID = "ef785eb90d638e3d"
TOKEN = "test-token-" + "t" * 40
ENTRY_DATA = {CONF_HOST: "192.0.2.10", CONF_PORT: 8420, CONF_TOKEN: TOKEN}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(recorder_mock: Any, enable_custom_integrations: None) -> None:
    """Load custom_components/bioreactor, with the recorder it depends on, in every test."""


@pytest.fixture(autouse=True)
def config_dir_in_tmp(hass: HomeAssistant, tmp_path: Path) -> None:
    """The archive and cursor files go to a fresh directory per test."""
    hass.config.config_dir = str(tmp_path)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshots that know Home Assistant's registry entries and states (ids and times
    masked); syrupy's own fixture would otherwise win over PHCC's."""
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


@pytest.fixture
def status_payload() -> dict[str, Any]:
    """The agent's /status answer (recorded from `bioreactor-edge simulate`); tests edit it."""
    payload: dict[str, Any] = json.loads((FIXTURES / "status.json").read_text())
    return payload


@pytest.fixture
def control(status_payload: dict[str, Any]) -> None:
    """The status fixture's reactor gets the recorded actuators and loops (control tests)."""
    add_control(status_payload)


@pytest.fixture
def mock_config_entry() -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN, title="Simulated bench 1", unique_id=AGENT_ID, data=dict(ENTRY_DATA)
    )


@pytest.fixture
def mock_client(status_payload: dict[str, Any]) -> Generator[AsyncMock]:
    """A BioreactorClient whose answers follow `status_payload` (timestamped now)."""

    def current_status() -> Any:
        return parse_status({**status_payload, "time": dt_util.utcnow().isoformat()})

    with (
        patch("custom_components.bioreactor.BioreactorClient", autospec=True) as client_class,
        patch("custom_components.bioreactor.config_flow.BioreactorClient", new=client_class),
    ):
        client = client_class.return_value
        client.info.side_effect = lambda: parse_info(status_payload)
        client.status.side_effect = current_status
        client.readings.return_value = ReadingsPage(AGENT_ID, "epoch1", 0, False, ())
        client.ack.return_value = 0
        client.certificate_fingerprint.return_value = None  # plain HTTP unless a test says
        yield client


@pytest.fixture
def sensors_of(status_payload: dict[str, Any]) -> Callable[[], list[dict[str, Any]]]:
    return lambda: [s for r in status_payload["reactors"] for s in r["sensors"]]


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Enable the entities that are disabled by default (as Home Assistant core's tests do)."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


@pytest.fixture
def platforms() -> list[Platform] | None:
    """The platforms `loaded` sets up: all of them, unless a test module narrows them."""
    return None


@pytest.fixture
async def loaded(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    mock_config_entry: MockConfigEntry,
    platforms: list[Platform] | None,
) -> MockConfigEntry:
    """`mock_config_entry` set up against `mock_client`, with `platforms`."""
    await setup_integration(hass, mock_config_entry, platforms)
    return mock_config_entry
