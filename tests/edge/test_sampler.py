"""Sensor handlers and the sampler on simulated chips, with the journal replaced by a list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar, cast

import pytest

from bioreactor_edge.bus import BusNak, BusOwner
from bioreactor_edge.drivers import create_driver, identify
from bioreactor_edge.drivers.base import Driver, DriverError, Identity, Timing
from bioreactor_edge.models import Measurement, NewReading, Quality, Quantity, SensorStatus
from bioreactor_edge.sampler import (
    BACKOFF_STEADY_S,
    ERROR_AFTER,
    LastValue,
    Sampler,
    SensorHandler,
    backoff_delay,
    sensor_id,
)
from bioreactor_edge.simulator.chips import EzoChip
from bioreactor_edge.simulator.lab import build_reactor_bus
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus

TIMING = Timing().scaled(20.0)
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
    virtual = build_reactor_bus(ReactorModel(seed=5), sensors=8, speed=20.0, seed=5)
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
    virtual, owner = bus
    # Firmware >= 2.10 outputs EC only by default; this circuit has all four on.
    cast(EzoChip, virtual.chip(0x64)).outputs = {"EC", "TDS", "S", "SG"}
    recorder = Recorder()
    sampler = Sampler(recorder.append, clock=lambda: NOW_S)
    handler, driver = await make_handler(owner, 0x64)  # EC: four quantities

    assert await sampler.sample_once(handler, driver, lambda: [(rtd_value(25.0, NOW_S), 1.0)])
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

    stale = [(rtd_value(25.0, NOW_S - 60), 1.0)]
    assert await sampler.sample_once(handler, driver, lambda: stale)
    assert handler.uncompensated
    assert await sampler.sample_once(handler, driver, list)
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
        assert not await sampler.sample_once(handler, driver, list)
        assert handler.consecutive_errors == attempt
        expected = SensorStatus.ERROR if attempt == ERROR_AFTER else SensorStatus.ONLINE
        assert handler.status is expected
    assert handler.last_error == "nak"
    assert recorder.batches == []

    virtual.chip(0x61).faults.nak = False
    assert await sampler.sample_once(handler, driver, list)
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
    sampler.start(good, list)
    sampler.start(bad, list)
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


RTD_TEMPERATURE = Quantity("temperature", "°C", 0.001, -126.0, 1254.0)


def rtd_value(value: float, at_s: float, quality: Quality = Quality.GOOD) -> LastValue:
    return LastValue(RTD_TEMPERATURE, value, int(at_s * 1000), quality.value)


class FakeDriver(Driver):
    """A compensated driver that records what it was sent and fails on demand."""

    kind: ClassVar[str] = "ph"
    min_interval_s: ClassVar[float] = 0.01
    compensated: ClassVar[bool] = True
    quantities = (Quantity("ph", "pH", 0.01, 0.0, 14.0),)

    def __init__(self) -> None:
        super().__init__(None, Identity("ph", "fake", None))  # type: ignore[arg-type]
        self.sent: list[float | None] = []
        self.setups = 0
        self.fail_setup: Exception | None = None
        self.fail_collect: Exception | None = None

    async def setup(self) -> None:
        self.setups += 1
        if self.fail_setup is not None:
            raise self.fail_setup

    async def start(self, temperature_c: float | None) -> None:
        self.sent.append(temperature_c)

    @property
    def ready_after_s(self) -> float:
        return 0.0

    async def collect(self) -> list[Measurement]:
        if self.fail_collect is not None:
            raise self.fail_collect
        return [Measurement("ph", 7.0)]


def fake_handler(driver: FakeDriver, interval_s: float = 1.0) -> SensorHandler:
    handler = SensorHandler("r-ph-63", "r", 0x63, driver.identity, driver, interval_s)
    handler.values = {q.key: LastValue(q) for q in driver.quantities}
    return handler


@pytest.mark.parametrize(
    ("temperature", "sent"),
    [
        (rtd_value(37.0, NOW_S - 1), 37.0),
        # No probe: the EZO-RTD reads -1023 (and its range check calls it suspect).
        (rtd_value(-1023.0, NOW_S - 1, Quality.SUSPECT), None),
        (rtd_value(-1023.0, NOW_S - 1), None),
        # Good by the chip's range, but no culture is this hot or cold.
        (rtd_value(150.0, NOW_S - 1), None),
        (rtd_value(-25.0, NOW_S - 1), None),
        (rtd_value(37.0, NOW_S - 1, Quality.UNCOMPENSATED), None),
        (rtd_value(37.0, NOW_S - 10), None),  # older than three RTD intervals
        (LastValue(RTD_TEMPERATURE), None),  # no reading yet
    ],
)
async def test_only_a_good_recent_plausible_temperature_is_sent(
    temperature: LastValue, sent: float | None
) -> None:
    recorder = Recorder()
    sampler = Sampler(recorder.append, clock=lambda: NOW_S)
    driver = FakeDriver()
    handler = fake_handler(driver)
    assert await sampler.sample_once(handler, driver, lambda: [(temperature, 1.0)])
    assert driver.sent == [sent]
    expected = "good" if sent is not None else "uncompensated"
    assert [r.quality for r in recorder.batches[0]] == [expected]
    assert handler.uncompensated is (sent is None)


async def test_the_newest_usable_temperature_wins() -> None:
    sampler = Sampler(Recorder().append, clock=lambda: NOW_S)
    driver = FakeDriver()
    sources = [
        (rtd_value(30.0, NOW_S - 2), 1.0),
        (rtd_value(-1023.0, NOW_S - 0.1, Quality.SUSPECT), 1.0),
        (rtd_value(31.0, NOW_S - 1), 1.0),
    ]
    assert await sampler.sample_once(fake_handler(driver), driver, lambda: sources)
    assert driver.sent == [31.0]


async def wait_until(condition: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_a_crashing_handler_is_restarted_and_reports_why() -> None:
    recorder = Recorder()
    sampler = Sampler(recorder.append)
    driver = FakeDriver()
    handler = fake_handler(driver, interval_s=0.02)
    handler.begin()
    driver.fail_collect = ZeroDivisionError("division by zero")
    sampler.start(handler, list)
    try:
        await wait_until(lambda: handler.status is SensorStatus.ERROR)
        assert handler.last_error == "internal"
        assert handler.error_message == "ZeroDivisionError: division by zero"
        # Still alive: the supervisor restarts it (setting the chip up again).
        await wait_until(lambda: driver.setups >= 2)
        assert handler.task is not None and not handler.task.done()
        driver.fail_collect = None
        await wait_until(lambda: handler.status is SensorStatus.ONLINE)
        assert recorder.batches
        assert (handler.consecutive_errors, handler.crashes) == (0, 0)
    finally:
        await sampler.stop(handler)
    assert handler.task is None


async def test_a_failing_journal_does_not_end_the_handler() -> None:
    attempts = 0

    async def failing_append(readings: Sequence[NewReading]) -> None:
        nonlocal attempts
        attempts += 1
        raise OSError(28, "No space left on device")

    sampler = Sampler(failing_append)
    driver = FakeDriver()
    handler = fake_handler(driver, interval_s=0.02)
    sampler.start(handler, list)
    try:
        await wait_until(lambda: attempts >= 2, timeout=5)
        assert handler.status is SensorStatus.ERROR
        assert handler.error_message is not None and "No space left" in handler.error_message
    finally:
        await sampler.stop(handler)


async def test_setup_failure_is_an_error_retried_with_backoff() -> None:
    sampler = Sampler(Recorder().append)
    driver = FakeDriver()
    handler = fake_handler(driver, interval_s=0.02)
    handler.begin()
    driver.fail_setup = DriverError("syntax_error", "0x63 rejected the command")
    sampler.start(handler, list)
    try:
        await wait_until(lambda: handler.consecutive_errors >= ERROR_AFTER)
        assert handler.status is SensorStatus.ERROR
        assert handler.last_error == "syntax_error"
        assert handler.error_message == "setup: syntax_error: 0x63 rejected the command"
        driver.fail_setup = BusNak("0x63")
        await wait_until(lambda: handler.last_error == "nak")
        driver.fail_setup = None
        await wait_until(lambda: handler.status is SensorStatus.ONLINE)
    finally:
        await sampler.stop(handler)


def test_begin_gives_a_returning_sensor_a_clean_count() -> None:
    handler = fake_handler(FakeDriver())
    for _ in range(5):
        handler.record_error("nak", "0x63: no acknowledge")
    handler.uncompensated = True
    assert handler.status is SensorStatus.ERROR
    handler.begin()
    assert (handler.status, handler.consecutive_errors, handler.uncompensated) == (
        SensorStatus.STARTING,
        0,
        False,
    )
    assert handler.error_count == 5  # the history stays
    handler.record_error("nak", "0x63: no acknowledge")
    assert handler.status is SensorStatus.STARTING  # one glitch is not an error
    assert handler.as_json()["error_message"] == "0x63: no acknowledge"


def test_effective_interval_respects_the_driver_minimum() -> None:
    sampler = Sampler(Recorder().append, min_interval_scale=0.5)

    class Slow:
        min_interval_s = 1.0

    assert sampler.effective_interval(Slow(), 0.1) == 0.5  # type: ignore[arg-type]
    assert sampler.effective_interval(Slow(), 5.0) == 5.0  # type: ignore[arg-type]
