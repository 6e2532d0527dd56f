"""Three journal tests from helper h2 that the parallel test_journal.py lacks (merge into it)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bioreactor_edge import journal as journal_module
from bioreactor_edge.journal import Journal
from bioreactor_edge.models import NewReading


def reading(n: int) -> NewReading:
    return NewReading(
        time_ms=1_700_000_000_000 + n,
        reactor="r1",
        sensor="ph",
        quantity="ph",
        value=n / 10,
        unit="pH",
        quality="good",
    )


async def test_group_commit_batches_concurrent_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transactions = 0
    insert = Journal._insert

    def counting_insert(self: Journal, readings: list[NewReading]) -> None:
        nonlocal transactions
        transactions += 1
        insert(self, readings)

    monkeypatch.setattr(Journal, "_insert", counting_insert)
    journal = await Journal.open(tmp_path)
    try:
        ticks = [[reading(t * 10 + i) for i in range(3)] for t in range(200)]
        await asyncio.gather(*(journal.append(tick) for tick in ticks))
        assert transactions < len(ticks) / 4
        stored, more = await journal.read_after(0, 10_000)
        assert not more
        assert [r.seq for r in stored] == list(range(1, 601))
        by_value = {r.value: r.seq for r in stored}
        for tick in ticks:
            seqs = [by_value[r.value] for r in tick]
            assert seqs == list(range(seqs[0], seqs[0] + 3))
    finally:
        await journal.close()


async def test_read_after_seeks_on_the_primary_key(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    await journal.append([reading(1)])
    await journal.close()
    conn = sqlite3.connect(tmp_path / journal_module.DB_NAME)
    query = f"EXPLAIN QUERY PLAN {journal_module._READ_AFTER}"
    plan = " ".join(str(row[-1]) for row in conn.execute(query, (0, 10)))
    conn.close()
    # A range seek on the key, no sort: a page costs the same however long the backlog.
    assert "SEARCH r USING INTEGER PRIMARY KEY (rowid>?)" in plan
    assert "TEMP B-TREE" not in plan


async def test_non_disk_failure_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Journal, readings: list[NewReading]) -> None:
        raise sqlite3.IntegrityError("constraint failed")

    journal = await Journal.open(tmp_path)
    try:
        monkeypatch.setattr(Journal, "_insert", broken)
        with pytest.raises(sqlite3.IntegrityError):
            await journal.append([reading(1)])
    finally:
        await journal.close()
