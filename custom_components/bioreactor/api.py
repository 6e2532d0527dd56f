"""Asynchronous client for the bioreactor edge agent's HTTP API (docs/api.md).

Free of Home Assistant imports so it can become a library of its own. The token
travels only in the Authorization header and is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

T = TypeVar("T")

# Ids that name directories, files and entities (docs/api.md, Identity): agent, reactor,
# sensor and quantity ids. Anything else from the agent is refused before it is used.
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
EPOCH_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Reading times exactly as docs/api.md specifies them: the archive names day files after
# the first ten characters and compares times as text.
READING_TIME_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
# A pinned certificate: the SHA-256 of its DER bytes as `bioreactor-edge token` prints it.
FINGERPRINT_PATTERN = re.compile(r"[0-9A-F]{2}(?::[0-9A-F]{2}){31}")
# A 429 without a usable Retry-After waits this long; a longer one is capped.
DEFAULT_RETRY_AFTER = 60.0
MAX_RETRY_AFTER = 3600.0


class BioreactorError(Exception):
    """Base of every error of this client."""


class BioreactorConnectionError(BioreactorError):
    """The agent could not be reached or did not answer in time."""


class BioreactorAuthenticationError(BioreactorError):
    """The agent refused the token (HTTP 401 to a request that presented it)."""


class BioreactorRateLimitedError(BioreactorError):
    """The agent refuses requests from this address for a while (HTTP 429).

    Temporary, never an authentication failure: try again after `retry_after` seconds.
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the agent is rate limiting this address; retry in {retry_after:g} s")
        self.retry_after = retry_after


class BioreactorCertificateError(BioreactorError):
    """The agent presented another certificate than the pinned one; nothing was sent to it."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"the agent's certificate changed: pinned {expected}, presented {actual}")
        self.expected = expected
        self.actual = actual


class BioreactorProtocolError(BioreactorError):
    """The agent answered something this client does not understand."""


class BioreactorWrongAgentError(BioreactorProtocolError):
    """Another agent than the expected one answered at this address."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"expected agent {expected}, but agent {actual} answered")
        self.expected = expected
        self.actual = actual


class BioreactorRequestError(BioreactorError):
    """The agent refused a request (4xx other than authentication); `code` is its error code.

    `limit` names the hard limit or state a control request fell foul of (`max_dose_ml`,
    `setpoint_max`, `loop_mode`, ...); None for other refusals.
    """

    def __init__(self, status: int, code: str, message: str, limit: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.limit = limit
        self.message = message


# -- models ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentInfo:
    agent_id: str
    name: str
    firmware_version: str
    api_version: int


@dataclass(frozen=True, slots=True)
class QuantityValue:
    key: str
    unit: str
    resolution: float
    value: float | None
    time: datetime | None
    quality: str | None


@dataclass(frozen=True, slots=True)
class PhSlope:
    """`Slope,?` of a pH circuit: % of an ideal probe's slope below/above pH 7, offset mV."""

    acid_pct: float
    base_pct: float
    offset_mv: float | None


@dataclass(frozen=True, slots=True)
class SensorCalibration:
    """A sensor's last guided calibration: when, `Cal,?` points held, pH slope."""

    date: datetime
    points: int
    slope: PhSlope | None


@dataclass(frozen=True, slots=True)
class Sensor:
    id: str
    kind: str
    model: str
    firmware: str | None
    address: int
    status: str  # starting | online | error | offline | unknown
    pinned: bool
    last_seen: datetime | None
    consecutive_errors: int
    error_count: int
    last_error: str | None
    interval_s: float
    quantities: tuple[QuantityValue, ...]
    error_message: str | None = None  # human-readable reason; older agents omit it
    # None: never calibrated through the agent (or an agent older than calibration).
    calibration: SensorCalibration | None = None


@dataclass(frozen=True, slots=True)
class Reactor:
    id: str
    name: str
    bus: int
    mux_address: int | None
    mux_channel: int | None
    sensors: tuple[Sensor, ...]
    # The agent's outputs and control loops (docs/api.md, Control); none from older agents.
    actuators: tuple[Actuator, ...] = ()
    loops: tuple[ControlLoop, ...] = ()
    # The room configured on the agent for this reactor; None from older agents too.
    area: str | None = None


@dataclass(frozen=True, slots=True)
class PumpState:
    """A dosing pump's doses against its hard caps (mL)."""

    dosing: bool
    last_dose_ml: float | None
    delivered_ml: float | None  # what the pump's total grew by for the last finished dose
    dosed_last_hour_ml: float
    dosed_last_day_ml: float
    max_dose_ml: float
    max_ml_per_hour: float
    max_ml_per_day: float


@dataclass(frozen=True, slots=True)
class Actuator:
    """One output of a reactor: a relay (0 open, 1 closed), a PWM duty (0-1) or a pump."""

    id: str
    name: str
    kind: str  # relay | pwm | pump
    safe: float
    wanted: float
    applied: float | None  # what the chip last confirmed
    in_safe_state: bool
    commanded_by: str
    loop: str | None  # the loop that drives it
    error: str | None
    error_message: str | None
    max_duty: float | None  # pwm; None from agents that do not say
    pump: PumpState | None


@dataclass(frozen=True, slots=True)
class ControlLoop:
    """A control loop on the agent. `limits` are in force (narrowed or hard), `hard_limits`
    the configured ones: a request may narrow a limit, never widen it."""

    id: str
    name: str
    kind: str  # temperature | ph
    mode: str  # off | manual | auto
    state: str  # off | manual | running | lockout
    reason: str | None
    setpoint: float
    setpoint_min: float
    setpoint_max: float
    limits: Mapping[str, float]
    hard_limits: Mapping[str, float]
    outputs: tuple[str, ...]
    output: float | None  # temperature: the heater duty the PID asks for
    alarm: str | None  # ph: a dose that did not move the pH


@dataclass(frozen=True, slots=True)
class JournalStatus:
    epoch: str
    newest_seq: int
    acked_seq: int
    pending: int
    bytes: int
    budget_bytes: int
    retention_days: float
    dropped: int
    writable: bool
    # Readings gone, by cause (budget, retention, disk_full, io_error, shutdown, recovery);
    # empty from agents that only report the total.
    dropped_by_cause: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class BusStatus:
    bus: int
    transactions_ok: int
    transactions_error: int
    timeouts: int


@dataclass(frozen=True, slots=True)
class Problem:
    """One entry of `problems`: `<code>` agent-wide, or `<code>:<subject>` about one thing."""

    code: str
    subject: str | None

    def __str__(self) -> str:
        return self.code if self.subject is None else f"{self.code}:{self.subject}"


@dataclass(frozen=True, slots=True)
class DiscoveryStatus:
    state: str  # running | idle
    last_scan: datetime | None


@dataclass(frozen=True, slots=True)
class AgentStatus:
    info: AgentInfo
    time: datetime
    uptime_s: float
    health: str
    problems: tuple[Problem, ...]
    reactors: tuple[Reactor, ...]
    journal: JournalStatus
    buses: tuple[BusStatus, ...]
    discovery: DiscoveryStatus | None  # None from agents older than the field

    def has_problem(self, code: str) -> bool:
        return any(p.code == code for p in self.problems)


@dataclass(frozen=True, slots=True)
class CalibrationPoint:
    point: str
    value: float | None
    reading: float
    time: datetime


@dataclass(frozen=True, slots=True)
class CalibrationSession:
    """A guided calibration on the agent (docs/calibration.md): order and stability are
    the agent's to enforce; this is what it reports."""

    sensor: str
    kind: str
    state: str  # active | complete | cancelled
    points: tuple[str, ...]
    point_defaults: Mapping[str, float]
    next_point: str | None
    committed: tuple[CalibrationPoint, ...]
    value: float | None  # the live reading
    unit: str | None
    stable: bool
    readings: int
    readings_needed: int
    seconds: float
    seconds_needed: float
    result: SensorCalibration | None


# Qualities of readings that do not describe the culture at their time: taken with an
# unsynchronised clock (the hour is unknown) or with the probe in a calibration buffer.
QUALITY_UNSYNCED = "unsynced"
QUALITY_CALIBRATING = "calibrating"
NOT_THE_CULTURE = frozenset({QUALITY_UNSYNCED, QUALITY_CALIBRATING})


# The quantity of an actuation event's row (docs/api.md, "Actuation events").
ACTUATION = "actuation"


@dataclass(frozen=True, slots=True)
class ActuationEvent:
    """What an actuator was told and what it confirmed; its reading names the actuator
    (`sensor`) and the commanded `value` and `unit`."""

    requester: str  # loop:<id> | ha | safety | cli
    reason: str  # the agent's finer origin, e.g. "lockout:input_stale"
    command: str  # set | safe | dose | dose_result
    confirmed: float | None
    error: str | None
    error_message: str | None


@dataclass(frozen=True, slots=True)
class Reading:
    """A measurement, or an actuation event (`event` set) in the same sequence space."""

    seq: int
    time: str  # ISO 8601 UTC with milliseconds, exactly as the agent sent it
    reactor: str
    sensor: str
    quantity: str
    value: float
    unit: str
    quality: str
    event: ActuationEvent | None = None


@dataclass(frozen=True, slots=True)
class ReadingsPage:
    agent_id: str
    epoch: str
    newest_seq: int
    more: bool
    readings: tuple[Reading, ...]
    # Epochs whose readings this one inherited, newest first (docs/api.md, epoch lineage).
    lineage: tuple[Ancestor, ...] = ()


@dataclass(frozen=True, slots=True)
class Ancestor:
    """(page epoch, seq) is the same reading as (`epoch`, seq) for seq <= `through_seq`."""

    epoch: str
    through_seq: int


# -- strict parsing ------------------------------------------------------------


def valid_id(text: str) -> bool:
    return ID_PATTERN.fullmatch(text) is not None


class _Fields:
    """Typed access to one JSON object; errors name the field's path."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise BioreactorProtocolError(f"{path or 'answer'}: expected an object")
        self._data = data
        self._path = path

    def has(self, key: str) -> bool:
        return key in self._data

    def _get(self, key: str) -> Any:
        if key not in self._data:
            raise BioreactorProtocolError(f"{self._where(key)}: missing")
        return self._data[key]

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _bad(self, key: str, expected: str) -> BioreactorProtocolError:
        return BioreactorProtocolError(f"{self._where(key)}: expected {expected}")

    def string(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def opt_string(self, key: str) -> str | None:
        return None if self._get(key) is None else self.string(key)

    def ident(self, key: str) -> str:
        """An id that may name a file: lowercase letters, digits, `-`, `_`; 64 at most."""
        value = self.string(key)
        if not valid_id(value):
            raise self._bad(key, f"an id matching {ID_PATTERN.pattern}, not {value[:80]!r}")
        return value

    def epoch(self, key: str) -> str:
        value = self.string(key)
        if EPOCH_PATTERN.fullmatch(value) is None:
            raise self._bad(key, f"an epoch matching {EPOCH_PATTERN.pattern}, not {value[:80]!r}")
        return value

    def integer(self, key: str) -> int:
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad(key, "an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        return None if self._get(key) is None else self.integer(key)

    def number(self, key: str) -> float:
        value = self._get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._bad(key, "a number")
        return float(value)

    def opt_number(self, key: str) -> float | None:
        return None if self._get(key) is None else self.number(key)

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def time(self, key: str) -> datetime:
        text = self.string(key)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise self._bad(key, "an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise self._bad(key, "a time with a time zone")
        return parsed.astimezone(UTC)

    def opt_time(self, key: str) -> datetime | None:
        return None if self._get(key) is None else self.time(key)

    def items(self, key: str, parse: Callable[[Any, str], T]) -> tuple[T, ...]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        return tuple(parse(item, f"{self._where(key)}[{i}]") for i, item in enumerate(value))

    def counts(self, key: str) -> dict[str, int]:
        """An object of non-negative integer counts."""
        counts = self.obj(key)
        for name in counts._data:
            if not isinstance(name, str) or not valid_id(name):
                raise self._bad(key, f"counts named by ids, not {str(name)[:80]!r}")
            if counts.integer(name) < 0:
                raise counts._bad(name, "a count (not negative)")
        return dict(counts._data)

    def obj(self, key: str) -> _Fields:
        return _Fields(self._get(key), self._where(key))

    def raw(self, key: str) -> Any:
        """The value of `key` as sent (to tell null from an object)."""
        return self._get(key)

    def names(self) -> list[str]:
        return [str(k) for k in self._data]


def parse_info(data: Any, path: str = "") -> AgentInfo:
    f = _Fields(data, path)
    return AgentInfo(
        f.ident("agent_id"),
        f.string("name"),
        f.string("firmware_version"),
        f.integer("api_version"),
    )


def _quantity(data: Any, path: str) -> QuantityValue:
    f = _Fields(data, path)
    return QuantityValue(
        f.ident("key"),
        f.string("unit"),
        f.number("resolution"),
        f.opt_number("value"),
        f.opt_time("time"),
        f.opt_string("quality"),
    )


def _slope(f: _Fields, key: str) -> PhSlope | None:
    if f.raw(key) is None:
        return None
    s = f.obj(key)
    return PhSlope(s.number("acid_pct"), s.number("base_pct"), s.opt_number("offset_mv"))


def _calibration_record(f: _Fields, key: str) -> SensorCalibration | None:
    if not f.has(key) or f.raw(key) is None:
        return None
    c = f.obj(key)
    points = c.integer("points")
    if points < 0:
        raise c._bad("points", "a count (not negative)")
    return SensorCalibration(c.time("date"), points, _slope(c, "slope"))


def _calibration_point(data: Any, path: str) -> CalibrationPoint:
    f = _Fields(data, path)
    return CalibrationPoint(
        f.string("point"), f.opt_number("value"), f.number("reading"), f.time("time")
    )


def parse_calibration_session(data: Any) -> CalibrationSession:
    f = _Fields(data, "")
    defaults = f.obj("point_defaults")
    reading = None if f.raw("reading") is None else f.obj("reading")
    stability = f.obj("stability")
    return CalibrationSession(
        sensor=f.ident("sensor"),
        kind=f.string("kind"),
        state=f.string("state"),
        points=f.items("points", _string_item),
        point_defaults={k: defaults.number(k) for k in defaults.names()},
        next_point=f.opt_string("next_point"),
        committed=f.items("committed", _calibration_point),
        value=None if reading is None else reading.number("value"),
        unit=None if reading is None else reading.string("unit"),
        stable=stability.boolean("stable"),
        readings=stability.integer("readings"),
        readings_needed=stability.integer("readings_needed"),
        seconds=stability.number("seconds"),
        seconds_needed=stability.number("seconds_needed"),
        result=_calibration_record(f, "result"),
    )


def _string_item(data: Any, path: str) -> str:
    if not isinstance(data, str):
        raise BioreactorProtocolError(f"{path}: expected a string")
    return data


def _sensor(data: Any, path: str) -> Sensor:
    f = _Fields(data, path)
    return Sensor(
        id=f.ident("id"),
        kind=f.string("kind"),
        model=f.string("model"),
        firmware=f.opt_string("firmware"),
        address=f.integer("address"),
        status=f.string("status"),
        pinned=f.boolean("pinned"),
        last_seen=f.opt_time("last_seen"),
        consecutive_errors=f.integer("consecutive_errors"),
        error_count=f.integer("error_count"),
        last_error=f.opt_string("last_error"),
        interval_s=f.number("interval_s"),
        quantities=f.items("quantities", _quantity),
        error_message=f.opt_string("error_message") if f.has("error_message") else None,
        calibration=_calibration_record(f, "calibration"),
    )


def _pump(f: _Fields) -> PumpState:
    return PumpState(
        f.boolean("dosing"),
        f.opt_number("last_dose_ml"),
        f.opt_number("delivered_ml"),
        f.number("dosed_last_hour_ml"),
        f.number("dosed_last_day_ml"),
        f.number("max_dose_ml"),
        f.number("max_ml_per_hour"),
        f.number("max_ml_per_day"),
    )


def _actuator(data: Any, path: str) -> Actuator:
    f = _Fields(data, path)
    kind = f.string("kind")
    return Actuator(
        id=f.ident("id"),
        name=f.string("name"),
        kind=kind,
        safe=f.number("safe"),
        wanted=f.number("wanted"),
        applied=f.opt_number("applied"),
        in_safe_state=f.boolean("in_safe_state"),
        commanded_by=f.string("commanded_by"),
        loop=f.opt_string("loop"),
        error=f.opt_string("error"),
        error_message=f.opt_string("error_message"),
        max_duty=f.number("max_duty") if f.has("max_duty") else None,
        pump=_pump(f) if kind == "pump" else None,
    )


def _limits(f: _Fields, key: str) -> dict[str, float]:
    limits = f.obj(key)
    return {name: limits.number(name) for name in limits.names()}


def _loop(data: Any, path: str) -> ControlLoop:
    f = _Fields(data, path)
    return ControlLoop(
        id=f.ident("id"),
        name=f.string("name"),
        kind=f.string("kind"),
        mode=f.string("mode"),
        state=f.string("state"),
        reason=f.opt_string("reason"),
        setpoint=f.number("setpoint"),
        setpoint_min=f.number("setpoint_min"),
        setpoint_max=f.number("setpoint_max"),
        limits=_limits(f, "limits"),
        hard_limits=_limits(f, "hard_limits"),
        outputs=f.items("outputs", _id_item),
        output=f.opt_number("output") if f.has("output") else None,
        alarm=f.opt_string("alarm") if f.has("alarm") else None,
    )


def _id_item(data: Any, path: str) -> str:
    if not isinstance(data, str) or not valid_id(data):
        raise BioreactorProtocolError(f"{path}: expected an id matching {ID_PATTERN.pattern}")
    return data


def _reactor(data: Any, path: str) -> Reactor:
    f = _Fields(data, path)
    return Reactor(
        f.ident("id"),
        f.string("name"),
        f.integer("bus"),
        f.opt_integer("mux_address"),
        f.opt_integer("mux_channel"),
        f.items("sensors", _sensor),
        f.items("actuators", _actuator) if f.has("actuators") else (),
        f.items("loops", _loop) if f.has("loops") else (),
        f.opt_string("area") if f.has("area") else None,
    )


def _bus(data: Any, path: str) -> BusStatus:
    f = _Fields(data, path)
    return BusStatus(
        f.integer("bus"),
        f.integer("transactions_ok"),
        f.integer("transactions_error"),
        f.integer("timeouts"),
    )


def _problem(data: Any, path: str) -> Problem:
    if not isinstance(data, str):
        raise BioreactorProtocolError(f"{path}: expected a string")
    # Codes name nothing on disk: any non-empty word is kept, so a newer agent's new
    # problem never makes its whole status unreadable.
    code, separator, subject = data.partition(":")
    if not code or (separator and not subject):
        raise BioreactorProtocolError(f"{path}: expected <code> or <code>:<subject>, not {data!r}")
    return Problem(code, subject if separator else None)


def _discovery(f: _Fields) -> DiscoveryStatus | None:
    if not f.has("discovery"):
        return None
    d = f.obj("discovery")
    return DiscoveryStatus(d.string("state"), d.opt_time("last_scan"))


def parse_reactors(data: Any) -> tuple[Reactor, ...]:
    return _Fields(data, "").items("reactors", _reactor)


def parse_status(data: Any) -> AgentStatus:
    f = _Fields(data, "")
    j = f.obj("journal")
    return AgentStatus(
        info=parse_info(data),
        time=f.time("time"),
        uptime_s=f.number("uptime_s"),
        health=f.string("health"),
        problems=f.items("problems", _problem),
        reactors=f.items("reactors", _reactor),
        journal=JournalStatus(
            j.epoch("epoch"),
            j.integer("newest_seq"),
            j.integer("acked_seq"),
            j.integer("pending"),
            j.integer("bytes"),
            j.integer("budget_bytes"),
            j.number("retention_days"),
            j.integer("dropped"),
            j.boolean("writable"),
            j.counts("dropped_by_cause") if j.has("dropped_by_cause") else {},
        ),
        buses=f.items("buses", _bus),
        discovery=_discovery(f),
    )


def _valid_time(text: str) -> bool:
    if READING_TIME_PATTERN.fullmatch(text) is None:
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:  # e.g. month 13: the pattern only checks the shape
        return False
    return True


def _reading(data: Any, path: str, ids: set[str], times: set[str]) -> Reading:
    # The hot path of a backlog drain: direct indexing, strict types. A page repeats few
    # distinct ids and times, so each is validated once (remembered in `ids`, `times`).
    try:
        seq, time, reactor, sensor = data["seq"], data["time"], data["reactor"], data["sensor"]
        quantity, value, unit, quality = (
            data["quantity"],
            data["value"],
            data["unit"],
            data["quality"],
        )
    except (KeyError, TypeError):
        raise BioreactorProtocolError(f"{path}: not a complete reading") from None
    if (
        type(seq) is not int
        or type(value) not in (int, float)
        or not all(type(x) is str for x in (time, reactor, sensor, quantity, unit, quality))
    ):
        raise BioreactorProtocolError(f"{path}: a field has the wrong type")
    for name in (reactor, sensor, quantity):
        if name not in ids:
            if not valid_id(name):
                raise BioreactorProtocolError(
                    f"{path}: {name[:80]!r} is not an id matching {ID_PATTERN.pattern}"
                )
            ids.add(name)
    if time not in times:
        if not _valid_time(time):
            raise BioreactorProtocolError(
                f"{path}: time {time[:80]!r} is not YYYY-MM-DDTHH:MM:SS.mmmZ"
            )
        times.add(time)
    event = data.get("event")
    return Reading(
        seq,
        time,
        reactor,
        sensor,
        quantity,
        float(value),
        unit,
        quality,
        None if event is None else _actuation(event, f"{path}.event"),
    )


def _actuation(data: Any, path: str) -> ActuationEvent:
    f = _Fields(data, path)
    return ActuationEvent(
        f.string("requester"),
        f.string("reason"),
        f.string("command"),
        f.opt_number("confirmed"),
        f.opt_string("error"),
        f.opt_string("error_message"),
    )


def _ancestor(data: Any, path: str) -> Ancestor:
    f = _Fields(data, path)
    return Ancestor(f.epoch("epoch"), f.integer("through_seq"))


def parse_readings(body: bytes) -> ReadingsPage:
    """Parses a /readings answer; rejects out-of-order or malformed pages."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BioreactorProtocolError("readings: the answer is not JSON") from None
    f = _Fields(data, "")
    ids: set[str] = set()
    times: set[str] = set()
    page = ReadingsPage(
        f.ident("agent_id"),
        f.epoch("epoch"),
        f.integer("newest_seq"),
        f.boolean("more"),
        f.items("readings", lambda item, path: _reading(item, path, ids, times)),
        # Agents from before epoch lineage send none.
        f.items("lineage", _ancestor) if "lineage" in data else (),
    )
    previous = 0
    for reading in page.readings:
        if reading.seq <= previous:
            raise BioreactorProtocolError("readings: sequence numbers are not increasing")
        previous = reading.seq
    return page


# -- client ------------------------------------------------------------------------


class BioreactorClient:
    """One edge agent. The aiohttp session is injected and never closed here.

    With `agent_id` set, every status and readings page must come from that agent
    (BioreactorWrongAgentError otherwise): an address can change hands on a lab network.
    The token is never sent with /info, which is public: probing an unknown host with
    `info()` does not hand it the token.

    With `tls_fingerprint` the client speaks HTTPS to exactly the certificate with that
    SHA-256 fingerprint (trust on first use: self-signed, no CA); another certificate
    fails the connection before any request is sent (BioreactorCertificateError).

    With `consumer` the client pulls and acknowledges as that consumer: the agent keeps a
    watermark per consumer and its retention waits for the slowest, so a second reader
    of the same agent never takes readings from the first.
    """

    def __init__(
        self,
        host: str,
        port: int,
        token: str | None,
        session: aiohttp.ClientSession,
        *,
        agent_id: str | None = None,
        tls_fingerprint: str | None = None,
        consumer: str | None = None,
        request_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.consumer = consumer
        self.port = port
        self.agent_id = agent_id
        self.tls_fingerprint = tls_fingerprint
        self._token = token
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._pin = aiohttp.Fingerprint(_digest(tls_fingerprint)) if tls_fingerprint else None
        bracketed = f"[{host}]" if ":" in host else host
        scheme = "http" if tls_fingerprint is None else "https"
        self._base = f"{scheme}://{bracketed}:{port}/api/v1"

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        params: Mapping[str, int | str] | None = None,
    ) -> bytes:
        headers = {"Accept": "application/json"}
        presented = auth and self._token is not None
        if presented:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            async with self._session.request(
                method,
                self._base + path,
                headers=headers,
                json=body,
                params=params or None,
                timeout=self._timeout,
                ssl=self._pin or True,
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except aiohttp.ServerFingerprintMismatch as err:
            raise BioreactorCertificateError(
                self.tls_fingerprint or "", format_fingerprint(err.got)
            ) from err
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise BioreactorConnectionError(
                f"cannot reach the agent at {self.host}:{self.port}: {err or type(err).__name__}"
            ) from err
        if status == 401 and presented:
            raise BioreactorAuthenticationError("the agent refused the token")
        if status == 429:
            raise BioreactorRateLimitedError(parse_retry_after(retry_after))
        if 400 <= status < 500:
            code, message, limit = _error_of(raw)
            raise BioreactorRequestError(status, code, message, limit)
        if status != 200:
            raise BioreactorConnectionError(f"the agent answered HTTP {status}")
        return raw

    async def _json(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        raw = await self._request(method, path, body, auth=auth)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BioreactorProtocolError(f"{path}: the answer is not JSON") from None

    def _check_agent(self, agent_id: str) -> None:
        if self.agent_id is not None and agent_id != self.agent_id:
            raise BioreactorWrongAgentError(self.agent_id, agent_id)

    async def certificate_fingerprint(self) -> str | None:
        """The fingerprint of the certificate the agent presents now, None if it speaks plain
        HTTP. Only a TLS handshake: nothing is sent, so an unknown host learns nothing."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # Trust on first use: the certificate is self-signed; the user compares fingerprints.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            async with asyncio.timeout(self._timeout.total):
                _, writer = await asyncio.open_connection(self.host, self.port, ssl=context)
        except (ssl.SSLError, ConnectionResetError):
            return None  # the port answered, but not with TLS
        except (OSError, TimeoutError) as err:
            raise BioreactorConnectionError(
                f"cannot reach the agent at {self.host}:{self.port}: {err or type(err).__name__}"
            ) from err
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        return format_fingerprint(hashlib.sha256(der).digest())

    async def info(self) -> AgentInfo:
        """The agent's public identity; sent without the token."""
        return parse_info(await self._json("GET", "/info", auth=False))

    async def status(self) -> AgentStatus:
        status = parse_status(await self._json("GET", "/status"))
        self._check_agent(status.info.agent_id)
        return status

    async def readings(self, after: int, limit: int = 10_000) -> ReadingsPage:
        params: dict[str, int | str] = {"after": after, "limit": limit}
        if self.consumer is not None:
            params["consumer"] = self.consumer
        raw = await self._request("GET", "/readings", params=params)
        # Pages of 10,000 readings are parsed off the event loop.
        page = await asyncio.get_running_loop().run_in_executor(None, parse_readings, raw)
        self._check_agent(page.agent_id)
        return page

    async def ack(self, epoch: str, seq: int) -> int:
        body: dict[str, Any] = {"epoch": epoch, "seq": seq}
        if self.consumer is not None:
            body["consumer"] = self.consumer
        data = _Fields(await self._json("POST", "/ack", body), "")
        return data.integer("acked_seq")

    async def scan(self) -> tuple[Reactor, ...]:
        return parse_reactors(await self._json("POST", "/scan"))

    async def forget_sensor(self, sensor_id: str) -> None:
        await self._json("DELETE", "/sensors/" + quote(sensor_id, safe=""))

    # Guided calibration: refusals (409 `out_of_order`, `not_stable`, ...) arrive as
    # BioreactorRequestError with the agent's code and message.

    def _calibration_path(self, sensor_id: str) -> str:
        return "/sensors/" + quote(sensor_id, safe="") + "/calibration"

    async def start_calibration(
        self, sensor_id: str, settings: Mapping[str, float] | None = None
    ) -> CalibrationSession:
        """Starts (or restarts) the guided calibration of a sensor."""
        data = await self._json("POST", self._calibration_path(sensor_id), dict(settings or {}))
        return parse_calibration_session(data)

    async def calibration(self, sensor_id: str) -> CalibrationSession:
        """The calibration's progress: live reading, stability, committed points, result."""
        return parse_calibration_session(await self._json("GET", self._calibration_path(sensor_id)))

    async def commit_calibration(
        self, sensor_id: str, point: str, value: float | None = None
    ) -> CalibrationSession:
        """Commits the next point; the agent refuses it unless stable and in order."""
        body: dict[str, Any] = {"point": point}
        if value is not None:
            body["value"] = value
        path = self._calibration_path(sensor_id) + "/commit"
        return parse_calibration_session(await self._json("POST", path, body))

    async def cancel_calibration(self, sensor_id: str) -> CalibrationSession:
        return parse_calibration_session(
            await self._json("DELETE", self._calibration_path(sensor_id))
        )

    # Control (docs/api.md): the agent checks every request against its hard limits and
    # refuses with BioreactorRequestError naming the limit (`limit`); nothing moves then.

    async def configure_loop(self, loop_id: str, changes: Mapping[str, Any]) -> None:
        """Changes a loop's `mode`, `setpoint`, narrowed `limits` or `clear_alarm`."""
        await self._json("PATCH", "/loops/" + quote(loop_id, safe=""), dict(changes))

    async def set_actuator(self, actuator_id: str, value: float) -> None:
        """Sets a relay (0/1) or PWM duty by hand; refused while a loop other than
        `manual` drives it."""
        await self._json("POST", "/actuators/" + quote(actuator_id, safe=""), {"value": value})

    async def dose(self, actuator_id: str, volume_ml: float) -> None:
        """Starts a dose on a pump within its caps."""
        path = "/actuators/" + quote(actuator_id, safe="") + "/dose"
        await self._json("POST", path, {"volume_ml": volume_ml})

    async def emergency_stop(self, reactor_id: str) -> None:
        """Every loop of the reactor off and every actuator in its safe state."""
        await self._json("POST", "/reactors/" + quote(reactor_id, safe="") + "/emergency_stop")


def format_fingerprint(digest: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in digest)


def _digest(fingerprint: str) -> bytes:
    if FINGERPRINT_PATTERN.fullmatch(fingerprint) is None:
        raise ValueError(f"not a SHA-256 fingerprint (AB:CD:... 32 bytes): {fingerprint[:120]!r}")
    return bytes.fromhex(fingerprint.replace(":", ""))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date, RFC 9110)."""
    if value is None:
        return DEFAULT_RETRY_AFTER
    text = value.strip()
    if text.isascii() and text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
        if when.tzinfo is None:
            return DEFAULT_RETRY_AFTER
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 1.0), MAX_RETRY_AFTER)


def _error_of(raw: bytes) -> tuple[str, str, str | None]:
    """(code, message, limit) of a refusal; limit only from control routes."""
    try:
        data = json.loads(raw)
        limit = data.get("limit")
        return str(data["error"]), str(data["message"]), None if limit is None else str(limit)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return "unknown", raw[:200].decode("utf-8", errors="replace"), None
