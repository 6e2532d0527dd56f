"""Hourly statistics for readings that arrive late (an outage backlog).

Readings older than the live window never became entity states, so the
recorder has no statistics for their hours. Each hour they touch is
aggregated (mean/min/max) and imported as the entity's long-term statistics.
An hour is always complete as far as the archive goes: the first time an hour
is touched its aggregate is seeded from the archive (which already holds the
page just delivered), later pages add to it, so an import never replaces an
hour's statistics with a partial one.
"""

from __future__ import annotations

import csv
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .api import Reading
from .archive import day_file

# Aggregates kept for hours still receiving readings; older ones are re-seeded if touched.
MAX_OPEN_HOURS = 512


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


Series = tuple[str, str]  # (sensor id, quantity key)
HourKey = tuple[str, str]  # (reactor id, "YYYY-MM-DDTHH")


def hour_start(hour: str) -> datetime:
    return datetime.fromisoformat(hour + ":00:00").replace(tzinfo=UTC)


def _read_day(agent_dir: Path, reactor: str, day: str) -> dict[str, dict[Series, Aggregate]]:
    """Aggregates per hour ("YYYY-MM-DDTHH") and series of one archive day file."""
    hours: dict[str, dict[Series, Aggregate]] = {}
    path = day_file(agent_dir, reactor, day)
    if not path.exists():
        return hours
    with path.open(encoding="utf-8", newline="") as file:
        next(file, None)  # the header
        for time, _, sensor, quantity, value, *_ in csv.reader(file):
            series = hours.setdefault(time[:13], {})
            series.setdefault((sensor, quantity), Aggregate()).add(float(value))
    return hours


class HourlyBackfill:
    """Aggregates late readings by hour for one agent. Blocking: run in an executor.

    Each archive day file is read once per (reactor, day) for all its finished hours;
    every reading archived afterwards passes through `add`, so later hours of that
    day start from nothing.
    """

    def __init__(self, agent_dir: Path) -> None:
        self._agent_dir = agent_dir
        self._hours: OrderedDict[HourKey, dict[Series, Aggregate]] = OrderedDict()
        # (reactor, day) read from the archive -> the first hour it could not cover
        # (hours from the live window on had readings `add` skipped).
        self._days_read: dict[tuple[str, str], str] = {}

    def _seed_day(self, reactor: str, day: str, cutoff_hour: str) -> set[HourKey]:
        """Seeds the day's finished hours that are not open yet; returns them."""
        seeded: set[HourKey] = set()
        for hour, series in _read_day(self._agent_dir, reactor, day).items():
            key = (reactor, hour)
            if hour < cutoff_hour and key not in self._hours:
                self._hours[key] = series
                seeded.add(key)
        self._days_read[reactor, day] = cutoff_hour
        return seeded

    def add(
        self, readings: Iterable[Reading], live_cutoff: datetime
    ) -> dict[Series, list[tuple[datetime, Aggregate]]]:
        """Takes an archived page; returns the complete-so-far hours it touched, per series.

        Only readings older than `live_cutoff`, in hours that ended before it, count.
        """
        cutoff_hour = live_cutoff.astimezone(UTC).strftime("%Y-%m-%dT%H")
        touched: dict[HourKey, set[Series]] = {}
        # Hours seeded during this call: the archive already holds this page's readings.
        seeded: set[HourKey] = set()
        for r in readings:
            hour = r.time[:13]
            if hour >= cutoff_hour:
                continue
            key = (r.reactor, hour)
            if key not in self._hours:
                covered = self._days_read.get((r.reactor, hour[:10]))
                if covered is None or hour >= covered:
                    seeded |= self._seed_day(r.reactor, hour[:10], cutoff_hour)
                self._hours.setdefault(key, {})
            if key not in seeded:
                self._hours[key].setdefault((r.sensor, r.quantity), Aggregate()).add(r.value)
            self._hours.move_to_end(key)
            touched.setdefault(key, set()).add((r.sensor, r.quantity))
        while len(self._hours) > MAX_OPEN_HOURS:
            (reactor, hour), _ = self._hours.popitem(last=False)
            # An evicted hour's day must be read again if it is touched again.
            self._days_read.pop((reactor, hour[:10]), None)
        out: dict[Series, list[tuple[datetime, Aggregate]]] = {}
        for key, series_set in touched.items():
            for series in series_set:
                aggregate = self._hours[key].get(series)
                if aggregate is not None and aggregate.count:
                    out.setdefault(series, []).append((hour_start(key[1]), aggregate))
        return out
