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
    """A journal whose data is still in its WAL, and (WAL size, newest seq) after each commit."""
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
        for suffix in ("", "-wal"):
            shutil.copyfile(directory / f"{DB_NAME}{suffix}", snapshot / f"{DB_NAME}{suffix}")
        readings, _ = await journal.read_after(0, 100_000)
        await journal.close()
        return readings

    original = asyncio.run(build())
    return snapshot, growth, original


async def test_damaged_wal_tail_recovers_every_earlier_record(
    prepared: tuple[Path, list[tuple[int, int]], list], tmp_path: Path
) -> None:
    snapshot, growth, original = prepared
    wal_size = (snapshot / f"{DB_NAME}-wal").stat().st_size
    rng = random.Random(2)
    cases = max(1000, round(1000 * scale()))
    lost = reported = 0
    recovered_total = 0
    for case in range(cases):
        target = tmp_path / f"case{case % 4}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for suffix in ("", "-wal"):
            shutil.copyfile(snapshot / f"{DB_NAME}{suffix}", target / f"{DB_NAME}{suffix}")
        wal = target / f"{DB_NAME}-wal"
        offset = rng.randrange(32, wal_size)
        if case % 2:
            with wal.open("r+b") as file:
                file.truncate(offset)
        else:
            data = bytearray(wal.read_bytes())
            data[offset] ^= 1 << rng.randrange(8)
            wal.write_bytes(bytes(data))
        # Every transaction whose WAL frames all lie before the damage must survive.
        must_keep = max((seq for size, seq in growth if size <= offset), default=0)

        journal = await Journal.open(target)
        readings, _ = await journal.read_after(0, 100_000)
        report = journal.recovery
        await journal.close()

        assert readings == original[: len(readings)], "recovered readings are not a clean prefix"
        lost += max(0, must_keep - len(readings))
        recovered_total += len(readings)
        if len(readings) < len(original):
            # Reported: the discarded WAL frames, or a database that had to start anew.
            assert report.discarded_bytes > 0 or report.new_epoch, report
            assert report.message
            reported += 1
    record(
        "journal WAL tail truncated / bit-flipped",
        cycles=cases,
        generated=cases * len(original),
        delivered=recovered_total,
        lost=lost,
        duplicated=0,
    )
    assert lost == 0
    assert reported > cases // 2


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
