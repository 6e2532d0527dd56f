"""Shared fixtures for the hardware-layer tests: simulated buses with fast EZO timing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bioreactor_edge.bus import BusOwner
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus


@pytest.fixture
def model() -> ReactorModel:
    return ReactorModel(seed=7)


@pytest.fixture
def vbus() -> VirtualBus:
    return VirtualBus()


@pytest.fixture
async def owner(vbus: VirtualBus) -> AsyncIterator[BusOwner]:
    bus_owner = BusOwner(vbus, 1, timeout_s=5.0)
    yield bus_owner
    await bus_owner.close()
