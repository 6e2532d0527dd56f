"""Shared fixtures for the hardware-layer tests: simulated buses with fast EZO timing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bioreactor_edge.bus import BusOwner, RawBus
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus


@pytest.fixture
def model() -> ReactorModel:
    return ReactorModel(seed=7)


@pytest.fixture
def vbus() -> VirtualBus:
    return VirtualBus()


@pytest.fixture
def raw_bus(vbus: VirtualBus) -> RawBus:
    """The bus `owner` owns: the virtual bus, unless a test module overrides this."""
    return vbus


@pytest.fixture
async def owner(raw_bus: RawBus) -> AsyncIterator[BusOwner]:
    bus_owner = BusOwner(raw_bus, 1, timeout_s=5.0)
    yield bus_owner
    await bus_owner.close()
