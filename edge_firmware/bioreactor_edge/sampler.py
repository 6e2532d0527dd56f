"""One handler per sensor: its schedule, status, last values and error backoff.

The sampler is the only caller of the drivers' read paths. Each sensor runs in
its own task on a shared time grid, so EZO circuits with the same interval are
sent their read command together and collected together (~1 s for a whole
set), and a failing sensor backs off without slowing the others. Readings count
as taken only once the journal has them durably.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .bus import BusError
from .drivers.base import Driver, DriverError, Identity
from .models import Measurement, NewReading, Quality, Quantity, SensorStatus
from .timefmt import iso_ms

_LOGGER = logging.getLogger(__name__)

# Retry delays after consecutive failures, then one attempt per second.
BACKOFF_S = (0.005, 0.010, 0.025, 0.050, 0.100, 0.250, 0.500)
BACKOFF_STEADY_S = 1.0
# Consecutive failures before a sensor is reported in error (one glitch is not).
ERROR_AFTER = 3
# A temperature older than this many of the RTD's intervals is not used for compensation.
COMPENSATION_MAX_AGE_INTERVALS = 3


def backoff_delay(consecutive_errors: int) -> float:
    """Delay before the next attempt after `consecutive_errors` failures in a row."""
    if consecutive_errors <= 0:
        return 0.0
    if consecutive_errors <= len(BACKOFF_S):
        return BACKOFF_S[consecutive_errors - 1]
    return BACKOFF_STEADY_S


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancels `task` and waits until it has ended.

    Repeats the cancellation: before Python 3.12, asyncio.wait_for swallows a
    cancellation that arrives as its inner future completes, and the task runs on.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.debug("task %s ended with %r", task.get_name(), task.exception())


def sensor_id(reactor_id: str, kind: str, address: int) -> str:
    """The stable sensor id of docs/api.md: `<reactor>-<kind>-<address hex>`."""
    return f"{reactor_id}-{kind}-{address:02x}"


@dataclass(slots=True)
class LastValue:
    """The newest reading of one quantity, served from memory by the API."""

    quantity: Quantity
    value: float | None = None
    time_ms: int | None = None
    quality: str | None = None


@dataclass(slots=True)
class SensorHandler:
    """State of one sensor on one reactor; `driver` is None for an unidentified address."""

    id: str
    reactor_id: str
    address: int
    identity: Identity
    driver: Driver | None
    interval_s: float
    pinned: bool = False
    status: SensorStatus = SensorStatus.UNKNOWN
    last_seen_ms: int | None = None
    consecutive_errors: int = 0
    error_count: int = 0
    last_error: str | None = None
    values: dict[str, LastValue] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    def record_success(self, measurements: Sequence[Measurement], time_ms: int) -> None:
        self.status = SensorStatus.ONLINE
        self.consecutive_errors = 0
        self.last_seen_ms = time_ms
        for measurement in measurements:
            last = self.values.get(measurement.quantity)
            if last is not None:
                last.value = measurement.value
                last.time_ms = time_ms
                last.quality = measurement.quality.value

    def record_error(self, code: str) -> None:
        self.consecutive_errors += 1
        self.error_count += 1
        self.last_error = code
        if self.consecutive_errors >= ERROR_AFTER and self.status is not SensorStatus.OFFLINE:
            self.status = SensorStatus.ERROR

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.identity.kind,
            "model": self.identity.model,
            "firmware": self.identity.firmware,
            "address": self.address,
            "status": self.status.value,
            "pinned": self.pinned,
            "last_seen": iso_ms(self.last_seen_ms),
            "consecutive_errors": self.consecutive_errors,
            "error_count": self.error_count,
            "last_error": self.last_error,
            "interval_s": self.interval_s,
            "quantities": [
                {
                    "key": last.quantity.key,
                    "unit": last.quantity.unit,
                    "resolution": last.quantity.resolution,
                    "value": last.value,
                    "time": iso_ms(last.time_ms),
                    "quality": last.quality,
                }
                for last in self.values.values()
            ],
        }


# Reactor temperature for compensation: (value, time_ms, interval_s) or None.
TemperatureSource = Callable[[], tuple[float, int, float] | None]
Append = Callable[[Sequence[NewReading]], Awaitable[None]]


class Sampler:
    """Runs one task per sensor handler and journals what they read."""

    def __init__(
        self,
        append: Append,
        *,
        min_interval_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._append = append
        # The simulator's chips answer faster than real EZO circuits; this
        # scales the drivers' minimum intervals with them.
        self._min_interval_scale = min_interval_scale
        self._clock = clock

    def effective_interval(self, driver: Driver, requested_s: float) -> float:
        return max(requested_s, driver.min_interval_s * self._min_interval_scale)

    def start(self, handler: SensorHandler, temperature: TemperatureSource) -> None:
        """Starts sampling `handler` (a no-op while it already runs or has no driver)."""
        if handler.driver is None or (handler.task is not None and not handler.task.done()):
            return
        handler.task = asyncio.create_task(
            self._run(handler, handler.driver, temperature), name=f"sensor {handler.id}"
        )

    async def stop(self, handler: SensorHandler) -> None:
        task, handler.task = handler.task, None
        if task is not None:
            await cancel_and_wait(task)

    async def _run(
        self, handler: SensorHandler, driver: Driver, temperature: TemperatureSource
    ) -> None:
        loop = asyncio.get_running_loop()
        interval = handler.interval_s
        while True:
            # Ticks sit on a grid shared by every sensor with this interval, so
            # equal-interval sensors start together.
            now = loop.time()
            await asyncio.sleep(math.ceil(now / interval) * interval - now)
            while True:
                if await self.sample_once(handler, driver, temperature):
                    break
                await asyncio.sleep(backoff_delay(handler.consecutive_errors))

    async def sample_once(
        self, handler: SensorHandler, driver: Driver, temperature: TemperatureSource
    ) -> bool:
        """Takes one reading of every quantity; True when it was journaled."""
        compensation = self._compensation(driver, temperature) if driver.compensated else None
        try:
            await driver.start(compensation)
            await asyncio.sleep(driver.ready_after_s)
            measurements = await driver.collect()
        except (DriverError, BusError) as err:
            handler.record_error(err.code)
            if handler.consecutive_errors == ERROR_AFTER:
                _LOGGER.warning("sensor %s failing: %s", handler.id, err)
            return False
        time_ms = int(self._clock() * 1000)
        if driver.compensated and compensation is None:
            measurements = [
                Measurement(m.quantity, m.value, Quality.UNCOMPENSATED)
                if m.quality is Quality.GOOD
                else m
                for m in measurements
            ]
        units = {q.key: q.unit for q in driver.quantities}
        await self._append(
            [
                NewReading(
                    time_ms=time_ms,
                    reactor=handler.reactor_id,
                    sensor=handler.id,
                    quantity=m.quantity,
                    value=m.value,
                    unit=units.get(m.quantity, ""),
                    quality=m.quality.value,
                )
                for m in measurements
            ]
        )
        if handler.status is SensorStatus.ERROR:
            _LOGGER.info("sensor %s recovered", handler.id)
        handler.record_success(measurements, time_ms)
        return True

    def _compensation(self, driver: Driver, temperature: TemperatureSource) -> float | None:
        source = temperature()
        if source is None:
            return None
        value, time_ms, interval_s = source
        age_s = self._clock() - time_ms / 1000
        if age_s > COMPENSATION_MAX_AGE_INTERVALS * max(interval_s, driver.min_interval_s):
            return None
        return value
