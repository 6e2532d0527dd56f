"""The raw archive: every delivered reading, one CSV per reactor per UTC day; actuation
events beside them, one `<day>.actuations.csv` per reactor per day (same columns, then
the event's), so readings' files, exports and statistics hold only measurements.

Fault model: a write that fails or is cut off part-way (disk full, I/O error,
power loss). Each row carries the reading's identity (agent, epoch, seq); the
pipeline appends only identities above the lineage's high-water mark, a torn last
line is cut before any append, and a failed append is rolled back to the sizes
recorded beforehand (docs/archive.md). Blocking: call from an executor.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ..api import ActuationEvent, Reading
from . import files

HEADER = "time,reactor,sensor,quantity,value,unit,quality,seq,epoch,agent\n"
COLUMNS = tuple(HEADER.strip().split(","))
EVENT_COLUMNS = ("requester", "reason", "command", "confirmed", "error", "error_message")
EVENTS_HEADER = HEADER.strip() + "," + ",".join(EVENT_COLUMNS) + "\n"


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
    agent: str
    event: ActuationEvent | None = None  # set in an actuations file


def _csv_field(text: str) -> str:
    # Ids and units never hold these in practice; quote defensively so a row stays one row.
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _row(time: str, r: Reading | ArchivedReading, epoch: str, agent: str) -> str:
    return (
        f"{time},{_csv_field(r.reactor)},{_csv_field(r.sensor)},{_csv_field(r.quantity)},"
        f"{r.value!r},{_csv_field(r.unit)},{r.quality},{r.seq},{epoch},{agent}\n"
    )


def _event_fields(event: ActuationEvent) -> str:
    confirmed = "" if event.confirmed is None else repr(event.confirmed)
    # One line per row (a torn tail is found by its missing newline): no line breaks.
    message = " ".join((event.error_message or "").split())
    return (
        f",{_csv_field(event.requester)},{_csv_field(event.reason)},{_csv_field(event.command)},"
        f"{confirmed},{_csv_field(event.error or '')},{_csv_field(message)}"
    )


def _archived_event(row: dict[str, str]) -> ActuationEvent:
    return ActuationEvent(
        requester=row["requester"],
        reason=row["reason"],
        command=row["command"],
        confirmed=float(row["confirmed"]) if row["confirmed"] else None,
        error=row["error"] or None,
        error_message=row["error_message"] or None,
    )


def day_file(agent_dir: Path, reactor: str, day: str) -> Path:
    return agent_dir / reactor / f"{day}.csv"


def actuations_file(agent_dir: Path, reactor: str, day: str) -> Path:
    return agent_dir / reactor / f"{day}.actuations.csv"


def plan_append(
    agent_dir: Path, agent: str, epoch: str, readings: Sequence[Reading]
) -> dict[Path, bytes]:
    """The bytes to append to each day file (pure: no I/O)."""
    lines: dict[Path, list[str]] = defaultdict(list)
    for r in readings:
        # `time` is ISO 8601 UTC as the agent sent it; its first 10 characters are the day.
        if r.event is None:
            lines[day_file(agent_dir, r.reactor, r.time[:10])].append(_row(r.time, r, epoch, agent))
        else:
            row = _row(r.time, r, epoch, agent)[:-1] + _event_fields(r.event) + "\n"
            lines[actuations_file(agent_dir, r.reactor, r.time[:10])].append(row)
    return {path: "".join(rows).encode() for path, rows in lines.items()}


def repair_tails(agent_dir: Path, paths: Collection[Path]) -> dict[str, int]:
    """Cuts a torn last line off each file; returns every file's size afterwards, by
    path relative to `agent_dir` (the lineage survives a moved configuration directory)."""
    sizes = {}
    for path in paths:
        complete = files.complete_length(path)
        if complete < files.size(path):
            files.truncate(path, complete)
        sizes[path.relative_to(agent_dir).as_posix()] = complete
    return sizes


def append(plan: dict[Path, bytes]) -> None:
    """Appends and fsyncs every file of `plan`, creating files with the header."""
    for path, data in plan.items():
        header = EVENTS_HEADER if path.name.endswith(".actuations.csv") else HEADER
        files.append(path, data, header=header.encode())


def rollback(agent_dir: Path, sizes: dict[str, int]) -> None:
    """Undoes a failed or interrupted append: cuts every file back to its recorded size."""
    for name, length in sizes.items():
        files.truncate(agent_dir / name, length)


def read_rows(path: Path, agent: str = "") -> Iterator[ArchivedReading]:
    """The file's complete rows (a torn last line is skipped). Files written before rows
    carried the agent id take it from `agent`."""
    with path.open(encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file):
            try:
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
                    agent=row.get("agent") or agent,
                    event=_archived_event(row) if "command" in row else None,
                )
            except (TypeError, ValueError, KeyError):
                continue  # a torn last line


def high_water_marks(agent_dir: Path) -> dict[str, int]:
    """The highest archived seq of every epoch, read from the archive itself (readings'
    and actuations' files)."""
    marks: dict[str, int] = {}
    for path in sorted(agent_dir.glob("*/*.csv")):
        for row in read_rows(path):
            if row.seq > marks.get(row.epoch, 0):
                marks[row.epoch] = row.seq
    return marks


def _days(start: datetime, end: datetime) -> Iterator[date]:
    day = start.astimezone(UTC).date()
    last = end.astimezone(UTC).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


def readings_between(
    agent_dir: Path, reactors: Collection[str] | None, start: datetime, end: datetime
) -> Iterator[ArchivedReading]:
    """Archived readings of one agent with start <= time < end, day file by day file
    (`reactors` None: all of them); streamed, never collected."""
    if not agent_dir.is_dir():
        return
    names = (
        sorted(reactors)
        if reactors is not None
        else sorted(p.name for p in agent_dir.iterdir() if p.is_dir())
    )
    for day in _days(start, end):
        for reactor in names:
            path = day_file(agent_dir, reactor, day.isoformat())
            if path.exists():
                yield from (r for r in read_rows(path, agent_dir.name) if start <= r.time < end)


def export(
    agent_dir: Path,
    reactors: Collection[str] | None,
    start: datetime,
    end: datetime,
    out_path: Path,
) -> int:
    """Writes one agent's readings in [start, end) to `out_path` as CSV, day by day in
    archive (seq) order, row by row; returns the number of rows."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with out_path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for r in readings_between(agent_dir, reactors, start, end):
            time = r.time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            out.write(_row(time, r, r.epoch, r.agent))
            rows += 1
    return rows
