"""The control platforms' entities: registry entries and states against snapshots
(the control sensors' own snapshot is in test_control_sensor.py)."""

from __future__ import annotations

import pytest
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

pytestmark = pytest.mark.usefixtures("control")
BUTTON, NUMBER, SELECT, SWITCH = Platform.BUTTON, Platform.NUMBER, Platform.SELECT, Platform.SWITCH


@pytest.mark.parametrize(
    "platforms",
    [pytest.param([platform], id=platform) for platform in (BUTTON, NUMBER, SELECT, SWITCH)],
)
async def test_entities(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    await snapshot_platform(hass, entity_registry, snapshot, loaded.entry_id)
