"""Fault injection on the journal: a damaged WAL tail (>= 1,000 cases) and a real
tiny filesystem that fills up. Rows go to the fault harness table."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bioreactor_edge.journal import DB_NAME, Journal
from bioreactor_edge.journal_lineage import FLOOR_FILE
from bioreactor_edge.models import NewReading
from tests.support.fault_report import record, scale

TICKS = 120
PER_TICK = 12


def tick(number: int) -> list[NewReading]:
    return [
        NewReading(
            time_ms=1_800_000_000_000 + number * 1000,
            reactor="bus1",
            sensor=f"bus1-ph-{i:02x}",
            quantity="ph",
            value=7.0 + number / 1000 + i / 100,
            unit="pH",
            quality="good",
        )
        for i in range(PER_TICK)
    ]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, int]], list]:
    """A journal whose data is still in its WAL, all of it served once (so its served floor
    is recorded), and (WAL size, newest seq) after each commit."""
    import asyncio

    directory = tmp_path_factory.mktemp("prepared")
    snapshot = tmp_path_factory.mktemp("snapshot")
    growth: list[tuple[int, int]] = []

    async def build() -> list:
        journal = await Journal.open(directory)
        for number in range(TICKS):
            await journal.append(tick(number))
            growth.append(
                ((directory / f"{DB_NAME}-wal").stat().st_size, journal.stats().newest_seq)
            )
        readings, _ = await journal.read_after(0, 100_000)
        for name in (DB_NAME, f"{DB_NAME}-wal", FLOOR_FILE):
            shutil.copyfile(directory / name, snapshot / name)
        await journal.close()
        return readings

    original = asyncio.run(build())
    return snapshot, growth, original


async def test_damaged_wal_tail_recovers_every_earlier_record(
    prepared: tuple[Path, list[tuple[int, int]], list], tmp_path: Path
) -> None:
    """Truncated or bit-flipped WAL tails of a journal whose readings were all served.

    Every reading is either recovered under its identity or counted as gone; when any is
    gone, the journal continues in a new epoch that inherits the surviving ones. (A WAL that
    loses frames a checkpoint already copied leaves a corrupt database: salvaged.)
    `lost` in the table counts readings gone without being counted (must stay 0).
    """
    snapshot, growth, original = prepared
    wal_size = (snapshot / f"{DB_NAME}-wal").stat().st_size
    rng = random.Random(2)
    cases = max(1000, round(1000 * scale()))
    unaccounted = new_epochs = 0
    recovered_total = 0
    for case in range(cases):
        target = tmp_path / f"case{case % 4}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(snapshot, target)
        wal = target / f"{DB_NAME}-wal"
        offset = rng.randrange(32, wal_size)
        if case % 2:
            with wal.open("r+b") as file:
                file.truncate(offset)
        else:
            data = bytearray(wal.read_bytes())
            data[offset] ^= 1 << rng.randrange(8)
            wal.write_bytes(bytes(data))
        # Every transaction whose WAL frames all lie before the damage survives.
        must_keep = max((seq for size, seq in growth if size <= offset), default=0)

        journal = await Journal.open(target)
        readings, _ = await journal.read_after(0, 100_000)
        report, stats = journal.recovery, journal.stats()
        await journal.append(tick(TICKS))
        next_seq = journal.stats().newest_seq - PER_TICK + 1
        await journal.close()

        context = (case, offset, report)
        assert readings == original[: len(readings)], context
        assert len(readings) >= must_keep, context
        gone = len(original) - len(readings)
        unaccounted += gone - report.lost_readings
        recovered_total += len(readings)
        assert stats.dropped_by_cause["recovery"] == report.lost_readings, context
        # Served seqs are never reused: either nothing is gone, or a new epoch inherits
        # exactly the surviving readings and numbers new ones after them.
        assert report.new_epoch == (gone > 0), context
        if gone:
            new_epochs += 1
            assert report.message, context
            # (new epoch, seq) is (old epoch, seq) up to `through`; new readings come after.
            [ancestor] = stats.lineage
            assert ancestor.through_seq >= len(readings), context
            assert next_seq == ancestor.through_seq + 1, context
            assert stats.new_epoch_unacked, context
        else:
            assert next_seq == len(readings) + 1, context
    record(
        "journal WAL tail truncated / bit-flipped",
        cycles=cases,
        generated=cases * len(original),
        delivered=recovered_total,
        lost=unaccounted,
        duplicated=0,
    )
    assert unaccounted == 0
    assert new_epochs > cases // 2


async def test_wal_evidence_alone_detects_lost_commits(
    prepared: tuple[Path, list[tuple[int, int]], list], tmp_path: Path
) -> None:
    """Without a served floor (nothing was served), a bit flip in a committed frame followed
    by further commits still starts a new epoch and counts exactly what is gone: the lost
    frames carry the readings counter. Damage in the last transaction alone is what a crash
    mid-commit leaves, and starts no new epoch."""
    snapshot, growth, original = prepared
    rng = random.Random(3)
    seen = [0, 0, 0]  # cases by commits after the damage: none, one, more
    for case in range(200):
        target = tmp_path / f"case{case % 4}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(snapshot, target)
        (target / FLOOR_FILE).unlink()
        wal = target / f"{DB_NAME}-wal"
        data = bytearray(wal.read_bytes())
        # Every tenth case damages the last transaction, the rest anywhere.
        low = growth[-2][0] if case % 10 == 0 else 32
        offset = rng.randrange(low, len(data))
        data[offset] ^= 1 << rng.randrange(8)
        wal.write_bytes(bytes(data))
        journal = await Journal.open(target)
        readings, _ = await journal.read_after(0, 100_000)
        report = journal.recovery
        await journal.close()
        later_commits = sum(1 for size, _ in growth if size > offset)
        context = (case, offset, later_commits, report)
        seen[min(later_commits, 2)] += 1
        if later_commits >= 2:
            assert report.new_epoch, context
            assert report.lost_readings == len(original) - len(readings), context
        elif later_commits == 1:
            assert not report.new_epoch, context
            assert len(readings) == len(original) - PER_TICK, context
    assert seen[1] >= 10
    assert seen[2] >= 100


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 384 KiB tmpfs (the tests run as root, as on CI)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=384k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


async def test_full_disk_parks_readings_and_resumes(tiny_fs: Path) -> None:
    journal = await Journal.open(tiny_fs / "journal")
    filler = tiny_fs / "filler"
    filler.write_bytes(b"\0" * (200 * 1024))
    appended = 0
    number = 0
    while journal.stats().writable:
        await journal.append(tick(number))
        appended += PER_TICK
        number += 1
        assert number < 5000, "the tiny filesystem never filled up"
    stuck = journal.stats()
    assert stuck.pending >= PER_TICK  # parked in memory, counted as waiting
    for _ in range(20):  # keeps accepting (in memory) while full
        await journal.append(tick(number))
        appended += PER_TICK
        number += 1
    assert not journal.stats().writable

    filler.unlink()
    await journal.enforce_retention()
    assert journal.stats().writable
    readings, more = await journal.read_after(0, 100_000)
    await journal.close()
    assert not more
    keys = [(r.sensor, r.time_ms) for r in readings]
    duplicated = len(keys) - len(set(keys))
    lost = appended - len(set(keys))
    record(
        "journal on a tiny filesystem that fills up",
        cycles=1,
        generated=appended,
        delivered=len(readings),
        lost=lost,
        duplicated=duplicated,
    )
    assert [r.seq for r in readings] == list(range(1, len(readings) + 1))
    assert lost == 0
    assert duplicated == 0

    reopened = await Journal.open(tiny_fs / "journal")
    assert reopened.stats().newest_seq == len(readings)
    await reopened.close()
