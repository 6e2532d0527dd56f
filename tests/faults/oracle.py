"""Compares what the agent journaled (its --record log) with what reached the archive."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.support.archive_files import archive_rows


@dataclass(frozen=True)
class Verdict:
    generated: int
    delivered: int
    lost: int
    duplicated: int
    unrecorded: int  # archived readings whose oracle line a kill cut off (not lost, not duplicated)


def time_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def journal_rows(journal_db: Path) -> tuple[str, int, dict[int, tuple[str, str, int, float]]]:
    """(epoch, acked seq, seq -> (sensor, quantity, time_ms, value)) of a stopped agent."""
    conn = sqlite3.connect(f"file:{journal_db}?mode=ro", uri=True)
    try:
        epoch = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
        acked = conn.execute("SELECT acked_seq FROM state").fetchone()[0]
        rows = {
            seq: (sensor, quantity, time_ms, value)
            for seq, sensor, quantity, time_ms, value in conn.execute(
                "SELECT r.seq, s.sensor, s.quantity, r.time_ms, r.value "
                "FROM readings r JOIN series s ON s.id = r.series"
            )
        }
    finally:
        conn.close()
    return epoch, acked, rows


def judge(
    generated: dict[tuple[str, str, int], float], archive_dir: Path, journal_db: Path
) -> Verdict:
    """Lost: journaled but neither archived (with the same value) nor still waiting,
    unacknowledged, in the agent's journal. Duplicated: any reading archived twice.
    Also checks that the archive equals the journal's acknowledged part exactly."""
    rows = archive_rows(archive_dir)
    identities = Counter((r["epoch"], int(r["seq"])) for r in rows)
    archived = {(r["sensor"], r["quantity"], time_ms(r["time"])): float(r["value"]) for r in rows}
    duplicated = max(sum(c - 1 for c in identities.values()), len(rows) - len(archived))
    epoch, acked, journal = journal_rows(journal_db)
    waiting = {(s, q, t) for seq, (s, q, t, _) in journal.items() if seq > acked}
    lost = sum(
        1 for key, value in generated.items() if archived.get(key) != value and key not in waiting
    )
    this_epoch = {int(r["seq"]): r for r in rows if r["epoch"] == epoch}
    for seq, (sensor, quantity, t, value) in journal.items():
        if seq > acked:
            continue
        row = this_epoch.get(seq)
        if row is None or (
            row["sensor"],
            row["quantity"],
            time_ms(row["time"]),
            float(row["value"]),
        ) != (sensor, quantity, t, value):
            lost += 1
    return Verdict(
        generated=len(generated),
        delivered=len(rows),
        lost=lost,
        duplicated=duplicated,
        unrecorded=sum(1 for key in archived if key not in generated),
    )
