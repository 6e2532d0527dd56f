"""Sensor handlers and the sampler on simulated chips, with the journal replaced by a list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from bioreactor_edge.bus import BusOwner
from bioreactor_edge.drivers import create_driver, identify
from bioreactor_edge.drivers.base import Driver
from bioreactor_edge.models import NewReading, SensorStatus
from bioreactor_edge.sampler import (
    BACKOFF_STEADY_S,
    ERROR_AFTER,
    LastValue,
    Sampler,
    SensorHandler,
    backoff_delay,
    sensor_id,
)
from bioreactor_edge.simulator.lab import build_reactor_bus, simulation_timing
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus

TIMING = simulation_timing(20.0)
NOW_S = 1_800_000_000.0


def test_backoff_schedule() -> None:
    delays = [backoff_delay(n) for n in range(12)]
    assert delays[:8] == [0.0, 0.005, 0.010, 0.025, 0.050, 0.100, 0.250, 0.500]
    assert delays[8:] == [BACKOFF_STEADY_S] * 4


def test_sensor_id_is_reactor_kind_and_hex_address() -> None:
    assert sensor_id("bus1", "ph", 0x63) == "bus1-ph-63"
    assert sensor_id("r2", "sht4x", 0x0A) == "r2-sht4x-0a"


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[NewReading]] = []

    async def append(self, readings: Sequence[NewReading]) -> None:
        self.batches.append(list(readings))


@pytest.fixture
async def bus() -> AsyncIterator[tuple[VirtualBus, BusOwner]]:
    virtual = build_reactor_bus(ReactorModel(seed=5), sensors=8, timing=TIMING, seed=5)
    owner = BusOwner(virtual, 1)
    yield virtual, owner
    await owner.close()


async def make_handler(owner: BusOwner, address: int) -> tuple[SensorHandler, Driver]:
    device = owner.device(address)
    identity = await identify(device, timing=TIMING)
    assert identity is not None
    driver = create_driver(device, identity, timing=TIMING)
    await driver.setup()
    handler = SensorHandler(
        sensor_id("bus1", identity.kind, address), "bus1", address, identity, driver, 1.0
    )
    handler.values = {q.key: LastValue(q) for q in driver.quantities}
    return handler, driver


async def test_sample_once_journals_then_updates_last_values(
    bus: tuple[VirtualBus, BusOwner],
) -> None:
    _, owner = bus
    recorder = Recorder()
    sampler = Sampler(recorder.append, clock=lambda: NOW_S)
    handler, driver = await make_handler(owner, 0x64)  # EC: four quantities

    assert await sampler.sample_once(handler, driver, lambda: (25.0, int(NOW_S * 1000), 1.0))
    [batch] = recorder.batches
    assert {r.quantity for r in batch} == {
        "conductivity",
        "total_dissolved_solids",
        "salinity",
        "specific_gravity",
    }
    assert {r.time_ms for r in batch} == {int(NOW_S * 1000)}
    assert {r.quality for r in batch} == {"good"}
    assert handler.status is SensorStatus.ONLINE
    assert handler.values["conductivity"].value == next(
        r.value for r in batch if r.quantity == "conductivity"
    )
    assert handler.as_json()["quantities"][0]["time"] == "2027-01-15T08:00:00.000Z"


async def test_stale_or_missing_temperature_marks_readings_uncompensated(
    bus: tuple[VirtualBus, BusOwner],
) -> None:
    _, owner = bus
    recorder = Recorder()
    sampler = Sampler(recorder.append, clock=lambda: NOW_S)
    handler, driver = await make_handler(owner, 0x63)

    stale = (25.0, int((NOW_S - 60) * 1000), 1.0)
    assert await sampler.sample_once(handler, driver, lambda: stale)
    assert await sampler.sample_once(handler, driver, lambda: None)
    assert [r.quality for batch in recorder.batches for r in batch] == ["uncompensated"] * 2


async def test_errors_count_and_set_error_status_after_three(
    bus: tuple[VirtualBus, BusOwner],
) -> None:
    virtual, owner = bus
    recorder = Recorder()
    sampler = Sampler(recorder.append, clock=lambda: NOW_S)
    handler, driver = await make_handler(owner, 0x61)
    handler.status = SensorStatus.ONLINE
    virtual.chip(0x61).faults.nak = True

    for attempt in range(1, ERROR_AFTER + 1):
        assert not await sampler.sample_once(handler, driver, lambda: None)
        assert handler.consecutive_errors == attempt
        expected = SensorStatus.ERROR if attempt == ERROR_AFTER else SensorStatus.ONLINE
        assert handler.status is expected
    assert handler.last_error == "nak"
    assert recorder.batches == []

    virtual.chip(0x61).faults.nak = False
    assert await sampler.sample_once(handler, driver, lambda: None)
    assert (handler.status, handler.consecutive_errors, handler.error_count) == (
        SensorStatus.ONLINE,
        0,
        ERROR_AFTER,
    )


async def test_a_failing_sensor_does_not_slow_the_others(
    bus: tuple[VirtualBus, BusOwner],
) -> None:
    virtual, owner = bus
    recorder = Recorder()
    sampler = Sampler(recorder.append)
    good, _ = await make_handler(owner, 0x66)
    bad, _ = await make_handler(owner, 0x62)
    good.interval_s = bad.interval_s = 0.05
    virtual.chip(0x62).faults.stuck_busy = True
    sampler.start(good, lambda: None)
    sampler.start(bad, lambda: None)
    try:
        async with asyncio.timeout(10):
            # Each stuck-busy attempt runs into the EZO poll timeout (1 s here).
            while bad.error_count < 2:
                await asyncio.sleep(0.02)
    finally:
        await sampler.stop(good)
        await sampler.stop(bad)
    assert {r.sensor for batch in recorder.batches for r in batch} == {good.id}
    # Two 1 s timeouts of the stuck sensor; the good one kept its 50 ms rhythm.
    assert len(recorder.batches) >= 15
    assert bad.last_error in {"busy", "timeout"}
    assert good.task is None
    assert bad.task is None


def test_effective_interval_respects_the_driver_minimum() -> None:
    sampler = Sampler(Recorder().append, min_interval_scale=0.5)

    class Slow:
        min_interval_s = 1.0

    assert sampler.effective_interval(Slow(), 0.1) == 0.5  # type: ignore[arg-type]
    assert sampler.effective_interval(Slow(), 5.0) == 5.0  # type: ignore[arg-type]
