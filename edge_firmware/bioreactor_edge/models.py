"""Value types shared along the edge data path (drivers -> sampler -> journal -> API)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SensorStatus(StrEnum):
    """Health of one sensor handler, as reported by the API."""

    # Found (or back), but no good reading yet.
    STARTING = "starting"
    ONLINE = "online"
    OFFLINE = "offline"
    ERROR = "error"
    UNKNOWN = "unknown"


class Quality(StrEnum):
    """How far a reading can be trusted."""

    GOOD = "good"
    # Temperature-compensated chip read without a fresh temperature.
    UNCOMPENSATED = "uncompensated"
    # Parsed, but outside the chip's physical range.
    SUSPECT = "suspect"
    # Taken before the system clock was synchronised: its time is not trustworthy.
    UNSYNCED = "unsynced"
    # Taken while the sensor is being calibrated: the probe is in a buffer solution,
    # not in the culture, so no loop, statistic or alert may use it.
    CALIBRATING = "calibrating"


@dataclass(frozen=True, slots=True)
class Quantity:
    """One physical quantity a driver measures."""

    key: str  # stable: part of the HA unique id, e.g. "ph", "temperature"
    unit: str  # e.g. "pH", "°C", "mg/L", "mV", "µS/cm"
    resolution: float  # smallest meaningful change, in `unit`
    minimum: float  # physical range of the chip; outside -> Quality.SUSPECT
    maximum: float


@dataclass(frozen=True, slots=True)
class Measurement:
    """A driver's result for one quantity."""

    quantity: str
    value: float
    quality: Quality = Quality.GOOD


@dataclass(frozen=True, slots=True)
class NewReading:
    """A reading about to be journaled (it has no sequence number yet)."""

    time_ms: int  # UTC, milliseconds since the Unix epoch
    reactor: str
    sensor: str
    quantity: str
    value: float
    unit: str
    quality: str
    # An actuation event's details as JSON (actuation_events.py); None for a measurement.
    event: str | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """A durable reading; (agent id, journal epoch, seq) is its identity."""

    seq: int
    time_ms: int
    reactor: str
    sensor: str
    quantity: str
    value: float
    unit: str
    quality: str
    event: str | None = None  # as in NewReading
