"""Fault injection on the journal: a damaged WAL tail (>= 1,000 cases) and a real
tiny filesystem that fills up. Rows go to the fault harness table."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bioreactor_edge.journal import DB_NAME, Journal
from bioreactor_edge.journal_lineage import FLOOR_FILE, Ancestor
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


def crash_copy(source: Path, target: Path) -> None:
    """The files a SIGKILL would leave behind: copied while the journal is open, so the
    readings are still in the WAL (nothing checkpointed)."""
    target.mkdir()
    for name in (DB_NAME, f"{DB_NAME}-wal", FLOOR_FILE):
        shutil.copyfile(source / name, target / name)


def damage_wal(directory: Path, offset: int, how: str) -> None:
    """Cuts the WAL at `offset`, or flips a bit in the frame header there."""
    wal = directory / f"{DB_NAME}-wal"
    if how == "truncate":
        with wal.open("r+b") as file:
            file.truncate(offset)
    else:
        data = bytearray(wal.read_bytes())
        data[offset + 8] ^= 0x10  # salt-1 of the frame: SQLite's recovery stops before it
        wal.write_bytes(bytes(data))


@dataclass
class LostEpochChange:
    """Epoch e1 served seqs 1..120; a damaged tail lost 97..120, so recovery started e2
    (inheriting 1..96) and e2 served 97..156; then the WAL lost e2's start again."""

    directory: Path
    e1: str
    e2: str
    floor_before_reopen: bytes


async def lose_epoch_change(tmp_path: Path, how: str) -> LostEpochChange:
    first = tmp_path / "first"
    journal = await Journal.open(first)
    wal_sizes = []
    for number in range(10):
        await journal.append(tick(number))
        wal_sizes.append((first / f"{DB_NAME}-wal").stat().st_size)
    assert len((await journal.read_after(0, 1000))[0]) == 120
    e1 = journal.epoch
    crash_copy(first, tmp_path / "second")
    await journal.close()

    # The last two commits are gone: recovery starts e2 at the end of the surviving WAL.
    cut = wal_sizes[7]
    damage_wal(tmp_path / "second", cut, "truncate")
    journal = await Journal.open(tmp_path / "second")
    assert journal.recovery.new_epoch
    assert journal.recovery.lost_readings == 24
    e2 = journal.epoch
    for number in range(10, 15):
        await journal.append(tick(number))
    served, _ = await journal.read_after(96, 1000)
    assert [r.seq for r in served] == list(range(97, 157))
    crash_copy(tmp_path / "second", tmp_path / "third")
    await journal.close()

    # e2's first transaction began at `cut`: damage there loses it and all of e2.
    damage_wal(tmp_path / "third", cut, how)
    return LostEpochChange(
        tmp_path / "third", e1, e2, (tmp_path / "third" / FLOOR_FILE).read_bytes()
    )


@pytest.mark.parametrize("how", ["truncate", "flip"])
async def test_lost_epoch_change_never_reuses_served_identities(tmp_path: Path, how: str) -> None:
    """The database falls back to e1, whose seqs 97..120 were served: continuing e1 would
    hand out (e1, 97..) again, which a consumer already has and skips as duplicates. The
    journal starts a new epoch instead, inheriting 1..96 from e1 and e2, and counts what
    is gone: e2's 97..156 now, e1's 97..120 counted before (kept by the served floor)."""
    lost = await lose_epoch_change(tmp_path, how)
    journal = await Journal.open(lost.directory)
    try:
        stats = journal.stats()
        assert journal.epoch not in (lost.e1, lost.e2)
        assert journal.recovery.new_epoch
        assert journal.recovery.lost_readings == 60
        assert stats.dropped_by_cause["recovery"] == 24 + 60
        assert stats.lineage == (Ancestor(lost.e1, 96), Ancestor(lost.e2, 96))
        assert stats.new_epoch_unacked
        await journal.append(tick(20))
        readings, _ = await journal.read_after(96, 1000)
        assert [r.seq for r in readings] == list(range(97, 109))
    finally:
        await journal.close()


async def test_crash_between_epoch_change_and_floor_write(tmp_path: Path) -> None:
    """The new epoch is committed but the floor still names the lost epoch: the next start
    finds that epoch among the new one's ancestors, so it neither starts yet another epoch
    nor counts the same readings twice."""
    lost = await lose_epoch_change(tmp_path, "truncate")
    journal = await Journal.open(lost.directory)
    e3 = journal.epoch
    crash_copy(lost.directory, tmp_path / "fourth")
    await journal.close()
    (tmp_path / "fourth" / FLOOR_FILE).write_bytes(lost.floor_before_reopen)

    journal = await Journal.open(tmp_path / "fourth")
    try:
        assert journal.epoch == e3
        assert not journal.recovery.new_epoch
        assert journal.stats().dropped_by_cause["recovery"] == 24 + 60
    finally:
        await journal.close()


@pytest.mark.parametrize("acked", [120, 108])
async def test_lost_readings_a_consumer_acknowledged_are_not_dropped(
    tmp_path: Path, acked: int
) -> None:
    """The damage takes seqs 97..120 and the acknowledgement of `acked` with them: the seqs
    were served, so a new epoch starts; only those never acknowledged count as dropped."""
    journal = await Journal.open(tmp_path / "first")
    wal_sizes = []
    for number in range(10):
        await journal.append(tick(number))
        wal_sizes.append((tmp_path / "first" / f"{DB_NAME}-wal").stat().st_size)
    await journal.read_after(0, 1000)
    await journal.ack(journal.epoch, acked)
    old_epoch = journal.epoch
    crash_copy(tmp_path / "first", tmp_path / "second")
    await journal.close()
    damage_wal(tmp_path / "second", wal_sizes[7], "truncate")

    journal = await Journal.open(tmp_path / "second")
    try:
        stats = journal.stats()
        assert journal.recovery.new_epoch
        assert stats.lineage == (Ancestor(old_epoch, 96),)
        assert stats.acked_seq == 0  # the acknowledgement's transaction is gone too
        assert journal.recovery.lost_readings == 120 - acked
        assert stats.dropped_by_cause["recovery"] == 120 - acked
    finally:
        await journal.close()


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
