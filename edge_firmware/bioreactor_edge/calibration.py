"""Guided calibration of EZO pH, DO and EC circuits (docs/calibration.md).

A session walks one sensor through its points in the datasheet's order (pH
mid -> low -> high, DO atmospheric -> zero, EC dry -> low -> high). A point is
committed only when the sensor's own readings have been stable: the trailing
run of readings that stay within the tolerance holds at least `readings`
readings spanning at least `seconds`. The sampler keeps reading (and
compensating for the reactor's RTD temperature) throughout; calibration
commands run in the sensor's own task between two readings, never during one.
After each commit the circuit is asked what it holds (`Cal,?`, pH `Slope,?`),
and that read-back, with the date, is stored per sensor in a JSON file written
atomically, so /status reports it after a restart too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .bus import BusError
from .drivers.base import Driver, DriverError
from .drivers.ezo import (
    CALIBRATION_POINTS,
    CALIBRATION_VALUED,
    EzoDriver,
    PhSlope,
    calibrate,
    calibration_points,
    ph_slope,
)
from .durable import write_atomically
from .models import Measurement, Quality, SensorStatus
from .sampler import SensorBusy, SensorHandler
from .timefmt import iso_ms

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

STATE_VERSION = 1
# Readings kept per sensor for the stability check.
HISTORY = 256
# A reading older than this many sampling intervals is not "the current reading".
FRESH_INTERVALS = 3
# How long a commit may wait for the sensor's task to reach a gap between readings.
JOB_TIMEOUT_S = 30.0
# A session nobody has looked at for this long is over: its sensor's readings count
# as the culture's again, and its loop may use them.
IDLE_S = 3600.0
# Suggested calibration solutions (Atlas's pH buffers 4/7/10, EC K 1.0 kit standards).
POINT_DEFAULTS: dict[str, dict[str, float]] = {
    "ph": {"mid": 7.0, "low": 4.0, "high": 10.0},
    "ec": {"low": 12880.0, "high": 80000.0},
}
# Bounds of a calibration solution's value, in the quantity's unit.
VALUE_RANGE = {"ph": (0.0, 14.0), "ec": (1.0, 500000.0)}
# A pH probe, even uncalibrated, reads a buffer within this of its value; further off,
# it is in another solution (the last buffer, the culture).
PH_MAX_OFFSET = 1.5
# A point is committed once this many readings in a row, spanning this long, agree.
DEFAULT_READINGS = 5
DEFAULT_SECONDS = 20.0
# Limits of the stability settings a client may choose.
READINGS_RANGE = (2, 120)
SECONDS_RANGE = (0.0, 3600.0)


@dataclass(frozen=True, slots=True)
class Stability:
    """Stable: `readings` readings spanning `seconds` all within the allowed spread.

    The allowed spread (max - min) is `tolerance`, or `relative` times the
    reading's magnitude where that is larger (conductivity standards span decades).
    """

    readings: int = DEFAULT_READINGS
    seconds: float = DEFAULT_SECONDS
    tolerance: float = 0.02
    relative: float = 0.0

    def allowed(self, low: float, high: float) -> float:
        return max(self.tolerance, self.relative * max(abs(low), abs(high)))


# The quantity each kind is judged on, and its default stability.
WATCHED: dict[str, tuple[tuple[str, Stability], ...]] = {
    "ph": (("ph", Stability(tolerance=0.02)),),
    "do": (
        ("dissolved_oxygen", Stability(tolerance=0.05, relative=0.01)),
        ("oxygen_saturation", Stability(tolerance=0.5, relative=0.01)),
    ),
    "ec": (("conductivity", Stability(tolerance=5.0, relative=0.005)),),
}


class CalibrationInvalid(ValueError):
    """A request that can never succeed as sent (HTTP 400); names the problem."""


class CalibrationRefused(Exception):
    """A request refused in the current state (HTTP 409); `code` says why.

    Codes: `out_of_order`, `not_stable`, `no_session`, `busy`, `sensor_unavailable`,
    `not_calibratable`, `chip_refused`, `implausible`.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class JobRunner(Protocol):
    """Runs a chip conversation in the sensor's own task (Sampler.run_job)."""

    def __call__(
        self, handler: SensorHandler, run: Callable[[Driver], Awaitable[T]]
    ) -> Awaitable[T]: ...


@dataclass(frozen=True, slots=True)
class Sample:
    time_s: float
    value: float
    compensated: bool


@dataclass(frozen=True, slots=True)
class Record:
    """What a sensor's circuit held after its last committed point."""

    date_ms: int
    points: int
    slope: PhSlope | None

    def as_json(self) -> dict[str, Any]:
        return {
            "date": iso_ms(self.date_ms),
            "points": self.points,
            "slope": _slope_json(self.slope),
        }


@dataclass(frozen=True, slots=True)
class Committed:
    point: str
    value: float | None
    reading: float
    time_ms: int


@dataclass(slots=True)
class Session:
    sensor_id: str
    kind: str
    quantity: str
    unit: str
    stability: Stability
    started_ms: int
    state: str = "active"  # active | complete | cancelled | expired
    committed: list[Committed] = field(default_factory=list)
    result: Record | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    touched_ms: int = 0  # the last start, progress or commit

    @property
    def points(self) -> tuple[str, ...]:
        return CALIBRATION_POINTS[self.kind]

    @property
    def next_point(self) -> str | None:
        if self.state != "active" or len(self.committed) == len(self.points):
            return None
        return self.points[len(self.committed)]


@dataclass(frozen=True, slots=True)
class Progress:
    stable: bool
    readings: int
    seconds: float
    spread: float | None
    allowed: float | None
    fresh: bool

    def as_json(self, stability: Stability) -> dict[str, Any]:
        return {
            "stable": self.stable,
            "readings": self.readings,
            "readings_needed": stability.readings,
            "seconds": round(self.seconds, 3),
            "seconds_needed": stability.seconds,
            "spread": self.spread,
            "tolerance": self.allowed,
            "fresh": self.fresh,
        }


def assess(
    samples: Sequence[Sample], stability: Stability, now_s: float, max_age_s: float
) -> Progress:
    """The trailing run of readings that stay within the allowed spread, and its verdict."""
    if not samples:
        return Progress(False, 0, 0.0, None, None, False)
    low = high = samples[-1].value
    count = 0
    oldest = samples[-1].time_s
    for sample in reversed(samples):
        lo, hi = min(low, sample.value), max(high, sample.value)
        if hi - lo > stability.allowed(lo, hi):
            break
        low, high, count, oldest = lo, hi, count + 1, sample.time_s
    span = samples[-1].time_s - oldest
    fresh = now_s - samples[-1].time_s <= max_age_s
    stable = fresh and count >= stability.readings and span >= stability.seconds
    return Progress(stable, count, span, round(high - low, 6), stability.allowed(low, high), fresh)


class Calibrator:
    """Calibration sessions and the stored calibration of every sensor of one agent."""

    def __init__(
        self,
        state_path: Path,
        find_sensor: Callable[[str], SensorHandler | None],
        run_job: JobRunner,
        *,
        clock: Callable[[], float],
        readings: int = DEFAULT_READINGS,
        seconds: float = DEFAULT_SECONDS,
    ) -> None:
        self._path = state_path
        # The configured stability rule ([calibration] in the agent's configuration).
        self._readings, self._seconds = readings, seconds
        self._find = find_sensor
        self._run_job = run_job
        self._clock = clock
        self._records: dict[str, Record] = {}
        self._sessions: dict[str, Session] = {}
        self._history: dict[str, deque[Sample]] = {}

    # -- state file ---------------------------------------------------------

    def load(self) -> None:
        """Reads the stored calibrations; an unreadable file is set aside, never fatal."""
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            self._records = {sid: _record(raw) for sid, raw in data["sensors"].items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            aside = self._path.with_name(self._path.name + ".unreadable")
            _LOGGER.warning("calibration state unreadable (%s); kept as %s", err, aside)
            self._path.replace(aside)
            self._records = {}

    async def _save(self) -> None:
        data = {
            "version": STATE_VERSION,
            "sensors": {sid: _record_json(r) for sid, r in sorted(self._records.items())},
        }
        await asyncio.to_thread(write_atomically, self._path, json.dumps(data, indent=1))

    # -- what /status shows ---------------------------------------------------

    def sensor_json(self, sensor_id: str) -> dict[str, Any] | None:
        """The `calibration` of a sensor in /status: date, points, slope; None if never."""
        record = self._records.get(sensor_id)
        return None if record is None else record.as_json()

    # -- readings -------------------------------------------------------------

    def observe(
        self, handler: SensorHandler, measurements: Sequence[Measurement], time_ms: int
    ) -> None:
        """Keeps the watched quantity's recent readings of calibratable sensors."""
        watched = _watched(handler)
        if watched is None:
            return
        quantity, _ = watched
        history = self._history.setdefault(handler.id, deque(maxlen=HISTORY))
        for m in measurements:
            if m.quantity != quantity:
                continue
            if m.quality not in (Quality.GOOD, Quality.UNCOMPENSATED):
                history.clear()  # an out-of-range value breaks any stable run
                continue
            history.append(Sample(time_ms / 1000, m.value, m.quality is Quality.GOOD))

    # -- sessions ---------------------------------------------------------------

    def calibrating(self, sensor_id: str) -> bool:
        """Whether `sensor_id`'s probe is in a calibration session (a buffer, not the culture)."""
        session = self._sessions.get(sensor_id)
        if session is None or session.state != "active":
            return False
        if self._now_ms() - session.touched_ms > IDLE_S * 1000:
            session.state = "expired"
            _LOGGER.warning("calibration of %s expired: idle for %.0f s", sensor_id, IDLE_S)
            return False
        return True

    def start(self, sensor_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Starts (or restarts) a session; what is already on the chip stays there."""
        handler = self._handler(sensor_id)
        watched = _watched(handler)
        if watched is None:
            raise CalibrationRefused(
                "not_calibratable",
                f"sensor {sensor_id} is a {handler.identity.kind} sensor; "
                "guided calibration covers ph, do and ec",
            )
        quantity, default = watched
        default = replace(default, readings=self._readings, seconds=self._seconds)
        stability = _stability(default, settings)
        unit = handler.values[quantity].quantity.unit
        old = self._sessions.get(sensor_id)
        if old is not None and old.state == "active":
            old.state = "cancelled"
        now_ms = self._now_ms()
        session = Session(
            sensor_id, handler.identity.kind, quantity, unit, stability, now_ms, touched_ms=now_ms
        )
        self._sessions[sensor_id] = session
        _LOGGER.info("calibration of %s started", sensor_id)
        return self._session_json(session)

    def progress(self, sensor_id: str) -> dict[str, Any]:
        return self._session_json(self._session(sensor_id))

    def cancel(self, sensor_id: str) -> dict[str, Any]:
        """Ends the session; points already committed stay on the chip (and recorded)."""
        session = self._session(sensor_id)
        if session.state == "active":
            session.state = "cancelled"
        return self._session_json(session)

    async def commit(self, sensor_id: str, point: object, value: object) -> dict[str, Any]:
        """Commits `point` if it is next and the reading is stable; returns the session."""
        session = self._session(sensor_id)
        if session.state != "active":
            raise CalibrationRefused(
                "no_session", f"the calibration of {sensor_id} is {session.state}; start a new one"
            )
        point, number = _check_point(session, point, value)
        if session.lock.locked():
            raise CalibrationRefused("busy", f"a point of {sensor_id} is being committed")
        async with session.lock:
            handler = self._handler(sensor_id)
            if handler.status is not SensorStatus.ONLINE:
                raise CalibrationRefused(
                    "sensor_unavailable", f"sensor {sensor_id} is {handler.status.value}"
                )
            progress = self._progress(session, handler)
            if not progress.stable:
                raise CalibrationRefused("not_stable", _unstable_message(progress, session))
            reading = self._history[sensor_id][-1].value
            off = abs(reading - number) if number is not None else 0.0
            if session.kind == "ph" and off > PH_MAX_OFFSET:
                raise CalibrationRefused(
                    "implausible",
                    f"the probe reads pH {reading:g}, too far from the {number:g} buffer: "
                    "is it in the right solution?",
                )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + JOB_TIMEOUT_S

            async def job(driver: Driver) -> None:
                # Abandoned while queued: the caller was told it failed, so nothing is sent.
                if loop.time() > deadline or not isinstance(driver, EzoDriver):
                    raise SensorBusy(f"sensor {sensor_id} did not get to the command in time")
                await calibrate(driver, point, number)
                record = Record(
                    self._now_ms(),
                    await calibration_points(driver),
                    await ph_slope(driver) if driver.kind == "ph" else None,
                )
                # Recorded here, in the sensor's task: a caller that went away meanwhile
                # does not leave the chip calibrated and the record stale.
                session.committed.append(Committed(point, number, reading, record.date_ms))
                session.result = record
                if session.next_point is None:
                    session.state = "complete"
                self._records[sensor_id] = record
                await self._save()

            try:
                async with asyncio.timeout(JOB_TIMEOUT_S + 10):
                    await self._run_job(handler, job)
            except (SensorBusy, TimeoutError) as err:
                raise CalibrationRefused("sensor_unavailable", str(err)) from None
            except (DriverError, BusError) as err:
                raise CalibrationRefused(
                    "chip_refused", f"the circuit did not take {point}: {err}"
                ) from None
        _LOGGER.info("calibration of %s: %s committed", sensor_id, point)
        return self._session_json(session)

    # -- helpers ----------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _handler(self, sensor_id: str) -> SensorHandler:
        handler = self._find(sensor_id)
        if handler is None:
            raise KeyError(sensor_id)
        return handler

    def _session(self, sensor_id: str) -> Session:
        self._handler(sensor_id)
        session = self._sessions.get(sensor_id)
        if session is None:
            raise CalibrationRefused("no_session", f"no calibration of {sensor_id} was started")
        if self.calibrating(sensor_id):
            session.touched_ms = self._now_ms()
        return session

    def _progress(self, session: Session, handler: SensorHandler) -> Progress:
        max_age = FRESH_INTERVALS * handler.interval_s
        samples = self._history.get(session.sensor_id, ())
        # Only readings since the session started, or since the last point, count: the
        # probe was in another solution before (a reading still stable in the last buffer
        # must never calibrate the next point).
        begin_ms = session.committed[-1].time_ms if session.committed else session.started_ms
        since = [s for s in samples if s.time_s * 1000 > begin_ms]
        return assess(since, session.stability, self._clock(), max_age)

    def _session_json(self, session: Session) -> dict[str, Any]:
        handler = self._find(session.sensor_id)
        samples = self._history.get(session.sensor_id)
        last = samples[-1] if samples else None
        progress = (
            self._progress(session, handler)
            if handler is not None
            else Progress(False, 0, 0.0, None, None, False)
        )
        return {
            "sensor": session.sensor_id,
            "kind": session.kind,
            "state": session.state,
            "started": iso_ms(session.started_ms),
            "points": list(session.points),
            "point_defaults": POINT_DEFAULTS.get(session.kind, {}),
            "next_point": session.next_point,
            "committed": [
                {
                    "point": c.point,
                    "value": c.value,
                    "reading": c.reading,
                    "time": iso_ms(c.time_ms),
                }
                for c in session.committed
            ],
            "reading": None
            if last is None
            else {
                "quantity": session.quantity,
                "unit": session.unit,
                "value": last.value,
                "time": iso_ms(int(last.time_s * 1000)),
                "compensated": last.compensated,
            },
            "stability": progress.as_json(session.stability),
            "result": None if session.result is None else session.result.as_json(),
        }


def _watched(handler: SensorHandler) -> tuple[str, Stability] | None:
    """The quantity a calibratable sensor is judged on (the first one it reads)."""
    for quantity, stability in WATCHED.get(handler.identity.kind, ()):
        if quantity in handler.values:
            return quantity, stability
    return None


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CalibrationInvalid(f"{what} must be a finite number")
    return float(value)


def _stability(default: Stability, settings: dict[str, Any]) -> Stability:
    unknown = set(settings) - {"readings", "seconds", "tolerance"}
    if unknown:
        raise CalibrationInvalid(f"unknown field {sorted(unknown)[0]!r}")
    stability = default
    if "readings" in settings:
        readings = settings["readings"]
        low, high = READINGS_RANGE
        if (
            not isinstance(readings, int)
            or isinstance(readings, bool)
            or not low <= readings <= high
        ):
            raise CalibrationInvalid(f"'readings' must be an integer from {low} to {high}")
        stability = replace(stability, readings=readings)
    if "seconds" in settings:
        seconds = _number(settings["seconds"], "'seconds'")
        if not SECONDS_RANGE[0] <= seconds <= SECONDS_RANGE[1]:
            raise CalibrationInvalid(f"'seconds' must be from 0 to {SECONDS_RANGE[1]:g}")
        stability = replace(stability, seconds=seconds)
    if "tolerance" in settings:
        tolerance = _number(settings["tolerance"], "'tolerance'")
        if tolerance <= 0:
            raise CalibrationInvalid("'tolerance' must be positive")
        # An explicit tolerance is the whole rule: no relative widening.
        stability = replace(stability, tolerance=tolerance, relative=0.0)
    return stability


def _check_point(session: Session, point: object, value: object) -> tuple[str, float | None]:
    """Validates the point and its value against the kind and the order; (point, value)."""
    kind = session.kind
    if not isinstance(point, str) or point not in session.points:
        raise CalibrationInvalid(
            f"'point' must be one of {', '.join(session.points)} for a {kind} sensor"
        )
    expected = session.next_point
    if point != expected:
        order = " -> ".join(session.points)
        done = [c.point for c in session.committed]
        raise CalibrationRefused(
            "out_of_order",
            f"{kind} points go {order}; {point} cannot come now "
            f"(done: {', '.join(done) or 'none'}; "
            f"next: {expected or 'none, the session is complete'})",
        )
    valued = (kind, point) in CALIBRATION_VALUED
    if not valued and value is not None:
        raise CalibrationInvalid(f"the {point} point of a {kind} sensor takes no 'value'")
    number = None
    if valued:
        if value is None:
            raise CalibrationInvalid(
                f"the {point} point of a {kind} sensor needs the solution's 'value' "
                f"({session.unit})"
            )
        number = _number(value, "'value'")
        low, high = VALUE_RANGE[kind]
        if not low <= number <= high:
            raise CalibrationInvalid(f"'value' must be from {low:g} to {high:g} {session.unit}")
        _check_against_committed(session, point, number)
    return point, number


def _check_against_committed(session: Session, point: str, value: float) -> None:
    """Low below the points before it, high above them: a swapped bottle is caught here."""
    for before in session.committed:
        if before.value is None:
            continue
        if point == "low" and before.point == "mid" and not value < before.value:
            raise CalibrationInvalid(f"the low point must be below mid ({before.value:g})")
        if point == "high" and not value > before.value:
            raise CalibrationInvalid(
                f"the high point must be above {before.point} ({before.value:g})"
            )


def _unstable_message(progress: Progress, session: Session) -> str:
    s = session.stability
    if not progress.fresh:
        return "the reading is not stable yet: no recent reading from the sensor"
    return (
        f"the reading is not stable yet: {progress.readings} of {s.readings} readings "
        f"within {progress.allowed:g} {session.unit} over {progress.seconds:.0f} of "
        f"{s.seconds:g} s"
    )


def _slope_json(slope: PhSlope | None) -> dict[str, Any] | None:
    if slope is None:
        return None
    return {"acid_pct": slope.acid_pct, "base_pct": slope.base_pct, "offset_mv": slope.offset_mv}


def _record_json(record: Record) -> dict[str, Any]:
    return {"date_ms": record.date_ms, "points": record.points, "slope": _slope_json(record.slope)}


def _record(raw: Any) -> Record:
    slope = raw["slope"]
    return Record(
        int(raw["date_ms"]),
        int(raw["points"]),
        None
        if slope is None
        else PhSlope(
            float(slope["acid_pct"]),
            float(slope["base_pct"]),
            None if slope["offset_mv"] is None else float(slope["offset_mv"]),
        ),
    )
