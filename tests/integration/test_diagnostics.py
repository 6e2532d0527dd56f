"""Diagnostics download: complete, and without the token."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import paths

from . import setup_integration
from .conftest import TOKEN

pytestmark = pytest.mark.usefixtures("mock_client")


async def test_diagnostics(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    hass_client: Any,
    snapshot: SnapshotAssertion,
) -> None:
    await setup_integration(hass, mock_config_entry)
    # Through the download endpoint: what a user attaches to an issue.
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, mock_config_entry)
    assert TOKEN not in repr(diagnostics)
    assert diagnostics["entry"]["data"]["token"] == "**REDACTED**"
    # The agent's clock is "now" in the mocked status; everything else is fixed.
    assert diagnostics == snapshot(exclude=paths("status.time"))
