"""One handler per sensor: its schedule, status, last values and error backoff.

The sampler is the only caller of the drivers' read paths. Each sensor runs in
its own task on a shared time grid, so EZO circuits with the same interval are
sent their read command together and collected together (~1 s for a whole
set), and a failing sensor backs off without slowing the others. Readings count
as taken only once the journal has them durably. Each task is supervised: any
exception is recorded on the handler (status `error`) and the task restarts
with backoff, so no sensor stops sampling silently.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .bus import BusError
from .drivers.base import Driver, DriverError, Identity
from .models import Measurement, NewReading, Quality, Quantity, SensorStatus
from .timefmt import iso_ms

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

# Retry delays after consecutive failures, then one attempt per second.
BACKOFF_S = (0.005, 0.010, 0.025, 0.050, 0.100, 0.250, 0.500)
BACKOFF_STEADY_S = 1.0
# Consecutive failures before a sensor is reported in error (one glitch is not).
ERROR_AFTER = 3
# Restart delays of a handler that crashed (a bug or a journal failure, not a chip error).
RESTART_BACKOFF_S = (0.1, 0.5, 2.0, 10.0, 30.0)
# A temperature older than this many of the RTD's intervals is not used for compensation.
COMPENSATION_MAX_AGE_INTERVALS = 3
# Temperatures outside this range are not a culture's: a disconnected RTD probe
# reads -1023 °C, and sending that to a pH circuit would poison its readings.
COMPENSATION_RANGE_C = (-20.0, 130.0)


def backoff_delay(consecutive_errors: int) -> float:
    """Delay before the next attempt after `consecutive_errors` failures in a row."""
    if consecutive_errors <= 0:
        return 0.0
    if consecutive_errors <= len(BACKOFF_S):
        return BACKOFF_S[consecutive_errors - 1]
    return BACKOFF_STEADY_S


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancels `task` and waits until it has ended.

    Repeats the cancellation: a task may swallow one (before Python 3.12, any
    asyncio.wait_for it awaits does when its inner future completes at that moment).
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
    # Human-readable reason of the last error (or why an address is unknown).
    error_message: str | None = None
    # The last reading could not be temperature-compensated.
    uncompensated: bool = False
    # Consecutive crashes of the handler's task (drives the restart backoff).
    crashes: int = 0
    values: dict[str, LastValue] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    # Commands for the chip (calibration), run by the handler's task between readings.
    jobs: deque[Job] = field(default_factory=deque)
    jobs_waiting: asyncio.Event = field(default_factory=asyncio.Event)

    def begin(self) -> None:
        """A new or returning sensor: `starting` with a clean count until its first reading."""
        self.status = SensorStatus.STARTING
        self.consecutive_errors = 0
        self.crashes = 0
        self.uncompensated = False

    def record_success(self, measurements: Sequence[Measurement], time_ms: int) -> None:
        self.status = SensorStatus.ONLINE
        self.consecutive_errors = 0
        self.crashes = 0
        self.last_seen_ms = time_ms
        for measurement in measurements:
            last = self.values.get(measurement.quantity)
            if last is not None:
                last.value = measurement.value
                last.time_ms = time_ms
                last.quality = measurement.quality.value

    def record_error(self, code: str, message: str, *, at_once: bool = False) -> None:
        """One failed attempt; `error` after ERROR_AFTER in a row, or `at_once`."""
        self.consecutive_errors += 1
        self.error_count += 1
        self.last_error = code
        self.error_message = message
        failing = at_once or self.consecutive_errors >= ERROR_AFTER
        if failing and self.status is not SensorStatus.OFFLINE:
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
            "error_message": self.error_message,
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


class SensorBusy(Exception):
    """A command for a sensor whose handler is not running (offline, unidentified, stopped)."""


@dataclass(slots=True)
class Job:
    """One command conversation run by a sensor's own task, never during a reading."""

    run: Callable[[Driver], Awaitable[Any]]
    done: asyncio.Future[Any]


# The reactor's temperature readings for compensation: (last RTD value, RTD interval_s).
TemperatureSource = Callable[[], Iterable[tuple[LastValue, float]]]
Append = Callable[[Sequence[NewReading]], Awaitable[None]]
# Told of every journaled reading of a sensor (handler, measurements, time in ms).
Observer = Callable[[SensorHandler, Sequence[Measurement], int], None]


class Sampler:
    """Runs one task per sensor handler and journals what they read."""

    def __init__(
        self,
        append: Append,
        *,
        min_interval_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        observe: Observer | None = None,
        in_calibration: Callable[[str], bool] | None = None,
    ) -> None:
        self._append = append
        self._observe = observe
        self._in_calibration = in_calibration
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
            self._supervise(handler, handler.driver, temperature), name=f"sensor {handler.id}"
        )
        handler.task.add_done_callback(_report_end)

    async def stop(self, handler: SensorHandler) -> None:
        task, handler.task = handler.task, None
        if task is not None:
            await cancel_and_wait(task)
        while handler.jobs:
            job = handler.jobs.popleft()
            if not job.done.done():
                job.done.set_exception(SensorBusy(f"sensor {handler.id} stopped"))

    async def run_job(self, handler: SensorHandler, run: Callable[[Driver], Awaitable[T]]) -> T:
        """Runs `run(driver)` in the handler's own task between two readings.

        The sampler stays the only caller of the chip: a command conversation
        (calibration) can never interleave with a reading's command and reply.
        """
        if handler.driver is None or handler.task is None or handler.task.done():
            raise SensorBusy(f"sensor {handler.id} is not sampling ({handler.status.value})")
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        handler.jobs.append(Job(run, done))
        handler.jobs_waiting.set()
        return await done

    async def _serve_jobs_until(self, handler: SensorHandler, driver: Driver, at: float) -> None:
        """Waits until loop time `at`, running queued jobs meanwhile."""
        loop = asyncio.get_running_loop()
        while loop.time() < at:
            try:
                # Not wait_for: before Python 3.12 it can drop a stop's cancellation.
                async with asyncio.timeout_at(at):
                    await handler.jobs_waiting.wait()
            except TimeoutError:
                return
            handler.jobs_waiting.clear()
            while handler.jobs:
                job = handler.jobs.popleft()
                try:
                    result = await job.run(driver)
                except asyncio.CancelledError:
                    if not job.done.done():
                        job.done.set_exception(SensorBusy(f"sensor {handler.id} stopped"))
                    raise
                except Exception as err:  # the caller gets it; sampling goes on
                    if not job.done.done():
                        job.done.set_exception(err)
                else:
                    if not job.done.done():
                        job.done.set_result(result)

    async def _supervise(
        self, handler: SensorHandler, driver: Driver, temperature: TemperatureSource
    ) -> None:
        while True:
            try:
                await self._run(handler, driver, temperature)
            except (DriverError, BusError) as err:
                # Only setup lets these through: the chip is there but not ready.
                handler.record_error(err.code, f"setup: {err}")
                await asyncio.sleep(backoff_delay(handler.consecutive_errors))
            except Exception as err:
                # A bug or a journal failure: never end silently; restart slower and slower.
                handler.record_error("internal", f"{type(err).__name__}: {err}", at_once=True)
                delay = RESTART_BACKOFF_S[min(handler.crashes, len(RESTART_BACKOFF_S) - 1)]
                handler.crashes += 1
                _LOGGER.exception(
                    "sensor %s handler failed; restarting in %.1f s", handler.id, delay
                )
                await asyncio.sleep(delay)

    async def _run(
        self, handler: SensorHandler, driver: Driver, temperature: TemperatureSource
    ) -> None:
        await driver.setup()
        loop = asyncio.get_running_loop()
        interval = handler.interval_s
        while True:
            # Ticks sit on a grid shared by every sensor with this interval, so
            # equal-interval sensors start together.
            now = loop.time()
            await self._serve_jobs_until(handler, driver, math.ceil(now / interval) * interval)
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
            handler.record_error(err.code, str(err))
            if handler.consecutive_errors == ERROR_AFTER:
                _LOGGER.warning("sensor %s failing: %s", handler.id, err)
            return False
        time_ms = int(self._clock() * 1000)
        uncompensated = driver.compensated and compensation is None
        if uncompensated:
            measurements = [
                Measurement(m.quantity, m.value, Quality.UNCOMPENSATED)
                if m.quality is Quality.GOOD
                else m
                for m in measurements
            ]
        observed = measurements
        if self._in_calibration is not None and self._in_calibration(handler.id):
            measurements = [
                Measurement(m.quantity, m.value, Quality.CALIBRATING) for m in measurements
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
        handler.uncompensated = uncompensated
        if self._observe is not None:
            # Calibration watches what the probe measures, compensated or not.
            self._observe(handler, observed, time_ms)
        return True

    def _compensation(self, driver: Driver, temperature: TemperatureSource) -> float | None:
        """The newest good, recent, physically plausible reactor temperature, if any."""
        now_s = self._clock()
        low, high = COMPENSATION_RANGE_C
        usable = [
            (last.time_ms, last.value)
            for last, interval_s in temperature()
            if last.value is not None
            and last.time_ms is not None
            and last.quality == Quality.GOOD.value
            and low <= last.value <= high
            and now_s - last.time_ms / 1000
            <= COMPENSATION_MAX_AGE_INTERVALS * max(interval_s, driver.min_interval_s)
        ]
        return max(usable)[1] if usable else None


def _report_end(task: asyncio.Task[None]) -> None:
    # The supervisor only ends by cancellation; anything else must be seen.
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.error("sensor task %s ended: %r", task.get_name(), task.exception())
