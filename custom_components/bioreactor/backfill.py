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


def _seed(agent_dir: Path, reactor: str, hour: str) -> dict[Series, Aggregate]:
    """Aggregates of every series of `reactor` in `hour`, from its archive day file."""
    result: dict[Series, Aggregate] = {}
    path = day_file(agent_dir, reactor, hour[:10])
    if not path.exists():
        return result
    with path.open(encoding="utf-8") as file:
        for line in file:
            if not line.startswith(hour):
                continue
            # time,reactor,sensor,quantity,value,... (ids never contain commas in practice;
            # quoted fields fall back to the slow path)
            if '"' in line:
                continue
            _, _, sensor, quantity, value, _ = line.split(",", 5)
            result.setdefault((sensor, quantity), Aggregate()).add(float(value))
    return result


class HourlyBackfill:
    """Aggregates late readings by hour for one agent. Blocking: run in an executor."""

    def __init__(self, agent_dir: Path) -> None:
        self._agent_dir = agent_dir
        self._hours: OrderedDict[HourKey, dict[Series, Aggregate]] = OrderedDict()

    def add(
        self, readings: Iterable[Reading], live_cutoff: datetime
    ) -> dict[Series, list[tuple[datetime, Aggregate]]]:
        """Takes an archived page; returns the complete-so-far hours it touched, per series.

        Only readings older than `live_cutoff`, in hours that ended before it, count.
        """
        cutoff_hour = live_cutoff.astimezone(UTC).strftime("%Y-%m-%dT%H")
        touched: dict[HourKey, set[Series]] = {}
        fresh_hours: set[HourKey] = set()
        for r in readings:
            hour = r.time[:13]
            if hour >= cutoff_hour:
                continue
            key = (r.reactor, hour)
            if key not in self._hours:
                # The archive already holds this page: seeding covers it.
                self._hours[key] = _seed(self._agent_dir, r.reactor, hour)
                fresh_hours.add(key)
            if key not in fresh_hours:
                self._hours[key].setdefault((r.sensor, r.quantity), Aggregate()).add(r.value)
            self._hours.move_to_end(key)
            touched.setdefault(key, set()).add((r.sensor, r.quantity))
        while len(self._hours) > MAX_OPEN_HOURS:
            self._hours.popitem(last=False)
        out: dict[Series, list[tuple[datetime, Aggregate]]] = {}
        for key, series_set in touched.items():
            for series in series_set:
                aggregate = self._hours[key].get(series)
                if aggregate is not None and aggregate.count:
                    out.setdefault(series, []).append((hour_start(key[1]), aggregate))
        return out
