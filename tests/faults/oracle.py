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
    gone_from_agent: int  # of `lost`: neither archived nor in any journal any more


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
    generated: dict[tuple[str, str, int], float], archive_dir: Path, *journal_dbs: Path
) -> Verdict:
    """Lost: journaled but neither archived (with the same value) nor still waiting,
    unacknowledged, in one of the agent's journals (several: SD cards swapped).
    Duplicated: any reading archived twice. Also checks that the archive holds each
    journal's acknowledged part (a reading acknowledged but not archived is lost),
    compared by content: an epoch started by recovery inherits its ancestor's readings
    under their numbers, archived under the ancestor's identity."""
    rows = archive_rows(archive_dir)
    identities = Counter((r["epoch"], int(r["seq"])) for r in rows)
    archived = {(r["sensor"], r["quantity"], time_ms(r["time"])): float(r["value"]) for r in rows}
    duplicated = max(sum(c - 1 for c in identities.values()), len(rows) - len(archived))
    waiting: set[tuple[str, str, int]] = set()
    journaled: set[tuple[str, str, int]] = set()
    lost = 0
    for journal_db in journal_dbs:
        _, acked, journal = journal_rows(journal_db)
        for seq, (sensor, quantity, t, value) in journal.items():
            journaled.add((sensor, quantity, t))
            if seq > acked:
                waiting.add((sensor, quantity, t))
            elif archived.get((sensor, quantity, t)) != value:
                lost += 1
    missing = [
        key for key, value in generated.items() if archived.get(key) != value and key not in waiting
    ]
    lost += len(missing)
    return Verdict(
        generated=len(generated),
        delivered=len(rows),
        lost=lost,
        duplicated=duplicated,
        unrecorded=sum(1 for key in archived if key not in generated),
        gone_from_agent=sum(1 for key in missing if key not in journaled),
    )
