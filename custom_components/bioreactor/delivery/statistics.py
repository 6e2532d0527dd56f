"""Hourly statistics of an outage backlog, computed from the archive.

Fault model: Home Assistant stopping between archiving a late reading and
importing its hour, and hours that are still receiving readings. The lineage
remembers durably which hours hold late readings (`Lineage.hours`); an hour is
imported once it is complete — it ended, the recorder had time to compile it,
and delivery has passed its end — from all of that hour's archived readings,
then forgotten. Importing an hour again replaces it, so a crash in between only
repeats the import. Blocking parts: call from an executor. No Home Assistant
imports (the unit conversion and the import are in `recorder_import.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..api import NOT_THE_CULTURE
from . import archive

# The recorder compiles an hour's statistics from states a few minutes after it ends;
# importing later replaces that partial row with the archive's complete one.
SETTLE = timedelta(minutes=15)


@dataclass(slots=True)
class Aggregate:
    count: int = 0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)

    @property
    def mean(self) -> float:
        return self.total / self.count


Series = tuple[str, str, str]  # (sensor id, quantity key, archive unit)


def hour_start(hour: str) -> datetime:
    """The start of a "reactor/YYYY-MM-DDTHH" hour."""
    return datetime.fromisoformat(hour.rsplit("/", 1)[1] + ":00:00").replace(tzinfo=UTC)


def due_hours(
    hours: Iterable[str], now: datetime, delivered_through: datetime | None, caught_up: bool
) -> frozenset[str]:
    """The hours that are complete: ended SETTLE ago, and delivery is past their end."""
    due = set()
    for hour in hours:
        end = hour_start(hour) + timedelta(hours=1)
        if end + SETTLE > now:
            continue
        if caught_up or (delivered_through is not None and delivered_through >= end):
            due.add(hour)
    return frozenset(due)


def aggregate_hours(agent_dir: Path, hours: Iterable[str]) -> dict[str, dict[Series, Aggregate]]:
    """Mean/min/max per series of each "reactor/YYYY-MM-DDTHH" hour, from the archive
    (readings taken with an unsynchronized clock or during a calibration left out).

    Each day file is read once, however many of its hours are asked for: an outage's
    backlog has up to 24 hours in a file of millions of rows.
    """
    out: dict[str, dict[Series, Aggregate]] = {}
    # day file -> hour start -> that hour's aggregates
    by_file: dict[Path, dict[datetime, dict[Series, Aggregate]]] = {}
    for hour in hours:
        reactor, stamp = hour.rsplit("/", 1)
        path = archive.day_file(agent_dir, reactor, stamp[:10])
        out[hour] = by_file.setdefault(path, {})[hour_start(hour)] = {}
    for path, wanted in by_file.items():
        if not path.exists():
            continue
        for r in archive.read_rows(path):
            series = wanted.get(r.time.replace(minute=0, second=0, microsecond=0))
            if series is not None and r.quality not in NOT_THE_CULTURE:
                series.setdefault((r.sensor, r.quantity, r.unit), Aggregate()).add(r.value)
    return out


def aggregate_hour(agent_dir: Path, hour: str) -> dict[Series, Aggregate]:
    """aggregate_hours for one hour."""
    return aggregate_hours(agent_dir, (hour,))[hour]
