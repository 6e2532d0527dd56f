"""The raw archive: every delivered reading, one CSV per reactor per UTC day.

Layout: ``<config>/bioreactor_archive/<agent id>/<reactor>/<YYYY-MM-DD>.csv`` with
the header ``time,reactor,sensor,quantity,value,unit,quality,seq,epoch``
(docs/archive.md). Appends are grouped per file, written with one write and one
fsync per file per page. Blocking: call from an executor. No Home Assistant imports.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from .api import Reading
from .cursor import fsync_dir

HEADER = "time,reactor,sensor,quantity,value,unit,quality,seq,epoch\n"
COLUMNS = tuple(HEADER.strip().split(","))
ARCHIVE_DIR = "bioreactor_archive"


@dataclass(frozen=True, slots=True)
class ArchivedReading:
    time: datetime
    reactor: str
    sensor: str
    quantity: str
    value: float
    unit: str
    quality: str
    seq: int
    epoch: str


def _csv_field(text: str) -> str:
    # Ids and units never hold these in practice; quote defensively so a row stays one row.
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def day_file(agent_dir: Path, reactor: str, day: str) -> Path:
    return agent_dir / reactor / f"{day}.csv"


def plan_append(agent_dir: Path, epoch: str, readings: Sequence[Reading]) -> dict[Path, str]:
    """The text to append to each day file (pure: no I/O)."""
    lines: dict[Path, list[str]] = defaultdict(list)
    for r in readings:
        # `time` is ISO 8601 UTC as the agent sent it; its first 10 characters are the day.
        path = day_file(agent_dir, r.reactor, r.time[:10])
        lines[path].append(
            f"{r.time},{_csv_field(r.reactor)},{_csv_field(r.sensor)},{_csv_field(r.quantity)},"
            f"{r.value!r},{_csv_field(r.unit)},{r.quality},{r.seq},{epoch}\n"
        )
    return {path: "".join(rows) for path, rows in lines.items()}


def current_sizes(paths: Iterable[Path]) -> dict[str, int]:
    """Each file's size now (0 when it does not exist yet)."""
    sizes = {}
    for path in paths:
        try:
            sizes[str(path)] = path.stat().st_size
        except FileNotFoundError:
            sizes[str(path)] = 0
    return sizes


def append(plan: dict[Path, str]) -> None:
    """Appends and fsyncs every file of `plan`, creating files with a header."""
    for path, text in plan.items():
        created = not path.exists()
        if created:
            path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8", newline="") as file:
            if file.tell() == 0:
                file.write(HEADER)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if created:
            fsync_dir(path.parent)


def truncate(sizes: dict[str, int]) -> None:
    """Undoes an interrupted append: cuts every file back to its recorded size."""
    for name, size in sizes.items():
        path = Path(name)
        if not path.exists():
            continue
        if size == 0:
            path.unlink()
            continue
        with path.open("r+b") as file:
            if file.seek(0, os.SEEK_END) > size:
                file.truncate(size)
                file.flush()
                os.fsync(file.fileno())


def read_rows(path: Path) -> Iterator[ArchivedReading]:
    with path.open(encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file):
            yield ArchivedReading(
                time=datetime.fromisoformat(row["time"]).astimezone(UTC),
                reactor=row["reactor"],
                sensor=row["sensor"],
                quantity=row["quantity"],
                value=float(row["value"]),
                unit=row["unit"],
                quality=row["quality"],
                seq=int(row["seq"]),
                epoch=row["epoch"],
            )


def _days(start: datetime, end: datetime) -> Iterator[date]:
    day = start.astimezone(UTC).date()
    last = end.astimezone(UTC).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


def readings_between(
    archive_dir: Path, reactor: str, start: datetime, end: datetime
) -> Iterator[ArchivedReading]:
    """Archived readings of `reactor` (any agent) with start <= time < end, by day file."""
    for agent_dir in sorted(p for p in archive_dir.iterdir() if p.is_dir()):
        for day in _days(start, end):
            path = day_file(agent_dir, reactor, day.isoformat())
            if path.exists():
                yield from (r for r in read_rows(path) if start <= r.time < end)


def export(
    archive_dir: Path, reactor: str, start: datetime, end: datetime, out_path: Path
) -> tuple[Path, int]:
    """Writes the readings of `reactor` in [start, end) as one CSV; returns (path, rows)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with out_path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        if archive_dir.exists():
            selected = sorted(
                readings_between(archive_dir, reactor, start, end), key=lambda r: r.time
            )
            for r in selected:
                out.write(
                    f"{r.time.isoformat(timespec='milliseconds').replace('+00:00', 'Z')},"
                    f"{_csv_field(r.reactor)},{_csv_field(r.sensor)},{_csv_field(r.quantity)},"
                    f"{r.value!r},{_csv_field(r.unit)},{r.quality},{r.seq},{r.epoch}\n"
                )
                rows += 1
    return out_path, rows
